"""The server's zygotes, one per interpreter: started together at server start (the default
interpreter's and every one mapped with --runtime), others on first use; one found gone is
replaced on the next use and counted (`restarts`, which status and /metrics show). Also owns
the sandboxes' seccomp filter, compiled once per server and handed to every zygote."""
from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path

from ..config import Settings
from ..net.names import Names
from . import seccomp_profile
from .runtimes import registry
from .zygote import Zygote, default_interpreter, interpreter_for, supported_runtimes

log = logging.getLogger(__name__)


class Zygotes:
    def __init__(self, settings: Settings, names: Names) -> None:
        self.settings = settings
        self.names = names
        self._zygotes: dict[str, Zygote] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._seccomp_file: Path | None = None
        self.restarts = 0  # zygotes found gone and replaced (status shows it)

    async def start(self) -> None:
        """Zygotes in parallel for python3.11/provided.*/nodejs* (the default interpreter) and
        every python mapped with --runtime; other pythons found start on first use. One that
        fails to start is retried on first use."""
        interpreters = {i for r in supported_runtimes() if (i := interpreter_for(r))
                        and (r in self.settings.runtimes or i == default_interpreter())}
        await asyncio.gather(*(self.get(i) for i in interpreters), return_exceptions=True)

    async def stop(self) -> None:
        for zygote in list(self._zygotes.values()):
            with contextlib.suppress(Exception):
                await zygote.stop()
        self._zygotes.clear()

    def current(self, interpreter: str) -> Zygote | None:
        """The interpreter's zygote as it is now (maybe not running), starting none."""
        return self._zygotes.get(interpreter)

    def interpreters(self) -> list[str]:
        return sorted(self._zygotes)

    def interpreters_down(self) -> list[str]:
        return sorted(i for i, z in self._zygotes.items() if not z.running)

    async def get(self, interpreter: str) -> Zygote:
        """The interpreter's running zygote, started (or replaced, if it vanished) first."""
        zygote = self._zygotes.get(interpreter)
        if zygote is not None and zygote.running:
            return zygote
        lock = self._locks.setdefault(interpreter, asyncio.Lock())
        async with lock:
            dead = self._zygotes.get(interpreter)
            if dead is not None and not dead.running:  # it vanished: a new one replaces it
                del self._zygotes[interpreter]
                self.restarts += 1
                log.warning("zygote %s (pid %d) is gone; starting a new one", interpreter,
                            dead.pid)
                await dead.stop()  # reaps it and removes its cgroup
            if interpreter not in self._zygotes:
                work_dir = self.settings.data_dir / "zygotes"
                work_dir.mkdir(parents=True, exist_ok=True)
                self._zygotes[interpreter] = await Zygote.start(
                    interpreter, self.names, work_dir, registry.mount_sources(interpreter),
                    await self._seccomp_program(work_dir))
            return self._zygotes[interpreter]

    async def _seccomp_program(self, work_dir: Path) -> Path | None:
        """The sandboxes' seccomp filter, compiled once per server (None: --seccomp off)."""
        if not self.settings.seccomp:
            return None
        if self._seccomp_file is None:
            self._seccomp_file = await asyncio.to_thread(
                seccomp_profile.compile_to, work_dir / "seccomp-x86_64.bpf")
        return self._seccomp_file
