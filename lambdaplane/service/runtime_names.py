"""The Lambda runtime identifiers AWS accepts, as AWS's runtime deprecation table lists them:
which ones CreateFunction / UpdateFunctionConfiguration accept today, and which ones they
refuse because their "block function create/update" date has passed (with AWS's own message
and the newer runtime of the same language it recommends). Whether a runtime can *run* on this
host is another question: sandbox/runtimes/registry.py answers it. Pure data, no state.

The table is a snapshot of AWS's "Supported runtimes" and "Deprecated runtimes" tables, taken
from AWS's documentation (late 2025); it is not evaluated against the clock, so that a
template written for AWS today keeps working here later. Runtimes that are deprecated but
whose create/update block date had not passed then (nodejs18.x, python3.9) are accepted, as
AWS accepted them. The newest identifiers of the botocore enum that AWS had not listed yet
(python3.15, nodejs26.x, ruby4.0, java*.al2023) are accepted too: they then fail here only as
"not installed" (State Failed, InvalidRuntime) unless the operator maps them."""
from __future__ import annotations

# Accepted for new functions and updates, newest of each language first.
SUPPORTED: tuple[str, ...] = (
    "nodejs24.x", "nodejs22.x", "nodejs20.x", "nodejs18.x",
    "python3.14", "python3.13", "python3.12", "python3.11", "python3.10", "python3.9",
    "java25", "java21", "java17", "java11", "java8.al2",
    "dotnet10", "dotnet8",
    "ruby3.4", "ruby3.3", "ruby3.2",
    "provided.al2023", "provided.al2",
)
# In the botocore enum, newer than the snapshot above: accepted (see the docstring).
NEWER: tuple[str, ...] = ("nodejs26.x", "python3.15", "ruby4.0", "java8.al2023",
                          "java11.al2023", "java17.al2023")
# Refused at CreateFunction and UpdateFunctionConfiguration (block dates passed).
BLOCKED: tuple[str, ...] = (
    "nodejs", "nodejs4.3", "nodejs4.3-edge", "nodejs6.10", "nodejs8.10", "nodejs10.x",
    "nodejs12.x", "nodejs14.x", "nodejs16.x",
    "python2.7", "python3.6", "python3.7", "python3.8",
    "java8",
    "dotnetcore1.0", "dotnetcore2.0", "dotnetcore2.1", "dotnetcore3.1", "dotnet6", "dotnet7",
    "dotnet5.0",
    "ruby2.5", "ruby2.7",
    "go1.x", "provided",
)
_FAMILY_PREFIXES = ("nodejs", "python", "java", "dotnet", "ruby", "provided", "go")
# What AWS recommends instead of a blocked runtime of a language without a supported one.
_RECOMMENDED_FALLBACK = {"go": "provided.al2023", "dotnet": "dotnet8"}


def family(runtime: str) -> str:
    """nodejs20.x -> nodejs, python3.12 -> python, dotnetcore3.1 -> dotnet, go1.x -> go."""
    for prefix in _FAMILY_PREFIXES:
        if runtime.startswith(prefix):
            return prefix
    return runtime


def accepted(runtime: str) -> bool:
    return runtime in SUPPORTED or runtime in NEWER


def recommended(runtime: str) -> str:
    """The newer runtime AWS's message names for a blocked one: the newest supported of the
    same language (go1.x and provided: provided.al2023)."""
    if runtime in ("go1.x", "provided"):
        return "provided.al2023"
    kind = family(runtime)
    for candidate in SUPPORTED:
        if family(candidate) == kind:
            return candidate
    return _RECOMMENDED_FALLBACK.get(kind, "provided.al2023")


def refusal(runtime: str) -> tuple[str, str] | None:
    """(error code, message) AWS answers for this Runtime value, or None if it is accepted."""
    if accepted(runtime):
        return None
    if runtime in BLOCKED:
        return ("InvalidParameterValueException",
                f"The runtime parameter of {runtime} is no longer supported for creating or "
                f"updating AWS Lambda functions. We recommend you use the new runtime "
                f"({recommended(runtime)}) while creating or updating functions.")
    enum = ", ".join(SUPPORTED + NEWER + BLOCKED)
    return ("ValidationException",
            f"1 validation error detected: Value '{runtime}' at 'runtime' failed to satisfy "
            f"constraint: Member must satisfy enum value set: [{enum}]")
