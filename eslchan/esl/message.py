"""The ESL message types: a wire frame and the decoded event it may carry."""

from __future__ import annotations

#: A decoded event: header name -> value, every value a string (as FreeSWITCH's json
#: format has it). An event body, if any, is under the key ``"_body"``.
Event = dict[str, str]

EVENT_CONTENT_TYPES = frozenset({"text/event-plain", "text/event-json", "text/event-xml"})


class Frame:
    """One frame off the socket: its outer header block and its body (``""`` if none).

    The body is kept as bytes and decoded to text only when asked for: json events go to
    ``json.loads`` straight from the bytes."""

    __slots__ = ("headers", "raw_body", "_body")

    def __init__(self, headers: dict[str, str], body: str | None = None, raw_body: bytes = b""):
        self.headers = headers
        if body is not None and not raw_body:
            raw_body = body.encode("utf-8")
        self.raw_body = raw_body
        self._body = body

    @property
    def body(self) -> str:
        text = self._body
        if text is None:
            text = self._body = self.raw_body.decode("utf-8", "replace")
        return text

    @property
    def content_type(self) -> str:
        return self.headers.get("Content-Type", "")

    @property
    def reply_text(self) -> str:
        return self.headers.get("Reply-Text", "")

    @property
    def is_event(self) -> bool:
        return self.headers.get("Content-Type", "") in EVENT_CONTENT_TYPES

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Frame):
            return NotImplemented
        return self.headers == other.headers and self.raw_body == other.raw_body

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Frame(headers={self.headers!r}, body={self.body[:80]!r})"
