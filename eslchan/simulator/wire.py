"""ESL wire format as FreeSWITCH 1.10 writes it: reply frames and events in plain, json and xml.

Each event is serialised at most once per format and the bytes are shared by every listener,
so a burst costs one encoding per event, not one per connection.
"""

from __future__ import annotations

import json
import re
import time

# FreeSWITCH's switch_url_encode: every byte below 0x20 or above 0x7E and these characters
# become %XX; a '%' already followed by two hex digits passes through untouched.
_UNSAFE = ' #%&+:;<=>?@[\\]^`{|}"'
_NEEDS_ENCODING = re.compile(
    "%(?![0-9A-F]{2})|[" + re.escape(_UNSAFE.replace("%", "")) + "\x00-\x1f\x7f-\U0010ffff]"
)


def _encode_match(m: re.Match[str]) -> str:
    return "".join(f"%{b:02X}" for b in m.group(0).encode("utf-8"))


def url_encode(value: str) -> str:
    """Encode a header value exactly as FreeSWITCH does in plain and xml events."""
    return _NEEDS_ENCODING.sub(_encode_match, value)


# Header lines repeat across a channel's events (same name, same value), so encoded lines
# are memoised; the cache is dropped whole when it grows too big.
_LINE_CACHE: dict[tuple[str, str], str] = {}
_LINE_CACHE_MAX = 200_000


def _plain_line(item: tuple[str, str]) -> str:
    line = _LINE_CACHE.get(item)
    if line is None:
        if len(_LINE_CACHE) >= _LINE_CACHE_MAX:
            _LINE_CACHE.clear()
        line = _LINE_CACHE[item] = f"{item[0]}: {_NEEDS_ENCODING.sub(_encode_match, item[1])}\n"
    return line


def _xml_escape_body(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


_date_cache: tuple[int, str, str] = (0, "", "")


def event_dates(now: float) -> tuple[str, str, str]:
    """Event-Date-Local, Event-Date-GMT and Event-Date-Timestamp (µs) for ``now``."""
    global _date_cache
    sec = int(now)
    if _date_cache[0] != sec:
        _date_cache = (
            sec,
            time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(sec)),
            time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(sec)),
        )
    return _date_cache[1], _date_cache[2], str(int(now * 1_000_000))


class SimEvent:
    """One fired event: ordered headers, an optional body, and its cached wire forms."""

    __slots__ = ("name", "headers", "body", "unique_id", "subclass", "_plain", "_json", "_xml")

    def __init__(self, name: str, headers: list[tuple[str, str]], body: str | None = None,
                 unique_id: str | None = None, subclass: str | None = None) -> None:
        self.name = name
        self.headers = headers
        self.body = body
        self.unique_id = unique_id
        self.subclass = subclass
        self._plain: bytes | None = None
        self._json: bytes | None = None
        self._xml: bytes | None = None

    def get(self, name: str, default: str | None = None) -> str | None:
        lname = name.lower()
        for k, v in self.headers:
            if k.lower() == lname:
                return v
        return default

    def as_dict(self) -> dict[str, str]:
        d = dict(self.headers)
        if self.body is not None:
            d["Content-Length"] = str(len(self.body.encode("utf-8")))
            d["_body"] = self.body
        return d

    def frame(self, fmt: str) -> bytes:
        """The whole frame (outer headers and event) for a listener using ``fmt``."""
        if fmt == "plain":
            if self._plain is None:
                self._plain = _wrap(self.plain_text(), "plain")
            return self._plain
        if fmt == "json":
            if self._json is None:
                self._json = _wrap(self.json_text(), "json")
            return self._json
        if self._xml is None:
            self._xml = _wrap(self.xml_text(), "xml")
        return self._xml

    def plain_text(self) -> bytes:
        cache = _LINE_CACHE
        parts = [cache.get(h) or _plain_line(h) for h in self.headers]
        if self.body is not None:
            body = self.body.encode("utf-8")
            parts.append(f"Content-Length: {len(body)}\n\n")
            return "".join(parts).encode("utf-8") + body
        parts.append("\n")
        return "".join(parts).encode("utf-8")

    def json_text(self) -> bytes:
        return json.dumps(self.as_dict(), ensure_ascii=False, separators=(",", ":")).encode("utf-8")

    def xml_text(self) -> bytes:
        enc = url_encode
        parts = ["<event>\n  <headers>\n"]
        parts.extend(f"    <{k}>{enc(v)}</{k}>\n" for k, v in self.headers)
        parts.append("  </headers>\n")
        if self.body is not None:
            n = len(self.body.encode("utf-8"))
            parts.append(f"  <Content-Length>{n}</Content-Length>\n")
            parts.append(f"  <body>{_xml_escape_body(self.body)}  </body>\n")
        parts.append("</event>\n")
        return "".join(parts).encode("utf-8")


def _wrap(payload: bytes, fmt: str) -> bytes:
    return b"Content-Length: %d\nContent-Type: text/event-%s\n\n" % (len(payload), fmt.encode()) + payload


AUTH_REQUEST = b"Content-Type: auth/request\n\n"
GOODBYE = "Disconnected, goodbye.\nSee you at ClueCon! http://www.cluecon.com/\n"
SHUTDOWN_TEXT = "The system is being shut down.\n"


def command_reply(text: str, extra: list[tuple[str, str]] | None = None) -> bytes:
    out = f"Content-Type: command/reply\nReply-Text: {text}\n"
    if extra:
        out += "".join(f"{k}: {v}\n" for k, v in extra)
    return (out + "\n").encode("utf-8")


def api_response(body: str) -> bytes:
    data = body.encode("utf-8")
    return b"Content-Type: api/response\nContent-Length: %d\n\n" % len(data) + data


def disconnect_notice(text: str = GOODBYE, headers: list[tuple[str, str]] | None = None) -> bytes:
    data = text.encode("utf-8")
    out = "Content-Type: text/disconnect-notice\n"
    if headers:
        out += "".join(f"{k}: {v}\n" for k, v in headers)
    return (out + f"Content-Length: {len(data)}\n\n").encode("utf-8") + data


def log_data(text: str, level: int, file: str, func: str, line: int, user_data: str) -> bytes:
    data = text.encode("utf-8")
    return (
        f"Content-Type: log/data\nContent-Length: {len(data)}\nLog-Level: {level}\n"
        f"Text-Channel: 3\nLog-File: {file}\nLog-Func: {func}\nLog-Line: {line}\n"
        f"User-Data: {user_data}\n\n"
    ).encode() + data
