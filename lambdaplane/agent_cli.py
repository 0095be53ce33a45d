"""`lambdaplane agent`'s command line: its options, and the start (the host namespace entered
first, before any thread; then the same process setup as `serve`). The agent is
lambdaplane/agent.py."""
from __future__ import annotations

import argparse
import logging
import socket
from pathlib import Path
from typing import Any


def add_agent_parser(sub: Any) -> None:
    a = sub.add_parser("agent", help="run one host's data plane for `serve --no-data-plane` "
                                     "(as root; docs/agents.md)")
    a.add_argument("--database", required=True, metavar="URL",
                   help="the PostgreSQL database the API server uses (postgresql://…)")
    a.add_argument("--data-dir", default="/var/lib/lambdaplane-agent")
    a.add_argument("--name", default="", help="this host's name (default: the hostname)")
    a.add_argument("--instance", help="id prefixing kernel objects (default: kept in the "
                                      "data dir)")
    a.add_argument("--listen", default="", metavar="HOST:PORT",
                   help="serve the internal invoke endpoint on TCP (default: a Unix socket "
                        "in the data dir)")
    a.add_argument("--host-netns", default="", metavar="NAME",
                   help="run inside this network namespace (made by you), standing in for a "
                        "host")
    a.add_argument("--lease", type=float, default=5.0, metavar="SECONDS",
                   help="the host's lease: not renewed for this long, it is expired and its "
                        "assignments freed (renewed every second)")
    a.add_argument("--underlay-address", default="", metavar="ADDR[/PREFIX]",
                   help="join the EVPN fabric: this host's VTEP address (with /PREFIX: the "
                        "underlay network, every peer in it); the agent runs its own FRR "
                        "(docs/fabric.md)")
    a.add_argument("--underlay-peer", action="append", default=[], metavar="ADDR",
                   help="another host's underlay address, a BGP peer (repeat per host)")
    a.add_argument("--no-uplink", action="store_true",
                   help="sandboxes get no path out of the host")
    a.add_argument("--keep-alive", type=float, default=300.0)
    a.add_argument("--pool-size", type=int, default=8)
    a.add_argument("--prefork", type=int, default=4)
    a.add_argument("--account-id", default="000000000000")
    a.add_argument("--seccomp", choices=["on", "off"], default="on")
    a.add_argument("--cpu-slice-us", type=int, default=100, metavar="MICROSECONDS",
                   help="as for serve: the CPU time slice of the agent and its sandboxes")
    a.add_argument("-v", "--verbose", action="store_true")
    a.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from .agent import AgentOptions, enter_netns, run_agent
    from .config import Settings

    underlay = None
    if args.underlay_peer and not args.underlay_address:
        raise SystemExit("lambdaplane agent: --underlay-peer needs --underlay-address")
    if args.underlay_address:
        from .net import frr
        from .service.host_fabric import parse_underlay
        try:
            underlay = parse_underlay(args.underlay_address, args.underlay_peer)
        except ValueError as e:
            raise SystemExit(f"lambdaplane agent: {e}") from None
        if not frr.installed():
            raise SystemExit("lambdaplane agent: --underlay-address needs FRRouting (Debian's "
                             "frr: `make install`)")
    if args.host_netns:  # first: every thread and object of the agent lives in there
        if not Path(f"/run/netns/{args.host_netns}").exists():
            raise SystemExit(f"lambdaplane agent: no network namespace {args.host_netns}")
        enter_netns(args.host_netns)
    try:
        settings = Settings(data_dir=Path(args.data_dir), instance=args.instance or "",
                            database=args.database, uplink=not args.no_uplink,
                            keep_alive_s=args.keep_alive, pool_size=args.pool_size,
                            prefork=args.prefork, account_id=args.account_id)
    except ValueError as e:
        raise SystemExit(f"lambdaplane agent: {e}") from None
    settings.seccomp = args.seccomp == "on"
    if settings.seccomp:
        from .sandbox.seccomp_profile import SeccompUnavailable, load_libseccomp
        try:
            load_libseccomp()
        except SeccompUnavailable as e:
            raise SystemExit(f"lambdaplane agent: {e}") from None
    options = AgentOptions(name=args.name or socket.gethostname(), listen=args.listen,
                           host_netns=args.host_netns, lease_s=args.lease,
                           underlay=underlay)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from .cpu_slice import set_slice  # before any thread or child: they all inherit it
    set_slice(args.cpu_slice_us)
    import uvloop

    uvloop.run(run_agent(settings, options))
    return 0
