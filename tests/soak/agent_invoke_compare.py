"""Warm invokes through an agent against the single-host path, interleaved in one run (docs/
agents.md, "Measured"): `serve` with its own data plane, and `serve --no-data-plane` + one
agent (in a namespace of its own) from each of two code trees, on a PostgreSQL of its own;
the invokes rotate between them one by one, so every configuration sees the same load.
Prints p50/p90/p99 and each process's CPU per invoke. Root; not a test (pytest does not
collect it). Run from a worktree:

    BEFORE=/tmp/old-tree python tests/soak/agent_invoke_compare.py   # AFTER = this tree
    PAYLOAD_KB=256 ...    a payload of that size echoed back
    COUNT=1 ...           instead: the SQL statements per invoke of every process
                          (tests/soak/count_sql.py wraps psycopg's cursor)

The old tree is e.g. `git archive <commit> | tar -x -C /tmp/old-tree`."""
from __future__ import annotations
import json, os, shutil, subprocess, sys, tempfile, time, signal
from pathlib import Path
sys.path.insert(0, os.getcwd())
from tests.pg_server import pg_server
from tests.harness import LiveServer, create_python_function
from lambdaplane.cleanup import clean_instance, fresh_instance

APP = "def handler(event, context):\n    print('ran', context.aws_request_id)\n    return event if 'big' in event else {'ok': 1}\n"
TREES = {"before": os.environ.get("BEFORE", os.getcwd()),
         "after": os.environ.get("AFTER", os.getcwd())}
KB = int(os.environ.get("PAYLOAD_KB", "0"))
BODY = json.dumps({"big": "x" * (KB * 1024)}).encode() if KB else b'{"n": 1}'
ROUNDS = int(os.environ.get("ROUNDS", "5")); N = int(os.environ.get("N", "60"))
COUNT = bool(os.environ.get("COUNT")); HERE = os.path.dirname(os.path.abspath(__file__))
tmp = Path(tempfile.mkdtemp(prefix="lp-agent-compare-"))

class Agent:
    def __init__(self, tree, db, name):
        self.tree, self.instance, self.name = tree, fresh_instance("g"), name
        self.netns = f"lp{self.instance}h"
        self.dir = tmp / name
        self.proc = None
    def start(self, db):
        subprocess.run(["ip", "netns", "add", self.netns], check=True)
        subprocess.run(["ip", "-n", self.netns, "link", "set", "lo", "up"], check=True)
        self.dir.mkdir(parents=True)
        self.log = open(tmp / f"{self.name}.log", "ab")
        pre = [HERE + "/count_sql.py"] if COUNT else ["-m", "lambdaplane.cli"]
        env = dict(os.environ, LP_SQLCOUNT=str(tmp / (self.name + ".sql.json")))
        self.proc = subprocess.Popen([sys.executable, *pre, "agent", "--database", db,
            "--data-dir", str(self.dir), "--instance", self.instance, "--name", self.name,
            "--host-netns", self.netns, "--no-uplink"],
            cwd=self.tree, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        while b"agent ready" not in (tmp / f"{self.name}.log").read_bytes():
            assert self.proc.poll() is None, (tmp / f"{self.name}.log").read_text()
            time.sleep(0.2)
    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT); self.proc.wait(60)
        subprocess.run([sys.executable, "-m", "lambdaplane.cli", "clean", "--data-dir", str(self.dir)],
                       cwd=self.tree, capture_output=True)
        clean_instance(self.instance)
        subprocess.run(["ip", "netns", "del", self.netns], capture_output=True)

def serve_in(tree, data_dir, *args):
    s = LiveServer(data_dir, *args)
    orig = subprocess.Popen
    def popen(cmd, **kw):
        if COUNT:
            cmd = [cmd[0], HERE + "/count_sql.py"] + cmd[3:]
            kw["env"] = dict(os.environ, LP_SQLCOUNT=str(tmp / (data_dir.name + ".sql.json")))
        return orig(cmd, cwd=tree, **kw)
    subprocess.Popen = popen
    try:
        s.start(120)
    finally:
        subprocess.Popen = orig
    return s

def pct(xs, p):
    xs = sorted(xs); return xs[min(len(xs) - 1, int(p * len(xs)))]

def main():
    servers, agents = {}, []
    results = {}
    with pg_server() as pg:
        dbs = []
        try:
            for i, label in enumerate(["local", "before", "after"]):
                pg.admin(f"CREATE DATABASE agp{i}"); dbs.append(f"agp{i}")
                url = pg.url(f"agp{i}")
                if label == "local":
                    servers[label] = serve_in(TREES["after"], tmp / label, "--database", url,
                                              )
                else:
                    a = Agent(TREES[label], url, f"host-{label}"); agents.append(a); a.start(url)
                    servers[label] = serve_in(TREES[label], tmp / label, "--database", url, "--no-data-plane")
                lam = servers[label].lambda_()
                create_python_function(lam, "f", APP)
                for _ in range(20):
                    lam.invoke(FunctionName="f", Payload=b"{}")
            lams = {k: s.lambda_() for k, s in servers.items()}
            if COUNT:
                time.sleep(1)
                snap = lambda: {f.name: json.loads(f.read_text()) for f in tmp.glob("*.sql.json")}
                t0 = time.time(); before = snap()
                for lam in lams.values():
                    for _ in range(N):
                        lam.invoke(FunctionName="f", Payload=b'{"n": 1}')["Payload"].read()
                time.sleep(0.5); after = snap(); dt = time.time() - t0
                for f, c in after.items():
                    for k, v in sorted(c.items()):
                        d = v - before.get(f, {}).get(k, 0)
                        if d:
                            print(f"{f:22s} {d/N:7.2f}/inv  {d:6d} {k}")
                print(f"window {dt:.1f}s")
                return
            pids = {k: s.proc.pid for k, s in servers.items()}
            pids.update({"agent-" + a.name: a.proc.pid for a in agents})
            def cpu(pid):
                f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
                return (int(f[11]) + int(f[12])) * 1000 / os.sysconf("SC_CLK_TCK")
            labels = list(lams)
            c0 = {k: cpu(p) for k, p in pids.items()}
            for r in range(ROUNDS * N):
                for label in labels[r % len(labels):] + labels[:r % len(labels)]:
                    t = time.perf_counter()
                    out = lams[label].invoke(FunctionName="f", Payload=BODY)
                    out["Payload"].read()
                    results.setdefault(label, []).append((time.perf_counter() - t) * 1000)
            cpus = {k: cpu(p) - c0[k] for k, p in pids.items()}
            for label, xs in results.items():
                print(f"{label:8s} n={len(xs)} p50={pct(xs,.5):.2f} p90={pct(xs,.9):.2f} p99={pct(xs,.99):.2f} ms", flush=True)
            for k, v in cpus.items():
                print(f"cpu {k:16s} {v / (ROUNDS * N):.2f} ms/invoke")
        finally:
            for s in servers.values():
                s.stop(); s.backstop_clean()
            for a in agents:
                a.stop()
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
