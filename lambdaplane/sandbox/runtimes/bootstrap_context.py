"""The context object a Python handler receives (AWS's LambdaContext, with its ClientContext,
Client and CognitoIdentity), built from the `next` answer's headers and the environment. Part
of the Python runtime (python_bootstrap.py loads it).

STDLIB ONLY, run under the function's interpreter (python3.9+)."""
from __future__ import annotations

import base64
import json
import os
import time
from typing import Any


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


def json_header(value: str | None) -> Any:
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
