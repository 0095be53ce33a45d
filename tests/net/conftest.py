"""Fixtures shared by the kernel-level tests."""
from __future__ import annotations

from collections.abc import Iterator

import pytest

from lambdaplane.cleanup import CONTROLLERS, fresh_instance, kill_cgroup_tree
from lambdaplane.net.names import Names
from lambdaplane.sandbox import cgroups, server_cpu


@pytest.fixture
def names() -> Iterator[Names]:
    """A fresh instance; every cgroup it may have made (its tree, its top-level function and
    boot groups, its server group) is removed afterwards. Files with their own `names` fixture
    override this one."""
    n = Names(fresh_instance("c"))
    try:
        yield n
    finally:
        for controller in CONTROLLERS:
            kill_cgroup_tree(cgroups.CGROUP_ROOT / controller / n.cgroup_dir)
        for group in [*cgroups.function_cpu_dirs(n), server_cpu.server_cpu_dir(n)]:
            kill_cgroup_tree(group)
