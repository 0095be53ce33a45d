"""The Python runtime inside an execution environment: a Lambda Runtime API client with AWS's
semantics (awslambdaric's behaviour): load `_HANDLER` once, then loop GET next → handler(event,
context) → POST response | error, over one persistent HTTP connection.

STDLIB ONLY. The zygote imports this module once (by path, under the runtime's interpreter) and
each environment calls `main()` after its sandbox is built; it also runs standalone
(`python3 python_bootstrap.py`). Nothing is read from the environment before `main()`."""
from __future__ import annotations

import base64
import importlib
import json
import os
import socket
import struct
import sys
import time
import traceback
from typing import Any, Callable

API_VERSION = "/2018-06-01"
NEXT_PATH = "/runtime/invocation/next"
TASK_ROOT = "/var/task"
_THIS_FILE = os.path.abspath(__file__)

# Init/invoke faults as AWS names them.
MALFORMED_HANDLER_NAME = "Runtime.MalformedHandlerName"
IMPORT_MODULE_ERROR = "Runtime.ImportModuleError"
HANDLER_NOT_FOUND = "Runtime.HandlerNotFound"
USER_CODE_SYNTAX_ERROR = "Runtime.UserCodeSyntaxError"
BUILT_IN_MODULE_CONFLICT = "Runtime.BuiltInModuleConflict"
MARSHAL_ERROR = "Runtime.MarshalError"
UNMARSHAL_ERROR = "Runtime.UnmarshalError"


class _Closed(ConnectionError):
    pass


class Fault(Exception):
    def __init__(self, error_type: str, message: str, trace: list[str] | None = None) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.message = message
        self.trace = trace or []


def error_payload(message: str, error_type: str, trace: list[str],
                  request_id: str = "") -> dict[str, Any]:
    return {"errorMessage": message, "errorType": error_type, "requestId": request_id,
            "stackTrace": trace}


def _user_trace(tb: Any) -> list[str]:
    """The traceback from the first frame that is not this runtime's own."""
    frames = traceback.extract_tb(tb)
    for i, frame in enumerate(frames):
        if os.path.abspath(frame.filename) != _THIS_FILE:
            frames = frames[i:]
            break
    else:
        frames = traceback.StackSummary.from_list([])
    return traceback.format_list(frames)


def fault_from(exc: BaseException, request_id: str = "") -> dict[str, Any]:
    return error_payload(str(exc), type(exc).__name__, _user_trace(exc.__traceback__),
                         request_id)


def log_error(payload: dict[str, Any]) -> None:
    """The `[ERROR] Type: message` + traceback lines AWS's runtime writes to the log (with
    LogFormat JSON: one JSON object, as AWS's runtime writes it then)."""
    if os.environ.get("AWS_LAMBDA_LOG_FORMAT") == "JSON":
        sys.stdout.write(json.dumps({
            "timestamp": _utc_now(), "log_level": "ERROR",
            "errorMessage": payload.get("errorMessage"), "errorType": payload.get("errorType"),
            "requestId": payload.get("requestId", ""),
            "stackTrace": payload.get("stackTrace") or []}) + "\n")
        sys.stdout.flush()
        return
    line = "[ERROR]"
    if payload.get("errorType"):
        line += " " + payload["errorType"]
    if payload.get("errorMessage"):
        line += (":" if payload.get("errorType") else "") + " " + payload["errorMessage"]
    lines = [line, "Traceback (most recent call last):"]
    for element in payload.get("stackTrace") or []:
        lines.extend(element.splitlines() or [""])
    sys.stdout.write("\n".join(lines) + "\n")
    sys.stdout.flush()


def load_handler(handler: str) -> Callable[[Any, Any], Any]:
    try:
        modname, fname = handler.rsplit(".", 1)
    except ValueError as e:
        raise Fault(MALFORMED_HANDLER_NAME, f"Bad handler '{handler}': {e}") from None
    if not modname or not fname:
        raise Fault(MALFORMED_HANDLER_NAME, f"Bad handler '{handler}'")
    if modname.split(".")[0] in sys.builtin_module_names:
        raise Fault(BUILT_IN_MODULE_CONFLICT,
                    f"Cannot use built-in module {modname} as a handler module")
    try:
        module = importlib.import_module(modname.replace("/", "."))
    except ImportError as e:
        raise Fault(IMPORT_MODULE_ERROR, f"Unable to import module '{modname}': {e}") from None
    except SyntaxError as e:
        trace = [f'  File "{e.filename}" Line {e.lineno}\n    {e.text}']
        raise Fault(USER_CODE_SYNTAX_ERROR,
                    f"Syntax error in module '{modname}': {e}", trace) from None
    try:
        return getattr(module, fname)
    except AttributeError:
        raise Fault(HANDLER_NOT_FOUND,
                    f"Handler '{fname}' missing on module '{modname}'") from None


