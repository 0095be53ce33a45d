"""Request ids: random (version 4) UUIDs in their usual text form. Every invoke makes one, so
they come from a generator of the server's own seeded once from `os.urandom` (and again in a
forked child), not from a system call per id: request ids must be unique, not secret. No UUID
object, no int arithmetic beyond the one number."""
from __future__ import annotations

import os
import random

_generator = random.Random(os.urandom(32))
os.register_at_fork(after_in_child=lambda: _generator.seed(os.urandom(32)))


def new_request_id() -> str:
    """A random UUID (version 4, RFC 4122 variant), e.g. 1f0e6c4a-3b2d-4c8e-9a7f-0d1e2f3a4b5c."""
    raw = bytearray(_generator.getrandbits(128).to_bytes(16, "big"))
    raw[6] = raw[6] & 0x0F | 0x40  # version 4
    raw[8] = raw[8] & 0x3F | 0x80  # variant 10xx
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
