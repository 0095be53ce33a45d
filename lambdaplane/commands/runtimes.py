"""`lambdaplane runtimes`: which Lambda runtimes run on this host and from where, as a server
started here with the same `--runtime NAME=PATH` flags would find them (the local discovery of
sandbox/runtimes/registry.py; no server needs to run). Also parses those flags for `serve`."""
from __future__ import annotations

import argparse

from ..sandbox.runtimes import registry
from ..service import runtime_names

_SHOWN_FAMILIES = ("python", "nodejs", "provided")


def parse_mappings(values: list[str]) -> dict[str, str]:
    """`NAME=PATH` flags, checked: raises SystemExit with the reason."""
    mapped: dict[str, str] = {}
    for value in values:
        name, sep, path = value.partition("=")
        if not sep or not name or not path:
            raise SystemExit(f"--runtime {value!r}: expected NAME=PATH, "
                             f"e.g. python3.14=/opt/python3.14/bin/python3")
        refused = runtime_names.refusal(name)
        if refused is not None:
            raise SystemExit(f"--runtime {value!r}: {refused[1]}")
        problem = registry.check_mapping(name, path)
        if problem is not None:
            raise SystemExit(f"--runtime {value!r}: {problem}")
        mapped[name] = path
    return mapped


def rows() -> list[tuple[str, str, str]]:
    """(runtime, "runs here" | "not installed", where from or what to do) for every runtime
    AWS accepts of the languages lambdaplane runs, and anything else mapped or found."""
    found = registry.installed()
    names = [r for r in runtime_names.SUPPORTED + runtime_names.NEWER
             if runtime_names.family(r) in _SHOWN_FAMILIES]
    names += sorted(r for r in found if r not in names)
    out = []
    for name in names:
        install = found.get(name)
        if install is not None:
            where = install.executable or f"built in (sandbox built by {install.interpreter})"
            out.append((name, "runs here", f"{where}  [{install.source}]"))
        else:
            out.append((name, "not installed", registry.missing_reason(name)))
    return out


def main(args: argparse.Namespace) -> int:
    registry.configure(parse_mappings(args.runtime or []))
    if getattr(args, "pythons", False):
        for interpreter in sorted({i.interpreter for i in registry.installed().values()}):
            print(interpreter)
        return 0
    shown = rows() if args.all else [r for r in rows() if r[1] == "runs here"]
    width = max(len(r[0]) for r in shown) if shown else 10
    for name, status, where in shown:
        print(f"{name:<{width}}  {status:<13}  {where}")
    if not args.all:
        print("(--all also lists the runtimes AWS accepts that are not installed here)")
    return 0
