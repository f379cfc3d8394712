"""The Kazoo envelope around every answer, and the error shapes of SPEC §5.

Success: ``{auth_token, data, request_id, revision, status: "success", timestamp, node, version}``.
Errors add ``status: "error"``, ``error`` (the HTTP code as a string) and ``message``; ``data``
carries the details. ``revision`` is an ETag of ``data``, so a caller holding it gets 304.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import socket
import uuid as _uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import gevent
from flask import Flask, Response, current_app, g, request
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from eslchan import __version__, jsoncodec

#: Kazoo's error messages, by HTTP status, for errors raised without a more precise one.
MESSAGES = {
    400: "invalid request",
    401: "invalid_credentials",
    403: "forbidden",
    404: "faulty request",
    405: "method not allowed",
    406: "not acceptable",
    413: "payload too large",
    414: "request line too long",
    415: "unsupported media type",
    429: "too many requests",
    431: "request header fields too large",
    500: "internal server error",
    502: "freeswitch error",
    503: "node unavailable",
    504: "freeswitch timeout",
}

#: A caller's request id is echoed only if it is a harmless token; anything else gets a fresh one.
REQUEST_ID = re.compile(r"^[A-Za-z0-9._:@/+=-]{1,128}$")
_NODE = socket.gethostname()


class ApiError(Exception):
    """An answer other than success; rendered in the error envelope by the app's handler."""

    def __init__(
        self,
        status: int,
        message: str | None = None,
        data: Any = None,
        headers: Mapping[str, str] | None = None,
    ):
        self.status = status
        self.message = message or MESSAGES.get(status, "error")
        self.data = {} if data is None else data
        self.headers = dict(headers or {})
        super().__init__(f"{status} {self.message}")


def validation_error(errors: Mapping[str, Any], message: str = "validation error") -> ApiError:
    """400 with ``data`` keyed by dotted path, then by JSON-Schema keyword (Kazoo's shape)."""
    return ApiError(400, message, dict(errors))


def field_error(path: str, keyword: str, message: str, **details: Any) -> ApiError:
    return validation_error({path: {keyword: {"message": message, **details}}})


def _canonical(data: Any) -> str:
    return jsoncodec.dumps_canonical(data)


def _digest(canonical: str) -> str:
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:32]


def revision_of(data: Any) -> str:
    """A stable digest of ``data``: equal data, equal revision, whatever the key order."""
    return _digest(_canonical(data))


def _timestamp() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def request_id() -> str:
    rid = g.get("request_id")
    if rid is None:
        given = request.headers.get("X-Request-ID", "")
        rid = given if REQUEST_ID.fullmatch(given) else _uuid.uuid4().hex
        g.request_id = rid
    return rid


def not_modified(revision: str) -> bool:
    header = request.headers.get("If-None-Match")
    if not header:
        return False
    wanted = {tag.strip().removeprefix("W/").strip('"') for tag in header.split(",")}
    return "*" in wanted or revision in wanted


def _body(data_json: str, status: int, revision: str, **extra: str) -> str:
    """The envelope as JSON text around already-serialised ``data`` (a listing is dumped once)."""
    rest = {
        "auth_token": g.get("auth_token") or "",
        "request_id": request_id(),
        "revision": revision,
        "status": "success" if status < 400 else "error",
        "timestamp": _timestamp(),
        "node": _NODE,
        "version": __version__,
        **extra,
    }
    return '{"data":' + data_json + "," + json.dumps(rest, separators=(",", ":"))[1:]


