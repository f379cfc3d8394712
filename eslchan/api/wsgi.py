"""The HTTP server under the API: gevent's WSGI server, hardened for hostile clients.

- Request headers are bounded (line length, count, total size, and the time to send them:
  an idle keep-alive connection or a client trickling its headers is closed); beyond them the
  answer is 431 in the API's envelope, an oversized request line 414 likewise, any other
  malformed request 400 — each logged as one line, never a traceback.
- A client that resets or stalls a connection mid-answer is dropped quietly (a write that
  times out is the event stream's slow-client cut-off, not a server error).
- The client's socket goes into the WSGI environ (``eslchan.socket``), so the event stream
  can watch it for the client going away and bound its writes.
"""

from __future__ import annotations

import errno
import logging
import socket
import time
from io import BytesIO
from typing import Any

from gevent.pywsgi import MAX_REQUEST_LINE, WSGIHandler, WSGIServer, headers_factory

from eslchan.api.envelope import bare_error
from eslchan.api.events import SOCKET_KEY

log = logging.getLogger("eslchan.http")

MAX_HEADER_LINE = 8192
MAX_HEADERS = 100
MAX_HEADER_BYTES = 64 * 1024
#: after a refusal, what of the client's request is read and dropped before closing
_LINGER_SECONDS = 1.0
_LINGER_BYTES = 1 << 20
#: errors of a client that went away or stopped reading; nothing for the server to report
_CLIENT_GONE = (TimeoutError, BrokenPipeError, ConnectionResetError, ConnectionAbortedError)
_REASONS = {400: "Bad Request", 414: "URI Too Long", 431: "Request Header Fields Too Large"}


class HeadersTooLarge(ValueError):
    """The request's header fields exceed the server's bounds (HTTP 431)."""


def _raw_response(status: int, message: str, data: Any) -> bytes:
    body = bare_error(status, message, data)
    head = (f"HTTP/1.1 {status} {_REASONS[status]}\r\nConnection: close\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n")
    return head.encode("latin-1") + body


class ApiHandler(WSGIHandler):
    """pywsgi's handler with bounded headers, envelope errors and quiet client failures."""

    #: seconds a connection may take to send a request line and its headers (idle included)
    header_timeout = 60.0

    def read_requestline(self) -> str:
        self.socket.settimeout(self.header_timeout)  # until the headers are read (get_environ)
        return super().read_requestline()

    def MessageClass(self, fp: Any, *args: Any) -> Any:  # noqa: N802 (pywsgi's name)
        lines: list[bytes] = []
        total = 0
        while True:
            line = fp.readline(MAX_HEADER_LINE + 1)
            if len(line) > MAX_HEADER_LINE:
                raise HeadersTooLarge(f"a header line is longer than {MAX_HEADER_LINE} bytes")
            total += len(line)
            if total > MAX_HEADER_BYTES:
                raise HeadersTooLarge(f"the header fields are larger than {MAX_HEADER_BYTES} bytes")
            if line in (b"\r\n", b"\n", b""):
                break
            lines.append(line)
            if len(lines) > MAX_HEADERS:
                raise HeadersTooLarge(f"more than {MAX_HEADERS} header fields")
        return headers_factory(BytesIO(b"".join(lines) + b"\r\n"))

    def handle_one_request(self) -> Any:
        result = super().handle_one_request()
        if not isinstance(result, tuple):
            return result
        if result[0] == "414":
            self._refused(414, f"request line longer than {MAX_REQUEST_LINE} bytes")
            data = {"max_request_line": MAX_REQUEST_LINE}
            result = ("414", _raw_response(414, "request line too long", data))
        self._answer_and_linger(result[1])
        return None  # the connection ends here

    def _answer_and_linger(self, response: bytes) -> None:
        """Send a refusal, then read (and drop) what the client is still sending for a bounded
        while before closing: closed with unread data, the socket would reset the connection
        and the client would lose the answer."""
        sock = self.socket
        try:
            sock.sendall(response)
            sock.shutdown(socket.SHUT_WR)
            deadline = time.monotonic() + _LINGER_SECONDS
            drained = 0
            while drained < _LINGER_BYTES:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                sock.settimeout(left)
                data = sock.recv(65536)
                if not data:
                    break
                drained += len(data)
        except OSError:
            pass

    def _handle_client_error(self, ex: BaseException) -> Any:
        if isinstance(ex, HeadersTooLarge):
            self._refused(431, str(ex))
            return ("431", _raw_response(431, "request header fields too large", {
                "max_header_line": MAX_HEADER_LINE, "max_headers": MAX_HEADERS,
                "max_header_bytes": MAX_HEADER_BYTES, "reason": str(ex)}))
        self._refused(400, str(ex) or type(ex).__name__)
        return ("400", _raw_response(400, "invalid request", {"reason": "malformed HTTP request"}))

    def _refused(self, status: int, reason: str) -> None:
        log.info("refused a request from %s with %d: %s", _client(self.client_address), status, reason[:200])

    def handle_error(self, t: type[BaseException], v: BaseException, tb: Any) -> None:
        gone = isinstance(v, OSError) and v.errno in (errno.EPIPE, errno.ECONNRESET)
        if gone or isinstance(v, _CLIENT_GONE):
            log.info("dropped the connection of %s: %s", _client(self.client_address), v or t.__name__)
            self.close_connection = True
            return
        super().handle_error(t, v, tb)

    def get_environ(self) -> dict[str, Any]:
        self.socket.settimeout(None)  # the request is in: the app bounds its own waits
        environ = super().get_environ()
        environ[SOCKET_KEY] = self.socket
        return environ


def _client(address: Any) -> str:
    return address[0] if isinstance(address, tuple) and address else str(address)


class HttpServer(WSGIServer):
    """gevent's WSGI server with :class:`ApiHandler` and Nagle off: it writes headers and body
    in two sends, and with Nagle the body waits for the client's delayed ACK (~40 ms per
    response)."""

    handler_class = ApiHandler

    def handle(self, sock, address):  # type: ignore[no-untyped-def]
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:  # not TCP (e.g. a unix socket): nothing to tune
            pass
        return super().handle(sock, address)
