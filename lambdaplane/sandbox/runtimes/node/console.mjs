// console.* of lambdaplane's Node.js runtime (bootstrap.mjs), as AWS's Node.js runtimes write
// them. The function's LoggingConfig reaches it as AWS_LAMBDA_LOG_FORMAT and (JSON only, as on
// AWS) AWS_LAMBDA_LOG_LEVEL (sandbox/log_format.py):
// * Text: `ISO-timestamp<TAB>request-id<TAB>LEVEL<TAB>message`, one line per call (newlines in
//   the message become \r).
// * JSON: one object per call: {"timestamp", "level", "requestId", "message"}. A single
//   argument is the message as it is (an object stays an object; an Error becomes
//   {errorType, errorMessage, stackTrace, ...its own fields}); several are formatted into one
//   string, and the first Error among them adds errorType, errorMessage and stackTrace.
// * AWS_LAMBDA_LOG_LEVEL (TRACE DEBUG INFO WARN ERROR FATAL): calls below it write nothing;
//   console.fatal always writes.
// console.log and console.info are INFO, console.trace TRACE (no stack trace, as on AWS).
import { createRequire } from "node:module";

// Built-ins by require, not `import`: importing one as an ES module reads every export of it
// (bootstrap.mjs says why that is costly).
const util = createRequire(import.meta.url)("node:util");

const LEVELS = ["TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL"];
const METHODS = [["trace", "TRACE"], ["debug", "DEBUG"], ["info", "INFO"], ["log", "INFO"],
  ["warn", "WARN"], ["error", "ERROR"], ["fatal", "FATAL"]];

let requestId; // undefined before the first invocation, as AWS prints it (and omits in JSON)
let json = false;

export function setRequestId(id) {
  requestId = id;
}

function textLine(level, args) {
  const message = util.format(...args).replace(/\n/g, "\r");
  return `${new Date().toISOString()}\t${requestId}\t${level}\t${message}\n`;
}

function errorFields(error) {
  return {
    errorType: error?.constructor?.name ?? "UnknownError",
    errorMessage: error.message,
    stackTrace: typeof error.stack === "string" ? error.stack.split("\n") : error.stack,
  };
}

function errorsAsObjects(_key, value) {
  return value instanceof Error ? { ...errorFields(value), ...value } : value;
}

function jsonLine(level, args) {
  const record = { timestamp: new Date().toISOString(), level, requestId };
  if (args.length === 1) {
    record.message = args[0];
    try {
      return JSON.stringify(record, errorsAsObjects) + "\n";
    } catch { // circular, a BigInt ...
      record.message = util.format(args[0]);
      return JSON.stringify(record) + "\n";
    }
  }
  record.message = util.format(...args);
  const error = args.find((arg) => arg instanceof Error);
  if (error) Object.assign(record, errorFields(error));
  return JSON.stringify(record) + "\n";
}

/** Replace console's methods: each line goes to write(line), in the format and from the level
 * the environment (`env`) asks for. */
export function patchConsole(write, env) {
  json = String(env.AWS_LAMBDA_LOG_FORMAT || "").toUpperCase() === "JSON";
  const lowest = Math.max(0, LEVELS.indexOf(String(env.AWS_LAMBDA_LOG_LEVEL || "").toUpperCase()));
  const format = json ? jsonLine : textLine;
  for (const [method, level] of METHODS) {
    const shown = level === "FATAL" || LEVELS.indexOf(level) >= lowest;
    console[method] = shown ? (...args) => write(format(level, args)) : () => {};
  }
}

/** The runtime's own error line (`label` e.g. "Invoke Error"): Text, the label and the error
 * payload as JSON; JSON, the error itself as console.error writes it. */
export function logError(label, error, payload) {
  if (json) {
    console.error(error instanceof Error ? error : new Error(error));
  } else {
    console.error(`${label} \t` + JSON.stringify(payload));
  }
}

/** Both formats once, written nowhere: compiled before a pre-started runtime's function. */
export function warmUpFormats() {
  const error = new Error("warm-up");
  return textLine("INFO", ["%s %d", "warm", 1, { up: true }]).length +
    jsonLine("INFO", [{ warm: "up", error }]).length + jsonLine("WARN", ["warm", error]).length;
}
