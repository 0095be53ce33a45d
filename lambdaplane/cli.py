"""Command line: serve | runtimes | run | ps | logs | net show | clean | status | bench | demo.
Client commands find the server from --endpoint, else AWS_ENDPOINT_URL, else the default."""
from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Callable
from pathlib import Path

from .config import Settings, endpoint_from


def _serve(args: argparse.Namespace) -> int:
    from .server import preload_modules, serve

    if args.auth == "sigv4" and not args.credentials:
        raise SystemExit("lambdaplane serve: --auth sigv4 needs --credentials FILE")
    if args.no_data_plane and not args.database:
        raise SystemExit("lambdaplane serve: --no-data-plane needs --database postgresql://… "
                         "(the database its agents share)")
    if args.placement:
        from .service.placement import parse_placement
        try:
            parse_placement(args.placement)
        except ValueError as e:
            raise SystemExit(f"lambdaplane serve: {e}") from None
    settings = _settings(host=args.host, port=args.port, data_dir=Path(args.data_dir),
                        account_id=args.account_id, uplink=not args.no_uplink,
                        vpc_mode=args.vpc_mode, keep_alive_s=args.keep_alive,
                        pool_size=args.pool_size, prefork=args.prefork,
                        instance=args.instance or "",
                        inactive_after_s=args.inactive_after,
                        eni_flow_limit=args.eni_flow_limit,
                        flow_idle_timeout_s=args.flow_idle_timeout,
                        eni_snat_ports=args.eni_snat_ports,
                        account_concurrency=args.account_concurrency,
                        event_retry_delays_s=tuple(
                            float(x) for x in args.event_retry_delays.split(",") if x),
                        auth=args.auth,
                        credentials_file=Path(args.credentials) if args.credentials else None,
                        s3_endpoint=args.s3_endpoint or "", prestart=args.prestart,
                        runtime_transport=args.runtime_transport,
                        reconcile_interval_s=args.reconcile_interval,
                        capacity=args.capacity, capacity_max=args.capacity_max,
                        capacity_window_s=args.capacity_window,
                        flow_log_interval_s=args.flow_log_interval,
                        internet_netns=args.internet_netns, public_cidr=args.public_cidr,
                        nat_connections_per_destination=args.nat_connection_limit,
                        dns_upstreams=tuple(args.dns_upstream or ()),
                        nat_idle_timeout_s=args.nat_idle_timeout,
                        database=args.database or "",
                        no_data_plane=args.no_data_plane, placement=args.placement or "")
    from .commands.runtimes import parse_mappings

    settings.runtimes = parse_mappings(args.runtime or [])
    settings.seccomp = args.seccomp == "on"
    settings.log_max_bytes = int(args.log_max_mb * 1024 * 1024)
    if settings.seccomp:
        from .sandbox.seccomp_profile import SeccompUnavailable, load_libseccomp
        try:
            load_libseccomp()
        except SeccompUnavailable as e:
            raise SystemExit(f"lambdaplane serve: {e}") from None
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from .cpu_slice import set_slice  # before any thread or child: they all inherit it
    set_slice(args.cpu_slice_us)
    import uvloop  # the event loop of the server: markedly less CPU per request

    preload_modules()  # not on the event loop, which an import would hold
    uvloop.run(serve(settings), loop_factory=_loop_factory(args.loop_slow_callback_ms))
    return 0


def _loop_factory(slow_callback_ms: float) -> Callable[[], asyncio.AbstractEventLoop]:
    """uvloop's loop; with `slow_callback_ms`, in asyncio debug mode with that threshold."""
    import uvloop

    def debug_loop() -> asyncio.AbstractEventLoop:
        from .loop_debug import debug_loop as put_in_debug_mode

        loop = uvloop.new_event_loop()
        put_in_debug_mode(loop, slow_callback_ms)
        return loop

    return debug_loop if slow_callback_ms > 0 else uvloop.new_event_loop