# --- the context object -------------------------------------------------------------------

class _Obj:
    """Attribute bag with AWS's fixed attribute names (missing ones read as None)."""
    __slots__: tuple[str, ...] = ()

    def __init__(self, **values: Any) -> None:
        for name in self.__slots__:
            setattr(self, name, values.get(name))

    def __repr__(self) -> str:
        fields = ", ".join(f"{n}={getattr(self, n)!r}" for n in self.__slots__)
        return f"{type(self).__name__}({fields})"


class Client(_Obj):
    __slots__ = ("installation_id", "app_title", "app_version_name", "app_version_code",
                 "app_package_name")


class ClientContext(_Obj):
    __slots__ = ("custom", "env", "client")


class CognitoIdentity(_Obj):
    __slots__ = ("cognito_identity_id", "cognito_identity_pool_id")


def _json_header(value: str | None) -> Any:
    """Client context arrives as JSON; accept the base64 form X-Amz-Client-Context uses too."""
    if not value:
        return None
    try:
        return json.loads(value)
    except ValueError:
        pass
    try:
        return json.loads(base64.b64decode(value, validate=True))
    except ValueError:
        return None


class LambdaContext:
    def __init__(self, request_id: str, deadline_ms: int, invoked_function_arn: str | None,
                 client_context: Any, cognito_identity: Any) -> None:
        env = os.environ
        self.aws_request_id = request_id
        self.log_group_name = env.get("AWS_LAMBDA_LOG_GROUP_NAME")
        self.log_stream_name = env.get("AWS_LAMBDA_LOG_STREAM_NAME")
        self.function_name = env.get("AWS_LAMBDA_FUNCTION_NAME")
        # A string, as in AWS's runtime (it comes from the environment).
        self.memory_limit_in_mb = env.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE")
        self.function_version = env.get("AWS_LAMBDA_FUNCTION_VERSION")
        self.invoked_function_arn = invoked_function_arn
        self.client_context: ClientContext | None = None
        if isinstance(client_context, dict):
            self.client_context = ClientContext(**client_context)
            if isinstance(client_context.get("client"), dict):
                self.client_context.client = Client(**client_context["client"])
        self.identity = CognitoIdentity()
        if isinstance(cognito_identity, dict):
            self.identity.cognito_identity_id = cognito_identity.get("cognitoIdentityId")
            self.identity.cognito_identity_pool_id = cognito_identity.get(
                "cognitoIdentityPoolId")
        self._deadline_ms = deadline_ms

    def get_remaining_time_in_millis(self) -> int:
        return max(self._deadline_ms - int(time.time() * 1000), 0)

    def __repr__(self) -> str:
        return (f"LambdaContext([aws_request_id={self.aws_request_id},"
                f"function_name={self.function_name},"
                f"function_version={self.function_version},"
                f"invoked_function_arn={self.invoked_function_arn}])")


# --- the Runtime API client ---------------------------------------------------------------

_RECEIVE = bytearray(256 * 1024)
_RECEIVE_VIEW = memoryview(_RECEIVE)


def _receive(sock: socket.socket) -> bytes:
    """What has arrived, up to 256 KB, read into one buffer kept for the process: recv(256 KB)
    maps, shrinks and unmaps a fresh buffer each time (three system calls per invocation)."""
    n = sock.recv_into(_RECEIVE)
    if not n:
        raise _Closed("Runtime API closed the connection")
    return bytes(_RECEIVE_VIEW[:n])


class Headers(dict):
    """Response headers by lower-case name; `get` takes any case."""

    def get(self, name: str, default: Any = None) -> Any:  # type: ignore[override]
        return dict.get(self, name.lower(), default)


