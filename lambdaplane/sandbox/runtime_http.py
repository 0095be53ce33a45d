"""The bit of HTTP/1.1 the Runtime API speaks, without sockets or state of the API: parsing a
request head, decoding a chunked request body incrementally, and encoding a JSON response.
sandbox/runtime_api.py's connection protocol uses these on the event loop."""
from __future__ import annotations

from dataclasses import dataclass
from http import HTTPStatus


class ChunkedBody:
    """An incremental decoder of one `Transfer-Encoding: chunked` body (RFC 9112 §7.1):
    consumes from the connection's buffer what it can, keeps at most `limit` decoded bytes
    (beyond that it only counts and discards) and skips chunk extensions and trailers."""

    _MAX_LINE = 4096

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.data = bytearray()
        self.received = 0
        self.too_large = False
        self._state = "size"  # size | data | data_end | trailer
        self._remaining = 0

    def feed(self, buf: bytearray) -> bool:
        """Consume from `buf`; True when the body (with its trailers) is complete.
        ValueError on a malformed body."""
        while True:
            if self._state == "data":
                take = min(self._remaining, len(buf))
                if not take:
                    return False
                self.received += take
                if self.received > self.limit:
                    self.too_large = True
                    self.data.clear()
                else:
                    self.data += buf[:take]
                del buf[:take]
                self._remaining -= take
                if not self._remaining:
                    self._state = "data_end"
                continue
            if self._state == "data_end":
                if len(buf) < 2:
                    return False
                if buf[:2] != b"\r\n":
                    raise ValueError("chunk not followed by CRLF")
                del buf[:2]
                self._state = "size"
                continue
            eol = buf.find(b"\r\n")
            if eol < 0:
                if len(buf) > self._MAX_LINE:
                    raise ValueError("chunk line too long")
                return False
            if eol > self._MAX_LINE:
                raise ValueError("chunk line too long")
            line = bytes(buf[:eol])
            del buf[:eol + 2]
            if self._state == "trailer":
                if not line:
                    return True
                continue
            size_text = line.split(b";", 1)[0].strip()
            if not size_text or len(size_text) > 16 or size_text.strip(_HEX_DIGITS):
                raise ValueError("bad chunk size")
            size = int(size_text, 16)
            if size:
                self._remaining = size
                self._state = "data"
            else:
                self._state = "trailer"


_HEX_DIGITS = b"0123456789abcdefABCDEF"


@dataclass
class ChunkedRequest:
    """A request whose head was read and whose chunked body is still arriving."""
    method: str
    path: str
    headers: dict[str, str]
    keep_alive: bool
    body: ChunkedBody
    answered: bool = False  # refused (413) before the body was complete


REASONS = {200: "OK", 202: "Accepted", 400: "Bad Request", 403: "Forbidden",
            404: "Not Found", 405: "Method Not Allowed", 410: "Gone",
            413: "Request Entity Too Large"}


def parse_head(head: bytes) -> tuple[str, str, dict[str, str], bool]:
    """(method, path without query, lower-cased headers, keep-alive) of one request head."""
    lines = head.decode("utf-8", "replace").split("\r\n")
    method, target, version = lines[0].split(" ")
    if not version.startswith("HTTP/1.") or not method.isalpha():
        raise ValueError(lines[0][:100])
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise ValueError("bad header line")
        headers[name.lower()] = value.strip()
    connection = headers.get("connection", "").lower()
    keep_alive = connection != "close" if version == "HTTP/1.1" else connection == "keep-alive"
    return method, target.partition("?")[0], headers, keep_alive


def encode_response(status: int, body: bytes, extra: str, close: bool) -> bytes:
    """One response: status line, JSON content type, length, `extra` header lines, body."""
    reason = REASONS.get(status) or HTTPStatus(status).phrase
    head = (f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n{extra}"
            f"{'Connection: close' + chr(13) + chr(10) if close else ''}\r\n")
    return head.encode("utf-8", "replace") + body