def _clean(args: argparse.Namespace) -> int:
    from . import datadir_lock
    from .cleanup import clean_instance

    settings = _settings(data_dir=Path(args.data_dir), instance=args.instance or "")
    data_lock = None
    if settings.data_dir.is_dir():  # a running server's objects are its own to remove
        try:
            data_lock = datadir_lock.acquire(settings.data_dir, "clean")
        except datadir_lock.DataDirBusy as e:
            raise SystemExit(f"lambdaplane clean: refused, nothing removed: {e}") from None
    instance = settings.instance or _stored_instance(settings.data_dir)
    if instance is None:
        print(f"no lambdaplane instance recorded in {settings.data_dir}; nothing to clean")
        return 0
    from .agent import clean_agent_record, enter_netns, recorded_host_netns

    for line in clean_agent_record(settings.data_dir):  # an agent's: its host row
        print(line)
    host_netns = recorded_host_netns(settings.data_dir)
    if host_netns and Path(f"/run/netns/{host_netns}").exists():
        enter_netns(host_netns)  # its links and nft tables are in the host's namespace
    for line in clean_instance(instance):
        print(line)
    from .sandbox.cgroups import restore_moves_from_record

    if restore_moves_from_record(settings.data_dir / "cgroup2-options"):
        print("restored the cgroup2 mount options the server had changed")
    from .net import host_sysctls

    record = settings.data_dir / host_sysctls.RECORD_NAME
    for put_back in host_sysctls.restore(record) if record.exists() else []:
        print(f"restored the host sysctl {put_back} the server had changed")
    if data_lock is not None:
        data_lock.release()
    return 0


def _settings(**values: object) -> Settings:
    """Settings from the command line; a value they refuse is a message, not a traceback."""
    try:
        return Settings(**values)  # type: ignore[arg-type]
    except ValueError as e:
        raise SystemExit(f"lambdaplane: {e}") from None


def _stored_instance(data_dir: Path) -> str | None:
    path = data_dir / "instance"
    return path.read_text().strip() if path.exists() else None


def _client_command(args: argparse.Namespace) -> int:
    from . import client_commands

    endpoint = endpoint_from(args.endpoint)
    return client_commands.run(args.command, endpoint, args)


def _runtimes(args: argparse.Namespace) -> int:
    from .commands import runtimes

    return runtimes.main(args)


