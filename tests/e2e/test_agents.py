"""Agents (issue 20, deliverable 2): `serve --no-data-plane` on PostgreSQL and two
`lambdaplane agent`s, each inside a network namespace standing in for a host (`lp<id>hA`,
`lp<id>hB`, made and removed here). boto3 creates a python3.11 function; with no live agent an
invoke is throttled (TooManyRequestsException); each agent's Unix socket is mode 0600 and
refuses an unsigned request (401); then invokes (RequestResponse with the log tail, a
function error, Event, a function URL, a function with two layers) run on an agent — the
request id the handler prints is in that agent's own function log file, and its lease row
lists the function —
`--placement pin:NAME` places them where asked; right after agent B is SIGKILLed invokes run
on A, after its lease its host row is gone; `clean` of its data dir leaves nothing of it (no
netns, link, nft table, cgroup or process with its prefix, in either namespace, and no host
row); everything is removed at the end."""
from __future__ import annotations

import http.client
import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest
from botocore.exceptions import ClientError

from lambdaplane.cleanup import clean_instance, fresh_instance, leftovers_with_host
from tests.harness import LiveServer, create_python_function, make_zip
from tests.pg_server import PgServer

pytestmark = pytest.mark.root

APP = """
def handler(event, context):
    if event.get("fail"):
        raise ValueError("asked to fail")
    print("ran", context.aws_request_id)
    return {"echo": event}
"""
LAYERED = """
import greeting, only_first
def handler(event, context):
    return {"word": greeting.WORD, "x": only_first.X}
"""
LEASE_S = 3


@pytest.fixture(scope="module")
def database(pg_server: PgServer) -> Iterator[str]:
    with pg_server.database() as url:
        yield url


class AgentProcess:
    def __init__(self, data_dir: Path, database: str, name: str, netns: str) -> None:
        self.data_dir = data_dir
        self.instance = fresh_instance("g")
        self.name = name
        self.netns = netns
        self.cmd = [sys.executable, "-m", "lambdaplane.cli", "agent", "--database", database,
                    "--data-dir", str(data_dir), "--instance", self.instance, "--name", name,
                    "--host-netns", netns, "--no-uplink", "--lease", str(LEASE_S),
                    "--pool-size", "1", "--prefork", "1"]
        self.log_path = data_dir.parent / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self.cmd, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while "agent ready" not in self.log():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"agent {self.name} did not start:\n{self.log()}")
            time.sleep(0.1)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, sig: int = signal.SIGINT) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def clean(self) -> str:
        return subprocess.run([sys.executable, "-m", "lambdaplane.cli", "clean", "--data-dir",
                               str(self.data_dir)], capture_output=True, text=True,
                              timeout=120, check=True).stdout

    def leftovers(self) -> list[str]:
        """What of this agent remains: seen from the root namespace and from its host's."""
        return leftovers_with_host(self.instance, self.netns)


def _host_rows(database: str) -> dict[str, set[str]]:
    """Host name → the functions it holds environments for, as the store has them."""
    with psycopg.connect(database) as conn:
        hosts = {name: set() for (name,) in conn.execute("SELECT name FROM hosts")}
        for name, function in conn.execute(
                "SELECT h.name, w.function FROM hosts h JOIN host_warm_functions w "
                "ON w.host_id = h.id"):
            hosts[name].add(function)
    return hosts


