"""A runtime's pre-started sandboxes boot in a top-level cpu group of their own
(sandbox/boot_cpu.py), at the shared group's weight, the oldest boots (and a taken one still
booting) first; a sandbox taken ready is moved into its function's group by the server. Real
cgroups of a fresh instance, removed by the test (tests/net/conftest.py `names`)."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from lambdaplane.net.names import Names
from lambdaplane.sandbox import boot_cpu, cgroups

pytestmark = [pytest.mark.root,
              pytest.mark.skipif(not cgroups.has_cpu_controller(), reason="no v1 cpu cgroup")]



def procs(path: Path) -> set[int]:
    return {int(x) for x in (path / "cgroup.procs").read_text().split()}


def test_boot_group_is_top_level_and_found_by_the_function_group_paths(names: Names) -> None:
    group = boot_cpu.group_for("nodejs22.x")
    assert group == "fn-boot-nodejs22x" != boot_cpu.group_for("nodejs20.x")
    cg = cgroups.create_env_cgroup(names, "b1", 128, group=group)
    assert cg.cpu_dir is not None and boot_cpu.is_boot_dir(cg.cpu_dir)
    assert cg.cpu_dir.parent.parent == cgroups.CGROUP_ROOT / cgroups.CPU
    assert cg.cpu_dir.parent in cgroups.function_cpu_dirs(names)  # stopped and cleaned with them
    fn = cgroups.create_env_cgroup(names, "f1", 128, group=cgroups.function_group("r", "f"))
    assert not boot_cpu.is_boot_dir(fn.cpu_dir) and not boot_cpu.is_boot_dir(None)
    cgroups.destroy_env_cgroup(fn)
    cgroups.destroy_env_cgroup(cg)
    assert not cg.cpu_dir.parent.exists()


def test_boots_go_oldest_first_after_the_one_waited_for(names: Names) -> None:
    order = boot_cpu.BootOrder(names, "nodejs22.x")
    order.first = 2
    envs = [cgroups.create_env_cgroup(names, f"o{i}", 128, group=order.group) for i in range(4)]
    dirs = [cg.cpu_dir for cg in envs]
    assert all(d is not None and d.parent == order.dir for d in dirs)
    order.made()  # the group weighs as much as the shared `lambdaplane` group
    assert int((order.dir / "cpu.shares").read_text()) == cgroups.functions_parent_shares()

    def weights() -> list[int]:
        return [int((d / "cpu.shares").read_text()) for d in dirs]  # type: ignore[operator]

    order.order(dirs[1:], waited_for=dirs[:1])  # a taken one still booting, then the oldest
    assert weights() == [boot_cpu.BOOST, boot_cpu.BOOST, boot_cpu.LOW, boot_cpu.LOW]
    order.order(dirs[2:], waited_for=[])  # both done: the next two go first
    assert weights()[2:] == [boot_cpu.BOOST, boot_cpu.BOOST]
    cgroups.destroy_env_cgroup(envs[3])
    order.order(dirs[2:], waited_for=[])  # one gone meanwhile: no error
    for cg in envs[:3]:
        cgroups.destroy_env_cgroup(cg)
    assert not order.dir.exists()  # with its last sandbox
    order.made()  # no group: nothing to write, no error


def test_taken_sandbox_is_moved_out_of_the_boot_group(names: Names) -> None:
    cg = cgroups.create_env_cgroup(names, "b3", 128, group=boot_cpu.group_for("nodejs22.x"))
    assert cg.cpu_dir is not None
    sleepers = [subprocess.Popen(["sleep", "30"]) for _ in range(2)]  # PID 1 and its node
    try:
        for procs_file in cg.procs_files:
            for sleeper in sleepers:
                with open(procs_file, "w") as f:
                    f.write(str(sleeper.pid))
        booting = cg.cpu_dir
        assert boot_cpu.has_tasks(booting)
        moved = cgroups.for_function(names, cg, cgroups.function_group("r", "g"), 256)
        assert moved.cpu_dir is not None
        boot_cpu.move_tasks(moved, booting)
        assert procs(moved.cpu_dir) == {s.pid for s in sleepers} and not procs(booting)
        assert not boot_cpu.has_tasks(booting) and not boot_cpu.has_tasks(booting / "gone")
        boot_cpu.move_tasks(moved, booting)  # again: nothing left to move
        boot_cpu.move_tasks(moved, booting / "gone")  # no such group: nothing to move
    finally:
        for sleeper in sleepers:
            sleeper.kill()
            sleeper.wait()
    cgroups.destroy_env_cgroup(moved)
    assert not booting.exists() and not moved.cpu_dir.exists()
