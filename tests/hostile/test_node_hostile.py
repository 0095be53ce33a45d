"""Hostile Node.js function code, end to end (the Python suite's probes, where they apply to
Node): namespaces and mounts tried through the tools a function can exec and through raw system
calls in a process it spawns (seccomp: EPERM, inherited by every child), no privilege to gain
(setuid, capabilities, the sandbox's PID 1 — which relays a pre-started node's output as the
function's own user — is neither killable nor readable), /proc masked and no host path in any
command line, environment, mount table or memory map, and a fork bomb that ends at the pids
limit while the platform keeps serving. Node pre-started (the default) and exec'd at cold
start (`--prestart 0`): their sandboxes are built differently."""
from __future__ import annotations

import json
import secrets
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import lambdaplane
from lambdaplane.sandbox import masking
from lambdaplane.sandbox.runtimes import registry
from tests.conftest import live_server
from tests.e2e.vpc_support import wait_until
from tests.harness import LiveServer, create_python_function, make_zip

pytestmark = pytest.mark.root

RUNTIME = "nodejs22.x"
ROLE = "arn:aws:iam::000000000000:role/lambda"
WAIT = {"Delay": 0.2, "MaxAttempts": 150}
PRESTART_OFF = ("--prestart", "0")

HELLO = "exports.handler = async (event) => ({ ok: event.n });\n"