class RuntimeClient:
    """One keep-alive HTTP/1.1 connection to the Runtime API; reconnects once if the server
    closed it between requests. A few lines of socket code instead of http.client, whose
    header parsing (the email package) cost more per invocation than everything else here."""

    def __init__(self, address: str) -> None:
        host, _, port = address.rpartition(":")
        self._host, self._port = (host, int(port)) if host else (address, 80)
        self._sock: socket.socket | None = None
        self._buf = b""
        self._next_sent = False  # a GET next went out with the last POST (pipelined)

    def _connect(self) -> socket.socket:
        sock = socket.create_connection((self._host, self._port))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._buf = b""
        return sock

    def _close(self) -> None:
        self._next_sent = False
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def _head(self, method: str, path: str, body: bytes | None,
              headers: dict[str, str] | None) -> bytes:
        head = f"{method} {API_VERSION}{path} HTTP/1.1\r\nHost: {self._host}:{self._port}\r\n"
        for name, value in (headers or {}).items():
            head += f"{name}: {value}\r\n"
        if body is not None:
            head += f"Content-Length: {len(body)}\r\n"
        return head.encode("latin-1") + b"\r\n" + (body or b"")

    def _request(self, method: str, path: str, body: bytes | None = None,
                 headers: dict[str, str] | None = None,
                 then_next: bool = False) -> tuple[int, Headers, bytes]:
        """One request and its response. `then_next`: the GET of the next invocation goes out
        in the same write (HTTP/1.1 pipelining: one wakeup fewer on each side per invoke; the
        server then sends the 202 with the next invocation, in one write);
        next_invocation() then only reads its answer."""
        data = self._head(method, path, body, headers)
        if then_next:
            data += self._head("GET", NEXT_PATH, None, None)
        for attempt in (1, 2):
            fresh = self._sock is None
            try:
                if self._sock is None:
                    self._sock = self._connect()
                self._sock.sendall(data)
                answer = self._response()
                self._next_sent = then_next and self._sock is not None
                return answer
            except (ConnectionError, _Closed):
                self._close()
                if attempt == 2 or fresh:
                    raise
        raise AssertionError("unreachable")

    def _fill(self) -> None:
        assert self._sock is not None
        self._buf += _receive(self._sock)

    def _response(self) -> tuple[int, Headers, bytes]:
        while (end := self._buf.find(b"\r\n\r\n")) < 0:
            self._fill()
        lines = self._buf[:end].decode("latin-1").split("\r\n")
        self._buf = self._buf[end + 4:]
        status = int(lines[0].split(" ", 2)[1])
        headers = Headers()
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if headers.get("transfer-encoding", "").lower() == "chunked":
            body = self._chunked()
        else:
            length = int(headers.get("content-length") or 0)
            while len(self._buf) < length:
                self._fill()
            body, self._buf = self._buf[:length], self._buf[length:]
        if headers.get("connection", "").lower() == "close":
            self._close()
        return status, headers, body

    def _chunked(self) -> bytes:
        parts = []
        while True:
            while (eol := self._buf.find(b"\r\n")) < 0:
                self._fill()
            size = int(self._buf[:eol].split(b";")[0], 16)
            self._buf = self._buf[eol + 2:]
            while len(self._buf) < size + 2:
                self._fill()
            parts.append(self._buf[:size])
            self._buf = self._buf[size + 2:]
            if size == 0:
                return b"".join(parts)

    def next_invocation(self) -> tuple[Headers, bytes]:
        answer = None
        if self._next_sent:
            self._next_sent = False
            try:
                answer = self._response()
            except (ConnectionError, _Closed):
                self._close()  # asked again below, on a new connection
        status, headers, body = answer or self._request("GET", NEXT_PATH)
        if status != 200:
            raise RuntimeError(f"Runtime API /next answered {status}: {body[:200]!r}")
        return headers, body

    def post_response(self, request_id: str, payload: bytes) -> None:
        self._post(f"/runtime/invocation/{request_id}/response", payload, "application/json",
                   then_next=True)

    def post_error(self, request_id: str, error: dict[str, Any]) -> None:
        self._post(f"/runtime/invocation/{request_id}/error", _dumps(error), "application/json",
                   error["errorType"], then_next=True)

    def post_init_error(self, error: dict[str, Any]) -> None:
        self._post("/runtime/init/error", _dumps(error), "application/json",
                   error["errorType"])

    def _post(self, path: str, body: bytes, content_type: str,
              error_type: str | None = None, then_next: bool = False) -> None:
        # What the function printed goes before its result: the server attributes the output
        # to the invocation it is taking the result of (its 202 may come only with the next).
        sys.stdout.flush()
        sys.stderr.flush()
        headers = {"Content-Type": content_type}
        if error_type:
            # Header values must be latin-1; an exotic exception class name must not crash us.
            headers["Lambda-Runtime-Function-Error-Type"] = error_type.encode(
                "latin-1", "replace").decode("latin-1")
        status, _, answer = self._request("POST", path, body, headers, then_next)
        if status >= 300:
            sys.stderr.write(f"Runtime API {path} answered {status}: {answer[:200]!r}\n")


