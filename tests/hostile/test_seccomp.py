"""Hostile function code against the seccomp filter (sandbox/seccomp_profile.py), end to end:
one probe per denied system-call family, run from inside a real function on a live server,
plus the proof that what the function execs inherits the filter. The same probe against a
server started with `--seccomp off` shows what each denied call did before the filter (and
that the filter, not a missing capability, is what stops them)."""
from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import live_server
from tests.harness import LiveServer, create_python_function

pytestmark = pytest.mark.root

# Every probe is a raw syscall(2) with harmless arguments: the result is "ok" or the errno name.
PROBE = r'''
import ctypes, errno, os, subprocess, sys, threading
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
L = ctypes.c_long
X32 = 0x40000000
CLONE_NEWUSER, CLONE_NEWNET, CLONE_NEWNS, SIGCHLD = 0x10000000, 0x40000000, 0x20000, 17
buf = ctypes.create_string_buffer(4096)
handle = ctypes.create_string_buffer(128)
ctypes.memmove(handle, (128).to_bytes(4, "little"), 4)
mount_id = ctypes.c_int(0)
iov = (ctypes.c_char * 16)()
iovec = (L * 2)(ctypes.addressof(iov), 16)
timex = ctypes.create_string_buffer(256)  # struct timex, modes = 0: a read

PROBES = {
    "unshare_user": (272, CLONE_NEWUSER), "unshare_net": (272, CLONE_NEWNET),
    "unshare_mount": (272, CLONE_NEWNS),
    "clone_newuser": (56, CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0),
    "clone3": (435, 0, 0), "setns": (308, -1, 0),
    "mount": (165, b"none", b"/tmp", b"tmpfs", 0, 0), "umount2": (166, b"/tmp", 2),
    "pivot_root": (155, b"/tmp", b"/tmp"), "fsopen": (430, b"tmpfs", 0),
    "open_tree": (428, -100, b"/tmp", 0), "move_mount": (429, -1, b"", -1, b"", 0),
    "chroot": (161, b"/tmp"),
    "keyctl": (250, 0, -2, 0), "add_key": (248, b"user", b"lp", b"x", 1, -2),
    "request_key": (249, b"user", b"lp", 0, 0),
    "bpf": (321, 0, 0, 0), "perf_event_open": (298, 0, 0, -1, -1, 0),
    "userfaultfd": (323, 1), "io_uring_setup": (425, 1, 0),
    "io_uring_enter": (426, -1, 0, 0, 0, 0, 0), "io_uring_register": (427, -1, 0, 0, 0),
    "kexec_load": (246, 0, 0, 0, 0), "kexec_file_load": (320, -1, -1, 0, 0, 0),
    "init_module": (175, 0, 0, b""), "finit_module": (313, -1, b"", 0),
    "delete_module": (176, b"lp_none", 0),
    "reboot": (169, 0, 0, 0, 0), "swapon": (167, b"/tmp/none", 0), "swapoff": (168, b"/tmp/none"),
    "acct": (163, 0),
    "settimeofday": (164, 0, 0), "clock_settime": (227, 0, 0),
    "adjtimex": (159, timex), "clock_adjtime": (305, 0, timex),
    "quotactl": (179, 0, 0, 0, 0),
    "name_to_handle_at": (303, -100, b"/tmp", handle, ctypes.byref(mount_id), 0),
    "open_by_handle_at": (304, -1, handle, 0),
    "personality_addr_no_randomize": (135, 0x0040000),
    "ptrace_traceme": (101, 0, 0, 0, 0),
    "process_vm_readv": (310, os.getpid(), iovec, 1, iovec, 1, 0),
    "syslog": (103, 10, 0, 0), "lookup_dcookie": (212, 0, 0, 0),
    "x32_getpid": (X32 | 39,), "mbind": (237, 0, 0, 0, 0, 0, 0), "iopl": (172, 0),
    "sethostname": (170, b"x", 1), "kcmp": (312, os.getpid(), os.getpid(), 0, 0, 0),
    "socket_vsock": (41, 40, 1, 0),
}


def run(number, *args):
    args = [a if isinstance(a, (bytes, ctypes._SimpleCData, ctypes.Array, ctypes._Pointer))
            or type(a).__name__ == "CArgObject" else L(a) for a in args]
    result = libc.syscall(L(number), *args)
    if result == 0 and number == 56:
        os._exit(0)  # a clone that worked: the child leaves at once
    if result >= 0:
        return "ok"
    return errno.errorcode.get(ctypes.get_errno(), str(ctypes.get_errno()))


def isolated(call):
    """Each probe in a child of its own: one that works (unshare without the filter) must not
    change the process the next probe runs in."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        os.write(w, run(*call).encode())
        os._exit(0)
    os.close(w)
    out = os.read(r, 100).decode()
    os.close(r)
    os.waitpid(pid, 0)
    return out or "child died"


def handler(event, context):
    results = {name: isolated(call) for name, call in PROBES.items()}
    with open("/proc/self/status") as f:
        results["Seccomp"] = [l.split()[1] for l in f if l.startswith("Seccomp:")][0]
    # what the function execs keeps the filter
    child = subprocess.run(["/bin/sh", "-c", "grep '^Seccomp:' /proc/self/status"],
                           capture_output=True, text=True, timeout=10)
    results["child_sh_status"] = child.stdout.split()[1] if child.stdout else child.stderr
    grandchild = subprocess.run(
        [sys.executable, "-c", "import ctypes,errno; l=ctypes.CDLL(None, use_errno=True); "
         "r=l.unshare(0x10000000); print(errno.errorcode.get(ctypes.get_errno()) if r else 'ok')"],
        capture_output=True, text=True, timeout=10)
    results["child_python_unshare_user"] = grandchild.stdout.strip() or grandchild.stderr
    # what must still work: threads (clone3 -> ENOSYS -> clone), fork, the personality query
    box = []
    t = threading.Thread(target=box.append, args=(1,))
    t.start(); t.join()
    results["thread"] = "ok" if box == [1] else "failed"
    pid = os.fork()
    if pid == 0:
        os._exit(7)
    results["fork"] = "ok" if os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 7 else "bad"
    results["personality_query"] = run(135, 0xFFFFFFFF)
    return results
'''

