"""`lambdaplane agent`: one host's data plane for a `serve --no-data-plane` sharing its
PostgreSQL database — execution environments (pool, zygotes, worker namespace, Runtime API) and
the Logs ingest of its functions, under its own data dir and instance prefix. It holds a lease
row (store/hosts.py) renewed every second in a thread, deletes other hosts' expired rows, and
serves the internal invoke endpoint (service/agent_wire.py; HTTP on a Unix socket in its data
dir, or `--listen HOST:PORT`), every request checked against the cluster secret
(service/agent_auth.py); code and layer zips and specs are sent to it once. With
`--underlay-address` it is in the EVPN fabric (service/host_fabric.py) and builds the store's
VPCs and its port block of each Hyperplane ENI (service/agent_vpc.py). `--host-netns NAME`
enters a namespace standing in for a host before anything is built; `lambdaplane clean` of its
data dir removes what it made."""
from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp import web

from . import datadir_lock
from .config import Settings
from .errors import AwsError
from .net.executor import NetThread
from .net.names import Names
from .sandbox.types import FunctionSpec
from .service import agent_auth
from .service.agent_code import AgentCode
from .service.host_fabric import HOST_RECORD_NAME, HostFabric, Underlay
from .store.agent_secrets import AgentSecretStore
from .store.code import CodeStore
from .store.db import Database, DatabaseUnavailable
from .store.host_underlays import HostUnderlays
from .store.hosts import Host, HostStore
from .tasks import cancel_and_wait, until_stop_signal

if TYPE_CHECKING:
    from .service.agent_vpc import AgentVpcs

log = logging.getLogger("lambdaplane.agent")

RECORD_NAME = "agent.json"  # what `clean` needs: the database, the host row, the namespace
SOCKET_NAME = "agent.sock"
HEX = re.compile(r"[0-9a-f]{64}")
MAX_SPECS = 4096  # specs kept by id (one per function version and revision in use)


@dataclass(frozen=True)
class AgentOptions:
    name: str  # the host's name (placement pins by it)
    listen: str = ""  # "" = a Unix socket in the data dir; else HOST:PORT
    host_netns: str = ""  # a network namespace standing in for a host ("" = this one)
    lease_s: float = 5.0  # a lease not renewed for this long is expired
    renew_s: float = 1.0
    underlay: Underlay | None = None  # this host's place in the EVPN fabric (None: not in one)


class NameTaken(Exception):
    """Another live agent holds the host name asked for."""


def enter_netns(name: str) -> None:
    """Move this process (its only thread, before any other starts) into netns `name`."""
    from .sandbox.isolation import CLONE_NEWNET, setns

    fd = os.open(f"/run/netns/{name}", os.O_RDONLY | os.O_CLOEXEC)
    try:
        setns(fd, CLONE_NEWNET)
    finally:
        os.close(fd)


