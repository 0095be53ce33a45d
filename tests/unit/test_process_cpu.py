"""bench/process_cpu.py: a server's CPU and its descendants' apart, per operation, and the
process behind a listening loopback port."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

from lambdaplane.bench.process_cpu import listening_pid, sample


def test_a_busy_child_counts_as_descendant_and_main_thread_as_server() -> None:
    child = subprocess.Popen([sys.executable, "-c",
                              "import time\nt = time.process_time()\n"
                              "while time.process_time() - t < 0.6: pass\n"
                              "time.sleep(30)"])
    try:
        before = sample(os.getpid())
        spin = time.process_time()
        while time.process_time() - spin < 0.2:
            pass
        deadline = time.monotonic() + 30
        while (after := sample(os.getpid())).descendants - before.descendants < 0.25:
            assert time.monotonic() < deadline, "the child's CPU never showed"
            time.sleep(0.05)
        per_op = after.per_op_us(before, 1000)
        assert per_op["server_us"] >= 150  # 0.2 s over 1000 operations, at least
        assert per_op["descendants_us"] >= 250
        assert per_op["server_threads_us"]["main"] >= 150
        assert per_op["server_context_switches"] >= 0
    finally:
        child.kill()
        child.wait()


def test_listening_pid_finds_the_process_listening_on_a_port() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        assert listening_pid(listener.getsockname()[1]) == os.getpid()
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    assert listening_pid(port) is None