ENOSYS_EXPECTED = {"clone3"}
STILL_WORKING = ("thread", "fork", "personality_query")


def probe(server: LiveServer, name: str) -> dict[str, str]:
    lam = server.lambda_()
    create_python_function(lam, name, PROBE, Timeout=30)
    out = lam.invoke(FunctionName=name, Payload=b"{}")
    payload = json.loads(out["Payload"].read())
    assert "FunctionError" not in out, payload
    return payload


def test_every_denied_family_fails_with_eperm_and_children_inherit(server: LiveServer) -> None:
    found = probe(server, "seccomp-probe")
    denied = {name: found[name] for name in found
              if name not in STILL_WORKING and not name.startswith(("child_", "Seccomp"))}
    wrong = {name: result for name, result in denied.items()
             if result != ("ENOSYS" if name in ENOSYS_EXPECTED else "EPERM")}
    assert not wrong, f"calls not denied as the profile says: {wrong}"
    assert found["Seccomp"] == "2"  # SECCOMP_MODE_FILTER
    assert found["child_sh_status"] == "2"
    assert found["child_python_unshare_user"] == "EPERM"
    assert {name: found[name] for name in STILL_WORKING} == dict.fromkeys(STILL_WORKING, "ok")


def test_provided_runtime_bootstrap_is_filtered(server: LiveServer) -> None:
    """A provided.* bootstrap (exec'd by the sandbox) and what it runs are filtered too."""
    from tests.harness import make_zip

    bootstrap = ("#!/bin/sh\nset -e\napi=$AWS_LAMBDA_RUNTIME_API\n"
                 "while true; do\n"
                 "  h=$(mktemp)\n"
                 "  curl -sS -D \"$h\" -o /dev/null "
                 "\"http://$api/2018-06-01/runtime/invocation/next\"\n"
                 "  id=$(grep -i '^lambda-runtime-aws-request-id:' \"$h\" | tr -d '\\r' | "
                 "cut -d' ' -f2)\n"
                 "  s=$(grep '^Seccomp:' /proc/self/status | cut -f2)\n"
                 "  curl -sS -X POST -d \"\\\"$s\\\"\" "
                 "\"http://$api/2018-06-01/runtime/invocation/$id/response\" >/dev/null\n"
                 "done\n")
    lam = server.lambda_()
    lam.create_function(FunctionName="seccomp-provided", Runtime="provided.al2023",
                        Handler="x", Role="arn:aws:iam::000000000000:role/lambda",
                        Code={"ZipFile": make_zip({"bootstrap": bootstrap},
                                                  modes={"bootstrap": 0o755})})
    lam.get_waiter("function_active_v2").wait(FunctionName="seccomp-provided",
                                              WaiterConfig={"Delay": 0.2, "MaxAttempts": 100})
    out = lam.invoke(FunctionName="seccomp-provided", Payload=b"{}")
    assert json.loads(out["Payload"].read()) == "2"


@pytest.fixture
def unfiltered(tmp_path: Path) -> Iterator[LiveServer]:
    yield from live_server(tmp_path, "--seccomp", "off")


def test_without_the_filter_the_probes_reach_the_kernel(unfiltered: LiveServer) -> None:
    """The before picture (`--seccomp off`): the same probes get through to the kernel —
    user namespaces, keyrings, io_uring, ptrace, x32 — so the EPERMs above are the filter's."""
    found = probe(unfiltered, "seccomp-probe-off")
    assert found["Seccomp"] == "0"
    assert found["unshare_user"] == "ok"
    assert found["child_python_unshare_user"] == "ok"
    reached = {name for name in ("keyctl", "add_key", "io_uring_setup", "ptrace_traceme",
                                 "personality_addr_no_randomize", "settimeofday", "adjtimex",
                                 "name_to_handle_at", "process_vm_readv") if found[name] != "EPERM"}
    assert len(reached) >= 6, found
