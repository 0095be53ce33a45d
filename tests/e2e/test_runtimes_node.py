"""Node.js functions (nodejs20.x, nodejs22.x, nodejs24.x) through boto3 against a live server
(node pre-started in pre-forked sandboxes, and node exec'd at cold start: `--prestart 0`),
each on its own Node major from `make install`: CommonJS and ES modules, async and callback
handlers, the context object, AWS's error payloads, console lines, timeouts, a handler in a
subdirectory, AWS's sample handlers unchanged, a real npm package in node_modules, and a VPC
function reaching a `lambdaplane run` service."""
from __future__ import annotations

import base64
import json
import shutil
import subprocess
from collections.abc import Iterator

import pytest
from botocore.exceptions import ClientError

from lambdaplane.sandbox.runtimes import registry
from tests.e2e.vpc_support import resource, wait_until
from tests.conftest import live_server
from tests.harness import FULL_MATRIX, NODE_MODES, LiveServer, make_zip

pytestmark = pytest.mark.root

NODE_RUNTIMES = ["nodejs20.x", "nodejs22.x", "nodejs24.x"]
ROLE = "arn:aws:iam::000000000000:role/lambda"
WAIT = {"Delay": 0.2, "MaxAttempts": 150}


@pytest.fixture(scope="module", params=NODE_MODES)
def server(request: pytest.FixtureRequest,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """Node started ahead in pre-forked sandboxes (the default), and exec'd at cold start."""
    args = ("--prestart", "0") if request.param == "exec" else ()
    yield from live_server(tmp_path_factory.mktemp("lp"), *args)


@pytest.fixture(params=NODE_RUNTIMES if FULL_MATRIX else ["nodejs22.x"])
def runtime(request: pytest.FixtureRequest) -> str:
    if registry.get(request.param) is None:
        pytest.skip(f"{request.param} is not installed (make install)")
    return request.param


def _create(lam, name: str, runtime: str, files: dict[str, str | bytes],
            handler: str = "index.handler", **kwargs: object) -> None:
    lam.create_function(FunctionName=name, Runtime=runtime, Handler=handler, Role=ROLE,
                        Code={"ZipFile": make_zip(files)}, **kwargs)
    lam.get_waiter("function_active_v2").wait(FunctionName=name, WaiterConfig=WAIT)


def _invoke(lam, name: str, event: object = None) -> tuple[dict, object, str]:
    resp = lam.invoke(FunctionName=name, Payload=json.dumps(event or {}), LogType="Tail")
    log = base64.b64decode(resp.get("LogResult", "")).decode()
    return resp, json.loads(resp["Payload"].read()), log


def _tag(runtime: str) -> str:
    return runtime.replace(".", "")


CJS = """
exports.handler = async (event, context) => ({
  module: "cjs", node: process.versions.node, event,
  env: process.env.AWS_EXECUTION_ENV, nodePath: process.env.NODE_PATH,
});
"""

ESM = """
export const handler = async (event) => ({ module: "esm", node: process.versions.node, event });
"""

CONTEXT = """
import fs from "node:fs";
export const handler = async (event, context) => {
  console.log("hello", {a: 1});
  console.warn("careful");
  console.error("multi\\nline");
  return {
    functionName: context.functionName, functionVersion: context.functionVersion,
    invokedFunctionArn: context.invokedFunctionArn, memoryLimitInMB: context.memoryLimitInMB,
    awsRequestId: context.awsRequestId, logGroupName: context.logGroupName,
    logStreamName: context.logStreamName, remaining: context.getRemainingTimeInMillis(),
    waits: context.callbackWaitsForEmptyEventLoop,
    stashes: ["/.lp-runtime", "/.lp-code"].filter((p) => fs.existsSync(p)),
    user: process.getuid(),
  };
};
"""


@pytest.mark.parametrize("runtime", NODE_RUNTIMES)  # every major, also in `make test`
def test_cjs_esm_and_type_module_each_on_its_own_major(server: LiveServer, runtime: str) -> None:
    if registry.get(runtime) is None:
        pytest.skip(f"{runtime} is not installed (make install)")
    lam, tag = server.lambda_(), _tag(runtime)
    major = runtime[len("nodejs"):].split(".")[0]
    _create(lam, f"cjs-{tag}", runtime, {"index.js": CJS})
    _create(lam, f"esm-{tag}", runtime, {"index.mjs": ESM})
    _create(lam, f"tm-{tag}", runtime, {"index.js": ESM, "package.json": '{"type": "module"}'})
    resp, body, _ = _invoke(lam, f"cjs-{tag}", {"x": 1})
    assert "FunctionError" not in resp, body
    assert body["module"] == "cjs" and body["event"] == {"x": 1}
    assert body["node"].split(".")[0] == major
    assert body["env"] == f"AWS_Lambda_{runtime}"
    assert "/opt/nodejs/node_modules" in body["nodePath"].split(":")
    for name in (f"esm-{tag}", f"tm-{tag}"):
        resp, body, _ = _invoke(lam, name, {"y": 2})
        assert "FunctionError" not in resp, body
        assert body == {"module": "esm", "node": body["node"], "event": {"y": 2}}
        assert body["node"].split(".")[0] == major


def test_context_and_console_lines(server: LiveServer, runtime: str) -> None:
    lam, name = server.lambda_(), f"ctx-{_tag(runtime)}"
    _create(lam, name, runtime, {"index.mjs": CONTEXT}, MemorySize=256, Timeout=7)
    resp, body, log = _invoke(lam, name)
    request_id = resp["ResponseMetadata"]["RequestId"]
    arn = lam.get_function(FunctionName=name)["Configuration"]["FunctionArn"]
    assert body["functionName"] == name and body["functionVersion"] == "$LATEST"
    assert body["invokedFunctionArn"] == arn and body["memoryLimitInMB"] == "256"
    assert body["awsRequestId"] == request_id
    assert body["logGroupName"] == f"/aws/lambda/{name}" and body["logStreamName"]
    assert 0 < body["remaining"] <= 7000 and body["waits"] is True
    assert body["stashes"] == [] and body["user"] != 0  # nothing left of the pre-forked build
    lines = {line.split("\t")[2]: line.split("\t") for line in log.split("\n")
             if line.count("\t") >= 3}
    assert lines["INFO"][1] == request_id and lines["INFO"][3] == "hello { a: 1 }"
    assert lines["INFO"][0].endswith("Z") and "T" in lines["INFO"][0]
    assert lines["WARN"][3] == "careful"
    assert lines["ERROR"][3] == "multi\rline"  # one line per call, as AWS writes it
    assert "lambdaplane-flush" not in log


CALLBACK = """
exports.handler = function (event, context, callback) {
  if (event.noWait) context.callbackWaitsForEmptyEventLoop = false;
  setTimeout(() => console.log("timer done"), 300);
  callback(null, {called: "back"});
};
"""


def test_callback_handlers_wait_for_the_event_loop(server: LiveServer, runtime: str) -> None:
    lam, name = server.lambda_(), f"cb-{_tag(runtime)}"
    _create(lam, name, runtime, {"index.js": CALLBACK})
    resp, body, log = _invoke(lam, name)
    if runtime == "nodejs24.x":  # AWS removed callback handlers from Node.js 24
        assert resp["FunctionError"] == "Unhandled"
        assert body["errorType"] == "Runtime.CallbackHandlerDeprecated"
        return
    assert body == {"called": "back"}
    assert "timer done" in log  # the response waited for the pending timer
    resp, body, log = _invoke(lam, name, {"noWait": True})
    assert body == {"called": "back"} and "timer done" not in log


ERRORS = {
    "throws.mjs": "export const handler = async () => { throw new TypeError('bad thing'); };",
    "syntax.js": "exports.handler = async () => { return {;",
    "noexport.mjs": "export const other = async () => 1;",
    "rejects.mjs": ("export const handler = async () => {"
                    " Promise.reject(new Error('nobody waits')); "
                    "await new Promise(r => setTimeout(r, 500)); return 'late'; };"),
    "missingdep.js": "const x = require('not-a-package'); exports.handler = async () => x;",
}


@pytest.mark.parametrize("handler,error_type,message", [
    ("throws.handler", "TypeError", "bad thing"),
    ("syntax.handler", "Runtime.UserCodeSyntaxError", "SyntaxError: Unexpected token"),
    ("noexport.handler", "Runtime.HandlerNotFound",
     "noexport.handler is undefined or not exported"),
    ("nothere.handler", "Runtime.ImportModuleError", "Error: Cannot find module 'nothere'"),
    ("missingdep.handler", "Runtime.ImportModuleError",
     "Error: Cannot find module 'not-a-package'"),
    ("rejects.handler", "Runtime.UnhandledPromiseRejection", "Error: nobody waits"),
])
def test_error_payloads(server: LiveServer, runtime: str, handler: str, error_type: str,
                        message: str) -> None:
    lam = server.lambda_()
    name = f"err-{handler.split('.')[0]}-{_tag(runtime)}"
    _create(lam, name, runtime, ERRORS, handler=handler)
    resp, body, log = _invoke(lam, name)
    assert resp["StatusCode"] == 200 and resp["FunctionError"] == "Unhandled"
    assert body["errorType"] == error_type, body
    assert body["errorMessage"].startswith(message), body
    assert isinstance(body.get("trace"), list)
    if error_type == "TypeError":
        assert "Invoke Error" in log
        # the environment lives on after a handled error: the second invoke is warm
        resp2, body2, _ = _invoke(lam, name)
        assert body2["errorType"] == "TypeError"


def test_timeout_kills_the_environment(server: LiveServer, runtime: str) -> None:
    lam, name = server.lambda_(), f"slow-{_tag(runtime)}"
    code = "export const handler = async () => { await new Promise(r => setTimeout(r, 5000)); };"
    _create(lam, name, runtime, {"index.mjs": code}, Timeout=1)
    resp, body, log = _invoke(lam, name)
    assert resp["FunctionError"] == "Unhandled"
    assert body["errorType"] == "Sandbox.Timedout"
    assert "Task timed out after 1.00 seconds" in body["errorMessage"]


def test_handler_in_a_subdirectory(server: LiveServer, runtime: str) -> None:
    lam, name = server.lambda_(), f"sub-{_tag(runtime)}"
    files = {"src/handlers/index.js": "const h = require('../lib/helper');"
                                      "exports.handler = async (e) => h.greet(e.who);",
             "src/lib/helper.js": "exports.greet = (who) => `hello ${who}`;"}
    _create(lam, name, runtime, files, handler="src/handlers/index.handler")
    _, body, _ = _invoke(lam, name, {"who": "sub"})
    assert body == "hello sub"


# AWS's own sample handlers, as the Lambda console and the Node.js handler guide give them.
AWS_CONSOLE_SAMPLE = """export const handler = async (event) => {
  // TODO implement
  const response = {
    statusCode: 200,
    body: JSON.stringify('Hello from Lambda!'),
  };
  return response;
};
"""
AWS_GUIDE_SAMPLE = """export const handler = async (event, context) => {
  console.log("EVENT: \\n" + JSON.stringify(event, null, 2));
  return context.logStreamName;
};
"""


def test_aws_sample_handlers_run_unchanged(server: LiveServer, runtime: str) -> None:
    lam, tag = server.lambda_(), _tag(runtime)
    _create(lam, f"sample1-{tag}", runtime, {"index.mjs": AWS_CONSOLE_SAMPLE})
    _, body, _ = _invoke(lam, f"sample1-{tag}")
    assert body == {"statusCode": 200, "body": '"Hello from Lambda!"'}
    _create(lam, f"sample2-{tag}", runtime, {"index.mjs": AWS_GUIDE_SAMPLE})
    _, body, log = _invoke(lam, f"sample2-{tag}", {"key1": "value1"})
    assert body.startswith("20") and "]" in body  # e.g. 2026/12/06/[$LATEST]abc...
    assert '"key1": "value1"' in log.replace("\r", "\n")


@pytest.fixture(scope="module")
def npm_package(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """is-number@7.0.0 installed by npm into a temp dir: {path in the zip: content}."""
    npm = shutil.which("npm")
    if npm is None:
        pytest.skip("npm is not installed")
    prefix = tmp_path_factory.mktemp("npm")
    done = subprocess.run([npm, "install", "--prefix", str(prefix), "--no-audit", "--no-fund",
                           "is-number@7.0.0"], capture_output=True, text=True, timeout=180)
    if done.returncode != 0:
        pytest.skip(f"npm install failed: {done.stderr[-500:]}")
    modules = prefix / "node_modules"
    return {str(p.relative_to(prefix)): p.read_bytes() for p in modules.rglob("*") if p.is_file()}


def test_function_with_a_real_npm_package(server: LiveServer, runtime: str,
                                          npm_package: dict[str, bytes]) -> None:
    lam, name = server.lambda_(), f"npm-{_tag(runtime)}"
    code = "const isNumber = require('is-number');" \
           "exports.handler = async (e) => e.values.map((v) => isNumber(v));"
    _create(lam, name, runtime, {"index.js": code, **npm_package})
    _, body, _ = _invoke(lam, name, {"values": [5, "5", "five", None]})
    assert body == [True, True, False, False]


VPC_CLIENT = """
import net from "node:net";
export const handler = (event) => new Promise((resolve) => {
  const socket = net.connect(event.port, event.host);
  let data = "";
  socket.on("data", (d) => { data += d; });
  socket.on("end", () => resolve(data));
  socket.on("error", (e) => resolve("error " + e.code));
  socket.setTimeout(5000, () => { socket.destroy(); resolve("timeout"); });
});
"""


def test_vpc_function_reaches_a_service(server: LiveServer, runtime: str) -> None:
    lam, ec2 = server.lambda_(), server.ec2()
    octet = 60 + NODE_RUNTIMES.index(runtime)
    vpc = ec2.create_vpc(CidrBlock=f"10.{octet}.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.{octet}.1.0/24")["Subnet"]["SubnetId"]
    group = ec2.describe_security_groups(Filters=[
        {"Name": "vpc-id", "Values": [vpc]}, {"Name": "group-name", "Values": ["default"]}
    ])["SecurityGroups"][0]["GroupId"]
    name = f"vpc-{_tag(runtime)}"
    try:
        with resource(server, subnet, [group], ports=(8080,), ip=f"10.{octet}.1.50"):
            _create(lam, name, runtime, {"index.mjs": VPC_CLIENT},
                    VpcConfig={"SubnetIds": [subnet], "SecurityGroupIds": [group]})
            resp, body, _ = _invoke(lam, name, {"host": f"10.{octet}.1.50", "port": 8080})
            assert "FunctionError" not in resp, body
            assert body.startswith("hello from "), body
    finally:
        try:
            lam.delete_function(FunctionName=name)
        except ClientError:
            pass
        wait_until(lambda: not ec2.describe_network_interfaces(Filters=[
            {"Name": "subnet-id", "Values": [subnet]}])["NetworkInterfaces"], timeout_s=30)
        ec2.delete_subnet(SubnetId=subnet)
        ec2.delete_vpc(VpcId=vpc)


def test_out_of_memory_and_concurrency(server: LiveServer, runtime: str) -> None:
    lam, tag = server.lambda_(), _tag(runtime)
    hog = ("export const handler = async () => { const kept = [];"
           " for (let i = 0; i < 64; i++) kept.push(Buffer.alloc(16 * 1024 * 1024, 1));"
           " return kept.length; };")
    _create(lam, f"oom-{tag}", runtime, {"index.mjs": hog}, MemorySize=128)
    resp, body, _ = _invoke(lam, f"oom-{tag}")
    assert resp["FunctionError"] == "Unhandled"
    assert body["errorType"] == "Runtime.OutOfMemory", body
    slow = ("export const handler = async () => {"
            " await new Promise(r => setTimeout(r, 1500)); return process.pid + ' ' +"
            " require_id(); };\nconst id = Math.random().toString(36);"
            "\nfunction require_id() { return id; }")
    _create(lam, f"conc-{tag}", runtime, {"index.mjs": slow})
    import concurrent.futures
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        bodies = list(pool.map(lambda _: _invoke(lam, f"conc-{tag}")[1], range(3)))
    assert len({b.split()[1] for b in bodies}) == 3  # three environments at once


SDK_CJS = """
const { S3Client } = require("@aws-sdk/client-s3");
const { DynamoDBDocumentClient } = require("@aws-sdk/lib-dynamodb");
exports.handler = async () => ({
  s3: typeof S3Client, doc: typeof DynamoDBDocumentClient,
  from: require.resolve("@aws-sdk/client-s3"),
  region: await new S3Client({}).config.region(),
});
"""
SDK_ESM = """
import { LambdaClient, ListFunctionsCommand } from "@aws-sdk/client-lambda";
import { createRequire } from "node:module";
export const handler = async () => ({
  lambda: typeof LambdaClient, command: typeof ListFunctionsCommand,
});
"""


def test_aws_sdk_v3_is_there_without_bundling(server: LiveServer, runtime: str) -> None:
    install = registry.get(runtime)
    assert install is not None
    if not any(target == "/var/runtime/node_modules" for _, target in install.mounts):
        pytest.skip("the AWS SDK for JavaScript is not installed (make install)")
    lam, tag = server.lambda_(), _tag(runtime)
    _create(lam, f"sdkc-{tag}", runtime, {"index.js": SDK_CJS})
    resp, body, _ = _invoke(lam, f"sdkc-{tag}")
    assert "FunctionError" not in resp, body
    assert body["s3"] == "function" and body["doc"] == "function"
    assert body["from"].startswith("/var/runtime/node_modules/@aws-sdk/client-s3/")
    assert body["region"] == "us-east-1"
    _create(lam, f"sdke-{tag}", runtime, {"index.mjs": SDK_ESM})
    resp, body, _ = _invoke(lam, f"sdke-{tag}")
    assert "FunctionError" not in resp, body
    assert body == {"lambda": "function", "command": "function"}


SECCOMP = """
const fs = require("fs");
exports.handler = async () => ({
  status: fs.readFileSync("/proc/self/status", "utf8").split("\\n")
    .filter((line) => line.startsWith("Seccomp:") || line.startsWith("NoNewPrivs:")),
});
"""


def _prestarted_ready(server: LiveServer, runtime: str) -> int:
    pools = server.admin("status")["execution"].get("prestarted", {})  # type: ignore[index]
    return int(pools.get(runtime, {}).get("prewarmed_ready", 0))


def test_node_runs_under_the_sandbox_seccomp_filter(server: LiveServer) -> None:
    """Pre-started (node forked before its function is assigned) and exec'd alike."""
    lam = server.lambda_()
    _create(lam, "node-seccomp-first", "nodejs22.x", {"index.js": SECCOMP})
    _, first, _ = _invoke(lam, "node-seccomp-first")  # a first cold start: node is exec'd
    assert sorted(line.split()[1] for line in first["status"]) == ["1", "2"], first
    if server.extra_args == ["--prestart", "0"]:
        return
    assert wait_until(lambda: _prestarted_ready(server, "nodejs22.x") > 0, 60)
    _create(lam, "node-seccomp", "nodejs22.x", {"index.js": SECCOMP})
    _, result, _ = _invoke(lam, "node-seccomp")  # takes a sandbox whose node already runs
    assert sorted(line.split()[1] for line in result["status"]) == ["1", "2"], result


def test_megabytes_of_utf8_in_and_out(server: LiveServer, runtime: str) -> None:
    """The runtime's own HTTP client (runtime_client.mjs): an event and a response of several
    MB, multi-byte characters split across reads, arrive whole."""
    lam, name = server.lambda_(), f"big-{_tag(runtime)}"
    _create(lam, name, runtime, {"index.js": (
        "exports.handler = async (event) => ({ length: event.text.length, text: event.text });")})
    text = "é€" * 700_000  # 3.5 MB of UTF-8 each way
    resp = lam.invoke(FunctionName=name,
                      Payload=json.dumps({"text": text}, ensure_ascii=False).encode())
    body = json.loads(resp["Payload"].read())
    assert "FunctionError" not in resp, str(body)[:300]
    assert body["length"] == len(text) and body["text"] == text
