// lambdaplane's Node.js runtime (nodejs20.x, nodejs22.x, nodejs24.x): exec'd in the sandbox as
// `/var/lang/bin/node /var/runtime/bootstrap.mjs` (sandbox/runtimes/registry.py). It loads the
// handler named by _HANDLER from /var/task (CommonJS or ES module, also in subdirectories),
// then serves invocations over the Lambda Runtime API with AWS's semantics: async and callback
// handlers (callbackWaitsForEmptyEventLoop; none on Node.js 24, as on AWS), the context object,
// AWS's error payloads (Runtime.ImportModuleError, Runtime.HandlerNotFound,
// Runtime.UserCodeSyntaxError, Runtime.UnhandledPromiseRejection) and console lines as AWS
// writes them: ISO timestamp, request id, level, message, tab-separated.
import module, { createRequire } from "node:module";
// Built-ins by require, not `import`: an ES module import of a built-in reads every one of its
// exports (node:http's lazy WebSocket & co load undici: 20 to 65 ms of CPU on Node.js 22/24);
// and HTTP is runtime_client.mjs's, over node:net (node:http costs more again to load and warm).
const require = createRequire(import.meta.url);
const fs = require("node:fs");
const path = require("node:path");
const { pathToFileURL } = require("node:url");
import { logError, patchConsole, setRequestId, warmUpFormats } from "./console.mjs";
import { fakeRuntimeApi, request as httpRequest, resetConnections } from "./runtime_client.mjs";

// Pre-started (sandbox/prestart.py): node and this bootstrap are loaded before the function is
// known. It then runs a function of its own once (warmUp), so that what a cold start runs after
// its function arrives is compiled already, says READY_MARK to the sandbox's PID 1, and waits
// for its environment on a pipe (JSON, then EOF): the sandbox has been assigned.
// Its output is relayed by the sandbox's PID 1: flushOutput() makes sure all of it is in the
// environment's output pipe before each Runtime API call (a mark, then PID 1's ack on fd 4).
const PRESTARTED = Boolean(process.env.LAMBDAPLANE_PRESTART_FD);
const FLUSH_MARK = "\u0000lambdaplane-flush\u0000";
const READY_MARK = "\u0000lambdaplane-ready\u0000";
const ACK_FD = 4;
const WARM_UP_ROOT = "/var/runtime/warmup";
let unflushed = false;

function receiveEnvironment() {
  const fd = Number(process.env.LAMBDAPLANE_PRESTART_FD);
  const { environ } = JSON.parse(fs.readFileSync(fd, "utf8"));
  fs.closeSync(fd);
  for (const key of Object.keys(process.env)) delete process.env[key];
  Object.assign(process.env, environ);
  process.chdir(process.env.LAMBDA_TASK_ROOT || "/var/task");
  if (typeof module._initPaths === "function") module._initPaths(); // NODE_PATH, for require
}

// set from the environment (configure()); the warm-up points them at its own
let TASK_ROOT = "/var/task";
let API_HOST = "127.0.0.1";
let API_PORT = "9001";
const API_PREFIX = "/2018-06-01/runtime";
const NODE_MAJOR = Number(process.versions.node.split(".")[0]);
const CALLBACKS_SUPPORTED = NODE_MAJOR < 24;

function configure() {
  TASK_ROOT = process.env.LAMBDA_TASK_ROOT || "/var/task";
  [API_HOST, API_PORT] = (process.env.AWS_LAMBDA_RUNTIME_API || "127.0.0.1:9001").split(":");
  patchConsole(writeLine, process.env); // LogFormat, ApplicationLogLevel
}

// --- console: AWS's formats (console.mjs) --------------------------------------------------
let currentRequestId; // undefined before the first invocation, as AWS prints it
const stdoutWrite = process.stdout.write.bind(process.stdout);
if (PRESTARTED) { // whatever is written, by us or by the function, is to be flushed
  for (const stream of [process.stdout, process.stderr]) {
    const write = stream.write.bind(stream);
    stream.write = (...args) => { unflushed = true; return write(...args); };
  }
}

function flushOutput() {
  if (!PRESTARTED || !unflushed) return;
  unflushed = false;
  try {
    fs.writeSync(1, FLUSH_MARK); // pipes are written synchronously: after everything before
    fs.readSync(ACK_FD, Buffer.alloc(1));
  } catch {
    // PID 1 gone: the environment is ending anyway
  }
}

