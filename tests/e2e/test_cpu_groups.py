"""Environments, pre-forked or forked on demand, run in their function's cpu group with a
weight from their MemorySize (1,769 MB = 1024, one vCPU); the server runs in a heavier cpu
group of its own."""
from __future__ import annotations

import json
import os
import time

import pytest

from lambdaplane import cpu_slice
from lambdaplane.net.names import Names
from lambdaplane.sandbox import cgroups, server_cpu
from tests.harness import LiveServer, create_python_function

pytestmark = [pytest.mark.root,
              pytest.mark.skipif(not cgroups.has_cpu_controller(), reason="no v1 cpu cgroup")]


@pytest.mark.parametrize("memory", [128, 1769])
def test_environment_runs_in_its_function_cpu_group(server: LiveServer, memory: int) -> None:
    name = f"cpu-{memory}"
    create_python_function(server.lambda_(), name,
                           "import os\ndef handler(e, c):\n    return os.getpid()\n",
                           MemorySize=memory)
    out = server.lambda_().invoke(FunctionName=name, Payload=b"{}")
    assert json.loads(out["Payload"].read()) == 1  # PID 1 of its sandbox
    group = cgroups.function_cpu_dir(Names(server.instance),
                                     cgroups.function_group("us-east-1", name))
    assert group.parent == cgroups.CGROUP_ROOT / cgroups.CPU  # top level: no shared parent
    envs = [d for d in group.iterdir() if d.is_dir()]
    assert len(envs) == 1
    assert (envs[0] / "cgroup.procs").read_text().split(), "the environment is not in it"
    assert int((envs[0] / "cpu.shares").read_text()) == cgroups.cpu_shares_for(memory)


SLICE = r'''
import ctypes, subprocess
class Attr(ctypes.Structure):
    _fields_ = [("size", ctypes.c_uint32), ("policy", ctypes.c_uint32), ("flags", ctypes.c_uint64),
                ("nice", ctypes.c_int32), ("prio", ctypes.c_uint32), ("runtime", ctypes.c_uint64),
                ("deadline", ctypes.c_uint64), ("period", ctypes.c_uint64),
                ("umin", ctypes.c_uint32), ("umax", ctypes.c_uint32)]
def handler(event, context):
    attr = Attr()
    libc = ctypes.CDLL(None, use_errno=True)
    rc = libc.syscall(315, 0, ctypes.byref(attr), ctypes.sizeof(attr), 0)  # sched_getattr
    child = subprocess.run(["/bin/cat", "/proc/self/sched"], capture_output=True, text=True)
    line = [l for l in child.stdout.splitlines() if l.startswith("se.slice")]
    return {"rc": rc, "slice_ns": attr.runtime, "child": line[0].split()[-1] if line else None}
'''


@pytest.mark.skipif(cpu_slice.current_slice_ns() is None, reason="no sched_getattr here")
def test_function_and_its_children_run_with_the_servers_short_slice(server: LiveServer) -> None:
    """cpu_slice.py: the slice set by `serve` reaches the function's process and a program it
    execs (inherited through the zygote's fork and every exec), on kernels with custom slices."""
    create_python_function(server.lambda_(), "slice", SLICE)
    out = json.loads(server.lambda_().invoke(FunctionName="slice", Payload=b"{}")["Payload"]
                     .read())
    assert out["rc"] == 0, out
    if out["slice_ns"] == 0:
        pytest.skip("this kernel has no per-task slices (before 6.12)")
    assert out["slice_ns"] == cpu_slice.DEFAULT_SLICE_US * 1000
    if out["child"] is not None:  # /proc/<pid>/sched needs CONFIG_SCHED_DEBUG
        assert int(out["child"]) == cpu_slice.DEFAULT_SLICE_US * 1000


def test_functions_parent_weighs_one_process_per_cpu(server: LiveServer) -> None:
    """All environments of all instances sit below the shared `lambdaplane` cpu group: it
    weighs as one busy process per CPU against the host's others, not as one process."""
    shares = cgroups.CGROUP_ROOT / cgroups.CPU / "lambdaplane" / "cpu.shares"
    deadline = time.monotonic() + 10  # another server may have just made it anew
    while int(shares.read_text()) != cgroups.functions_parent_shares():
        assert time.monotonic() < deadline, shares.read_text()
        time.sleep(0.1)
    assert cgroups.functions_parent_shares() == 1024 * (os.cpu_count() or 1)


def test_server_runs_in_its_own_heavier_cpu_group(server: LiveServer) -> None:
    assert server.proc is not None
    group = server_cpu.server_cpu_dir(Names(server.instance))
    assert str(server.proc.pid) in (group / "cgroup.procs").read_text().split()
    assert int((group / "cpu.shares").read_text()) == server_cpu.server_shares()
    assert server_cpu.server_shares() > cgroups.cpu_shares_for(10240)


def test_function_sees_its_cgroups_as_the_root(server: LiveServer) -> None:
    """A sandbox that moved into its function's top-level cpu group (a pre-forked one, on
    assignment) sees it as "/" in /proc/self/cgroup, not a path up and across the host's."""
    create_python_function(server.lambda_(), "cgview",
                           "def handler(e, c):\n    return open('/proc/self/cgroup').read()\n")
    for _ in range(2):
        out = server.lambda_().invoke(FunctionName="cgview", Payload=b"{}")
        lines = json.loads(out["Payload"].read()).splitlines()
        cpu = [line for line in lines if "cpu" in line.split(":")[1].split(",")]
        assert cpu and all(line.endswith(":/") for line in cpu), lines
        server.lambda_().update_function_configuration(FunctionName="cgview",
                                                       Description="next")
