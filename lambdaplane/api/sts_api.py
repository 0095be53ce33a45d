"""STS's Query API (`POST /`, `Version=2011-06-15`): GetCallerIdentity and AssumeRole.

Who the caller is: with `--auth sigv4` the profile of the credentials file the request's access
key belongs to (`default` is the account's root, any other profile an IAM user of that name);
without authentication, the account's root. Keys AssumeRole handed out identify their assumed
role until they expire or the server stops (they are kept in memory only); under
`--auth sigv4` they sign requests like the credentials file's keys, until they expire."""
from __future__ import annotations

import datetime as dt
import hashlib
import re
import secrets
import string
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from ..errors import AwsError
from . import query_protocol
from .auth import SESSIONS, access_key_of, profiles_of

API_VERSION = "2011-06-15"
SESSION_NAME = re.compile(r"[\w+=,.@-]{2,64}")
ROLE_ARN = re.compile(r"arn:aws[a-zA-Z-]*:iam::(\d{12}):role/(?:[^/]+/)*([\w+=,.@-]+)")
KEY_CHARS = string.ascii_uppercase + string.digits


@dataclass(frozen=True)
class Caller:
    user_id: str
    account: str
    arn: str


def _id(prefix: str, seed: str) -> str:
    return prefix + hashlib.sha256(seed.encode()).hexdigest().upper()[:17]


class Sts:
    def __init__(self, platform: Any) -> None:
        self.platform = platform
        self.account: str = platform.settings.account_id
        self.sessions: dict[str, Caller] = {}  # access key AssumeRole issued → its identity

    def caller(self, request: web.Request) -> Caller:
        key = access_key_of(request)
        if key in self.sessions:
            return self.sessions[key]
        settings = self.platform.settings
        profile = profiles_of(settings.credentials_file).get(key) \
            if settings.auth == "sigv4" and settings.credentials_file else None
        if profile and profile != "default":
            return Caller(_id("AIDA", f"{self.account}/{profile}"), self.account,
                          f"arn:aws:iam::{self.account}:user/{profile}")
        return Caller(self.account, self.account, f"arn:aws:iam::{self.account}:root")

    async def get_caller_identity(self, request: web.Request,
                                  _p: dict[str, Any]) -> dict[str, Any]:
        caller = self.caller(request)
        return {"UserId": caller.user_id, "Account": caller.account, "Arn": caller.arn}

    async def assume_role(self, request: web.Request, p: dict[str, Any]) -> dict[str, Any]:
        arn, session = p.get("RoleArn") or "", p.get("RoleSessionName") or ""
        if not SESSION_NAME.fullmatch(session):
            raise query_protocol.query_error(
                "ValidationError", f"1 validation error detected: Value '{session}' at "
                f"'roleSessionName' failed to satisfy constraint: Member must satisfy regular "
                f"expression pattern: [\\w+=,.@-]*")
        found = ROLE_ARN.fullmatch(arn)
        role = self.platform.iam.store.role(found.group(2)) if found else None
        if role is None or role.arn != arn:
            raise AwsError("AccessDenied", f"User: {self.caller(request).arn} is not "
                           f"authorized to perform: sts:AssumeRole on resource: {arn}", 403,
                           "Sender")
        duration = p.get("DurationSeconds") or 3600
        if not 900 <= duration <= role.max_session_duration:
            raise query_protocol.query_error(
                "ValidationError", f"The requested DurationSeconds exceeds the "
                f"MaxSessionDuration set for this role." if duration > 900 else
                f"1 validation error detected: Value '{duration}' at 'durationSeconds' failed "
                f"to satisfy constraint: Member must have value greater than or equal to 900")
        key = "ASIA" + "".join(secrets.choice(KEY_CHARS) for _ in range(16))
        secret = secrets.token_urlsafe(30)
        expires = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=duration)
        assumed = Caller(f"{role.role_id}:{session}", self.account,
                         f"arn:aws:sts::{self.account}:assumed-role/{role.name}/{session}")
        self.sessions[key] = assumed
        verified = request.app.get(SESSIONS)  # --auth sigv4: the key signs until it expires
        if verified is not None:
            verified[key] = (secret, expires)
        return {"Credentials": {"AccessKeyId": key, "SecretAccessKey": secret,
                                "SessionToken": secrets.token_urlsafe(96), "Expiration": expires},
                "AssumedRoleUser": {"AssumedRoleId": assumed.user_id, "Arn": assumed.arn},
                "PackedPolicySize": 0}


ACTIONS = {"GetCallerIdentity": Sts.get_caller_identity, "AssumeRole": Sts.assume_role}


def add_routes(app: web.Application, platform: Any) -> None:
    from .dispatch import serve_query

    sts = Sts(platform)

    async def handle(request: web.Request) -> web.Response:
        bound = {name: (lambda p, m=method: m(sts, request, p)) for name, method in ACTIONS.items()}
        return await query_protocol.handle("sts", bound, request)

    serve_query(app, "sts", API_VERSION, handle)
