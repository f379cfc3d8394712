"""Incremental ESL framing and event decoding.

Bytes go in at any boundary; whole frames come out. Header values are decoded one by one
after the block is split into lines, so an encoded newline inside a value can never forge
a header, and a body is always kept apart from the headers.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from urllib.parse import unquote

from eslchan import jsoncodec
from eslchan.esl.message import Event, Frame


class ProtocolError(ValueError):
    """The peer sent bytes that are not an ESL frame."""


#: Outer headers that are never URL-encoded by FreeSWITCH (reply texts may hold a '%').
_RAW_OUTER = frozenset({"Reply-Text", "Content-Type", "Content-Length"})

MAX_HEADER_BLOCK = 1 << 20  # a header block larger than this is not ESL
MAX_BODY = 64 << 20


def parse_header_block(block: str, *, decode: bool, raw: frozenset[str] = frozenset()) -> dict:
    """Split ``Name: value`` lines, then URL-decode each value on its own (if ``decode``)."""
    headers: dict[str, str] = {}
    encoded: list[str] = []  # names whose values need decoding
    for line in block.split("\n"):
        if not line:
            continue
        name, sep, value = line.partition(": ")
        if not sep:
            name, sep, value = line.partition(":")
            if not sep:
                raise ProtocolError(f"header line without a colon: {line[:80]!r}")
            value = value.lstrip(" ")
        headers[name] = value
        if decode and "%" in value and name not in raw:
            encoded.append(name)
    if encoded:
        _unquote_values(headers, encoded)
    return headers


def _unquote_values(headers: dict[str, str], names: list[str]) -> None:
    """URL-decode the named values. The lines are already split, so a decoded newline stays
    inside its value; all values go through one ``unquote`` call joined by NUL (a plain event
    carries dozens), unless a value encodes a NUL itself."""
    if len(names) > 1:
        joined = "\0".join([headers[n] for n in names])
        if "%00" not in joined:
            for name, value in zip(names, unquote(joined).split("\0"), strict=True):
                headers[name] = value
            return
    for name in names:
        headers[name] = unquote(headers[name])


def _content_length(value: str) -> int:
    """A Content-Length header as a byte count; ProtocolError when it is not one."""
    try:
        size = int(value)
    except ValueError:
        raise ProtocolError(f"bad Content-Length {value!r}") from None
    if size < 0 or size > MAX_BODY:
        raise ProtocolError(f"Content-Length out of range: {size}")
    return size


class FrameParser:
    """Turns a byte stream into :class:`Frame` objects; feed it any chunking of the stream."""

    __slots__ = ("_buf", "_pending")

    def __init__(self) -> None:
        self._buf = bytearray()
        self._pending: tuple[dict[str, str], int] | None = None  # headers waiting for a body

    @property
    def buffered(self) -> int:
        """Bytes received but not yet part of a whole frame."""
        return len(self._buf)

    @property
    def incomplete(self) -> bool:
        """True while part of a frame has been received (the stream ended mid-frame)."""
        return bool(self._buf) or self._pending is not None

    def feed(self, data: bytes) -> list[Frame]:
        buf = self._buf
        buf += data
        frames: list[Frame] = []
        pos = 0
        end = len(buf)
        pending = self._pending
        view = memoryview(buf)  # slices of a view copy once (a bytearray slice copies twice)
        try:
            while True:
                if pending is None:
                    # FreeSWITCH never sends blank lines between frames, but tolerate them.
                    while pos < end and buf[pos] == 0x0A:
                        pos += 1
                    cut = buf.find(b"\n\n", pos)
                    if cut < 0:
                        if end - pos > MAX_HEADER_BLOCK:
                            raise ProtocolError("header block too large")
                        break
                    block = str(view[pos:cut], "utf-8", "replace")
                    pos = cut + 2
                    headers = parse_header_block(block, decode=True, raw=_RAW_OUTER)
                    length = headers.get("Content-Length")
                    if length is None:
                        frames.append(Frame(headers, ""))
                        continue
                    pending = (headers, _content_length(length))
                headers, size = pending
                if end - pos < size:
                    break
                raw = bytes(view[pos : pos + size])
                pos += size
                pending = None
                frames.append(Frame(headers, None, raw))
        finally:
            view.release()
            self._pending = pending
        if pos:
            del buf[:pos]
        return frames


def decode_plain_event(text: str) -> Event:
    """Decode a text/event-plain body: URL-encoded headers, then an optional body."""
    head, sep, rest = text.partition("\n\n")
    event = parse_header_block(head, decode=True)
    if sep and "Content-Length" in event:
        size = _content_length(event["Content-Length"])
        data = rest.encode("utf-8", "surrogateescape")[:size]
        event["_body"] = data.decode("utf-8", "replace")
    return event


def decode_json_event(text: str | bytes) -> Event:
    """Decode a text/event-json body; values stay exactly as sent (they are not URL-encoded)."""
    try:
        event = jsoncodec.loads(text)
    except UnicodeDecodeError:  # a broken byte must not lose the whole event
        return decode_json_event(bytes(text).decode("utf-8", "replace"))  # type: ignore[arg-type]
    except (ValueError, RecursionError) as exc:  # RecursionError: nested too deep for json
        raise ProtocolError(f"bad json event: {exc}") from None
    if not isinstance(event, dict):
        raise ProtocolError("json event is not an object")
    # A multi-valued variable (push, a regex's captures) comes as a JSON array. Only arrays
    # follow '":[' unescaped; most events hold no '[' at all, and a one-character test (memchr)
    # costs a tenth of the three-character search, so it goes first.
    if isinstance(text, bytes | bytearray):
        if b"[" in text and b'":[' in text:
            return flat_event(event)
    elif "[" in text and '":[' in text:
        return flat_event(event)
    return event


def flat_event(event: dict) -> Event:
    """Every value a string: an array as FreeSWITCH's plain events write it
    (``ARRAY::first|:second``), anything else as its JSON text."""
    out: Event = {}
    for key, value in event.items():
        if isinstance(value, str):
            out[key] = value
        elif isinstance(value, list):
            out[key] = "ARRAY::" + "|:".join(v if isinstance(v, str) else json.dumps(v) for v in value)
        else:
            out[key] = json.dumps(value)
    return out


def decode_xml_event(text: str) -> Event:
    """Decode a text/event-xml body; FreeSWITCH 1.10 URL-encodes the header values in it."""
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise ProtocolError(f"bad xml event: {exc}") from None
    event: Event = {}
    headers = root.find("headers")
    if headers is not None:
        for el in headers:
            value = el.text or ""
            event[el.tag] = unquote(value) if "%" in value else value
    length = root.find("Content-Length")
    body = root.find("body")
    if length is not None and length.text:
        event["Content-Length"] = length.text
    if body is not None:
        event["_body"] = body.text or ""
    return event


_DECODERS = {
    "text/event-plain": decode_plain_event,
    "text/event-json": decode_json_event,
    "text/event-xml": decode_xml_event,
}


def decode_event(frame: Frame) -> Event:
    """The event carried by an event frame, whatever its format."""
    ctype = frame.headers.get("Content-Type", "")
    if ctype == "text/event-json":
        return decode_json_event(frame.raw_body)  # json.loads reads the bytes directly
    try:
        decoder = _DECODERS[ctype]
    except KeyError:
        raise ProtocolError(f"not an event frame: {ctype!r}") from None
    return decoder(frame.body)
