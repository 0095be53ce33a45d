"""The Invoke front's request reader and answer writer (api/invoke_front.py): a plain Invoke is
read with its path, query (first value of each name, percent-decoded), headers and body length;
everything else is left to aiohttp (None), whose behaviour for it stays what it was; another
operation's request is delimited by its Content-Length (aiohttp is fed it whole), or not at all."""
from __future__ import annotations

import pytest

from lambdaplane.api.invoke_front import _body_length, _parse_head, _response
from lambdaplane.api.wire import WireResponse

PATH = b"/2015-03-31/functions/my-fn/invocations"


def _head(*lines: bytes, request_line: bytes = b"POST " + PATH + b" HTTP/1.1") -> bytes:
    return b"\r\n".join((request_line, b"Host: 127.0.0.1:4747", *lines))


def test_a_plain_invoke_is_read() -> None:
    found = _parse_head(_head(b"Content-Length: 7", b"X-Amz-Log-Type: Tail",
                              request_line=b"POST " + PATH + b"?Qualifier=%24LATEST&Qualifier=2"
                              b"&x= HTTP/1.1"))
    assert found is not None
    assert found.path == PATH.decode() and found.length == 7 and not found.close
    assert found.query == {"Qualifier": "$LATEST", "x": ""}
    assert found.headers["x-amz-log-type"] == "Tail" and found.headers["Host"] == "127.0.0.1:4747"
    closing = _parse_head(_head(b"Content-Length: 0", b"Connection: close"))
    assert closing is not None and closing.close


@pytest.mark.parametrize("head", [
    _head(b"Content-Length: 2", request_line=b"GET " + PATH + b" HTTP/1.1"),
    _head(b"Content-Length: 2", request_line=b"POST " + PATH + b" HTTP/1.0"),
    _head(b"Content-Length: 2", request_line=b"POST /2015-03-31/functions/f HTTP/1.1"),
    _head(b"Content-Length: 2", request_line=b"POST /2015-03-31/functions/../f/invocations "
                                             b"HTTP/1.1"),
    _head(b"Content-Length: 2", request_line=b"POST http://h" + PATH + b" HTTP/1.1"),
    _head(),  # no Content-Length
    _head(b"Content-Length: 2", b"Content-Length: 2"),
    _head(b"Content-Length: -1"),
    _head(b"Content-Length: 6291457"),  # over 6 MB: aiohttp drains it and AWS's 413 is sent
    _head(b"Transfer-Encoding: chunked"),
    _head(b"Content-Length: 2", b"Expect: 100-continue"),
    _head(b"Content-Length: 2", b"X-Folded: a", b" b"),
    _head(b"Content-Length: 2", b"Bad Name: x"),
    _head(b"Content-Length: 2", b"X-Ctl: a\x01b"),
    _head(b"Content-Length: 2", b"X-Utf8: \xc3\xa9"),
    _head(b"Content-Length: 2", b"Host: twice"),
    b"POST " + PATH + b" HTTP/1.1\r\nHost: 0123456789abcdef0123456789abcdef.lambda-url."
    b"us-east-1.localhost:4747\r\nContent-Length: 2",  # a function URL
])
def test_anything_else_is_left_to_aiohttp(head: bytes) -> None:
    assert _parse_head(head) is None


def test_the_answer_has_aiohttps_shape() -> None:
    wire = WireResponse(200, {"X-Amz-Executed-Version": "$LATEST"}, b'{"a":1}')
    out = _response(wire, "rid-1", b"Mon, 07 Dec 2026 18:00:00 GMT", close=False)
    assert out == (b"HTTP/1.1 200 OK\r\nx-amzn-RequestId: rid-1\r\nX-Amz-Executed-Version: "
                   b"$LATEST\r\nContent-Type: application/json\r\nContent-Length: 7\r\nDate: "
                   b"Mon, 07 Dec 2026 18:00:00 GMT\r\n\r\n{\"a\":1}")
    empty = _response(WireResponse(204, {}, b""), "r", b"d", close=True)
    assert empty == (b"HTTP/1.1 204 No Content\r\nx-amzn-RequestId: r\r\nDate: d\r\n"
                     b"Connection: close\r\n\r\n")
    error = _response(WireResponse(404, {"x-amzn-ErrorType": "X"}, b""), "r", b"d", close=False)
    assert error.startswith(b"HTTP/1.1 404 Not Found")
    assert b"Content-Type: application/json" in error


def _other(*lines: bytes, request_line: bytes = b"GET /2015-03-31/functions/f HTTP/1.1") -> bytes:
    return b"\r\n".join((request_line, b"Host: 127.0.0.1:4747", *lines))


def test_another_operations_request_is_delimited_for_aiohttp() -> None:
    assert _body_length(_other()) == 0
    assert _body_length(_other(b"content-length:  12 ", request_line=b"PUT /x HTTP/1.1")) == 12
    assert _body_length(_other(b"Content-Length: 6291456")) == 6291456


@pytest.mark.parametrize("head", [
    _other(request_line=b"GET /x HTTP/1.0"),
    _other(b"Transfer-Encoding: chunked"),
    _other(b"Content-Length: 2", b"Expect: 100-continue"),
    _other(b"Upgrade: websocket", b"Connection: Upgrade"),
    _other(b"Content-Length: 2", b"Content-Length: 2"),
    _other(b"Content-Length: x"),
    _other(b"Content-Length: 6291457"),
    _other(b"X-Folded: a", b" b"),
    _other(b"Content-Length : 2"),
    _other(b"no colon"),
])
def test_what_the_front_cannot_delimit_is_aiohttps_for_good(head: bytes) -> None:
    assert _body_length(head) is None
