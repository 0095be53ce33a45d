"""Environments, pre-forked or forked on demand, run in their function's cpu group with a
weight from their MemorySize (1,769 MB = 1024, one vCPU)."""
from __future__ import annotations

import json

import pytest

from lambdaplane.net.names import Names
from lambdaplane.sandbox import cgroups
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
    group = (cgroups.instance_dir(Names(server.instance), cgroups.CPU)
             / cgroups.function_group("us-east-1", name))
    envs = [d for d in group.iterdir() if d.is_dir()]
    assert len(envs) == 1
    assert (envs[0] / "cgroup.procs").read_text().split(), "the environment is not in it"
    assert int((envs[0] / "cpu.shares").read_text()) == cgroups.cpu_shares_for(memory)