class FrameClient:
    """The same four calls over the socketpair the server hands its built-in Python runtimes
    (lambdaplane/sandbox/runtime_frames.py has the format): length-prefixed frames, no HTTP.
    The `next` goes out with each result, in one write, as RuntimeClient pipelines it."""

    _FRAME = struct.Struct("!IBH")
    _ANSWER = struct.Struct("!IHH")

    def __init__(self, fd: int) -> None:
        self._sock = socket.socket(fileno=fd)
        self._buf = b""
        self._next_sent = False

    def _frame(self, kind: bytes, head: str, body: bytes) -> bytes:
        raw = head.encode("utf-8", "replace")
        return self._FRAME.pack(3 + len(raw) + len(body), kind[0], len(raw)) + raw + body

    def _fill(self) -> None:
        self._buf += _receive(self._sock)

    def _answer(self) -> tuple[int, Headers, bytes]:
        while len(self._buf) < 8:
            self._fill()
        length, status, head_len = self._ANSWER.unpack_from(self._buf)
        while len(self._buf) < 4 + length:
            self._fill()
        head = self._buf[8:8 + head_len].decode("utf-8", "replace")
        body = self._buf[8 + head_len:4 + length]
        self._buf = self._buf[4 + length:]
        headers = Headers()
        for line in head.split("\r\n"):
            name, _, value = line.partition(":")
            if name:
                headers[name.strip().lower()] = value.strip()
        return status, headers, body

    def next_invocation(self) -> tuple[Headers, bytes]:
        if self._next_sent:
            self._next_sent = False
        else:
            self._sock.sendall(self._frame(b"N", "", b""))
        status, headers, body = self._answer()
        if status != 200:
            raise RuntimeError(f"Runtime API /next answered {status}: {body[:200]!r}")
        return headers, body

    def post_response(self, request_id: str, payload: bytes) -> None:
        self._post(b"R", request_id, payload, f"/runtime/invocation/{request_id}/response",
                   then_next=True)

    def post_error(self, request_id: str, error: dict[str, Any]) -> None:
        self._post(b"E", f"{request_id}\n{error['errorType']}", _dumps(error),
                   f"/runtime/invocation/{request_id}/error", then_next=True)

    def post_init_error(self, error: dict[str, Any]) -> None:
        self._post(b"I", str(error["errorType"]), _dumps(error), "/runtime/init/error")

    def _post(self, kind: bytes, head: str, body: bytes, path: str,
              then_next: bool = False) -> None:
        # What the function printed goes before its result (see RuntimeClient._post).
        sys.stdout.flush()
        sys.stderr.flush()
        data = self._frame(kind, head, body)
        if then_next:
            data += self._frame(b"N", "", b"")
        self._sock.sendall(data)
        self._next_sent = then_next
        status, _, answer = self._answer()
        if status >= 300:
            sys.stderr.write(f"Runtime API {path} answered {status}: {answer[:200]!r}\n")


def _default(value: Any) -> Any:
    cls = type(value)
    if cls.__name__ == "Decimal" and cls.__module__ == "decimal":
        return float(value)
    raise TypeError(f"Object of type {cls.__name__} is not JSON serializable")


def _dumps(value: Any) -> bytes:
    return json.dumps(value, default=_default, ensure_ascii=False).encode()


# --- the loop -----------------------------------------------------------------------------

def _setup_paths_and_streams() -> None:
    task_root = os.environ.get("LAMBDA_TASK_ROOT") or TASK_ROOT
    # AWS's order; /var/runtime holds boto3/botocore (the server's runtime-sdk, if present)
    for path in reversed((task_root, f"/opt/python/lib/python{sys.version_info[0]}."
                          f"{sys.version_info[1]}/site-packages", "/opt/python",
                          "/var/runtime")):
        if path not in sys.path:
            sys.path.insert(0, path)
    os.chdir(task_root)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.reconfigure(line_buffering=True)  # type: ignore[attr-defined]
        except (AttributeError, ValueError):
            pass


class _RequestIdFilter:
    """Adds the current request id to log records (AWS's log line format uses it)."""
    request_id = ""

    def filter(self, record: Any) -> bool:
        record.aws_request_id = self.request_id
        return True


def _utc_now() -> str:
    now = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1000):03d}Z"


# AWS_LAMBDA_LOG_LEVEL (the function's ApplicationLogLevel) as Python logging levels
_APPLICATION_LEVELS = {"TRACE": 5, "DEBUG": 10, "INFO": 20, "WARN": 30, "ERROR": 40,
                       "FATAL": 50}


