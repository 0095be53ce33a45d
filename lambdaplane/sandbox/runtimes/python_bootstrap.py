"""The Python runtime inside an execution environment: a Lambda Runtime API client with AWS's
semantics (awslambdaric's behaviour): load `_HANDLER` once, then loop GET next → handler(event,
context) → POST response | error, over one persistent connection.

This module is the loop (main, handle_one); its parts are the modules beside it, one job each
(PARTS): bootstrap_faults (fault types, error payloads, loading the handler), bootstrap_context
(the context object), bootstrap_clients (the Runtime API over HTTP or the server's socketpair),
bootstrap_logs (process set-up, logging, the `[ERROR]` record).

STDLIB ONLY, under the function's own interpreter (python3.9+). The zygote loads the parts and
then this module by path, once, with the file names the sandbox may see (/var/runtime/...:
sandbox/zygote_main.py); each environment calls `main()` after its sandbox is built. It also
runs standalone (`python3 python_bootstrap.py`): the parts are then loaded from beside it (by
sandbox/by_path.py).
Nothing is read from the environment before `main()`."""
from __future__ import annotations

import importlib.util
import json
import os
import sys
from types import ModuleType
from typing import Any, Callable

PARTS = ("bootstrap_faults", "bootstrap_context", "bootstrap_clients", "bootstrap_logs")


def _by_path() -> ModuleType:
    """sandbox/by_path.py: as the zygote loaded it, else (run standalone) loaded now from the
    directory above this one."""
    loader = sys.modules.get("_lambdaplane_by_path")
    if loader is None:
        sandbox = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        spec = importlib.util.spec_from_file_location("_lambdaplane_by_path",
                                                      os.path.join(sandbox, "by_path.py"))
        assert spec is not None and spec.loader is not None
        loader = sys.modules[spec.name] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(loader)
    return loader


# the ones the zygote loaded (as `_lambdaplane_<name>`), else the files beside this one
_faults, _context, _clients, _logs = (_by_path().loaded_or_beside(name, __file__)
                                      for name in PARTS)
# a traceback shown to the function starts after the runtime's own frames: these files' too
_faults.OWN_FILES.update(os.path.abspath(m.__file__) for m in (_context, _clients, _logs))
_faults.OWN_FILES.add(os.path.abspath(__file__))

# What the loop uses, bound here once (the loop runs on every invocation: no lookups through
# the parts there).
Fault = _faults.Fault
error_payload = _faults.error_payload
fault_from = _faults.fault_from
load_handler = _faults.load_handler
MARSHAL_ERROR = _faults.MARSHAL_ERROR
UNMARSHAL_ERROR = _faults.UNMARSHAL_ERROR
LambdaContext = _context.LambdaContext
json_header = _context.json_header
RuntimeClient = _clients.RuntimeClient
FrameClient = _clients.FrameClient
dumps = _clients.dumps
RequestIdFilter = _logs.RequestIdFilter
log_error = _logs.log_error
setup_logging = _logs.setup_logging
setup_paths_and_streams = _logs.setup_paths_and_streams


def handle_one(client: RuntimeClient | FrameClient, handler: Callable[[Any, Any], Any],
               log_filter: RequestIdFilter) -> None:
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
        json_header(headers.get("Lambda-Runtime-Client-Context")),
        json_header(headers.get("Lambda-Runtime-Cognito-Identity")))
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
            payload = dumps(result)
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
    setup_paths_and_streams()
    client: RuntimeClient | FrameClient = (
        FrameClient(runtime_fd) if runtime_fd is not None
        else RuntimeClient(os.environ["AWS_LAMBDA_RUNTIME_API"]))
    log_filter = setup_logging()
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
