"""How the zygote (sandbox/zygote_main.py) loads the modules it runs by path: the Python
runtime's parts (runtimes/bootstrap_*.py) and its loop (python_bootstrap.py) carry only the
names the sandbox may see (/var/runtime/...), never a host path, and the loop uses the parts the
zygote loaded (it does not load them again from beside itself); the zygote's own parts
(zygote_control, zygote_child, zygote_loop) find the modules loaded before them."""
from __future__ import annotations

import sys
from pathlib import Path

from lambdaplane.sandbox import zygote_main

RUNTIMES = Path(zygote_main.__file__).parent / "runtimes"


def test_runtime_parts_carry_only_sandbox_paths() -> None:
    parts = sorted(p.stem for p in RUNTIMES.glob("bootstrap_*.py"))
    assert sorted(zygote_main.bootstrap.PARTS) == parts  # every file is a part, and loaded
    for name in [*parts, "bootstrap"]:
        module = sys.modules[f"_lambdaplane_{name}"]
        shown = "/var/runtime/bootstrap.py" if name == "bootstrap" else f"/var/runtime/{name}.py"
        assert module.__file__ == shown
        code_files = {value.__code__.co_filename for value in vars(module).values()
                      if callable(value) and hasattr(value, "__code__")
                      and value.__module__ == module.__name__}
        assert code_files <= {shown}, code_files
    # a traceback shown to the function skips every file of the runtime (as the zygote names it)
    own_files = sys.modules["_lambdaplane_bootstrap_faults"].OWN_FILES
    assert own_files >= {f"/var/runtime/{name}.py" for name in [*parts, "bootstrap"]}


def test_the_loop_binds_the_parts_the_zygote_loaded() -> None:
    bootstrap = zygote_main.bootstrap
    clients = sys.modules["_lambdaplane_bootstrap_clients"]
    assert bootstrap.FrameClient is clients.FrameClient
    assert bootstrap.RuntimeClient is clients.RuntimeClient
    assert bootstrap.LambdaContext is sys.modules["_lambdaplane_bootstrap_context"].LambdaContext


def test_zygote_parts_find_what_was_loaded_before_them() -> None:
    assert zygote_main.child.control is zygote_main.control
    assert zygote_main.child.bootstrap is zygote_main.bootstrap
    assert zygote_main.loop.child is zygote_main.child
    assert zygote_main.control.isolation is zygote_main.isolation


def test_isolation_and_masking_use_the_one_libc_binding_loaded_before_them() -> None:
    """isolation_root and masking take their libc calls and flags from the isolation_libc the
    zygote loaded first (one binding, not a copy each), and isolation re-exports its parts."""
    libc_part = sys.modules["_lambdaplane_isolation_libc"]
    assert zygote_main.isolation_libc is libc_part
    assert zygote_main.isolation_root.kernel is libc_part
    assert zygote_main.masking.kernel is libc_part
    assert zygote_main.isolation.mount is libc_part.mount
    assert zygote_main.isolation.build_root is zygote_main.isolation_root.build_root
    assert sys.modules["_lambdaplane_by_path"] is zygote_main.by_path
