"""The processes `lambdaplane bench datapath` and `bench nat` run inside their namespaces
(`ip netns exec ... python -m lambdaplane.bench.datapath_agent agent ROLE HOST PORT ...`), one
role each: `sink` accepts and closes, `hold` accepts and keeps (several processes share a port
with SO_REUSEPORT), `rate` connects and closes for some seconds and reports the count, `open`
opens N connections, reports, and holds them until its stdin closes. Reports are one JSON line
on stdout. Started by datapath_lab.agent()."""
from __future__ import annotations

import argparse
import json
import socket
import struct
import sys
import time


def _listen(host: str, port: int, reuseport: bool = False) -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuseport:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(4096)
    print("listening", flush=True)
    return sock


def _agent_main(argv: list[str]) -> None:
    import resource

    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    role, host, port = argv[0], argv[1], int(argv[2])
    if role == "sink":  # accept and close
        sock = _listen(host, port)
        while True:
            sock.accept()[0].close()
    elif role == "hold":  # accept and keep, several processes on one port
        sock = _listen(host, port, reuseport=True)
        held = []
        while True:
            held.append(sock.accept()[0])
    elif role == "rate":  # connect+close for `seconds`
        seconds = float(argv[3])
        count = errors = 0
        end = time.perf_counter() + seconds
        t0 = time.perf_counter()
        # closing with RST (linger 0): no TIME_WAIT piles up in the client's port range,
        # which would slow every later connect (and later rounds) on every path
        linger = struct.pack("ii", 1, 0)
        while time.perf_counter() < end:
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
            try:
                s.connect((host, port))
                count += 1
            except OSError:
                errors += 1
            finally:
                s.close()
        print(json.dumps({"connections": count, "errors": errors,
                          "seconds": round(time.perf_counter() - t0, 3)}), flush=True)
    elif role == "open":  # open N, report, hold until stdin closes
        n, timeout = int(argv[3]), float(argv[4]) if len(argv) > 4 else 10.0
        held, errors, kinds = [], 0, set()
        for _ in range(n):
            s = socket.socket()
            s.settimeout(timeout)
            try:
                s.connect((host, port))
                held.append(s)
            except OSError as e:
                errors += 1
                kinds.add(type(e).__name__)
                s.close()
        print(json.dumps({"ok": len(held), "errors": errors, "kinds": sorted(kinds)}),
              flush=True)
        sys.stdin.read()


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["agent"])
    p.add_argument("args", nargs=argparse.REMAINDER)
    ns_args = p.parse_args()
    _agent_main(ns_args.args)
