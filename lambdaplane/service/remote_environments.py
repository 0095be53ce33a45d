"""The Invoker's `environments` when `serve --no-data-plane` runs no sandboxes: each invocation
is placed on a live agent (service/placement.py) and forwarded over the agent's internal
endpoint (service/agent_wire.py); the agent runs it in its ExecutionEnvironments and the result
comes back as the local path would have returned it. A code or layer zip the agent lacks is
sent to it once (it keeps it by sha256), and so is each function spec (then only its id
travels). Every second, hosts whose lease ran out are deleted with their assignments
(store/hosts.py) and the placement's snapshot is refreshed. Every request to an
agent is signed with the cluster secret (service/agent_auth.py); an agent that refuses the
signature ran nothing, so the invoke is placed elsewhere.

A VPC function's spec carries its attachment (agent_wire.py): the agent steers its sandboxes
to the ENIs whose store half serve made (service/hyperplane_records.py)."""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp

from ..config import Settings
from ..errors import AwsError
from ..sandbox.types import FunctionSpec, Invocation, InvocationResult
from ..store.agent_secrets import AgentSecretStore
from ..store.db import Database
from ..store.hosts import Host, HostStore
from . import agent_auth
from . import agent_wire as wire
from .placement import Placement, parse_placement

log = logging.getLogger("lambdaplane.remote")

SWEEP_INTERVAL_S = 1.0
CONNECT_TIMEOUT_S = 5.0
INVOKE_MARGIN_S = 120.0  # beyond the function's timeout: a cold start on a busy host
MAX_SPECS = 4096  # spec JSONs kept (one per function version and revision in use)


def _service_error(message: str) -> AwsError:
    return AwsError("ServiceException", message, 500, "Service")


class AgentUnreachable(Exception):
    """The agent did not take the request (nothing of the invoke ran there)."""