function writeLine(line) {
  unflushed = true;
  stdoutWrite(line);
}

patchConsole(writeLine, process.env); // again once the function's environment is known

// --- the Runtime API -----------------------------------------------------------------------
function request(method, urlPath, body, headers = {}) {
  return httpRequest(API_HOST, API_PORT, method, API_PREFIX + urlPath, body, headers);
}

async function post(urlPath, payload, errorType) {
  flushOutput();
  const headers = errorType ? { "Lambda-Runtime-Function-Error-Type": errorType } : {};
  const res = await request("POST", urlPath, payload, headers);
  if (res.status >= 300) {
    process.stderr.write(`Runtime API ${urlPath} answered ${res.status}: ${res.body.slice(0, 200)}\n`);
  }
}

// --- errors as AWS reports them ------------------------------------------------------------
function errorPayload(error, errorType) {
  if (error instanceof Error) {
    return { errorType: errorType || error.name || "Error", errorMessage: error.message,
      trace: String(error.stack || "").split("\n") };
  }
  const message = typeof error === "string" ? error : safeJson(error);
  return { errorType: errorType || typeof error, errorMessage: message, trace: [] };
}

function safeJson(value) {
  try {
    return JSON.stringify(value) ?? String(value);
  } catch {
    return String(value);
  }
}

class RuntimeError extends Error {
  constructor(errorType, message, cause) {
    super(message);
    this.errorType = errorType;
    if (cause && cause.stack) this.stack = `${errorType}: ${message}\n${String(cause.stack).split("\n").slice(1).join("\n")}`;
    else this.stack = `${errorType}: ${message}`;
  }
}

function describe(error) {
  return error instanceof RuntimeError
    ? { errorType: error.errorType, errorMessage: error.message, trace: error.stack.split("\n") }
    : errorPayload(error);
}

// --- loading the handler -------------------------------------------------------------------
function hasTypeModule(dir) {
  // the nearest package.json up to the task root decides what a .js file is
  for (let d = dir; d.startsWith(TASK_ROOT); d = path.dirname(d)) {
    const pj = path.join(d, "package.json");
    if (fs.existsSync(pj)) {
      try {
        return JSON.parse(fs.readFileSync(pj, "utf8")).type === "module";
      } catch {
        return false;
      }
    }
    if (d === TASK_ROOT) break;
  }
  return false;
}

function loadError(error, moduleName) {
  if (error instanceof SyntaxError) {
    return new RuntimeError("Runtime.UserCodeSyntaxError", `${error.name}: ${error.message}`, error);
  }
  if (error && (error.code === "MODULE_NOT_FOUND" || error.code === "ERR_MODULE_NOT_FOUND")) {
    return new RuntimeError("Runtime.ImportModuleError", `Error: ${error.message}`, error);
  }
  return error;
}

let esmPathsRegistered = false;

function importFromNodePath() {
  // only for ES modules (the hook runs on a thread of its own: not paid by CommonJS functions)
  if (esmPathsRegistered || typeof module.register !== "function") return;
  esmPathsRegistered = true;
  module.register("./esm_paths.mjs", import.meta.url,
    { data: { nodePath: process.env.NODE_PATH || "" } });
}

async function loadModule(moduleRoot, moduleName) {
  const base = path.resolve(TASK_ROOT, moduleRoot, moduleName);
  const requireFromTask = createRequire(path.join(TASK_ROOT, "index.js"));
  const candidates = [[".js", hasTypeModule(path.dirname(base)) ? "import" : "require"],
    [".mjs", "import"], [".cjs", "require"]];
  for (const [extension, how] of candidates) {
    const file = base + extension;
    if (!fs.existsSync(file)) continue;
    try {
      if (how === "import") importFromNodePath();
      return how === "import" ? await import(pathToFileURL(file).href) : requireFromTask(file);
    } catch (error) {
      throw loadError(error, moduleName);
    }
  }
  try { // a module of node_modules, or a file named without an extension
    return requireFromTask(fs.existsSync(base) ? base : moduleName);
  } catch (error) {
    if (error && error.code === "MODULE_NOT_FOUND" && !fs.existsSync(base)) {
      throw new RuntimeError("Runtime.ImportModuleError",
        `Error: Cannot find module '${moduleName}'\nRequire stack:\n- /var/runtime/bootstrap.mjs`,
        error);
    }
    throw loadError(error, moduleName);
  }
}

