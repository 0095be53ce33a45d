"""AWS error types. Each carries the error code botocore maps to an exception class, the HTTP
status AWS uses, and a message. Services raise these; api/ turns them into wire shapes."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class AwsError(Exception):
    code: str
    message: str
    status: int = 400
    error_kind: str = "User"  # Lambda's body "Type": User or Service
    headers: dict[str, str] = field(default_factory=dict)
    extra: dict[str, str] = field(default_factory=dict)  # extra body fields, e.g. Reason

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


def _lambda_error(code: str, status: int, kind: str = "User") -> Callable[..., AwsError]:
    def make(message: str, **extra: str) -> AwsError:
        return AwsError(code, message, status, kind, extra=dict(extra))
    make.__name__ = code
    return make


ResourceNotFound = _lambda_error("ResourceNotFoundException", 404)
ResourceConflict = _lambda_error("ResourceConflictException", 409)
InvalidParameterValue = _lambda_error("InvalidParameterValueException", 400)
InvalidRequestContent = _lambda_error("InvalidRequestContentException", 400)
RequestTooLarge = _lambda_error("RequestTooLargeException", 413)
UnsupportedMediaType = _lambda_error("UnsupportedMediaTypeException", 415)
ServiceError = _lambda_error("ServiceException", 500, "Service")
ResourceNotReady = _lambda_error("ResourceNotReadyException", 502, "Service")
SubnetIPAddressLimitReached = _lambda_error("SubnetIPAddressLimitReachedException", 502, "Service")
ENILimitReached = _lambda_error("ENILimitReachedException", 502, "Service")
InvalidZipFile = _lambda_error("InvalidZipFileException", 400)
CodeStorageExceeded = _lambda_error("CodeStorageExceededException", 400)
UnrecognizedClient = _lambda_error("UnrecognizedClientException", 403)
InvalidSignature = _lambda_error("InvalidSignatureException", 403)
ValidationError = _lambda_error("ValidationException", 400)


def too_many_requests(message: str, reason: str, retry_after_s: int = 1) -> AwsError:
    return AwsError("TooManyRequestsException", message, 429, "User",
                    headers={"Retry-After": str(retry_after_s)}, extra={"Reason": reason})


def ec2_error(code: str, message: str, status: int = 400) -> AwsError:
    """EC2 Query errors (e.g. InvalidVpcID.NotFound, DependencyViolation)."""
    return AwsError(code, message, status, "Sender")