def _bench(args: argparse.Namespace) -> int:
    from .bench import run as bench_run

    if args.endpoint:  # say so at once when the server named is not there
        from .commands.admin_client import ServerError, call
        try:
            call(args.endpoint, "GET", "health", timeout=10)
        except ServerError as e:
            raise SystemExit(f"lambdaplane bench: {e.message}") from None
    return bench_run.main(args)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lambdaplane", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("serve", help="run the platform (as root)")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=4747)
    s.add_argument("--data-dir", default="/var/lib/lambdaplane")
    s.add_argument("--database", metavar="URL",
                   help="keep the store in PostgreSQL: postgresql://USER@HOST/DB, or over a "
                        "Unix socket postgresql:///DB?host=/run/postgresql (default: SQLite "
                        "in the data dir; docs/postgresql.md)")
    s.add_argument("--account-id", default="000000000000")
    s.add_argument("--no-uplink", action="store_true",
                   help="sandboxes of non-VPC functions get no path out of the host, nor do "
                        "VPC gateways (unless --internet-netns)")
    s.add_argument("--vpc-mode", choices=["hyperplane", "legacy"], default="hyperplane")
    s.add_argument("--keep-alive", type=float, default=300.0,
                   help="seconds an idle execution environment is kept warm")
    s.add_argument("--pool-size", type=int, default=8)
    s.add_argument("--prefork", type=int, default=4,
                   help="sandboxes to fork and build ahead of demand: a cold start that finds "
                        "one skips the fork and the sandbox build (python3.11, provided.*)")
    s.add_argument("--reconcile-interval", type=float, default=30.0, metavar="SECONDS",
                   help="how often the kernel's VPC and Hyperplane state is checked against the "
                        "store and repaired where it drifted")
    s.add_argument("--loop-slow-callback-ms", type=float, default=0.0, metavar="MS",
                   help="asyncio debug mode: log (as 'asyncio: Executing … took …') every "
                        "callback that holds the event loop longer than this; 0 (default): off. "
                        "The test suite's LP_LOOP_DEBUG=1 fails a test on any such line")
    s.add_argument("--capacity", choices=["adaptive", "fixed"], default="adaptive",
                   help="adaptive: the sandbox pool and the pre-forked sandboxes grow to the "
                        "recent peak of concurrent cold starts and shrink when idle, "
                        "--pool-size and --prefork as floors; fixed: exactly those")
    s.add_argument("--capacity-max", type=int, default=256,
                   help="ceiling of the adaptive pool and pre-forked sandboxes (each)")
    s.add_argument("--capacity-window", type=float, default=600.0,
                   help="seconds over which a burst is remembered (held for half, then "
                        "decaying): after this long without cold starts, back to the floors")
    s.add_argument("--inactive-after", type=float, default=14 * 24 * 3600.0,
                   help="seconds without invokes before a VPC function goes Inactive")
    s.add_argument("--eni-flow-limit", type=int, default=65000,
                   help="flows on one Hyperplane ENI before a further ENI is made (AWS: 65,000)")
    s.add_argument("--flow-idle-timeout", type=int, default=350,
                   help="seconds an established TCP flow through a Hyperplane ENI may stay "
                        "idle before its NAT binding expires (AWS: 350)")
    s.add_argument("--eni-snat-ports", default="", metavar="LO-HI",
                   help="testing: SNAT source-port range of Hyperplane ENIs made from now on "
                        "(default 1024-65535), to exhaust an ENI's ports with a few connections")
    s.add_argument("--account-concurrency", type=int, default=1000,
                   help="concurrent executions per region (AWS default 1000)")
    s.add_argument("--event-retry-delays", default="60,120",
                   help="seconds before each retry of a failed Event invocation")
    s.add_argument("--instance", help="id prefixing kernel objects (default: kept in the data dir)")
    s.add_argument("--auth", choices=["none", "sigv4"], default="none",
                   help="sigv4: verify AWS Signature V4 on every Lambda/EC2/admin request")
    s.add_argument("--credentials", default=None,
                   help="INI file like ~/.aws/credentials (aws_access_key_id, "
                        "aws_secret_access_key per profile) for --auth sigv4")
    s.add_argument("--s3-endpoint", default=None, metavar="URL",
                   help="S3-compatible endpoint that Code.S3Bucket/S3Key of CreateFunction and "
                        "UpdateFunctionCode are fetched from (credentials: the AWS environment)")
    s.add_argument("--runtime", action="append", metavar="NAME=PATH",
                   help="run runtime NAME on the interpreter at PATH, e.g. "
                        "python3.14=/opt/python3.14/bin/python3 or nodejs22.x=/usr/bin/node "
                        "(repeatable; see `lambdaplane runtimes`)")
    s.add_argument("--prestart", type=int, default=2,
                   help="per Node.js runtime in use: sandboxes kept with node already started, "
                        "waiting for a function's code (0: none; node is exec'd at cold start)")
    s.add_argument("--runtime-transport", choices=["socket", "http"], default="socket",
                   help="how the built-in Python runtimes reach the Runtime API: socket (a "
                        "socketpair with length-prefixed frames, handed over at fork) or http "
                        "(the HTTP Runtime API every other runtime uses)")
    s.add_argument("--cpu-slice-us", type=int, default=100, metavar="MICROSECONDS",
                   help="CPU time slice of the server and every sandbox process (Linux 6.12+ "
                        "EEVDF): short slices keep a neighbour's invokes quick while a "
                        "function spins; 0 leaves the kernel's default (see cpu_slice.py)")
    s.add_argument("--seccomp", choices=["on", "off"], default="on",
                   help="the sandboxes' system call filter (off: for debugging only, never "
                        "with untrusted code)")
    s.add_argument("--log-max-mb", type=float, default=64.0,
                   help="a function's log file rotates past this size (2 older files kept)")
    s.add_argument("--flow-log-interval", type=float, default=None, metavar="SECONDS",
                   help="aggregate VPC flow-log records over this instead of each flow log's "
                        "MaxAggregationInterval (for tests)")
    s.add_argument("--internet-netns", default="", metavar="NAME",
                   help="network namespace (made by you) that internet gateways link to "
                        "(default: the host's uplink, see docs/gateways.md)")
    s.add_argument("--public-cidr", default="198.51.100.0/24",
                   help="pool of public addresses: Elastic IPs, NAT gateways (%(default)s)")
    s.add_argument("--nat-connection-limit", type=int, default=55000, metavar="N",
                   help="testing: a NAT gateway's connections per destination (%(default)s)")
    s.add_argument("--dns-upstream", action="append", metavar="ADDR[:PORT]",
                   help="resolver the VPC resolvers forward other names to, reached from "
                        "--internet-netns (repeatable; none: no forwarding)")
    s.add_argument("--nat-idle-timeout", type=int, default=350, metavar="S",
                   help="testing: a NAT gateway's idle timeout in seconds (%(default)s)")
    s.add_argument("-v", "--verbose", action="store_true")
    s.add_argument("--no-data-plane", action="store_true",
                   help="run no sandboxes here: invokes go to agents (`lambdaplane agent`) "
                        "sharing --database (docs/agents.md)")
    s.add_argument("--placement", default="", metavar="pin:NAME",
                   help="with --no-data-plane: send every invoke to the agent named (tests); "
                        "default: a host with a warm environment, else the least loaded")
    s.set_defaults(func=_serve)

    from .agent_cli import add_agent_parser
    add_agent_parser(sub)
    from .agent_secret_cli import add_agent_secret_parser  # the agents' signing secret
    add_agent_secret_parser(sub)

    rt = sub.add_parser("runtimes", help="list the Lambda runtimes that run on this host")
    rt.add_argument("--runtime", action="append", metavar="NAME=PATH",
                    help="as for serve: show what a server with these mappings would run")
    rt.add_argument("--all", action="store_true",
                    help="also the runtimes AWS accepts that are not installed here")
    rt.add_argument("--pythons", action="store_true",
                    help="only the distinct python interpreters, one path a line")
    rt.set_defaults(func=_runtimes)

    c = sub.add_parser("clean", help="remove every kernel object and process a server made")
    c.add_argument("--data-dir", default="/var/lib/lambdaplane")
    c.add_argument("--instance")
    c.set_defaults(func=_clean)

    def client(name: str, help_: str) -> argparse.ArgumentParser:
        cp = sub.add_parser(name, help=help_)
        cp.add_argument("--endpoint", help="server URL (default: AWS_ENDPOINT_URL or %(default)s)")
        cp.add_argument("--region", default=None)
        cp.set_defaults(func=_client_command)
        return cp

    lg = client("logs", "show a function's captured stdout/stderr")
    lg.add_argument("name")
    lg.add_argument("--tail", type=int, default=200, help="last N lines")
    lg.add_argument("-f", "--follow", action="store_true",
                    help="keep printing new lines as the function writes them (Ctrl-C stops)")

    r = client("run", "run a program with an interface in a VPC subnet")
    r.add_argument("--subnet", required=True)
    r.add_argument("--security-group", action="append", default=[])
    r.add_argument("--ip", default=None)
    r.add_argument("--name", default=None)
    r.add_argument("--host", default=None, metavar="NAME",
                   help="on the host of the agent `lambdaplane agent --name NAME` (run there)")
    r.add_argument("argv", nargs=argparse.REMAINDER)

    client("ps", "list programs started with `lambdaplane run`")
    n = client("net", "show the VPC networks")
    n.add_argument("what", choices=["show"])
    client("status", "server status: pools, environments, functions")

    b = sub.add_parser("bench", help="benchmarks (JSON + plots)")
    b.add_argument("which", choices=["invoke", "throughput", "burst", "scale", "vpc", "datapath",
                                       "all", "report", "logs", "neighbours",
                                       "default-server", "nat", "fabric"],
                   help="report: rebuild summary.md from the JSON files already in --out")
    b.add_argument("--out", default="bench-out")
    b.add_argument("--readme", default=None, metavar="FILE",
                   help="report: also write the figures into FILE's <!-- bench:… --> blocks")
    b.add_argument("--endpoint", default=None)
    b.add_argument("--quick", action="store_true", help="tiny sizes (used by the test suite)")
    b.add_argument("--runtimes", default="",
                   help="invoke: comma-separated runtimes measured side by side, e.g. "
                        "python3.11,nodejs20.x,nodejs22.x,nodejs24.x")
    b.set_defaults(func=_bench)

    d = client("demo", "VPC + PostgreSQL + a function that queries it")
    d.add_argument("--samples", type=int, default=5,
                   help="cold starts measured per function (VPC and not)")
    d.set_defaults(func=_client_command)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
