"""Starting a zygote process: which interpreter runs it (runtimes/registry.py), its cgroup,
the unix SEQPACKET socket it connects back on (a path in the work dir, or an abstract name
when the path would not fit in sun_path), and the command line of zygote_main.py (through
zygote_lang.py for an interpreter outside /usr, shown as /var/lang). On any failure before the
zygote connected, its process and cgroup are taken down again: nothing is left behind.

What happens over the connection once it is up is zygote.py's job (`Zygote`)."""
from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from dataclasses import dataclass
from pathlib import Path

from ..net.names import Names
from . import cgroups
from .cgroup_tree import kill_cgroup_tree
from .runtimes import registry

ZYGOTE_MAIN = Path(__file__).with_name("zygote_main.py")
ZYGOTE_LANG = Path(__file__).with_name("zygote_lang.py")
PROVIDED_RUNTIMES = registry.PROVIDED
ZYGOTE_ENVIRONMENT = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
START_TIMEOUT_S = 10.0


class ZygoteError(RuntimeError):
    pass


def lang_prefix(interpreter: str) -> str:
    """The install prefix of an interpreter outside /usr (<prefix>/bin/python3.X), which its
    zygote and sandboxes see at /var/lang."""
    return os.path.dirname(os.path.dirname(interpreter))


def default_interpreter() -> str:
    """The interpreter that runs the zygote for provided.* and nodejs* (it only builds the
    sandbox and execs their program): python3.11 if present, else the newest python3.x."""
    interpreter = registry.default_interpreter()
    if interpreter is None:
        raise ZygoteError("no python3.x interpreter found to run the zygote")
    return interpreter


def interpreter_for(runtime: str) -> str | None:
    """The python whose zygote runs `runtime` here (runtimes/registry.py), or None."""
    install = registry.get(runtime)
    return install.interpreter if install is not None else None


def supported_runtimes() -> list[str]:
    """The runtimes that can run on this host."""
    return sorted(registry.installed())


@dataclass
class LaunchedZygote:
    """A zygote process that has connected: its socket is ours, its `ready` report still to
    come (zygote.py). Whoever holds it must stop the process and kill its cgroup."""
    proc: asyncio.subprocess.Process
    conn: socket.socket  # non-blocking
    cgroup: cgroups.EnvCgroup
    socket_path: Path | None  # None: an abstract socket name was used


async def launch(interpreter: str, names: Names, work_dir: Path,
                 runtime_sources: tuple[str, ...] = (),
                 seccomp_program: Path | None = None) -> LaunchedZygote:
    """Start zygote_main.py under `interpreter` and wait (START_TIMEOUT_S) for it to
    connect. runtime_sources, seccomp_program: see `Zygote.start`."""
    work_dir.mkdir(parents=True, exist_ok=True)
    tag = Path(interpreter).name
    root_dir = work_dir / "sandbox-root"  # each child mounts its own tmpfs over it
    root_dir.mkdir(exist_ok=True)
    socket_path: Path | None = work_dir / f"zygote-{tag}.sock"
    if len(str(socket_path).encode()) >= 100:  # sun_path is 108 bytes
        socket_path = None
        address = f"@lp{names.instance}-zygote-{tag}-{os.getpid()}-{id(work_dir):x}"
    else:
        address = str(socket_path)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
    listener.setblocking(False)
    cgroup = cgroups.create_zygote_cgroup(names, tag)
    proc: asyncio.subprocess.Process | None = None
    try:
        if socket_path is not None:
            with contextlib.suppress(FileNotFoundError):
                socket_path.unlink()
            listener.bind(str(socket_path))
            os.chmod(socket_path, 0o600)
        else:
            listener.bind("\0" + address[1:])
        listener.listen(1)
        proc = await asyncio.create_subprocess_exec(
            interpreter, *_command_line(interpreter, address, root_dir, cgroup,
                                        runtime_sources, seccomp_program),
            stdin=asyncio.subprocess.DEVNULL,
            start_new_session=True,  # a terminal's ^C is for the server, not the zygote
            env=ZYGOTE_ENVIRONMENT)  # sandboxes inherit its environ block: nothing of ours
        conn = await _accept_or_exit(listener, proc)
        conn.setblocking(False)
        return LaunchedZygote(proc, conn, cgroup, socket_path)
    except BaseException:
        await stop_launched(proc, cgroup)
        raise
    finally:
        listener.close()
        if socket_path is not None:
            with contextlib.suppress(FileNotFoundError):
                socket_path.unlink()  # connected already: the name is no longer needed


async def stop_launched(proc: asyncio.subprocess.Process | None,
                        cgroup: cgroups.EnvCgroup) -> None:
    """Kill a zygote process that is not stopping by itself, and everything in its cgroup."""
    if proc is not None and proc.returncode is None:
        proc.kill()
        await proc.wait()
    for d in cgroup.dirs:  # sleeps while the kernel reaps: off the loop
        await asyncio.to_thread(kill_cgroup_tree, d)


def _command_line(interpreter: str, address: str, root_dir: Path, cgroup: cgroups.EnvCgroup,
                  runtime_sources: tuple[str, ...], seccomp_program: Path | None) -> list[str]:
    args = [str(ZYGOTE_MAIN), address, "--root", str(root_dir)]
    for procs in cgroup.procs_files:
        args += ["--cgroup", procs]
    for source in runtime_sources:
        args += ["--runtime-source", source]
    if seccomp_program is not None:
        args += ["--seccomp", str(seccomp_program)]
    if not interpreter.startswith("/usr/"):  # shown as /var/lang (zygote_lang.py)
        return ["-I", "-S", str(ZYGOTE_LANG), lang_prefix(interpreter), "--", *args]
    return ["-I", "-S", *args]


async def _accept_or_exit(listener: socket.socket,
                          proc: asyncio.subprocess.Process) -> socket.socket:
    loop = asyncio.get_running_loop()
    accept = asyncio.ensure_future(loop.sock_accept(listener))
    exited = asyncio.ensure_future(proc.wait())
    try:
        done, _ = await asyncio.wait({accept, exited}, timeout=START_TIMEOUT_S,
                                     return_when=asyncio.FIRST_COMPLETED)
        if accept in done:
            return accept.result()[0]
        if exited in done:
            raise ZygoteError(f"zygote exited during start with status {exited.result()}")
        raise ZygoteError("zygote did not connect in time")
    finally:
        for task in (accept, exited):
            if not task.done():
                task.cancel()