@pytest.fixture(scope="module", params=["prestarted", "exec"])
def node_server(request: pytest.FixtureRequest,
                tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    if registry.get(RUNTIME) is None:
        pytest.skip(f"{RUNTIME} is not installed (make install)")
    args = PRESTART_OFF if request.param == "exec" else ()
    for live in live_server(tmp_path_factory.mktemp("lp"), *args):
        _create(live, "benign", HELLO)
        create_python_function(live.lambda_(), "benign-py",
                               "def handler(event, context):\n    return {'ok': event['n']}\n")
        still_serving(live)  # a first cold start: makes the runtime's pool of started nodes
        yield live


def _create(server: LiveServer, name: str, code: str, **kwargs: object) -> None:
    lam = server.lambda_()
    lam.create_function(FunctionName=name, Runtime=RUNTIME, Handler="index.handler", Role=ROLE,
                        Code={"ZipFile": make_zip({"index.js": code})}, **kwargs)
    lam.get_waiter("function_active_v2").wait(FunctionName=name, WaiterConfig=WAIT)


def _prestarted_ready(server: LiveServer) -> int:
    pools = server.admin("status")["execution"].get("prestarted", {})  # type: ignore[index]
    return int(pools.get(RUNTIME, {}).get("prewarmed_ready", 0))


def still_serving(server: LiveServer) -> None:
    for name in ("benign", "benign-py"):
        n = secrets.randbelow(10**6)
        out = server.lambda_().invoke(FunctionName=name, Payload=json.dumps({"n": n}))
        assert json.loads(out["Payload"].read()) == {"ok": n}, "the platform stopped serving"


def attack(server: LiveServer, name: str, code: str, event: dict | None = None,
           memory: int = 128, timeout: int = 30, **kwargs: object) -> tuple[dict, dict]:
    """Create the attacker (in a sandbox whose node was started ahead, when the server
    pre-starts), invoke it once; (response metadata, decoded payload)."""
    if server.extra_args != list(PRESTART_OFF):
        assert wait_until(lambda: _prestarted_ready(server) > 0, 60)
    _create(server, name, code, MemorySize=memory, Timeout=timeout, **kwargs)
    out = server.lambda_().invoke(FunctionName=name, Payload=json.dumps(event or {}))
    payload = json.loads(out["Payload"].read())
    still_serving(server)
    return out, payload


COMMON = r'''
const fs = require("fs");
const cp = require("child_process");
function read(path) {
  try { return fs.readFileSync(path, "latin1"); } catch (e) { return "refused:" + e.code; }
}
function run(command, args) {
  const r = cp.spawnSync(command, args, { encoding: "utf8", timeout: 10000 });
  return { status: r.status, out: (r.stdout || "") + (r.stderr || ""), error: r.error && r.error.code };
}
function attempt(fn) {
  try { fn(); return "ok"; } catch (e) { return e.code || String(e); }
}
'''

# Raw system calls from a process the function spawns (Python's ctypes: node has no FFI).
RAW = r'''
import ctypes, errno, json
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
L = ctypes.c_long
def call(number, *args):
    r = libc.syscall(L(number), *[a if isinstance(a, bytes) else L(a) for a in args])
    return "ok" if r >= 0 else errno.errorcode.get(ctypes.get_errno(), "?")
print(json.dumps({"unshare_user": call(272, 0x10000000), "unshare_net": call(272, 0x40000000),
                  "unshare_mount": call(272, 0x20000), "setns": call(308, -1, 0),
                  "mount": call(165, b"none", b"/tmp", b"tmpfs", 0, 0),
                  "keyctl": call(250, 0, -2, 0), "bpf": call(321, 0, 0, 0),
                  "ptrace_traceme": call(101, 0, 0, 0, 0), "io_uring_setup": call(425, 1, 0)}))
'''

ESCAPE = COMMON + r'''
exports.handler = async () => {
  const found = {};
  found.unshare_user = run("unshare", ["--user", "--map-root-user", "true"]);
  found.unshare_net = run("unshare", ["--net", "true"]);
  found.mount = run("mount", ["-t", "tmpfs", "none", "/tmp"]);
  found.raw = run("/usr/bin/python3", ["-c", process.env.RAW]);
  const status = (text) => Object.fromEntries(text.split("\n").filter((l) =>
    /^(Seccomp|NoNewPrivs|CapEff|CapPrm|CapBnd):/.test(l)).map((l) => l.split(/:\s+/)));
  found.status = status(read("/proc/self/status"));
  found.child_status = status(run("/bin/cat", ["/proc/self/status"]).out);
  found.setuid = attempt(() => process.setuid(0));
  found.setgid = attempt(() => process.setgid(0));
  found.setgroups = attempt(() => process.setgroups([0]));
  found.uid = process.getuid();
  found.pid = process.pid;
  // the sandbox's PID 1: SIGKILL from inside its pid namespace is not delivered; its memory,
  // descriptors and the pipes it relays through are not ours to open
  found.kill_init = attempt(() => process.kill(1, "SIGKILL"));
  found.init_mem = read("/proc/1/mem").slice(0, 40);
  found.init_fds = attempt(() => fs.readdirSync("/proc/1/fd"));
  found.init_alive = fs.existsSync("/proc/1/status");
  found.binding = attempt(() => process.binding("spawn_sync"));  // no way around the filter
  return found;
};
'''


def test_namespaces_mounts_and_privileges_are_denied(node_server: LiveServer) -> None:
    out, found = attack(node_server, "node-escape", ESCAPE,
                        Environment={"Variables": {"RAW": RAW}})
    assert "FunctionError" not in out, found
    for probe in ("unshare_user", "unshare_net"):
        assert found[probe]["status"] != 0, found[probe]
        assert "Operation not permitted" in found[probe]["out"], found[probe]
    assert found["mount"]["status"] != 0, found["mount"]
    raw = json.loads(found["raw"]["out"])
    assert raw == {**dict.fromkeys(raw, "EPERM")}, raw  # the filter, in node's children too
    for status in (found["status"], found["child_status"]):
        assert status["Seccomp"] == "2" and status["NoNewPrivs"] == "1", status
        assert int(status["CapEff"], 16) == 0 and int(status["CapPrm"], 16) == 0, status
    assert found["uid"] != 0
    assert {found[k] for k in ("setuid", "setgid", "setgroups")} == {"EPERM"}, found
    if node_server.extra_args != list(PRESTART_OFF):  # PID 1 is not node but its relay
        assert found["pid"] != 1
        assert found["kill_init"] == "ok" and found["init_alive"]  # sent, and ignored
        assert found["init_mem"] == "refused:EACCES" and found["init_fds"] == "EACCES", found
    else:
        assert found["pid"] == 1  # node itself


VIEW = COMMON + r'''
const FILES = ["/proc/1/cmdline", "/proc/self/cmdline", "/proc/1/environ", "/proc/self/environ",
  "/proc/self/mountinfo", "/proc/self/mounts", "/proc/self/maps", "/proc/self/cgroup",
  "/proc/1/mountinfo", "/proc/1/maps"];
exports.handler = async (event) => {
  const seen = Object.fromEntries(FILES.map((path) => [path, read(path)]));
  seen.environment = JSON.stringify(process.env);
  seen.argv = JSON.stringify([process.argv, process.execArgv, process.execPath]);
  seen.child = run("/bin/sh", ["-c", "cat /proc/1/cmdline /proc/self/cmdline; " +
    "cat /proc/self/mountinfo; env"]).out;
  const masked = {};
  for (const name of event.files) {
    const path = "/proc/" + name;
    const text = fs.existsSync(path) ? read(path) : null;
    masked[path] = text === null ? "absent"
      : text === "" || text === "refused:EACCES" || text === "refused:EPERM" ? "empty" : "READABLE";
  }
  for (const name of [...event.dirs, "/sys", "/sys/firmware"]) {
    const path = name.startsWith("/") ? name : "/proc/" + name;
    masked[path] = !fs.existsSync(path) ? "absent"
      : fs.readdirSync(path).length === 0 ? "empty" : "LISTED";
  }
  const layout = Object.fromEntries(["/var/task", "/var/runtime", "/var/lang", "/opt", "/tmp"]
    .map((d) => [d, fs.existsSync(d) && fs.statSync(d).isDirectory()]));
  layout.task_listed = fs.readdirSync("/var/task").includes("index.js");
  return { seen, masked, layout };
};
'''


def host_markers(server: LiveServer) -> list[str]:
    package = Path(lambdaplane.__file__).resolve().parent
    return [str(server.data_dir), str(server.data_dir.resolve()), str(package),
            str(package.parent), sys.prefix, str(Path(sys.prefix).resolve()), "zygote_main",
            "sandbox-root", f"lp{server.instance}"]


def test_no_host_path_and_masked_proc(node_server: LiveServer) -> None:
    out, result = attack(node_server, "node-view", VIEW, {
        "files": list(masking.MASKED_FILES), "dirs": list(masking.MASKED_DIRS)})
    assert "FunctionError" not in out, result
    leaks = {where: [marker for marker in host_markers(node_server) if marker in text]
             for where, text in result["seen"].items()}
    leaks = {where: markers for where, markers in leaks.items() if markers}
    assert not leaks, f"host paths visible in the sandbox: {leaks}"
    assert "/var/runtime/bootstrap" in result["seen"]["/proc/self/cmdline"]
    assert "/var/lang/bin/node" in result["seen"]["/proc/self/cmdline"]
    assert "/var/task" in result["seen"]["/proc/self/mountinfo"]
    exposed = {path: state for path, state in result["masked"].items()
               if state not in ("absent", "empty")}
    assert not exposed, f"not masked: {exposed}"
    assert result["masked"]["/proc/kallsyms"] == "empty"
    assert result["masked"]["/sys"] == "absent"
    assert result["layout"] == dict.fromkeys(result["layout"], True)


FORK_BOMB = COMMON + r'''
exports.handler = async () => {
  let spawned = 0, error = null;
  const children = [];
  try {
    for (; spawned < 2048; spawned++) {
      const child = cp.spawn("/bin/sleep", ["30"], { stdio: "ignore" });
      children.push(child);
      const failed = await new Promise((resolve) => {
        child.once("spawn", () => resolve(null));
        child.once("error", (e) => resolve(e));
      });
      if (failed) { error = failed.code; break; }
    }
  } finally {
    for (const child of children) child.kill("SIGKILL");
  }
  return { spawned, error };
};
'''


def test_fork_bomb_hits_pids_limit(node_server: LiveServer) -> None:
    # 1 GB so that the pids limit, not memory, is what stops it
    out, found = attack(node_server, "node-forkbomb", FORK_BOMB, memory=1024, timeout=60)
    assert "FunctionError" not in out, found
    assert found["error"] == "EAGAIN" and found["spawned"] < 1024, found
    node_server.lambda_().delete_function(FunctionName="node-forkbomb")
    still_serving(node_server)


MEMORY_BOMB = r'''
exports.handler = async () => {
  const hog = [];
  for (;;) hog.push(Buffer.alloc(16 * 1024 * 1024, 1));  // outside V8's heap: the cgroup's
};
'''


def test_memory_bomb_is_oom_killed_and_reported(node_server: LiveServer) -> None:
    out, payload = attack(node_server, "node-membomb", MEMORY_BOMB)
    assert out["FunctionError"] == "Unhandled"
    assert payload["errorType"] == "Runtime.OutOfMemory", payload