async function loadHandler(fullName) {
  const slash = fullName.lastIndexOf("/");
  const moduleRoot = slash >= 0 ? fullName.slice(0, slash) : "";
  const rest = slash >= 0 ? fullName.slice(slash + 1) : fullName;
  const dot = rest.indexOf(".");
  if (dot <= 0 || dot === rest.length - 1) {
    throw new RuntimeError("Runtime.MalformedHandlerName", "Bad handler");
  }
  const loaded = await loadModule(moduleRoot, rest.slice(0, dot));
  let handler = loaded;
  for (const part of rest.slice(dot + 1).split(".")) {
    handler = handler == null ? undefined : handler[part];
  }
  if (handler === undefined) {
    throw new RuntimeError("Runtime.HandlerNotFound", `${fullName} is undefined or not exported`);
  }
  if (typeof handler !== "function") {
    throw new RuntimeError("Runtime.HandlerNotFound", `${fullName} is not a function`);
  }
  if (!CALLBACKS_SUPPORTED && handler.constructor.name !== "AsyncFunction" && handler.length >= 3) {
    throw new RuntimeError("Runtime.CallbackHandlerDeprecated",
      "ERROR: AWS Lambda does not support callback-based function handlers starting with " +
      "Node.js 24. Use an async handler, or Node.js 22 (nodejs22.x) for this function.");
  }
  return handler;
}

// --- one invocation -------------------------------------------------------------------------
function emptyEventLoop() {
  return new Promise((resolve) => process.once("beforeExit", resolve));
}

function parseJsonHeader(value) {
  if (!value) return undefined;
  try {
    return JSON.parse(value);
  } catch {
    return undefined;
  }
}

function makeContext(headers, settle) {
  const deadline = Number(headers["lambda-runtime-deadline-ms"] || 0);
  const context = {
    callbackWaitsForEmptyEventLoop: true,
    functionName: process.env.AWS_LAMBDA_FUNCTION_NAME,
    functionVersion: process.env.AWS_LAMBDA_FUNCTION_VERSION,
    invokedFunctionArn: headers["lambda-runtime-invoked-function-arn"],
    memoryLimitInMB: process.env.AWS_LAMBDA_FUNCTION_MEMORY_SIZE,
    awsRequestId: headers["lambda-runtime-aws-request-id"],
    logGroupName: process.env.AWS_LAMBDA_LOG_GROUP_NAME,
    logStreamName: process.env.AWS_LAMBDA_LOG_STREAM_NAME,
    identity: parseJsonHeader(headers["lambda-runtime-cognito-identity"]),
    clientContext: parseJsonHeader(headers["lambda-runtime-client-context"]),
    getRemainingTimeInMillis: () => Math.max(deadline - Date.now(), 0),
  };
  if (CALLBACKS_SUPPORTED) { // the legacy completion methods
    context.done = (err, result) => settle(err, result);
    context.succeed = (result) => settle(null, result);
    context.fail = (err) => settle(err ?? "handled", undefined);
  }
  return context;
}

function run(handler, event, headers) {
  return new Promise((resolve) => {
    let finished = false;
    let callbackCalled = false;
    const finish = (error, result) => {
      if (!finished) {
        finished = true;
        resolve({ error, result });
      }
    };
    const callback = (error, result) => {
      if (callbackCalled) return;
      callbackCalled = true;
      if (context.callbackWaitsForEmptyEventLoop) {
        emptyEventLoop().then(() => finish(error, result));
      } else {
        finish(error, result);
      }
    };
    const context = makeContext(headers, callback);
    let returned;
    try {
      returned = CALLBACKS_SUPPORTED ? handler(event, context, callback) : handler(event, context);
    } catch (error) {
      finish(error ?? new Error("handler threw"), undefined);
      return;
    }
    if (returned && typeof returned.then === "function") {
      returned.then((value) => finish(null, value), (error) => finish(
        error ?? new Error("The handler's promise was rejected without a reason"), undefined));
    } else if (!CALLBACKS_SUPPORTED) {
      finish(null, returned);
    } else if (!callbackCalled) { // a synchronous handler that never calls back: null
      emptyEventLoop().then(() => { if (!callbackCalled) finish(null, null); });
    }
  });
}

