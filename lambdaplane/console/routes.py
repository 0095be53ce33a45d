"""The live console: a read-only web page at GET / (for browsers) and its endpoints under
/_lambdaplane/console/ — the page's own files, the third-party libraries `make install`
put in lambdaplane/console/node_modules, a JSON state document and one server-sent-events
stream (the state whenever it changes, and the selected function's new log lines).

Owns: which requests are the console's (`is_console_request`: the one routing decision, so
it can live beside the protocol dispatch), and, in `--auth sigv4` mode, its login — the same
access key id and secret as the credentials file, exchanged for an HttpOnly session cookie —
since a browser cannot sign SigV4. It is installed ahead of the SigV4 check for that reason."""
from __future__ import annotations

import asyncio
import hmac
import json
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from ..errors import AwsError
from ..service.log_tail import FileLogTail, LogTail
from ..service.store_log_tail import StoreLogTail
from .state import EniCounters, console_state

log = logging.getLogger("lambdaplane.console")

PREFIX = "/_lambdaplane/console"
PAGE_DIR = Path(__file__).resolve().parent
VENDOR_FILES = {"cytoscape.min.js": "cytoscape/dist/cytoscape.min.js",
                "layout-base.js": "layout-base/layout-base.js",
                "cose-base.js": "cose-base/cose-base.js",
                "cytoscape-fcose.js": "cytoscape-fcose/cytoscape-fcose.js"}
PAGE_FILES = {"console.js": "application/javascript", "console.css": "text/css"}
COOKIE = "lp_console"
SESSION_S = 12 * 3600
STATE_EVERY_S = 0.5  # how often the stream looks for a change (the state is built once for all)
LOG_EVERY_S = 0.5
HEARTBEAT_S = 15.0
LOG_LINES = 200  # shown when a function is selected


def is_console_request(request: web.Request) -> bool:
    """The console's paths, and GET / from a browser: no signature, no Query `Action`, and
    HTML accepted (the EC2 Query protocol's GET /?Action=… and any signed call go on to
    their APIs)."""
    path = request.path
    if path.startswith(PREFIX + "/"):
        return True
    return (path == "/" and request.method in ("GET", "HEAD")
            and "Authorization" not in request.headers and "Action" not in request.query
            and "text/html" in request.headers.get("Accept", ""))


class Sessions:
    """Console logins (in memory: a restart asks to log in again)."""

    def __init__(self, keys: dict[str, str]) -> None:
        self.keys = keys
        self._expires: dict[str, float] = {}

    def login(self, access_key: str, secret: str) -> str | None:
        expected = self.keys.get(access_key)
        # compared in constant time, and as long for an unknown key as for a known one
        if not hmac.compare_digest((expected or "\0" * 40).encode(), secret.encode()) \
                or expected is None:
            return None
        now = time.time()
        self._expires = {t: e for t, e in self._expires.items() if e > now}
        token = secrets.token_urlsafe(32)
        self._expires[token] = now + SESSION_S
        return token

    def valid(self, token: str | None) -> bool:
        return token is not None and self._expires.get(token, 0.0) > time.time()

    def logout(self, token: str | None) -> None:
        if token is not None:
            self._expires.pop(token, None)


class StateFeed:
    """The state document, built at most once per STATE_EVERY_S however many watch it."""

    def __init__(self, platform: Any, metrics: Any) -> None:
        self.platform = platform
        self.metrics = metrics
        self.counters = EniCounters()
        self._text = ""
        self._built_at = 0.0
        self._lock = asyncio.Lock()

    async def current(self) -> str:
        async with self._lock:
            if time.monotonic() - self._built_at >= STATE_EVERY_S or not self._text:
                self._text = json.dumps(await console_state(self.platform, self.metrics,
                                                            self.counters))
                self._built_at = time.monotonic()
            return self._text