class Agent:
    def __init__(self, settings: Settings, options: AgentOptions) -> None:
        from .sandbox.environments import ExecutionEnvironments
        from .service.logs import LogsService

        self.settings = settings
        self.options = options
        self.names = Names(settings.ensure_instance())
        self.host_id = f"lp{self.names.instance}"
        self.address = (f"http://{options.listen}" if options.listen
                        else f"unix:{settings.data_dir / SOCKET_NAME}")
        self.net = NetThread()
        self.db = Database.open(settings.data_dir, settings.database or None)
        self.hosts = HostStore(self.db, options.lease_s)
        held = self.name_taken_by()
        if held is not None:  # before anything else is built
            self.db.close()
            self.net.close()
            raise NameTaken(f"the host name {options.name} is held by the live agent "
                            f"{held.id} at {held.address}; choose another --name")
        self.code = CodeStore(settings.data_dir)
        self.content = AgentCode(self.code)  # code and layers present, the merged /opt
        self.secrets = AgentSecretStore(self.db)  # requests must be signed (service/agent_auth.py)
        self.verifier = agent_auth.Verifier(self.secrets.ensure())
        self.logs = LogsService(settings)
        self.environments = ExecutionEnvironments(settings, self.names, self.net)
        self.environments.log_ingest = self.logs.ingest
        self.fabric = (HostFabric(self.names, settings.data_dir, options.underlay)
                       if options.underlay is not None else None)
        self.underlays = HostUnderlays(self.db)
        self.vpcs: AgentVpcs | None = None  # in the fabric: VPCs, the ENIs' kernel half
        if self.fabric is not None:
            from .service.agent_vpc import AgentVpcs
            self.vpcs = AgentVpcs(settings, self.names, self.net, self.fabric, self.host_id)
            self.environments.vpc_attacher = self.vpcs.hyperplane
        self._peers_found: set[str] | None = None  # read by the last renewal (fabric only)
        self._lease: asyncio.Task[None] | None = None
        self._renewing: asyncio.Future[None] | None = None  # the renewal's thread, if running
        self._warm_written: set[tuple[str, str]] | None = None  # what the row lists (None: ?)
        self._specs: dict[str, FunctionSpec] = {}  # by spec id (service/agent_wire.py)
        (settings.data_dir / RECORD_NAME).write_text(json.dumps({
            "database": settings.database, "host_id": self.host_id, "name": options.name,
            "host_netns": options.host_netns,
            "underlay": options.underlay.address if options.underlay else None}) + "\n")

    async def start(self) -> None:
        await self.logs.start()
        try:
            if self.fabric is not None:
                self.fabric.discovered = frozenset(self.underlays.live_peers(self.host_id,
                                                                             time.time()))
                await self.fabric.start()
            await self.environments.start()
            if self.vpcs is not None:  # after the worker namespace: the ENIs' transits
                try:
                    await self.vpcs.start()
                except BaseException:
                    await self.environments.stop()
                    raise
        except BaseException:
            if self.vpcs is not None:
                await self.vpcs.stop()
            if self.fabric is not None:
                await self.fabric.stop()
            await self.logs.stop()
            raise

    async def stop(self) -> None:
        await cancel_and_wait(self._lease)
        self._lease = None
        if self._renewing is not None:  # its thread uses the connection: let it finish
            await asyncio.wait([self._renewing])
        try:
            self.hosts.remove(self.host_id)  # placement stops sending at once
            self.underlays.remove(self.host_id)  # and the other agents stop peering
        except Exception:  # noqa: BLE001 - the lease runs out by itself
            log.exception("removing the host row failed")
        for component in (self.vpcs, self.environments, self.fabric, self.logs):
            if component is None:
                continue
            try:
                await component.stop()
            except Exception:  # noqa: BLE001 - keep stopping the rest
                log.exception("stopping %s failed", type(component).__name__)
        self.net.close()
        self.db.close()

    # -- the lease ------------------------------------------------------------------------
    def register(self) -> None:
        self.hosts.register(self.host_id, self.options.name, self.address,
                            self.names.instance, time.time())
        self._warm_written = set()
        if self.options.underlay is not None:  # the other agents peer with this address
            self.underlays.record(self.host_id, self.options.underlay.address)

    def warm_functions(self) -> set[tuple[str, str]]:
        return {env.spec.key for env in self.environments.registry.envs.values()}

    def renew_once(self, load: int | None = None,
                   warm: set[tuple[str, str]] | None = None) -> None:
        """Renew the lease with the load and warm functions (read on the loop by the caller
        when this runs in a thread), and delete expired hosts: one UPDATE and one read when
        the warm functions did not change."""
        now = time.time()
        load = self.environments.total_in_flight() if load is None else load
        warm = self.warm_functions() if warm is None else warm
        written, self._warm_written = self._warm_written, None  # unknown should this fail
        if self.hosts.renew(self.host_id, now, load, warm, written):
            self._warm_written = warm
        else:
            log.warning("the lease of %s had expired: registering again", self.options.name)
            self.register()
        for host in self.hosts.expire(now):
            log.warning("host %s (agent lp%s) missed its lease: removed", host.name,
                        host.instance)
        if self.fabric is not None:  # one read: the other live hosts' underlay addresses
            self._peers_found = self.underlays.live_peers(self.host_id, now)
        if self.verifier.due(now):  # a rotated or retired secret (service/agent_auth.py)
            self.verifier.set_secrets(self.secrets.all(), now)

    async def _renew_forever(self) -> None:
        while True:
            await asyncio.sleep(self.options.renew_s)
            # the database's round trips in a thread: invokes on the loop do not wait for them
            # (only the lease uses this connection; stop waits for a renewal under way)
            load, warm = self.environments.total_in_flight(), self.warm_functions()
            self._renewing = asyncio.ensure_future(asyncio.to_thread(self.renew_once, load,
                                                                     warm))
            try:
                await asyncio.shield(self._renewing)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - the database may be away for a moment
                log.exception("renewing the lease failed")
            finally:
                if self._renewing.done():
                    self._renewing = None
            if self.fabric is not None and self._peers_found is not None:
                try:
                    await self.fabric.set_discovered(self._peers_found)
                except Exception:  # noqa: BLE001 - tried again at the next renewal
                    log.exception("telling the fabric its peers failed")

    def name_taken_by(self) -> Host | None:
        """Another agent, alive, holding this host name (two hosts one name: refused)."""
        held = self.hosts.by_name(self.options.name)
        if held is None or held.id == self.host_id or held.lease_expires <= time.time():
            return None
        return held

    def start_lease(self) -> None:
        self.register()
        self._lease = asyncio.create_task(self._renew_forever(), name="lp-agent-lease")

    # -- the internal endpoint ------------------------------------------------------------
    def app(self) -> web.Application:
        from .service import agent_wire as wire

        def error(e: AwsError) -> web.Response:
            return web.json_response({"error": wire.error_to_json(e)}, status=e.status)

        def refused(e: agent_auth.AuthRefused) -> web.Response:
            code = {401: "UnrecognizedClientException",
                    403: "AccessDeniedException"}.get(e.status, "ServiceException")
            return error(AwsError(code, e.message, e.status))

        app = web.Application(client_max_size=wire.MAX_BODY,
                              middlewares=[agent_auth.middleware(self.verifier, refused)])

        async def invoke(request: web.Request) -> web.Response:
            try:
                sid, spec_doc, invocation = wire.read_invoke_body(await request.read())
            except (ValueError, KeyError, TypeError) as e:
                return error(AwsError("InvalidRequestContentException",
                                      f"a malformed invoke ({e})", 400))
            spec = self._specs.get(sid)
            if spec is None:
                if spec_doc is None:  # restarted since the server sent it: ask again
                    return web.json_response({"need_spec": sid}, status=409)
                code_hex = str(spec_doc.get("code_sha256", ""))
                if wire.spec_id(spec_doc) != sid or not all(
                        HEX.fullmatch(h) for h in (code_hex, *(spec_doc.get("layers") or ()))):
                    return error(AwsError("InvalidParameterValueException",
                                          "the spec's id or digests are not right", 400))
                spec = wire.spec_from_json(spec_doc, self.code.directory(code_hex))
                if len(self._specs) >= MAX_SPECS:
                    self._specs.clear()
                self._specs[sid] = spec
            missing = self.content.missing(spec)  # the code, then each layer
            if missing is not None:
                return web.json_response({"need_code": missing}, status=409)
            if spec.layer_hexes and spec.opt_dir is None:
                spec = self._specs[sid] = await self.content.with_opt(spec)
            try:
                result = await self.environments.invoke(spec, invocation)
            except AwsError as e:
                return error(e)
            except Exception:
                log.exception("invoking %s (request %s) failed", spec.arn,
                              invocation.request_id)
                return error(AwsError("ServiceException", "The Lambda service encountered an "
                                      "internal error while running the function.", 500,
                                      "Service"))
            return web.Response(body=wire.result_body(result), content_type=wire.FRAMED)

        async def put_code(request: web.Request) -> web.Response:
            code_hex = request.match_info["hex"]
            data = await request.read()
            if not HEX.fullmatch(code_hex) or hashlib.sha256(data).hexdigest() != code_hex:
                return error(AwsError("InvalidParameterValueException",
                                      "the body's sha256 is not the one named", 400))
            try:
                await asyncio.to_thread(self.code.put, data)
            except AwsError as e:
                return error(e)
            return web.Response(status=204)

        async def health(_request: web.Request) -> web.Response:
            return web.json_response({"name": self.options.name, "host_id": self.host_id,
                                      "in_flight": self.environments.total_in_flight(),
                                      "underlay": self.options.underlay.address
                                      if self.options.underlay else None,
                                      "auth": {"accepted": self.verifier.accepted,
                                               "refused": dict(self.verifier.refused)}})

        app.router.add_post(wire.INVOKE_PATH, invoke)
        app.router.add_put(wire.CODE_PATH, put_code)
        app.router.add_get(wire.HEALTH_PATH, health)
        return app

    async def site(self, runner: web.AppRunner) -> web.BaseSite:
        if self.options.listen:
            host, _, port = self.options.listen.rpartition(":")
            return web.TCPSite(runner, host or "0.0.0.0", int(port), reuse_address=True)
        path = self.settings.data_dir / SOCKET_NAME
        path.unlink(missing_ok=True)  # a killed agent's
        return web.UnixSite(runner, str(path))


