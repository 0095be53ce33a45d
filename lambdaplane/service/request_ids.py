"""Request ids: random (version 4) UUIDs in their usual text form, made from `os.urandom`
directly. The same ids `str(uuid.uuid4())` gives, at less than half its cost (no UUID object,
no int arithmetic): every invoke makes one."""
from __future__ import annotations

import os


def new_request_id() -> str:
    """A random UUID (version 4, RFC 4122 variant), e.g. 1f0e6c4a-3b2d-4c8e-9a7f-0d1e2f3a4b5c."""
    raw = bytearray(os.urandom(16))
    raw[6] = raw[6] & 0x0F | 0x40  # version 4
    raw[8] = raw[8] & 0x3F | 0x80  # variant 10xx
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
