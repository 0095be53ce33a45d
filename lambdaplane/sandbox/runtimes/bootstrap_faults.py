"""What goes wrong in the Python runtime, as AWS names and reports it: the init/invoke fault
types (Runtime.ImportModuleError...), the error payload posted to the Runtime API, the traceback
shown from the function's own first frame on, and loading `_HANDLER` (whose failures are the
init faults). Part of the Python runtime (python_bootstrap.py loads it).

STDLIB ONLY, run under the function's interpreter (python3.9+)."""
from __future__ import annotations

import importlib
import os
import sys
import traceback
from typing import Any, Callable

# The runtime's own source files (as its frames name them): a traceback shown to the function
# starts at its first frame that is not one of these (python_bootstrap.py adds every part).
OWN_FILES = {os.path.abspath(__file__)}

# Init/invoke faults as AWS names them.
MALFORMED_HANDLER_NAME = "Runtime.MalformedHandlerName"
IMPORT_MODULE_ERROR = "Runtime.ImportModuleError"
HANDLER_NOT_FOUND = "Runtime.HandlerNotFound"
USER_CODE_SYNTAX_ERROR = "Runtime.UserCodeSyntaxError"
BUILT_IN_MODULE_CONFLICT = "Runtime.BuiltInModuleConflict"
MARSHAL_ERROR = "Runtime.MarshalError"
UNMARSHAL_ERROR = "Runtime.UnmarshalError"


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


def user_trace(tb: Any) -> list[str]:
    """The traceback from the first frame that is not this runtime's own."""
    frames = traceback.extract_tb(tb)
    for i, frame in enumerate(frames):
        if os.path.abspath(frame.filename) not in OWN_FILES:
            frames = frames[i:]
            break
    else:
        frames = traceback.StackSummary.from_list([])
    return traceback.format_list(frames)


def fault_from(exc: BaseException, request_id: str = "") -> dict[str, Any]:
    return error_payload(str(exc), type(exc).__name__, user_trace(exc.__traceback__),
                         request_id)


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