async def run_agent(settings: Settings, options: AgentOptions) -> None:
    if os.geteuid() != 0:
        raise SystemExit("lambdaplane agent must run as root (namespaces, cgroups, nftables)")
    try:
        data_lock = datadir_lock.acquire(settings.data_dir, "agent")
    except datadir_lock.DataDirBusy as e:
        raise SystemExit(f"lambdaplane agent: {e}") from None
    try:
        agent = Agent(settings, options)
    except (DatabaseUnavailable, NameTaken) as e:
        data_lock.release()
        raise SystemExit(f"lambdaplane agent: {e}") from None
    except BaseException:
        data_lock.release()
        raise
    runner = web.AppRunner(agent.app(), access_log=None)
    try:
        await agent.start()
        await runner.setup()
        await (await agent.site(runner)).start()
        if not options.listen:
            os.chmod(settings.data_dir / SOCKET_NAME, 0o600)
        agent.start_lease()
        log.info("agent %s (instance lp%s) serving invokes at %s", options.name,
                 agent.names.instance, agent.address)
        print(f"lambdaplane agent ready at {agent.address}", flush=True)
        await until_stop_signal()
        log.info("stopping")
    finally:
        await runner.cleanup()
        await agent.stop()
        if not options.listen:
            (settings.data_dir / SOCKET_NAME).unlink(missing_ok=True)
        data_lock.release()


