"""CPU follows memory (1,769 MB = one vCPU) in the v1 cpu controller, and environments sit in
their function's cpu group: created there, or moved there from a pre-forked sandbox's cgroup
when assigned; function groups are top-level cgroups, and the server has a heavier group of its
own. Real cgroups of a fresh instance, removed by the test."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from lambdaplane.net.names import Names
from lambdaplane.sandbox import cgroups, server_cpu

pytestmark = [pytest.mark.root,
              pytest.mark.skipif(not cgroups.has_cpu_controller(), reason="no v1 cpu cgroup")]



def procs(path) -> set[int]:  # type: ignore[no-untyped-def]
    return {int(x) for x in (path / "cgroup.procs").read_text().split()}


def test_function_group_and_weights(names: Names) -> None:
    group = cgroups.function_group("us-east-1", "spinner")
    assert group == cgroups.function_group("us-east-1", "spinner") != \
        cgroups.function_group("us-east-1", "victim")
    cg = cgroups.create_env_cgroup(names, "e1", 1769, group=group)
    assert cg.cpu_dir is not None and cg.cpu_dir.parent == cgroups.function_cpu_dir(names, group)
    # a top-level group: no shared parent whose share a spinning neighbour could spend
    assert cg.cpu_dir.parent.parent == cgroups.CGROUP_ROOT / cgroups.CPU
    assert int((cg.cpu_dir / "cpu.shares").read_text()) == 1024
    assert int((cg.cpu_dir / "cpu.cfs_quota_us").read_text()) == 100_000
    assert cgroups.cpu_shares_for(128) == 74 and cgroups.cpu_quota_us_for(10240) == 600_000
    cgroups.destroy_env_cgroup(cg)
    assert not cg.cpu_dir.parent.exists()  # the function's group goes with its last env


def test_preforked_sandbox_moves_into_its_function_group(names: Names) -> None:
    cg = cgroups.create_env_cgroup(names, "pre", 128)
    assert cg.cpu_dir is not None and not cg.cpu_dir.parent.name.startswith("fn-")
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        for procs_file in cg.procs_files:
            with open(procs_file, "w") as f:
                f.write(str(sleeper.pid))
        group = cgroups.function_group("us-east-1", "f")
        moved = cgroups.for_function(names, cg, group, 3538)
        assert moved.cpu_dir is not None
        assert moved.cpu_dir.parent == cgroups.function_cpu_dir(names, group)
        assert cgroups.cpu_procs(moved) == [str(moved.cpu_dir / "cgroup.procs")]
        with open(cgroups.cpu_procs(moved)[0], "w") as f:  # what the sandbox does itself
            f.write(str(sleeper.pid))
        assert sleeper.pid in procs(moved.cpu_dir) and not procs(cg.cpu_dir)
        assert moved.memory_dir == cg.memory_dir and sleeper.pid in procs(cg.memory_dir)
        assert cg.cpu_dir in moved.dirs and cg.cpu_dir not in moved.joined
        assert int((moved.cpu_dir / "cpu.shares").read_text()) == 2048
        assert int((moved.cpu_dir / "cpu.cfs_quota_us").read_text()) == 200_000
    finally:
        sleeper.kill()
        sleeper.wait()
    cgroups.destroy_env_cgroup(moved)
    assert not moved.cpu_dir.parent.exists() and not cg.cpu_dir.exists()


def test_clean_removes_the_function_groups(names: Names) -> None:
    from lambdaplane.cleanup import clean_instance, leftovers
    cg = cgroups.create_env_cgroup(names, "e2", 128, group=cgroups.function_group("r", "f"))
    assert cg.cpu_dir is not None and any("-fn-" in x for x in leftovers(names.instance))
    clean_instance(names.instance)
    assert not cg.cpu_dir.parent.exists() and not leftovers(names.instance)


SERVER_JOINS = """
import os, sys
from pathlib import Path
from lambdaplane.net.names import Names
from lambdaplane.sandbox import server_cpu
names = Names(sys.argv[1])
before = Path("/proc/self/cgroup").read_text()
came_from = server_cpu.join(names)
group = server_cpu.server_cpu_dir(names)
assert came_from is not None
assert os.getpid() in {int(x) for x in (group / "cgroup.procs").read_text().split()}
assert int((group / "cpu.shares").read_text()) == server_cpu.server_shares()
server_cpu.leave(names, came_from)
assert not group.exists() and Path("/proc/self/cgroup").read_text() == before
print("ok")
"""


def test_server_joins_a_heavier_cpu_group_and_leaves_it(names: Names) -> None:
    assert server_cpu.server_shares() == 4 * 1024 * (os.cpu_count() or 1)
    out = subprocess.run([sys.executable, "-c", SERVER_JOINS, names.instance],
                         capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "ok", out.stderr
