"""The ESL message types: a wire frame and the decoded event it may carry."""

from __future__ import annotations

from dataclasses import dataclass, field

#: A decoded event: header name -> value, every value a string (as FreeSWITCH's json
#: format has it). An event body, if any, is under the key ``"_body"``.
Event = dict[str, str]

EVENT_CONTENT_TYPES = frozenset({"text/event-plain", "text/event-json", "text/event-xml"})


@dataclass(slots=True)
class Frame:
    """One frame off the socket: its outer header block and its body (``""`` if none)."""

    headers: dict[str, str]
    body: str = ""
    raw_body: bytes = field(default=b"", repr=False)

    @property
    def content_type(self) -> str:
        return self.headers.get("Content-Type", "")

    @property
    def reply_text(self) -> str:
        return self.headers.get("Reply-Text", "")

    @property
    def is_event(self) -> bool:
        return self.headers.get("Content-Type", "") in EVENT_CONTENT_TYPES
