"""Loading lambdaplane's stdlib-only modules by file path, outside any package: how the zygote
(zygote_main.py) loads everything it runs under a runtime's own interpreter (python3.9 to
3.13, `-I -S`: the server's venv and package are not importable there), and how the Python
runtime (runtimes/python_bootstrap.py) finds its parts.

Each module is registered in sys.modules as `_lambdaplane_<stem>` before it runs: a module
loaded later finds the ones loaded before it there (`sys.modules["_lambdaplane_isolation"]`,
`import _lambdaplane_isolation_libc`), so the load order is the dependency order.

`shown_as`: the file name its code and tracebacks carry instead of the host path — what a
function may see of the modules that run in its sandbox (the runtime's files are shown as
/var/runtime/...; the function never sees a host path).

STDLIB ONLY, and loaded by path itself: an entry point (zygote_main.py, or python_bootstrap.py
run standalone) loads this one file with importlib.util directly (the one load that cannot go
through it) and everything else through it."""
from __future__ import annotations

import importlib.util
import os
import sys
from types import ModuleType

PREFIX = "_lambdaplane_"


def load(stem: str, path: str, shown_as: str = "") -> ModuleType:
    """The file at `path` run as the module `_lambdaplane_<stem>`."""
    name = PREFIX + stem
    if shown_as:
        module = ModuleType(name)
        module.__file__ = shown_as
        sys.modules[name] = module
        with open(path, encoding="utf-8") as f:
            exec(compile(f.read(), shown_as, "exec"), module.__dict__)  # noqa: S102 - our file
        return module
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def loaded_or_beside(stem: str, beside: str) -> ModuleType:
    """`_lambdaplane_<stem>` as loaded before, else the file <stem>.py in the directory of
    `beside` (a module's __file__) loaded now."""
    module = sys.modules.get(PREFIX + stem)
    if module is not None:
        return module
    return load(stem, os.path.join(os.path.dirname(os.path.abspath(beside)), stem + ".py"))