class RemoteEnvironments:
    def __init__(self, settings: Settings, db: Database) -> None:
        self.settings = settings
        self.hosts = HostStore(db)
        self.secrets = AgentSecretStore(db)  # every request to an agent is signed
        self.signer = agent_auth.Signer(self.secrets.ensure())
        self.placement = Placement(self.hosts, parse_placement(settings.placement))
        self.code_zip: Callable[[str], bytes | None] = lambda _hex: None  # set by the server
        # after each sweep, given the live hosts' instance prefixes (set by the server: the
        # `lambdaplane run --host` resources of hosts that are gone are released)
        self.after_sweep: Callable[[set[str]], Awaitable[None]] | None = None
        self.vpc_attacher: Any = None  # the Platform's wiring sets these; nothing uses them
        self.log_ingest: Any = None
        self.prestarted: dict[str, Any] = {}
        self.zygote_restarts = 0
        self.busy: Counter[tuple[str, str]] = Counter()
        self._sessions: dict[str, aiohttp.ClientSession] = {}
        # a spec's JSON and id, by the spec object (the functions service keeps one per record)
        self._spec_docs: dict[int, tuple[FunctionSpec, str, dict[str, Any]]] = {}
        self._specs_sent: dict[str, set[str]] = {}  # host id → spec ids it was sent
        self._sweeper: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._sweep_once()
        self._sweeper = asyncio.create_task(self._sweep_forever(), name="lp-host-leases")

    async def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None
        for session in self._sessions.values():
            await session.close()
        self._sessions.clear()

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_INTERVAL_S)
            try:
                self._sweep_once()
                if self.after_sweep is not None:
                    await self.after_sweep({h.instance for h in self.placement.live})
            except Exception:  # noqa: BLE001 - the database may be away for a moment
                log.exception("sweeping host leases failed")

    def _sweep_once(self) -> None:
        for host in self.hosts.expire(time.time()):
            log.warning("host %s (agent lp%s) missed its lease: removed with its assignments",
                        host.name, host.instance)
        self.placement.refresh()
        if self.signer.due(time.time()):  # a rotated secret (service/agent_auth.py)
            self.signer.set_secrets(self.secrets.all())
        live = {h.id for h in self.placement.live}
        for host_id in [h for h in self._specs_sent if h not in live]:
            del self._specs_sent[host_id]  # gone: a comeback is asked for the spec again

    # -- what the rest of the server asks -------------------------------------------------
    def in_flight(self, key: tuple[str, str]) -> int:
        return self.busy.get(key, 0)

    def total_in_flight(self) -> int:
        return sum(self.busy.values())

    def stats(self) -> dict[str, Any]:
        return {"in_flight": self.total_in_flight(), "environments": {},
                "hosts": [{"name": h.name, "instance": f"lp{h.instance}", "load": h.load,
                           "address": h.address} for h in self.placement.live]}

    def environments(self) -> list[Any]:
        return []  # they live on the agents

    async def retire(self, key: tuple[str, str]) -> None:
        """Nothing to do here: an update changes the revision id, and agents never reuse an
        environment of another revision (their idle reaper ends them)."""

    # -- invoke ---------------------------------------------------------------------------
    async def invoke(self, spec: FunctionSpec, inv: Invocation) -> InvocationResult:
        self.busy[spec.key] += 1
        tried: set[str] = set()
        try:
            while True:
                host = self.placement.choose(spec.key, tried)
                self.placement.forwarded[host.id] += 1
                try:
                    result = await self._forward(host, spec, inv)
                except AgentUnreachable as e:
                    log.warning("agent %s unreachable (%s); placing elsewhere", host.name, e)
                    tried.add(host.id)
                    self.placement.failed(host)
                    continue
                finally:
                    self.placement.forwarded[host.id] -= 1
                    if self.placement.forwarded[host.id] <= 0:
                        del self.placement.forwarded[host.id]
                self.placement.ran(spec.key, host)
                return result
        finally:
            self.busy[spec.key] -= 1
            if self.busy[spec.key] <= 0:
                del self.busy[spec.key]

    def _session(self, address: str) -> aiohttp.ClientSession:
        session = self._sessions.get(address)
        if session is None or session.closed:
            path = wire.unix_socket_of(address)
            connector = aiohttp.UnixConnector(path) if path else aiohttp.TCPConnector()
            session = aiohttp.ClientSession(connector=connector)
            self._sessions[address] = session
        return session

    def _spec_doc(self, spec: FunctionSpec) -> tuple[str, dict[str, Any]]:
        """The spec's id and JSON, made once per spec object (not once per invoke)."""
        held = self._spec_docs.get(id(spec))
        if held is not None and held[0] is spec:
            return held[1], held[2]
        if len(self._spec_docs) >= MAX_SPECS:
            self._spec_docs.clear()
        doc = wire.spec_to_json(spec)
        sid = wire.spec_id(doc)
        self._spec_docs[id(spec)] = (spec, sid, doc)
        return sid, doc

    async def _forward(self, host: Host, spec: FunctionSpec,
                       inv: Invocation) -> InvocationResult:
        sid, spec_doc = self._spec_doc(spec)
        sent = self._specs_sent.setdefault(host.id, set())
        if len(sent) >= MAX_SPECS:
            sent.clear()  # the agent says need_spec for any it dropped
        url = wire.base_url(host.address)
        timeout = aiohttp.ClientTimeout(total=spec.timeout_s + INVOKE_MARGIN_S,
                                        sock_connect=CONNECT_TIMEOUT_S)
        session = self._session(host.address)
        # again after sending the spec, the code zip and each layer's zip it lacked
        for _attempt in range(3 + len(spec.layer_hexes)):
            body = wire.invoke_body(sid, None if sid in sent else spec_doc, inv)
            signed = self.signer.authorization("POST", wire.INVOKE_PATH,
                                               await agent_auth.body_digest_async(body))
            try:
                async with session.post(url + wire.INVOKE_PATH, data=body, timeout=timeout,
                                        headers={"Content-Type": wire.FRAMED,
                                                 agent_auth.HEADER: signed}) as resp:
                    data = await resp.read()
                    status = resp.status
            except (aiohttp.ClientConnectorError, FileNotFoundError,
                    ConnectionRefusedError) as e:
                raise AgentUnreachable(str(e)) from None
            except aiohttp.ClientError as e:  # taken, then lost: it may have run
                raise _service_error(f"The host running the function was lost ({e}).") \
                    from None
            if status == 200:
                sent.add(sid)
                return wire.read_result_body(data)
            doc = json.loads(data)
            if status in (401, 403):  # nothing ran there: place it elsewhere
                raise AgentUnreachable(f"it refused the server's signature ({status}: "
                                       f"{doc.get('error', {}).get('message', '')})")
            if status == 409 and "need_spec" in doc:  # the agent restarted: send it again
                sent.discard(sid)
                continue
            if status == 409 and "need_code" in doc:
                sent.add(sid)  # the agent keeps a spec it was sent, with or without the code
                await self._send_code(session, url, doc["need_code"], timeout)
                continue
            raise wire.error_from_json(doc["error"])
        raise _service_error("The host did not take the function's code.")

    async def _send_code(self, session: aiohttp.ClientSession, url: str, code_hex: str,
                         timeout: aiohttp.ClientTimeout) -> None:
        data = await asyncio.to_thread(self.code_zip, code_hex)
        if data is None:
            raise _service_error(f"The function's code {code_hex} is missing on the server.")
        path = wire.CODE_PATH.format(hex=code_hex)
        signed = self.signer.authorization("PUT", path, await agent_auth.body_digest_async(data))
        try:
            async with session.put(url + path, data=data, timeout=timeout,
                                   headers={agent_auth.HEADER: signed}) as resp:
                if resp.status != 204:
                    doc = await resp.json()
                    raise wire.error_from_json(doc["error"])
        except aiohttp.ClientError as e:
            raise _service_error(f"Sending the code to the host failed ({e}).") from None
