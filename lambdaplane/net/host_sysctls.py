"""Global sysctls of the host (the root network namespace) that the server changes, recorded
before the change and put back on stop — also after a SIGKILL: the record lives in the data
dir (`<data dir>/host-sysctls`, one `key=value` of the original per line), so the next start
finds it still there and takes the change over as its own (its stop then restores it), and
`lambdaplane clean` restores it outright. A value changed under a running server is put back
by the reconciler's worker step (`ensure`, net/worker.py), recorded the same way. Today one
sysctl: `net.ipv4.ip_forward`, switched on for the uplink (net/worker.py). A value someone
else set already is left alone and never recorded (theirs to undo) — until it is turned off
under us: then it is recorded before we switch it on again. The same pattern for the cgroup2
mount options is sandbox/cgroups.py's `favor_dynamic_moves`.

Owns the record file; every function does file I/O and runs off the event loop."""
from __future__ import annotations

import os
from pathlib import Path

PROC_SYS = Path("/proc/sys")
RECORD_NAME = "host-sysctls"


def _path(key: str, proc_sys: Path) -> Path:
    return proc_sys / key.replace(".", "/")


def read(key: str, proc_sys: Path = PROC_SYS) -> str:
    return _path(key, proc_sys).read_text().strip()


def recorded(record: Path) -> dict[str, str]:
    """The originals a server of this data dir changed and has not put back yet."""
    if not record.exists():
        return {}
    out: dict[str, str] = {}
    for line in record.read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep:
            out[key.strip()] = value.strip()
    return out


def _write_record(record: Path, originals: dict[str, str]) -> None:
    if not originals:
        record.unlink(missing_ok=True)
        return
    tmp = record.with_name(record.name + ".tmp")
    with open(tmp, "w") as f:
        f.write("".join(f"{k}={v}\n" for k, v in sorted(originals.items())))
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(record)  # the record is whole or absent, never half written


def change(record: Path, key: str, value: str, proc_sys: Path = PROC_SYS) -> bool:
    """Set `key` to `value`, the original written to `record` first. True when the change is
    this data dir's to undo (made now, or made by a killed earlier run and still recorded)."""
    originals = recorded(record)
    if key in originals:  # ours from an earlier run that died: still ours to undo
        if read(key, proc_sys) != value:
            _path(key, proc_sys).write_text(value)
        return True
    current = read(key, proc_sys)
    if current == value:
        return False  # set by someone else: theirs to undo
    _write_record(record, {**originals, key: current})
    _path(key, proc_sys).write_text(value)
    return True


def ensure(record: Path, key: str, value: str, proc_sys: Path = PROC_SYS) -> bool:
    """Drift repair: put `key` back to `value` when it is not (turned off under a running
    server), the original recorded first as by `change`, so the stop puts it back; True when
    it was changed now."""
    if read(key, proc_sys) == value:
        return False
    change(record, key, value, proc_sys)
    return True


def restore(record: Path, keys: tuple[str, ...] | None = None,
            proc_sys: Path = PROC_SYS) -> list[str]:
    """Put back the recorded originals (of `keys`, or all) and drop them from the record;
    returns `key=value` per sysctl put back."""
    originals = recorded(record)
    done: list[str] = []
    for key, value in sorted(originals.items()):
        if keys is not None and key not in keys:
            continue
        if read(key, proc_sys) != value:
            _path(key, proc_sys).write_text(value)
        done.append(f"{key}={value}")
    _write_record(record, {k: v for k, v in originals.items()
                           if keys is not None and k not in keys})
    return done