def respond(
    data: Any,
    status: int = 200,
    headers: Mapping[str, str] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Response:
    """A success envelope; 304 (no body) when the caller already holds this revision.
    ``extra`` adds top-level envelope keys (a page's ``next_start_key``, as Kazoo does)."""
    data_json = _canonical(data)
    revision = _digest(data_json)
    if status == 200 and request.method in ("GET", "HEAD") and not_modified(revision):
        resp = Response(status=304)
    else:
        body = _body(data_json, status, revision, **(extra or {}))
        resp = Response(body, status=status, mimetype="application/json")
    resp.headers["ETag"] = f'"{revision}"'
    for name, value in (headers or {}).items():
        resp.headers[name] = value
    return resp


def bare_error(status: int, message: str, data: Any) -> bytes:
    """An error envelope outside any request (the HTTP server refusing a malformed request
    before the app sees it): a fresh request id, no token."""
    data_json = _canonical(data)
    rest = {
        "auth_token": "",
        "request_id": _uuid.uuid4().hex,
        "revision": _digest(data_json),
        "status": "error",
        "timestamp": _timestamp(),
        "node": _NODE,
        "version": __version__,
        "error": str(status),
        "message": message,
    }
    return ('{"data":' + data_json + "," + json.dumps(rest, separators=(",", ":"))[1:]).encode("utf-8")


def error_response(err: ApiError) -> Response:
    data_json = _canonical(err.data)
    body = _body(data_json, err.status, _digest(data_json), error=str(err.status), message=err.message)
    resp = Response(body, status=err.status, mimetype="application/json")
    for name, value in err.headers.items():
        resp.headers[name] = value
    return resp


# --- CSV listings (Kazoo answers listings as CSV for Accept: text/csv) -----------------------

#: Column order of a channel listing; fields a listing adds beyond these follow, sorted.
CSV_COLUMNS = (
    "uuid",
    "answered",
    "direction",
    "destination",
    "username",
    "presence_id",
    "other_leg",
    "owner_id",
    "authorizing_id",
    "authorizing_type",
    "timestamp",
    "caller_id_name",
    "caller_id_number",
    "callee_id_name",
    "callee_id_number",
    "is_onhold",
    "node",
    "elapsed_s",
)
_PLAIN_NUMBER = re.compile(r"^[+-]?[0-9][0-9 ().-]*$")


def _csv_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        value = json.dumps(value, sort_keys=True)
    text = str(value)
    # caller ids come from the far end: keep a spreadsheet from reading them as formulas
    if text[:1] in ("=", "@", "\t", "\r") or (text[:1] in ("+", "-") and not _PLAIN_NUMBER.fullmatch(text)):
        text = "'" + text
    return text


def wants_csv() -> bool:
    # ?accept=csv as in Kazoo, for a browser link that cannot set headers
    if request.args.get("accept", "").lower() in ("csv", "text/csv"):
        return True
    best = request.accept_mimetypes.best_match(["application/json", "text/csv"], default="application/json")
    return (
        best == "text/csv"
        and request.accept_mimetypes["text/csv"] > request.accept_mimetypes["application/json"]
    )


def next_page_headers(page: Mapping[str, Any] | None) -> dict[str, str]:
    """``X-Next-Start-Key`` and a ``Link: <…>; rel="next"`` to the next page, when there is one:
    a CSV listing has no envelope to carry ``next_start_key``."""
    key = (page or {}).get("next_start_key")
    if key is None:
        return {}
    query = [(name, value) for name, value in request.args.items(multi=True) if name != "start_key"]
    query.append(("start_key", key))
    return {"X-Next-Start-Key": key, "Link": f'<{request.path}?{urlencode(query)}>; rel="next"'}


def respond_listing(
    rows: list[dict[str, Any]], filename: str, page: Mapping[str, Any] | None = None
) -> Response:
    """A listing as the envelope, or as CSV when the caller asks for text/csv; a page of either
    names the next one in its headers."""
    paging = next_page_headers(page)
    if not wants_csv():
        return respond(rows, headers=paging, extra=page)
    revision = revision_of(rows)
    headers = {
        "ETag": f'"{revision}"',
        "Content-Disposition": f'attachment; filename="{filename}.csv"',
        **paging,
    }
    if not_modified(revision):
        return Response(status=304, headers=headers)
    columns = list(CSV_COLUMNS)
    extra = sorted({key for row in rows for key in row} - set(columns))
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(columns + extra)
    for row in rows:
        writer.writerow([_csv_cell(row.get(col)) for col in columns + extra])
    return Response(out.getvalue(), status=200, mimetype="text/csv", headers=headers)


# --- request bodies ------------------------------------------------------------------------


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _read_body() -> bytes:
    """The body, refusing more than the configured maximum however it is sent."""
    limit = current_app.config.get("MAX_CONTENT_LENGTH")
    streamed = request.content_length is None and request.environ.get("wsgi.input_terminated")
    if limit is None or not streamed:
        return request.get_data(cache=True)  # a Content-Length over the limit was refused before
    # chunked: werkzeug would silently cut the body at the limit, so count it here
    stream = request.environ["wsgi.input"]
    body = bytearray()
    while True:
        chunk = stream.read(min(65536, limit + 1 - len(body)))
        if not chunk:
            return bytes(body)
        body += chunk
        if len(body) > limit:
            raise ApiError(413, data={"max_body_bytes": limit})


def json_body() -> dict[str, Any]:
    """The request body as a JSON object, or the 400 of SPEC §5 saying precisely what is wrong."""
    raw = _read_body()
    if not raw.strip():
        raise ApiError(400, "invalid json", {"json": {"invalid": {"message": "the request body is empty"}}})
    try:
        text = raw.decode("utf-8")
        body = json.loads(text, parse_constant=_reject_constant)
    except UnicodeDecodeError as exc:
        detail = {"message": f"the body is not UTF-8: {exc.reason} at byte {exc.start}"}
        raise ApiError(400, "invalid json", {"json": {"invalid": detail}}) from None
    except json.JSONDecodeError as exc:
        detail = {"message": exc.msg, "line": exc.lineno, "column": exc.colno}
        raise ApiError(400, "invalid json", {"json": {"invalid": detail}}) from None
    except (ValueError, RecursionError) as exc:
        msg = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
        raise ApiError(400, "invalid json", {"json": {"invalid": {"message": msg}}}) from None
    if not isinstance(body, dict):
        raise field_error(
            "json", "type", f"the request body must be a JSON object, not {json_type(body)}", target="object"
        )
    problem = _unusable(body)
    if problem is not None:
        raise ApiError(400, "invalid json", {"json": {"invalid": {"message": problem}}})
    return body


#: Deepest JSON nesting a body may have. A metaflow tree of the deepest allowed kind takes about
#: two levels per node; far deeper bodies would only exhaust the stack of whatever walks them.
MAX_JSON_DEPTH = 200


def _unusable(body: dict[str, Any]) -> str | None:
    """Why a parsed body cannot be used, or None. ``json.loads`` accepts two things no handler
    can: an escaped lone surrogate (``"\\ud800"``), which is no Unicode text and fails when encoded
    for FreeSWITCH or for the answer, and nesting deep enough to exhaust the stack later."""
    pending: list[tuple[Any, int]] = [(body, 1)]
    while pending:
        value, depth = pending.pop()
        if depth > MAX_JSON_DEPTH and isinstance(value, dict | list):
            return f"nested deeper than {MAX_JSON_DEPTH} levels"
        if isinstance(value, dict):
            for key, item in value.items():
                if not key.isascii() and _has_surrogate(key):
                    return "a key holds a lone UTF-16 surrogate, which is not Unicode text"
                pending.append((item, depth + 1))
        elif isinstance(value, list):
            pending.extend((item, depth + 1) for item in value)
        elif isinstance(value, str) and not value.isascii() and _has_surrogate(value):
            return "a string holds a lone UTF-16 surrogate, which is not Unicode text"
    return None


def _has_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


MISSING = "Field is required but missing"


def typed_field(value: Any, path: str, expected: str) -> Any:
    """``value`` when present and of JSON type ``expected`` ("object", "string"…); else Kazoo's 400."""
    if value is None:
        raise field_error(path, "required", MISSING)
    if json_type(value) != expected:
        raise field_error(path, "type", f"Value is not of type '{expected}' but {json_type(value)}")
    return value


def json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


# --- wiring --------------------------------------------------------------------------------


def _http_error(exc: HTTPException) -> Response:
    status = exc.code or 500
    headers: dict[str, str] = {}
    data: Any = {}
    if isinstance(exc, MethodNotAllowed):
        allowed = sorted(set(exc.valid_methods or ()))
        headers["Allow"] = ", ".join(allowed)
        data = {"allowed_methods": allowed}
    elif status == 404:
        data = {"path": request.path}
    elif status == 413:
        data = {"max_body_bytes": current_app.config.get("MAX_CONTENT_LENGTH")}
    message = MESSAGES.get(status) or (exc.name or "error").lower()
    return error_response(ApiError(status, message, data, headers))


def _unexpected(exc: Exception) -> Response:
    if isinstance(exc, HTTPException):
        return _http_error(exc)
    current_app.logger.exception("unhandled error on %s %s", request.method, request.path)
    return error_response(ApiError(500, data={"request_id": request_id()}))


def _before() -> Response | None:
    request_id()
    limit = current_app.config.get("MAX_CONTENT_LENGTH")
    if limit is not None and request.content_length is not None and request.content_length > limit:
        return error_response(ApiError(413, data={"max_body_bytes": limit}))
    return None


#: Browser dashboards on other origins may call the API: the token travels in a header, never in
#: a cookie, so allowing any origin lends a page no credentials it did not already have.
_CORS_REQUEST_HEADERS = "Accept, Authorization, Content-Type, If-None-Match, X-Auth-Token, X-Request-ID"
_CORS_EXPOSED = "Allow, ETag, Link, Location, Retry-After, X-Next-Start-Key, X-Request-ID"


def _after(resp: Response) -> Response:
    resp.headers["X-Request-ID"] = request_id()
    resp.headers["Access-Control-Allow-Origin"] = "*"
    resp.headers["Access-Control-Expose-Headers"] = _CORS_EXPOSED
    if request.method == "OPTIONS" and "Allow" in resp.headers:  # a CORS preflight
        resp.headers["Access-Control-Allow-Methods"] = resp.headers["Allow"]
        resp.headers["Access-Control-Allow-Headers"] = _CORS_REQUEST_HEADERS
        resp.headers["Access-Control-Max-Age"] = "600"
    return resp


def install(app: Flask) -> None:
    """Every answer of ``app`` — success, error, 404, 405, 413, crash — in the envelope."""
    app.before_request(_before)
    app.after_request(_after)
    app.register_error_handler(ApiError, error_response)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _unexpected)


