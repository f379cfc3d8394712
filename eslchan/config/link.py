"""``[link]``: reconnection, timeouts and event subscription of every ESL link."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from eslchan.config.reader import Reader

DEFAULT_EVENTS = (
    "CHANNEL_CREATE CHANNEL_UUID CHANNEL_ANSWER CHANNEL_BRIDGE CHANNEL_UNBRIDGE CHANNEL_HOLD "
    "CHANNEL_UNHOLD CHANNEL_CALLSTATE CHANNEL_STATE CALL_UPDATE CHANNEL_EXECUTE "
    "CHANNEL_EXECUTE_COMPLETE CHANNEL_HANGUP CHANNEL_HANGUP_COMPLETE CHANNEL_DESTROY "
    "CHANNEL_PARK CHANNEL_UNPARK CHANNEL_PROGRESS CHANNEL_PROGRESS_MEDIA PLAYBACK_START PLAYBACK_STOP "
    "RECORD_START RECORD_STOP DTMF "
    "BACKGROUND_JOB HEARTBEAT SHUTDOWN"
).split()


@dataclass(frozen=True)
class LinkOptions:
    backoff_initial: float = 0.5
    backoff_max: float = 30.0
    backoff_jitter: float = 0.2
    watchdog: float = 60.0
    command_timeout: float = 5.0
    connect_timeout: float = 5.0
    event_queue_max: int = 100_000
    event_format: str = "json"
    events: tuple[str, ...] = tuple(DEFAULT_EVENTS)


def parse_link(r: Reader, data: Any) -> LinkOptions:
    d = LinkOptions()
    names = {
        "backoff_initial",
        "backoff_max",
        "backoff_jitter",
        "watchdog",
        "command_timeout",
        "connect_timeout",
        "event_queue_max",
        "event_format",
        "events",
    }
    t = r.table(data, "link", names)
    events = r.get(t, "link", "events", list, list(d.events))
    if not all(isinstance(e, str) and re.fullmatch(r"[A-Z_]+|[a-z_:]+", e) for e in events):
        r.problems.append(("link.events", "must be a list of event names"))
        events = list(d.events)
    fmt = r.get(t, "link", "event_format", str, d.event_format)
    if fmt not in {"json", "plain", "xml"}:
        r.problems.append(("link.event_format", "must be json, plain or xml"))
        fmt = d.event_format
    jitter = r.get(t, "link", "backoff_jitter", float, d.backoff_jitter)
    if not 0 <= jitter <= 1:
        r.problems.append(("link.backoff_jitter", "must be between 0 and 1"))
    return LinkOptions(
        backoff_initial=r.positive(t, "link", "backoff_initial", d.backoff_initial),
        backoff_max=r.positive(t, "link", "backoff_max", d.backoff_max),
        backoff_jitter=jitter,
        watchdog=r.positive(t, "link", "watchdog", d.watchdog),
        command_timeout=r.positive(t, "link", "command_timeout", d.command_timeout),
        connect_timeout=r.positive(t, "link", "connect_timeout", d.connect_timeout),
        event_queue_max=r.positive(t, "link", "event_queue_max", d.event_queue_max, int),
        event_format=fmt,
        events=tuple(events),
    )