class Console:
    def __init__(self, platform: Any, metrics: Any, sessions: Sessions | None,
                 logs: LogTail) -> None:
        self.platform = platform
        self.feed = StateFeed(platform, metrics)
        self.sessions = sessions
        self.logs = logs
        self.closing = asyncio.Event()

    def _signed_in(self, request: web.Request) -> bool:
        return self.sessions is None or self.sessions.valid(request.cookies.get(COOKIE))

    async def serve(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        if path == "/":
            if self._signed_in(request):
                return web.FileResponse(PAGE_DIR / "index.html", headers=_PAGE_HEADERS)
            text = (PAGE_DIR / "login.html").read_text()
            if request.query.get("failed"):
                text = text.replace("<!--FAILED-->", '<p class="failed">Those keys are not '
                                    'in the credentials file.</p>')
            return web.Response(text=text, content_type="text/html", headers=_PAGE_HEADERS)
        rest = path[len(PREFIX) + 1:]
        if rest.startswith("static/") and rest[7:] in PAGE_FILES:
            return web.FileResponse(PAGE_DIR / rest[7:], headers=_NO_CACHE)
        if rest.startswith("vendor/") and rest[7:] in VENDOR_FILES:
            file = PAGE_DIR / "node_modules" / VENDOR_FILES[rest[7:]]
            if not file.exists():
                return _json({"message": "the console's libraries are not installed: run "
                                         "`make install`"}, 404)
            return web.FileResponse(file)
        if rest == "login" and request.method == "POST":
            return await self._login(request)
        if rest == "logout" and request.method == "POST":
            if self.sessions is not None:
                self.sessions.logout(request.cookies.get(COOKIE))
            response = _redirect("/")
            response.del_cookie(COOKIE, path="/")
            return response
        if not self._signed_in(request):
            return _json({"message": "log in at / first"}, 401)
        if rest == "state" and request.method == "GET":
            return web.Response(text=await self.feed.current(), content_type="application/json",
                                headers=_NO_CACHE)
        if rest == "events" and request.method == "GET":
            return await self._events(request)
        return _json({"message": f"no console resource {path}"}, 404)

    async def _login(self, request: web.Request) -> web.StreamResponse:
        if self.sessions is None:
            return _redirect("/")
        form = await request.post()
        token = self.sessions.login(str(form.get("access_key", "")).strip(),
                                    str(form.get("secret_key", "")).strip())
        if token is None:
            log.warning("console login refused from %s", request.remote)
            return _redirect("/?failed=1")
        response = _redirect("/")
        response.set_cookie(COOKIE, token, max_age=SESSION_S, path="/", httponly=True,
                            samesite="Strict")
        return response

    async def _events(self, request: web.Request) -> web.StreamResponse:
        """Server-sent events: `state` (the whole document, when it changed) and `log`
        (new lines of ?function=REGION/NAME, the last LOG_LINES first)."""
        selected = request.query.get("function", "")
        region, _, name = selected.partition("/")
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                               "Cache-Control": "no-cache",
                                               "X-Accel-Buffering": "no"})
        await response.prepare(request)
        sent_state = ""
        cursor: object | None = None
        last_write = time.monotonic()
        try:
            while not self.closing.is_set():
                text = await self.feed.current()
                if text != sent_state:
                    await response.write(_event("state", text))
                    sent_state, last_write = text, time.monotonic()
                if name:
                    try:
                        lines, cursor = self.logs.follow(region, name, cursor, LOG_LINES)
                    except ValueError:
                        name = ""
                        lines = []
                    if lines:
                        await response.write(_event("log", json.dumps(
                            {"function": selected, "lines": lines})))
                        last_write = time.monotonic()
                if time.monotonic() - last_write >= HEARTBEAT_S:
                    await response.write(b": keep-alive\n\n")
                    last_write = time.monotonic()
                try:
                    await asyncio.wait_for(self.closing.wait(), min(STATE_EVERY_S, LOG_EVERY_S))
                except asyncio.TimeoutError:
                    pass
        except (ConnectionResetError, ConnectionError):
            pass  # the page went away
        return response


_NO_CACHE = {"Cache-Control": "no-store"}
# The page loads only its own files and runs no inline script; inline styles are allowed
# because cytoscape styles the elements it creates for the map that way.
_PAGE_HEADERS = {**_NO_CACHE, "Content-Security-Policy":
                 "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
                 "frame-ancestors 'none'", "X-Content-Type-Options": "nosniff"}


def _redirect(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location, **_NO_CACHE})


def _event(kind: str, data: str) -> bytes:
    return f"event: {kind}\ndata: {data}\n\n".encode()


def _json(body: dict[str, Any], status: int) -> web.Response:
    return web.json_response(body, status=status)


def _log_tail(platform: Any) -> LogTail:
    """The function's log group in the Logs store; the per-function file only for a
    platform without one."""
    logs = getattr(platform, "logs", None)
    if logs is None:
        return FileLogTail(platform.settings.data_dir)

    def group_of(region: str, name: str) -> str:
        default = f"/aws/lambda/{name}"
        try:
            return platform.functions.get(region, name).logging_config.get("LogGroup") \
                or default
        except AwsError:  # deleted (or not made yet): its default group
            return default
    return StoreLogTail(logs, group_of)


def install(app: web.Application, platform: Any) -> Console:
    """Answer the console's requests ahead of the other middlewares (SigV4 included)."""
    sessions = None
    if platform.settings.auth == "sigv4":
        from ..api.auth import load_credentials
        sessions = Sessions(load_credentials(platform.settings.credentials_file))
    console = Console(platform, app.get("metrics"), sessions, _log_tail(platform))

    @web.middleware
    async def console_middleware(request: web.Request,
                                 handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                                 ) -> web.StreamResponse:
        if not is_console_request(request):
            return await handler(request)
        return await console.serve(request)

    async def closing(_app: web.Application) -> None:
        console.closing.set()  # open event streams end, so the server stops at once

    app.on_shutdown.append(closing)
    app.middlewares.insert(0, console_middleware)
    app["console"] = console
    return console
