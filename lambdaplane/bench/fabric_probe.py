"""The one piece of code `lambdaplane bench fabric` measures the datapath with, on every path
alike: it is the VPC function's handler (its source zipped as app.py) and, run as a script
(`python fabric_probe.py JSON`), the client on the direct veth and the servers on the far
side. Self-contained: no lambdaplane import (it runs inside the sandbox).

Requests (a JSON object): {"measure": "throughput", "host", "port", "seconds"}: one TCP stream
sending 256 KiB writes for `seconds`, then a half-close and the drain's acknowledgement (so
every byte counted was received); {"measure": "connections", ...}: connect+close (RST, no
TIME_WAIT) in a loop; {"measure": "probe", "host", "port"}: one connection (until the path is
up); {"serve": "drain" | "sink", "host", "port"}: the servers (prints "listening"). As a
handler without "measure", it reports whether this was its environment's first invocation."""
from __future__ import annotations

import json
import socket
import struct
import sys
import time

CHUNK = 256 * 1024
started = 0


def throughput(host: str, port: int, seconds: float) -> dict:
    sock = socket.create_connection((host, port), timeout=10)  # a stalled path fails
    buf = b"\0" * CHUNK
    sent = 0
    t0 = time.perf_counter()
    end = t0 + seconds
    while time.perf_counter() < end:
        sock.sendall(buf)
        sent += CHUNK
    sock.shutdown(socket.SHUT_WR)
    sock.recv(16)  # the drain's acknowledgement: it has read everything
    elapsed = time.perf_counter() - t0
    sock.close()
    return {"gbit_s": round(sent * 8 / elapsed / 1e9, 3), "bytes": sent,
            "seconds": round(elapsed, 3)}


def connections(host: str, port: int, seconds: float) -> dict:
    linger = struct.pack("ii", 1, 0)
    count = errors = 0
    t0 = time.perf_counter()
    end = t0 + seconds
    while time.perf_counter() < end:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
        sock.settimeout(5)
        try:
            sock.connect((host, port))
            count += 1
        except OSError:
            errors += 1
        finally:
            sock.close()
    elapsed = time.perf_counter() - t0
    return {"connections": count, "errors": errors, "seconds": round(elapsed, 3),
            "per_s": round(count / elapsed)}


def probe(host: str, port: int) -> dict:
    try:
        socket.create_connection((host, port), timeout=3).close()
        return {"ok": True}
    except OSError as e:
        return {"ok": False, "error": repr(e)}


def measure(request: dict) -> dict:
    host, port = request["host"], int(request["port"])
    if request["measure"] == "throughput":
        return throughput(host, port, float(request["seconds"]))
    if request["measure"] == "connections":
        return connections(host, port, float(request["seconds"]))
    return probe(host, port)


def serve(request: dict) -> None:
    """Accept for ever; each connection on a thread of its own (a stalled one holds no other)."""
    import threading

    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((request["host"], int(request["port"])))
    sock.listen(4096)
    print("listening", flush=True)
    while True:
        conn = sock.accept()[0]
        if request["serve"] == "drain":
            threading.Thread(target=_drain, args=(conn,), daemon=True).start()
        else:
            conn.close()


def _drain(conn: socket.socket) -> None:
    conn.settimeout(30)
    try:
        while conn.recv(CHUNK):
            pass
        conn.sendall(b"k")
    except OSError:
        pass
    finally:
        conn.close()


def handler(event: dict, context: object) -> dict:
    global started
    started += 1
    if "measure" in event:
        return measure(event)
    return {"first": started == 1}


if __name__ == "__main__":
    args = json.loads(sys.argv[1])
    if "serve" in args:
        serve(args)
    else:
        print(json.dumps(measure(args)), flush=True)