def clean_agent_record(data_dir: Path) -> list[str]:
    """`clean` of an agent's data dir, beyond the kernel objects: its host row."""
    record_path = data_dir / RECORD_NAME
    if not record_path.exists():
        return []
    record = json.loads(record_path.read_text())
    done = []
    try:
        db = Database.open(data_dir, record.get("database") or None)
    except DatabaseUnavailable as e:
        return [f"could not remove the host row {record['host_id']}: {e}"]
    try:
        if HostStore(db).remove(record["host_id"]):
            done.append(f"removed host {record['name']} ({record['host_id']}) from the store")
        HostUnderlays(db).remove(record["host_id"])
    finally:
        db.close()
    (data_dir / SOCKET_NAME).unlink(missing_ok=True)
    fabric_state = data_dir / "fabric"  # FRR's files (net/frr.py), once its daemons are gone
    if fabric_state.is_dir():
        from .net.fabric import processes_in
        from .net.frr import kill as kill_frr

        fabric_netns = Names(str(record["host_id"]).removeprefix("lp")).fabric_netns
        pids = processes_in(fabric_netns)
        kill_frr(pids)  # first: their crash-log dirs are found through the state dir
        done += [f"killed process {pid} in {fabric_netns}" for pid in pids]
        shutil.rmtree(fabric_state, ignore_errors=True)
        done.append(f"removed {fabric_state}")
    host_record = data_dir / HOST_RECORD_NAME  # the host namespace's ip_forward, put back
    if host_record.exists():
        from .net.fabric import restore_host_sysctls

        host_netns = str(record.get("host_netns") or "")
        if not host_netns or Path(f"/run/netns/{host_netns}").exists():
            done += restore_host_sysctls(host_record, host_netns or None)
        host_record.unlink(missing_ok=True)
    return done


def recorded_host_netns(data_dir: Path) -> str:
    """The namespace an agent of this data dir ran in ("" = none, or not an agent's)."""
    record_path = data_dir / RECORD_NAME
    if not record_path.exists():
        return ""
    return str(json.loads(record_path.read_text()).get("host_netns") or "")