async function invokeOnce(handler) {
  flushOutput();
  const next = await request("GET", "/invocation/next");
  const headers = next.headers;
  const requestId = headers["lambda-runtime-aws-request-id"];
  currentRequestId = requestId;
  setRequestId(requestId);
  if (headers["lambda-runtime-trace-id"]) {
    process.env._X_AMZN_TRACE_ID = headers["lambda-runtime-trace-id"];
  } else {
    delete process.env._X_AMZN_TRACE_ID;
  }
  let event;
  try {
    event = next.body ? JSON.parse(next.body) : null;
  } catch (error) {
    const payload = { errorType: "Runtime.UnmarshalError",
      errorMessage: `Unable to unmarshal input: ${error.message}`, trace: [] };
    await post(`/invocation/${requestId}/error`, JSON.stringify(payload), payload.errorType);
    return;
  }
  const { error, result } = await run(handler, event, headers);
  if (error !== null && error !== undefined) {
    const payload = describe(error);
    logError("Invoke Error", error, payload);
    await post(`/invocation/${requestId}/error`, JSON.stringify(payload), payload.errorType);
    return;
  }
  let body;
  try {
    body = JSON.stringify(result === undefined ? null : result);
  } catch (e) {
    const payload = { errorType: "Runtime.MarshalError",
      errorMessage: `Unable to stringify response body: ${e.message}`, trace: [] };
    await post(`/invocation/${requestId}/error`, JSON.stringify(payload), payload.errorType);
    return;
  }
  await post(`/invocation/${requestId}/response`, body);
}

// --- process-wide failures ------------------------------------------------------------------
async function fatal(error, errorType, label, exitCode) {
  const failure = errorType ? new RuntimeError(errorType, String(error instanceof Error
    ? `${error.name}: ${error.message}` : error), error instanceof Error ? error : undefined)
    : error;
  const payload = describe(failure);
  logError(label, failure, payload);
  try {
    await post(currentRequestId ? `/invocation/${currentRequestId}/error` : "/init/error",
      JSON.stringify(payload), payload.errorType);
  } finally {
    process.exit(exitCode);
  }
}

process.on("unhandledRejection", (reason) => {
  fatal(reason, "Runtime.UnhandledPromiseRejection", "Unhandled Promise Rejection", 128);
});
process.on("uncaughtException", (error) => {
  fatal(error, null, "Uncaught Exception", 129);
});

// --- warming up (pre-started only) -----------------------------------------------------------
// A Runtime API of our own on 127.0.0.1 serves two invocations of /var/runtime/warmup's handler
// (CommonJS) through the very functions a cold start uses; an ES module is imported too. Nothing
// is written to the output, and nothing of it is left once it is done.
async function warmUp() {
  let api;
  try {
    api = await fakeRuntimeApi(() => ({ "Lambda-Runtime-Aws-Request-Id": "warm-up",
      "Lambda-Runtime-Deadline-Ms": String(Date.now() + 60000),
      "Lambda-Runtime-Invoked-Function-Arn": "arn:aws:lambda:us-east-1:000000000000:function:warm-up" }),
    '{"warm":"up"}');
    [TASK_ROOT, API_HOST, API_PORT] = [WARM_UP_ROOT, "127.0.0.1", String(api.port)];
    const handler = await loadHandler("index.handler");
    for (let i = 0; i < 2; i++) await invokeOnce(handler);
    await import(pathToFileURL(path.join(WARM_UP_ROOT, "module.mjs")).href);
    warmUpFormats();
  } catch {
    // a sandbox that cannot listen on its loopback still runs functions, only colder
  } finally {
    resetConnections();
    if (api) await api.close();
    currentRequestId = undefined;
    setRequestId(undefined);
    delete process.env._X_AMZN_TRACE_ID;
  }
}

async function main() {
  if (PRESTARTED) {
    await warmUp();
    fs.writeSync(1, READY_MARK);
    receiveEnvironment(); // blocks until the sandbox is assigned
  }
  configure();
  let handler;
  try {
    handler = await loadHandler(process.env._HANDLER || "");
  } catch (error) {
    const payload = describe(error);
    logError("Uncaught Exception", error, payload);
    await post("/init/error", JSON.stringify(payload), payload.errorType);
    process.exit(1);
  }
  for (;;) {
    await invokeOnce(handler);
  }
}

main();
