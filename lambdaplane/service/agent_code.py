"""What an agent holds of a function's content (issue 20): its code and its layers' zips,
extracted in the agent's own code store (sent by `serve` on a 409 `need_code`), and the
layers merged into the agent's own /opt (store/opt_dirs.py, made once per layer list).
A digest found present is remembered, so a warm invoke stats nothing."""
from __future__ import annotations

import asyncio
import dataclasses

from ..sandbox.types import FunctionSpec
from ..store.code import CodeStore
from ..store.opt_dirs import opt_dir


class AgentCode:
    def __init__(self, code: CodeStore) -> None:
        self.code = code
        self._present: set[str] = set()  # digests whose directory was seen

    def missing(self, spec: FunctionSpec) -> str | None:
        """The first digest of the function's code, then of its layers, not here yet."""
        for digest in (spec.code_sha256, *spec.layer_hexes):
            if digest not in self._present:
                if not self.code.directory(digest).is_dir():
                    return digest
                self._present.add(digest)
        return None

    async def with_opt(self, spec: FunctionSpec) -> FunctionSpec:
        """The spec with this agent's merged /opt of its layers (all present: `missing`)."""
        merged = await asyncio.to_thread(opt_dir, self.code, list(spec.layer_hexes))
        return dataclasses.replace(spec, opt_dir=merged)
