"""Runs `lambdaplane.cli` with every SQL statement counted (by thread and statement text),
the counts dumped as JSON to $LP_SQLCOUNT three times a second: tests/soak/
agent_invoke_compare.py's COUNT=1."""
import collections, json, os, runpy, sys, threading, time
sys.path.insert(0, os.getcwd())
import psycopg
counts = collections.Counter()
orig = psycopg.Cursor.execute
def execute(self, query, *a, **kw):
    q = query if isinstance(query, str) else (query.decode() if isinstance(query, bytes) else str(query))
    counts[threading.current_thread().name[:12] + " | " + " ".join(q.split())[:70]] += 1
    return orig(self, query, *a, **kw)
psycopg.Cursor.execute = execute
out = os.environ["LP_SQLCOUNT"]
def dump():
    while True:
        time.sleep(0.3)
        with open(out + ".tmp", "w") as f:
            json.dump(dict(counts), f)
        os.replace(out + ".tmp", out)
threading.Thread(target=dump, daemon=True).start()
sys.argv = ["lambdaplane"] + sys.argv[1:]
runpy.run_module("lambdaplane.cli", run_name="__main__", alter_sys=True)