def _wait(condition, what: str, timeout_s: float = 60.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def _invoke(lam, **kwargs: object) -> dict:  # type: ignore[no-untyped-def]
    out = lam.invoke(FunctionName="on-agents", **kwargs)
    out["body"] = json.loads(out["Payload"].read())
    return out


def _ran_on(agents: list[AgentProcess], out: dict) -> AgentProcess:  # type: ignore[type-arg]
    """The agent whose own function log file has the line the handler printed."""
    line = f"ran {out['ResponseMetadata']['RequestId']}"

    def found() -> list[AgentProcess]:
        return [a for a in agents if line in _function_log(a)]
    hosts = _wait(found, f"'{line}' in an agent's function log")
    assert len(hosts) == 1
    return hosts[0]


def _unsigned_status(agent: AgentProcess) -> int:
    """The status of an unsigned GET /health sent to the agent's Unix socket."""
    import socket
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(30)
        s.connect(str(agent.data_dir / "agent.sock"))
        s.sendall(b"GET /health HTTP/1.1\r\nHost: agent\r\nConnection: close\r\n\r\n")
        return int(s.recv(64).split()[1])


def _function_log(agent: AgentProcess) -> str:
    path = agent.data_dir / "logs" / "us-east-1" / "on-agents.log"
    return path.read_text(errors="replace") if path.exists() else ""


def test_serve_without_data_plane_places_invokes_on_agents(
        tmp_path: Path, database: str) -> None:
    tid = fresh_instance("n")
    namespaces = [f"lp{tid}hA", f"lp{tid}hB"]
    server = LiveServer(tmp_path / "api", "--database", database, "--no-data-plane")
    agents = [AgentProcess(tmp_path / "agent-a", database, "host-a", namespaces[0]),
              AgentProcess(tmp_path / "agent-b", database, "host-b", namespaces[1])]
    a, b = agents
    try:
        for netns in namespaces:
            subprocess.run(["ip", "netns", "add", netns], check=True)
            subprocess.run(["ip", "-n", netns, "link", "set", "lo", "up"], check=True)
        server.start()
        lam = server.lambda_()
        create_python_function(lam, "on-agents", APP)
        # no live agent: throttled, as Lambda is when it has no concurrency to give
        with pytest.raises(ClientError) as e:
            lam.invoke(FunctionName="on-agents", Payload=b"{}")
        assert e.value.response["Error"]["Code"] == "TooManyRequestsException"
        assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 429

        for agent in agents:
            agent.start()
        assert set(_wait(lambda: _host_rows(database).keys() == {"host-a", "host-b"},
                         "both host rows") and _host_rows(database)) == {"host-a", "host-b"}

        # the Unix socket is the owner's only, and still wants a signed request (see
        # tests/e2e/test_agent_auth.py for the TCP endpoint and the signatures)
        for agent in agents:
            assert (agent.data_dir / "agent.sock").stat().st_mode & 0o777 == 0o600
            assert _unsigned_status(agent) == 401

        # a second agent under a live agent's name is refused before it builds anything
        twin = AgentProcess(tmp_path / "agent-twin", database, "host-a", namespaces[0])
        refused = subprocess.run(twin.cmd, capture_output=True, text=True, timeout=120)
        assert refused.returncode != 0
        assert "the host name host-a is held by the live agent" in refused.stderr

        out = _invoke(lam, Payload=json.dumps({"n": 1}), LogType="Tail")
        assert out["StatusCode"] == 200 and "FunctionError" not in out
        assert out["body"]["echo"] == {"n": 1}
        assert out["ExecutedVersion"] == "$LATEST"
        import base64
        tail = base64.b64decode(out["LogResult"]).decode()
        assert "START RequestId:" in tail and "REPORT RequestId:" in tail and "ran " in tail
        first = _ran_on(agents, out)
        # the host that ran it says so in its lease row; the next invoke goes to it (warm)
        _wait(lambda: "on-agents" in _host_rows(database)[first.name], "the warm row")
        again = _invoke(lam, Payload=b'{"n": 2}')
        assert _ran_on(agents, again) is first

        failed = _invoke(lam, Payload=b'{"fail": true}')
        assert failed["FunctionError"] == "Unhandled"
        assert failed["body"]["errorType"] == "ValueError"
        assert failed["body"]["errorMessage"] == "asked to fail"

        event = lam.invoke(FunctionName="on-agents", InvocationType="Event",
                           Payload=b'{"n": 3}')
        assert event["StatusCode"] == 202
        request_id = event["ResponseMetadata"]["RequestId"]
        logs = server.client("logs")
        _wait(lambda: logs.filter_log_events(logGroupName="/aws/lambda/on-agents",
                                             filterPattern=f'"ran {request_id}"')["events"],
              "the event's line in CloudWatch Logs (written by the agent)")

        # a function URL goes through the same invoker, so to an agent too
        url = lam.create_function_url_config(FunctionName="on-agents",
                                             AuthType="NONE")["FunctionUrl"]
        lam.add_permission(FunctionName="on-agents", StatementId="public",
                           Action="lambda:InvokeFunctionUrl", Principal="*",
                           FunctionUrlAuthType="NONE")
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
        try:
            conn.request("POST", "/", body=b'{"n": 9}',
                         headers={"Host": urlsplit(url).netloc,
                                  "Content-Type": "application/json"})
            resp = conn.getresponse()
            status, body = resp.status, json.loads(resp.read())
        finally:
            conn.close()
        assert status == 200
        assert json.loads(body["echo"]["body"]) == {"n": 9}

        # a function with two layers: the agent is sent each layer's zip and merges its own
        # /opt, in order (the second layer's greeting.py over the first's)
        layers = [lam.publish_layer_version(LayerName=f"words-{i}", Content={
            "ZipFile": make_zip(files)})["LayerVersionArn"] for i, files in enumerate([
                {"python/greeting.py": "WORD = 'one'\n", "python/only_first.py": "X = 1\n"},
                {"python/greeting.py": "WORD = 'two'\n"}])]
        create_python_function(lam, "layered", LAYERED, Layers=layers)
        out = lam.invoke(FunctionName="layered", Payload=b"{}")
        assert json.loads(out["Payload"].read()) == {"word": "two", "x": 1}, out

        # pinned to the other host
        other = b if first is a else a
        server.extra_args += ["--placement", f"pin:{other.name}"]
        server.restart()
        lam = server.lambda_()
        pinned = _invoke(lam, Payload=b'{"n": 4}')
        assert _ran_on(agents, pinned) is other

        server.extra_args = server.extra_args[:-2]
        server.restart()
        lam = server.lambda_()
        _wait(lambda: all("on-agents" in warm for warm in _host_rows(database).values()),
              "environments of the function on both hosts")
        hosts = server.admin("status")["execution"]["hosts"]  # type: ignore[index]
        assert sorted(h["name"] for h in hosts) == ["host-a", "host-b"]

        # SIGKILL agent B: at once (its lease still running, it holds the function warm)
        # invokes go to A; after the lease B's row is gone; invokes go on on A
        b.stop(signal.SIGKILL)
        for n in range(3):
            out = _invoke(lam, Payload=json.dumps({"n": 5 + n}))
            assert _ran_on([a], out) is a
        _wait(lambda: set(_host_rows(database)) == {"host-a"}, "host-b's row to expire")
        out = _invoke(lam, Payload=b'{"n": 8}')
        assert _ran_on([a], out) is a

        # clean of B's data dir: nothing of B is left
        assert b.leftovers(), "a SIGKILLed agent leaves its sandboxes until clean"
        b.clean()
        assert b.leftovers() == []
        assert set(_host_rows(database)) == {"host-a"}
    finally:
        server.stop()
        for agent in agents:
            agent.stop()
        for agent in agents:
            if agent.data_dir.exists():
                agent.clean()
        left = server.leftovers() + [x for agent in agents for x in agent.leftovers()]
        server.backstop_clean()
        for agent in agents:
            clean_instance(agent.instance)
        for netns in namespaces:
            subprocess.run(["ip", "netns", "del", netns], capture_output=True)
    assert left == []
    assert _host_rows(database) == {}