class _JsonFormatter:
    """LogFormat JSON: each logging record as one JSON object (timestamp, level, message,
    logger, requestId), the shape AWS's Python runtime writes."""

    def format(self, record: Any) -> str:
        out = {"timestamp": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
               + f".{int(record.msecs):03d}Z",
               "level": {"WARNING": "WARN", "CRITICAL": "FATAL"}.get(record.levelname,
                                                                      record.levelname),
               "message": record.getMessage(), "logger": record.name,
               "requestId": getattr(record, "aws_request_id", "")}
        if record.exc_info:
            out["errorType"] = record.exc_info[0].__name__
            out["stackTrace"] = traceback.format_exception(*record.exc_info)
        return json.dumps(out, default=str)


def _setup_logging() -> _RequestIdFilter:
    import logging

    flt = _RequestIdFilter()
    handler = logging.StreamHandler(sys.stdout)
    if os.environ.get("AWS_LAMBDA_LOG_FORMAT") == "JSON":
        handler.setFormatter(_JsonFormatter())  # type: ignore[arg-type]
        handler.addFilter(flt)  # type: ignore[arg-type]
        root = logging.getLogger()
        root.handlers[:] = [handler]
        root.setLevel(_APPLICATION_LEVELS.get(os.environ.get("AWS_LAMBDA_LOG_LEVEL", "INFO"),
                                              logging.INFO))
        return flt
    formatter = logging.Formatter("[%(levelname)s]\t%(asctime)s.%(msecs)03dZ\t"
                                  "%(aws_request_id)s\t%(message)s\n", "%Y-%m-%dT%H:%M:%S")
    formatter.converter = time.gmtime
    handler.setFormatter(formatter)
    handler.addFilter(flt)  # type: ignore[arg-type]
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    return flt


def handle_one(client: RuntimeClient | FrameClient, handler: Callable[[Any, Any], Any],
               log_filter: _RequestIdFilter) -> None:
    headers, body = client.next_invocation()
    request_id = headers.get("Lambda-Runtime-Aws-Request-Id", "")
    log_filter.request_id = request_id
    trace_id = headers.get("Lambda-Runtime-Trace-Id")
    if trace_id:
        os.environ["_X_AMZN_TRACE_ID"] = trace_id
    else:
        os.environ.pop("_X_AMZN_TRACE_ID", None)
    context = LambdaContext(
        request_id, int(headers.get("Lambda-Runtime-Deadline-Ms") or 0),
        headers.get("Lambda-Runtime-Invoked-Function-Arn"),
        _json_header(headers.get("Lambda-Runtime-Client-Context")),
        _json_header(headers.get("Lambda-Runtime-Cognito-Identity")))
    try:
        try:
            event = json.loads(body) if body else None
        except ValueError as e:
            raise Fault(UNMARSHAL_ERROR, f"Unable to unmarshal input: {e}") from None
        result = handler(event, context)
    except Fault as f:
        error = error_payload(f.message, f.error_type, f.trace, request_id)
        log_error(error)
        client.post_error(request_id, error)
    except Exception as e:
        error = fault_from(e, request_id)
        log_error(error)
        client.post_error(request_id, error)
    else:
        try:
            payload = _dumps(result)
        except (TypeError, ValueError, OverflowError) as e:
            error = error_payload(f"Unable to marshal response: {e}", MARSHAL_ERROR, [],
                                  request_id)
            log_error(error)
            client.post_error(request_id, error)
        else:
            client.post_response(request_id, payload)
    finally:
        sys.stdout.flush()
        sys.stderr.flush()


def main(runtime_fd: int | None = None) -> int:
    """runtime_fd: the socketpair the server handed this sandbox (lambdaplane's built-in
    Python runtimes); None: the HTTP Runtime API at AWS_LAMBDA_RUNTIME_API."""
    _setup_paths_and_streams()
    client: RuntimeClient | FrameClient = (
        FrameClient(runtime_fd) if runtime_fd is not None
        else RuntimeClient(os.environ["AWS_LAMBDA_RUNTIME_API"]))
    log_filter = _setup_logging()
    try:
        handler = load_handler(os.environ.get("_HANDLER", ""))
    except Fault as f:
        error = error_payload(f.message, f.error_type, f.trace)
        log_error(error)
        client.post_init_error(error)
        return 1
    except Exception as e:  # the module raised while importing: AWS reports the exception
        error = fault_from(e)
        log_error(error)
        client.post_init_error(error)
        return 1
    while True:
        handle_one(client, handler, log_filter)


if __name__ == "__main__":
    sys.exit(main())