#: Rows built between two yields: a 5,000-channel listing must not hold up event ingest.
LISTING_CHUNK = 500
START_KEY = re.compile(r"^[0-9]{1,20}-[0-9a-f-]{1,36}$")
MAX_PAGE_SIZE = 10_000
_PAGE_SIZE = re.compile(r"^[0-9]{1,6}$")


def page_key(channel: Any) -> str:
    """A channel's place in listing order (oldest first): microseconds of creation, then uuid."""
    return f"{round(channel.created * 1e6):020d}-{channel.uuid}"


def paginate(channels: list[Any]) -> tuple[list[Any], dict[str, Any] | None]:
    """Kazoo's ``page_size``/``start_key`` paging over channels in listing order; without
    ``page_size`` the whole listing, as Kazoo's channels API answers."""
    size_arg = request.args.get("page_size")
    start = request.args.get("start_key")
    if size_arg is None:
        if start is not None:
            raise field_error("start_key", "dependencies", "start_key needs page_size")
        return channels, None
    # str.isdigit() also takes "²" (int() refuses it) and other scripts' digits: ASCII only
    if not _PAGE_SIZE.fullmatch(size_arg) or not 1 <= int(size_arg) <= MAX_PAGE_SIZE:
        raise field_error("page_size", "range", f"must be an integer from 1 to {MAX_PAGE_SIZE}")
    size = int(size_arg)
    if start is not None:
        if not START_KEY.fullmatch(start):
            raise field_error("start_key", "pattern", "not a start_key from an earlier page")
        channels = [ch for ch in channels if page_key(ch) >= start]
    page = channels[:size]
    info: dict[str, Any] = {"page_size": len(page)}
    if start is not None:
        info["start_key"] = start
    if len(channels) > size:
        info["next_start_key"] = page_key(channels[size])
    return page, info


def listing_rows(channels: Iterable[Any], now: float) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for i, ch in enumerate(channels, 1):  # the registry keeps them oldest first
        rows.append(ch.listing(now))
        if i % LISTING_CHUNK == 0:
            gevent.sleep(0)
    return rows
