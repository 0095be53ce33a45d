"""The host's sysctls the server changes (net/host_sysctls.py), on a fake /proc/sys: the
original is recorded before the change and put back on stop; a killed run's record is taken
over by the next start and restored by its stop (or by `lambdaplane clean`); a value someone
else set is theirs and never recorded."""
from __future__ import annotations

from pathlib import Path

from lambdaplane.net import host_sysctls

KEY = "net.ipv4.ip_forward"


def _proc(tmp_path: Path, value: str) -> Path:
    proc = tmp_path / "proc-sys"
    (proc / "net" / "ipv4").mkdir(parents=True)
    (proc / "net" / "ipv4" / "ip_forward").write_text(value + "\n")
    return proc


def test_recorded_before_the_change_and_put_back(tmp_path: Path) -> None:
    proc, record = _proc(tmp_path, "0"), tmp_path / "host-sysctls"
    assert host_sysctls.change(record, KEY, "1", proc)
    assert host_sysctls.read(KEY, proc) == "1"
    assert host_sysctls.recorded(record) == {KEY: "0"}
    assert host_sysctls.restore(record, (KEY,), proc) == [f"{KEY}=0"]
    assert host_sysctls.read(KEY, proc) == "0"
    assert not record.exists()


def test_a_killed_runs_change_is_taken_over_and_restored(tmp_path: Path) -> None:
    proc, record = _proc(tmp_path, "0"), tmp_path / "host-sysctls"
    host_sysctls.change(record, KEY, "1", proc)  # then SIGKILL: no restore
    # the next start sees 1 but the record says it was ours: still ours to undo
    assert host_sysctls.change(record, KEY, "1", proc)
    assert host_sysctls.recorded(record) == {KEY: "0"}
    assert host_sysctls.restore(record, None, proc) == [f"{KEY}=0"]
    assert host_sysctls.read(KEY, proc) == "0"


def test_a_value_set_by_someone_else_is_left_alone(tmp_path: Path) -> None:
    proc, record = _proc(tmp_path, "1"), tmp_path / "host-sysctls"
    assert not host_sysctls.change(record, KEY, "1", proc)
    assert not record.exists()
    assert host_sysctls.restore(record, None, proc) == []
    assert host_sysctls.read(KEY, proc) == "1"


def test_turned_off_under_a_running_server_is_put_back_and_restored_on_stop(
        tmp_path: Path) -> None:
    """The drift repair's step (`ensure`, from the reconciler's worker step): our own change
    turned off by hand is switched on again under the same record; a value that was someone
    else's, turned off under us, is recorded before we switch it on, so the stop puts back
    what was found."""
    proc, record = _proc(tmp_path, "0"), tmp_path / "host-sysctls"
    host_sysctls.change(record, KEY, "1", proc)  # the start's change
    assert not host_sysctls.ensure(record, KEY, "1", proc)  # nothing drifted
    (proc / "net" / "ipv4" / "ip_forward").write_text("0\n")  # by hand
    assert host_sysctls.ensure(record, KEY, "1", proc)
    assert host_sysctls.read(KEY, proc) == "1"
    assert host_sysctls.recorded(record) == {KEY: "0"}  # the first original, kept
    assert host_sysctls.restore(record, (KEY,), proc) == [f"{KEY}=0"]

    proc2, record2 = _proc(tmp_path / "b", "1"), tmp_path / "b" / "host-sysctls"
    assert not host_sysctls.change(record2, KEY, "1", proc2)  # someone else's: not recorded
    (proc2 / "net" / "ipv4" / "ip_forward").write_text("0\n")
    assert host_sysctls.ensure(record2, KEY, "1", proc2)
    assert host_sysctls.recorded(record2) == {KEY: "0"}
    assert host_sysctls.restore(record2, (KEY,), proc2) == [f"{KEY}=0"]
    assert host_sysctls.read(KEY, proc2) == "0"
