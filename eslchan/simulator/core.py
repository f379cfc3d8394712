"""The switch: channels, the events they fire and the applications they run.

Every channel runs its applications in its own greenlet and reacts to outside requests
(hangup, transfer, uuid_bridge, break, sendmsg execute) through its inbox, so the event
order of one channel is the order FreeSWITCH uses: CREATE … ANSWER … HANGUP …
HANGUP_COMPLETE, DESTROY.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from typing import Any

import gevent
import gevent.event

from eslchan.simulator.channels import (
    CALLSTATE_NUMBERS,
    BreakUnwind,
    BridgeUnwind,
    HangupUnwind,
    SimChannel,
    TransferUnwind,
    Unwind,
    new_uuid,
)
from eslchan.simulator.media import media_duration, media_type
from eslchan.simulator.wire import SimEvent, event_dates

log = logging.getLogger(__name__)

VERSION = "1.10.12-release~64bit"

CALLING: dict[str, tuple[str, str, str]] = {
    "API": ("switch_loadable_module.c", "switch_api_execute", "2954"),
    "BACKGROUND_JOB": ("mod_event_socket.c", "api_exec", "1572"),
    "CALL_UPDATE": ("switch_channel.c", "switch_channel_flip_cid", "3277"),
    "CHANNEL_ANSWER": ("switch_channel.c", "switch_channel_perform_mark_answered", "3846"),
    "CHANNEL_BRIDGE": ("switch_ivr_bridge.c", "switch_ivr_multi_threaded_bridge", "1689"),
    "CHANNEL_CALLSTATE": ("switch_channel.c", "switch_channel_perform_set_callstate", "301"),
    "CHANNEL_CREATE": ("switch_core_state_machine.c", "switch_core_session_run", "626"),
    "CHANNEL_DESTROY": ("switch_core_session.c", "switch_core_session_perform_destroy", "1584"),
    "CHANNEL_EXECUTE": ("switch_core_session.c", "switch_core_session_exec", "2944"),
    "CHANNEL_EXECUTE_COMPLETE": ("switch_core_session.c", "switch_core_session_exec", "2967"),
    "CHANNEL_HANGUP": ("switch_channel.c", "switch_channel_perform_hangup", "3445"),
    "CHANNEL_HANGUP_COMPLETE": ("switch_core_state_machine.c",
                                "switch_core_session_reporting_state", "943"),
    "CHANNEL_HOLD": ("switch_ivr.c", "switch_ivr_hold", "1558"),
    "CHANNEL_UNHOLD": ("switch_ivr.c", "switch_ivr_unhold", "1602"),
    "CHANNEL_ORIGINATE": ("switch_core_state_machine.c", "switch_core_session_run", "632"),
    "CHANNEL_OUTGOING": ("switch_core_session.c", "switch_core_session_outgoing_channel", "768"),
    "CHANNEL_PARK": ("switch_ivr.c", "switch_ivr_park", "1002"),
    "CHANNEL_STATE": ("switch_channel.c", "switch_channel_perform_set_running_state", "2408"),
    "CHANNEL_UNBRIDGE": ("switch_ivr_bridge.c", "switch_ivr_multi_threaded_bridge", "1879"),
    "CHANNEL_UNPARK": ("switch_ivr.c", "switch_ivr_park", "1213"),
    "CHANNEL_UUID": ("switch_core_session.c", "switch_core_session_set_uuid", "2051"),
    "CODEC": ("switch_core_codec.c", "switch_core_session_set_read_codec", "279"),
    "CUSTOM": ("mod_event_socket.c", "parse_command", "2275"),
    "DTMF": ("switch_channel.c", "switch_channel_queue_dtmf", "501"),
    "HEARTBEAT": ("switch_core.c", "send_heartbeat", "95"),
    "PLAYBACK_START": ("switch_ivr_play_say.c", "switch_ivr_play_file", "1646"),
    "PLAYBACK_STOP": ("switch_ivr_play_say.c", "switch_ivr_play_file", "2020"),
    "PRIVATE_COMMAND": ("switch_ivr.c", "switch_ivr_parse_next_event", "804"),
    "RECORD_START": ("switch_ivr_async.c", "record_callback", "1253"),
    "RECORD_STOP": ("switch_ivr_async.c", "record_callback", "1389"),
    "RE_SCHEDULE": ("switch_scheduler.c", "switch_scheduler_execute", "73"),
    "SHUTDOWN": ("switch_core.c", "switch_core_destroy", "3023"),
}

Dialplan = dict[str, list[tuple[str, list[tuple[str, str]]]]]


def default_dialplan() -> Dialplan:
    """The extensions of the recorded server plus catch-alls so any number answers."""
    tone = "tone_stream://%(200,200,600);loops=2"
    std: list[tuple[str, list[tuple[str, str]]]] = [
        (r"^esl_park$", [("park", "")]),
        (r"^esl_answer(_.*)?$", [("answer", ""), ("park", "")]),
        (r"^esl_tone$", [("answer", ""), ("playback", tone), ("park", "")]),
        (r"^esl_sip_answer$", [("answer", ""), ("park", "")]),
        (r"^(echo|9196)$", [("answer", ""), ("echo", "")]),
        (r"^park$", [("park", "")]),
        (r"^hangup$", [("hangup", "")]),
        (r"^(ring|noanswer)$", [("park", "")]),
        (r"^esl_socket$", [("socket", "127.0.0.1:8084 async full")]),
        # any dialable number answers and waits (what a test's "far end" usually does)
        (r"^\+?[0-9*#]{1,32}$", [("answer", ""), ("park", "")]),
    ]
    return {"default": std, "public": list(std)}


def split_vars(block: str) -> dict[str, str]:
    """``a=1,b='x,y'`` → dict, honouring single quotes as FreeSWITCH does."""
    out: dict[str, str] = {}
    cur, quoted, parts = [], False, []
    for c in block:
        if c == "'":
            quoted = not quoted
            continue
        if c == "," and not quoted:
            parts.append("".join(cur))
            cur = []
            continue
        cur.append(c)
    parts.append("".join(cur))
    for p in parts:
        if "=" in p:
            k, v = p.split("=", 1)
            out[k.strip()] = v
    return out


def parse_inline(dest: str) -> list[tuple[str, str]]:
    """An inline dialplan: ``app:arg,app:arg`` (or ``^^;app:arg;app`` with another separator)."""
    sep = ","
    if dest.startswith("^^") and len(dest) > 2:
        sep, dest = dest[2], dest[3:]
    apps = []
    for item in dest.split(sep):
        app, _, arg = item.partition(":")
        if app.strip():
            apps.append((app.strip(), arg))
    return apps


def split_top(s: str, sep: str) -> list[str]:
    """Split on ``sep`` outside of {…}, […] and quotes (dial strings carry vars in them)."""
    out, cur, depth, quoted = [], [], 0, False
    for c in s:
        if c == "'":
            quoted = not quoted
        elif not quoted and c in "{[":
            depth += 1
        elif not quoted and c in "}]":
            depth = max(0, depth - 1)
        elif c == sep and depth == 0 and not quoted:
            out.append("".join(cur))
            cur = []
            continue
        cur.append(c)
    out.append("".join(cur))
    return out


def parse_dial_string(s: str) -> tuple[dict[str, str], str]:
    """``{vars}[vars]endpoint`` → (vars, endpoint)."""
    variables: dict[str, str] = {}
    s = s.strip()
    while s and s[0] in "{[<":
        close = {"{": "}", "[": "]", "<": ">"}[s[0]]
        end = s.find(close)
        if end < 0:
            break
        variables.update(split_vars(s[1:end]))
        s = s[end + 1:]
    return variables, s


class OriginateFailed(Exception):
    def __init__(self, cause: str) -> None:
        super().__init__(cause)
        self.cause = cause


class Switch:
    """The FreeSWITCH model behind the event socket."""

    def __init__(self, *, hostname: str, core_uuid: str, speed: float,
                 publish: Callable[[SimEvent], None]) -> None:
        self.hostname = hostname
        self.core_uuid = core_uuid
        self.speed = speed
        self.publish = publish
        self.ipv4 = "127.0.0.1"
        self.ipv6 = "::1"
        self.seq = 0
        self.started = time.time()
        self.channels: dict[str, SimChannel] = {}
        self.dialplan: Dialplan = default_dialplan()
        # the vanilla configuration's first matching extension runs for every call
        self.dialplan_prelude: list[tuple[str, str]] = [("set", "open=true")]
        self.media_durations: dict[str, float] = {}
        self.default_media_duration = 1.0
        self.ring_seconds = 0.2              # how long a remote phone rings before answering
        self.endpoint_behaviour: dict[str, str] = {}   # target -> answer|busy|no_answer|reject
        self.originate_timeout = 60.0
        self.sessions_since_startup = 0
        self.peak = 0
        self._session_id = 0
        self.listeners: list[Callable[[SimEvent], None]] = []

    # -- time ----------------------------------------------------------------------------
    def sleep(self, seconds: float) -> None:
        gevent.sleep(max(0.0, seconds) / self.speed)

    # -- events --------------------------------------------------------------------------
    def common(self, name: str) -> list[tuple[str, str]]:
        local, gmt, ts = event_dates(time.time())
        f, fn, ln = CALLING.get(name, ("switch_event.c", "switch_event_fire_detailed", "0"))
        self.seq += 1
        h = self.hostname
        return [
            ("Event-Name", name), ("Core-UUID", self.core_uuid), ("FreeSWITCH-Hostname", h),
            ("FreeSWITCH-Switchname", h), ("FreeSWITCH-IPv4", self.ipv4),
            ("FreeSWITCH-IPv6", self.ipv6), ("Event-Date-Local", local),
            ("Event-Date-GMT", gmt), ("Event-Date-Timestamp", ts),
            ("Event-Calling-File", f), ("Event-Calling-Function", fn),
            ("Event-Calling-Line-Number", ln), ("Event-Sequence", str(self.seq)),
        ]

    def fire(self, name: str, headers: list[tuple[str, str]] | None = None, *,
             body: str | None = None, unique_id: str | None = None,
             subclass: str | None = None) -> SimEvent:
        ev = SimEvent(name, self.common(name) + (headers or []), body, unique_id, subclass)
        self.publish(ev)
        for fn in list(self.listeners):
            fn(ev)
        return ev

    def chan_event(self, ch: SimChannel, name: str, *, with_vars: bool = True,
                   before: list[tuple[str, str]] | None = None,
                   extra: list[tuple[str, str]] | None = None) -> SimEvent:
        other = self.channels.get(ch.other_leg) if ch.other_leg else None
        h = list(before or [])
        h += ch.headers(with_vars=with_vars, other=other, extra=extra)
        return self.fire(name, h, unique_id=ch.uuid)

    def set_state(self, ch: SimChannel, state: str) -> None:
        ch.state = state
        self.chan_event(ch, "CHANNEL_STATE", with_vars=False)
        if state == "CS_ROUTING":
            self.presence(ch, "CS_ROUTING",
                          "alerting" if ch.direction == "inbound" else "progressing")

    def presence(self, ch: SimChannel, status: str, info_state: str) -> None:
        """PRESENCE_IN for channels with a presence_id, as check_presence sends them."""
        if not ch.presence_id:
            return
        ch.presence_count += 1
        self.chan_event(ch, "PRESENCE_IN", with_vars=False, extra=[
            ("proto", "any"), ("login", "src/switch_channel.c"), ("from", ch.presence_id),
            ("rpid", "unknown"), ("status", status), ("event_type", "presence"),
            ("alt_event_type", "dialog"), ("presence-call-info-state", info_state),
            ("presence-call-direction", ch.direction),
            ("event_count", str(ch.presence_count - 1)),
            ("Presence-Calling-File", "src/switch_core_state_machine.c"),
            ("Presence-Calling-Function", "check_presence"), ("Presence-Calling-Line", "521"),
        ])

    def set_callstate(self, ch: SimChannel, callstate: str) -> None:
        old = ch.callstate
        if old == callstate:
            return
        ch.callstate = callstate
        self.chan_event(ch, "CHANNEL_CALLSTATE", with_vars=False, before=[
            ("Original-Channel-Call-State", old),
            ("Channel-Call-State-Number", str(CALLSTATE_NUMBERS.get(callstate, 0))),
        ])

    # -- channel life --------------------------------------------------------------------
    def _new_channel(self, **kw: Any) -> SimChannel:
        self._session_id += 1
        ch = SimChannel(session_id=self._session_id, **kw)
        v = {"direction": ch.direction}
        if ch.direction == "outbound":
            v["is_outbound"] = "true"
        v.update({"uuid": ch.uuid, "session_id": str(ch.session_id), "channel_name": ch.name,
                  "read_codec": "L16", "read_rate": "8000", "write_codec": "L16",
                  "write_rate": "8000", "call_uuid": ch.uuid})
        v.update(ch.variables)
        ch.variables = v
        self.channels[ch.uuid] = ch
        self.sessions_since_startup += 1
        self.peak = max(self.peak, len(self.channels))
        return ch

    def rename(self, ch: SimChannel, new: str) -> None:
        """origination_uuid: the channel takes the requested UUID (CHANNEL_UUID)."""
        old = ch.uuid
        self.channels.pop(old, None)
        ch.uuid = new
        ch.variables["uuid"] = new
        ch.variables["call_uuid"] = new
        self.channels[new] = ch
        self.chan_event(ch, "CHANNEL_UUID", before=[("Old-Unique-ID", old)])

    def start(self, ch: SimChannel, run: Callable[[], None]) -> None:
        ch.greenlet = gevent.spawn(self._runner, ch, run)

    def _runner(self, ch: SimChannel, run: Callable[[], None]) -> None:
        cause = "NORMAL_CLEARING"
        step: Callable[[], None] | None = run
        try:
            while step is not None:
                try:
                    step()
                    step = None
                    self.hangup(ch.uuid, "NORMAL_CLEARING")
                    self.wait(ch, None)
                except TransferUnwind as t:
                    step = self._after_transfer(ch, t)
                except BridgeUnwind as b:
                    step = self._after_bridge_request(ch, b)
                except BreakUnwind:
                    step = self._idle_after_break(ch)
        except HangupUnwind as h:
            cause = h.cause
        except gevent.GreenletExit:
            return
        except Exception:
            # a bug in the model must not leave a channel behind forever
            log.exception("simulated channel %s failed", ch.uuid)
            cause = "NORMAL_TEMPORARY_FAILURE"
            if not ch.hangup_cause:
                self.hangup(ch.uuid, cause)
        self._finish_hangup(ch, cause)

    def _idle_after_break(self, ch: SimChannel) -> Callable[[], None]:
        return lambda: self.park(ch, "")

    def wait(self, ch: SimChannel, timeout: float | None, *, media: bool = False,
             idle: bool = False) -> Any:
        """Wait for the next inbox message. Unwinds raise; with ``idle`` queued sendmsg
        executions run here, otherwise they stay queued for the next idle point."""
        deadline = None if timeout is None else time.monotonic() + timeout / self.speed
        while True:
            if idle and ch.unwind_pending == [] and getattr(ch, "_deferred", None):
                msg = ch._deferred.pop(0)  # type: ignore[attr-defined]
            else:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return None
                try:
                    msg = ch.inbox.get(timeout=remaining)
                except gevent.queue.Empty:
                    return None
            if isinstance(msg, BreakUnwind):
                if media:
                    raise msg
                continue
            if isinstance(msg, Unwind):
                raise msg
            if msg[0] == "execute":
                if idle:
                    self._run_app(ch, msg[1], msg[2], msg[3] if len(msg) > 3 else None)
                    continue
                if not hasattr(ch, "_deferred"):
                    ch._deferred = []  # type: ignore[attr-defined]
                ch._deferred.append(msg)  # type: ignore[attr-defined]
                continue
            return msg

    def _send(self, ch: SimChannel, msg: Any) -> None:
        ch.inbox.put(msg)

    def hangup(self, uuid: str, cause: str = "NORMAL_CLEARING") -> bool:
        """Start hanging a channel up; its greenlet fires the rest of the sequence."""
        ch = self.channels.get(uuid)
        if ch is None or ch.hangup_cause:
            return ch is not None
        ch.hangup_cause = cause
        ch.answer_state = "hangup"
        ch.hangup_us = int(time.time() * 1_000_000)
        ch.variables["hangup_cause"] = cause
        self.chan_event(ch, "CHANNEL_HANGUP")
        if ch.greenlet is None or ch.greenlet.dead:
            self._finish_hangup(ch, cause)
        else:
            self._send(ch, HangupUnwind(cause))
        return True

    def _finish_hangup(self, ch: SimChannel, cause: str) -> None:
        if ch.gone:
            return
        ch.gone = True
        if not ch.hangup_cause:
            ch.hangup_cause = cause
            ch.answer_state = "hangup"
            self.chan_event(ch, "CHANNEL_HANGUP")
        for path in list(ch.recordings):
            self._record_stop(ch, path)
        self.set_state(ch, "CS_HANGUP")
        self.set_callstate(ch, "HANGUP")
        self.presence(ch, "CS_HANGUP", "idle")
        # the loopback twin and an originatee bridged to us go down with us
        peers = []
        if ch.loopback_peer:
            peers.append(ch.loopback_peer)
        partner = self.channels.get(ch.other_leg) if ch.other_leg else None
        if partner is not None and partner.other_leg == ch.uuid:
            self._send(partner, ("bridge_end", ch.uuid))
        self.set_state(ch, "CS_REPORTING")
        ch.variables["hangup_cause_q850"] = "16"
        ch.variables.setdefault("sip_hangup_disposition", "send_bye")
        self._hangup_complete(ch)
        for p in peers:
            self.hangup(p, ch.hangup_cause or cause)
        self.chan_event(ch, "CHANNEL_DESTROY")
        ch.state = "CS_DESTROY"
        self.chan_event(ch, "CHANNEL_STATE", with_vars=False)
        self.channels.pop(ch.uuid, None)

    def _hangup_complete(self, ch: SimChannel) -> None:
        cause = ch.hangup_cause or "NORMAL_CLEARING"
        ch.hangup_cause = None  # Hangup-Cause leads this event instead of trailing the state block
        try:
            self.chan_event(ch, "CHANNEL_HANGUP_COMPLETE", before=[("Hangup-Cause", cause)])
        finally:
            ch.hangup_cause = cause

    # -- answer / hold / dtmf ------------------------------------------------------------
    def answer(self, ch: SimChannel) -> None:
        if ch.answered or ch.hangup_cause:
            return
        peer = self.channels.get(ch.loopback_peer) if ch.loopback_peer else None
        if peer is not None and not peer.answered and ch.variables.get("loopback_leg") == "B":
            self._mark_answered(peer)
        self._mark_answered(ch)
        if peer is not None and not peer.answered:
            self._mark_answered(peer)

    def _mark_answered(self, ch: SimChannel) -> None:
        ch.answered = True
        ch.answer_state = "answered"
        ch.answered_us = int(time.time() * 1_000_000)
        self.chan_event(ch, "CHANNEL_ANSWER")
        self.presence(ch, "Answered", "confirmed")
        self.set_callstate(ch, "ACTIVE")
        res = getattr(ch, "answer_result", None)
        if res is not None and not res.ready():
            res.set("ANSWER")

    def hold(self, ch: SimChannel, mode: str) -> str:
        """uuid_hold [off|toggle]: SIP legs change callstate; loopback legs only fire HOLD."""
        if mode == "toggle":
            mode = "off" if ch.held else "on"
        if mode == "off":
            if not ch.held or not ch.sip:
                return "-ERR Operation failed\n"
            ch.held = False
            self.set_callstate(ch, "UNHELD")
            self.chan_event(ch, "CHANNEL_UNHOLD")
            self.set_callstate(ch, "ACTIVE")
            other = self.channels.get(ch.other_leg) if ch.other_leg else None
            if other is not None and other.callstate == "HELD":
                self.set_callstate(other, "ACTIVE")
            return "+OK Success\n"
        if ch.held and ch.sip:
            return "-ERR Operation failed\n"
        ch.held = True
        if ch.sip:
            self.set_callstate(ch, "HELD")
        self.chan_event(ch, "CHANNEL_HOLD")
        if ch.sip:
            other = self.channels.get(ch.other_leg) if ch.other_leg else None
            if other is not None and other.sip:
                self.set_callstate(other, "HELD")
        return "+OK Success\n"

    def dtmf(self, ch: SimChannel, digits: str, source: str = "RTP") -> None:
        for d in digits:
            if d in "wW":
                self.sleep(0.5 if d == "w" else 1.0)
                continue
            self.chan_event(ch, "DTMF", extra=[("DTMF-Digit", d), ("DTMF-Duration", "2000"),
                                               ("DTMF-Source", source)])
            if not ch.gone:
                ch.inbox.put(("dtmf", d))  # for digit-collecting applications
            self.sleep(0.1)

    # -- recording -----------------------------------------------------------------------
    def record(self, ch: SimChannel, action: str, path: str) -> str:
        if action == "start":
            ch.recordings[path] = time.time()
            ch.variables["current_record_path"] = path
            self.chan_event(ch, "RECORD_START", extra=[("Record-File-Path", path)])
            return "+OK Success\n"
        if action == "stop":
            targets = list(ch.recordings) if path == "all" else [path]
            if not any(p in ch.recordings for p in targets):
                return "-ERR Cannot locate record media bug\n"
            for p in targets:
                if p in ch.recordings:
                    self._record_stop(ch, p)
            return "+OK Success\n"
        if action in ("mask", "unmask"):
            if path not in ch.recordings:
                return "-ERR Cannot locate record media bug\n"
            ch.variables["record_masked"] = "true" if action == "mask" else "false"
            return "+OK Success\n"
        return "-USAGE: <uuid> [start|stop|mask|unmask] <path> [<limit>] [<recording_vars>]\n"

    def _record_stop(self, ch: SimChannel, path: str) -> None:
        started = ch.recordings.pop(path, time.time())
        secs = max(0, int((time.time() - started) * self.speed))
        ch.variables["record_seconds"] = str(secs)
        self.chan_event(ch, "RECORD_STOP", extra=[
            ("Record-File-Path", path), ("Record-Completion-Cause", "success")])

    # -- dialplan & applications ---------------------------------------------------------
    def lookup(self, dest: str, context: str) -> list[tuple[str, str]] | None:
        for pattern, apps in self.dialplan.get(context, self.dialplan.get("default", [])):
            if re.match(pattern, dest):
                return list(self.dialplan_prelude) + list(apps)
        return None

    def run_apps(self, ch: SimChannel, apps: list[tuple[str, str]]) -> None:
        ch.apps = apps
        for app, arg in apps:
            self._run_app(ch, app, arg)

    def _run_app(self, ch: SimChannel, app: str, arg: str, event_uuid: str | None = None) -> None:
        handler = getattr(self, "app_" + app, None)
        if handler is None:
            return
        app_uuid = event_uuid or new_uuid()
        prev_app, prev_data = ch.app, ch.app_data
        # ``app`` stays the application the channel sits in (park, bridge…); what runs
        # inside it (a sendmsg playback) shows in current_application
        nested = ch.app_depth > 0
        ch.app_depth += 1
        if not nested:
            ch.app, ch.app_data = app, arg
        ch.variables["current_application"] = app
        if arg:
            ch.variables["current_application_data"] = arg
        data = [("Application-Data", arg)] if arg else []
        self.chan_event(ch, "CHANNEL_EXECUTE",
                        extra=[("Application", app)] + data + [("Application-UUID", app_uuid)])
        response = "_none_"
        try:
            r = handler(ch, arg)
            if isinstance(r, str):
                response = r
        finally:
            if not ch.gone:
                self.chan_event(ch, "CHANNEL_EXECUTE_COMPLETE", extra=[("Application", app)] + data
                                + [("Application-Response", response),
                                   ("Application-UUID", app_uuid)])
            ch.app_depth -= 1
            ch.app, ch.app_data = prev_app, prev_data

    # applications --------------------------------------------------------------------
    def app_answer(self, ch: SimChannel, arg: str) -> None:
        self.answer(ch)

    def app_pre_answer(self, ch: SimChannel, arg: str) -> None:
        if ch.callstate in ("DOWN", "RINGING"):
            self.set_callstate(ch, "EARLY")
            ch.answer_state = "early"

    def app_ring_ready(self, ch: SimChannel, arg: str) -> None:
        self.set_callstate(ch, "RINGING")

    def app_set(self, ch: SimChannel, arg: str) -> None:
        if "=" in arg:
            k, v = arg.split("=", 1)
            if v == "":
                ch.variables.pop(k, None)
            else:
                ch.variables[k] = v
        elif arg:
            ch.variables.pop(arg, None)

    app_export = app_set

    def app_unset(self, ch: SimChannel, arg: str) -> None:
        ch.variables.pop(arg.strip(), None)

    def app_multiset(self, ch: SimChannel, arg: str) -> None:
        sep = " "
        if arg.startswith("^^"):
            sep, arg = arg[2], arg[3:]
        for part in arg.split(sep):
            self.app_set(ch, part)

    def app_hangup(self, ch: SimChannel, arg: str) -> None:
        self.hangup(ch.uuid, arg.strip() or "NORMAL_CLEARING")
        self.wait(ch, None)

    def app_sleep(self, ch: SimChannel, arg: str) -> None:
        try:
            ms = int(arg.strip() or "0")
        except ValueError:
            ms = 0
        end = time.monotonic() + ms / 1000.0 / self.speed
        while True:
            left = end - time.monotonic()
            if left <= 0 or self.wait(ch, left * self.speed) is None:
                break

    def park(self, ch: SimChannel, arg: str) -> None:
        self._run_app(ch, "park", arg)

    def app_park(self, ch: SimChannel, arg: str) -> None:
        ch.parked = True
        self.chan_event(ch, "CHANNEL_PARK")
        try:
            while True:
                self.wait(ch, None, idle=True)
        finally:
            ch.parked = False
            if not ch.gone:
                self.chan_event(ch, "CHANNEL_UNPARK")

    def app_echo(self, ch: SimChannel, arg: str) -> None:
        while True:
            self.wait(ch, None, idle=True)

    def app_playback(self, ch: SimChannel, arg: str) -> str:
        return self.play(ch, arg)

    app_broadcast = app_playback

    def app_speak(self, ch: SimChannel, arg: str) -> str:
        return self.play(ch, "speak:" + arg)

    def app_say(self, ch: SimChannel, arg: str) -> str:
        return self.play(ch, "say:" + arg)

    def play(self, ch: SimChannel, path: str, *, forever: bool = False,
             digits: list[str] | None = None) -> str:
        """Play media for its duration; with ``digits`` a DTMF digit ends it early."""
        duration = None if forever else media_duration(path, self.media_durations,
                                                       self.default_media_duration)
        ftype = media_type(path)
        info = [("Playback-File-Type", ftype), ("Playback-File-Path", path)]
        self.chan_event(ch, "PLAYBACK_START", extra=info)
        status = "done"
        try:
            end = None if duration is None else time.monotonic() + duration / self.speed
            while True:
                left = None if end is None else end - time.monotonic()
                if left is not None and left <= 0:
                    break
                msg = self.wait(ch, None if left is None else left * self.speed, media=True)
                if msg is None and left is not None:
                    break
                if msg and msg[0] == "dtmf":
                    terminators = ch.variables.get("playback_terminators", "")
                    if digits is not None:
                        digits.append(msg[1])
                        status = "break"
                        break
                    if msg[1] in terminators:
                        ch.variables["playback_terminator_used"] = msg[1]
                        status = "break"
                        break
        except BreakUnwind:
            status = "break"
        finally:
            if not ch.gone:
                ch.variables["playback_last_offset_pos"] = "0"
                ch.variables["playback_seconds"] = str(int(duration or 0))
                self.chan_event(ch, "PLAYBACK_STOP", extra=info + [("Playback-Status", status)])
        return "FILE PLAYED" if status == "done" else "PLAYBACK_INTERRUPTED"

    def app_endless_playback(self, ch: SimChannel, arg: str) -> str:
        return self.play(ch, arg, forever=True)

    def app_gentones(self, ch: SimChannel, arg: str) -> str:
        return self.play(ch, "tone_stream://" + arg.split("|")[0])

    def app_record_session(self, ch: SimChannel, arg: str) -> None:
        self.record(ch, "start", arg.split()[0] if arg.split() else "/tmp/record.wav")

    def app_stop_record_session(self, ch: SimChannel, arg: str) -> None:
        self.record(ch, "stop", arg.strip() or "all")

    def app_hold(self, ch: SimChannel, arg: str) -> None:
        self.hold(ch, "on")

    def app_unhold(self, ch: SimChannel, arg: str) -> None:
        self.hold(ch, "off")

    def app_sched_hangup(self, ch: SimChannel, arg: str) -> None:
        parts = arg.split()
        when = parts[0] if parts else "+0"
        cause = parts[1] if len(parts) > 1 else "ALLOTTED_TIMEOUT"
        try:
            secs = float(when.lstrip("+"))
        except ValueError:
            secs = 0.0
        gevent.spawn_later(secs / self.speed, self.hangup, ch.uuid, cause)

    def _collect(self, ch: SimChannel, prompt: str, min_d: int, max_d: int, timeout_ms: int,
                 terminators: str) -> str:
        """Play ``prompt`` (a digit interrupts it), then gather digits until ``max_d``, a
        terminator or the timeout."""
        got: list[str] = []
        if prompt:
            self.play(ch, prompt, digits=got)
        while len(got) < max_d:
            if got and got[-1] in terminators:
                got.pop()
                break
            msg = self.wait(ch, timeout_ms / 1000.0)
            if msg is None:
                break
            if msg[0] == "dtmf":
                got.append(msg[1])
        if got and got[-1] in terminators:
            got.pop()
        digits = "".join(got)
        return digits if len(digits) >= min_d else ""

    def app_play_and_get_digits(self, ch: SimChannel, arg: str) -> str:
        # min max tries timeout terminators file invalid_file var_name regexp [digit_timeout]
        p = arg.split()
        if len(p) < 8:
            return "_none_"
        min_d, max_d, tries, timeout = (int(x) if x.isdigit() else 1 for x in p[:4])
        terminators, prompt, var = p[4], p[5], p[7]
        regex = p[8] if len(p) > 8 else "\\d+"
        for _ in range(max(1, tries)):
            digits = self._collect(ch, prompt, min_d, max_d, timeout, terminators)
            if digits and re.fullmatch(regex, digits):
                ch.variables[var] = digits
                return digits
        ch.variables.pop(var, None)
        return "_none_"

    def app_read(self, ch: SimChannel, arg: str) -> str:
        # min max sound_file variable_name timeout terminators
        p = arg.split()
        if len(p) < 4:
            return "_none_"
        min_d = int(p[0]) if p[0].isdigit() else 1
        max_d = int(p[1]) if p[1].isdigit() else 1
        timeout = int(p[4]) if len(p) > 4 and p[4].isdigit() else 5000
        terminators = p[5] if len(p) > 5 else "#"
        digits = self._collect(ch, p[2], min_d, max_d, timeout, terminators)
        ch.variables[p[3]] = digits
        ch.variables["read_result"] = "success" if digits else "timeout"
        return digits or "_none_"

    def _noop(self, ch: SimChannel, arg: str) -> None:
        return None

    # accepted and without visible effect in the model
    app_soundtouch = app_set_audio_level = app_start_dtmf = app_stop_dtmf = _noop
    app_flush_dtmf = app_bind_meta_app = app_unbind_meta_app = app_bind_digit_action = _noop
    app_clear_digit_action = app_digit_action_set_realm = app_displace_session = _noop
    app_stop_displace_session = app_info = app_log = app_event = app_tone_detect = _noop
    app_stop_tone_detect = app_respond = app_deflect = app_redirect = app_att_xfer = _noop
    app_sched_transfer = app_sched_cancel = app_record = _noop

    def app_break(self, ch: SimChannel, arg: str) -> None:
        ch.inbox.put(BreakUnwind(arg.strip() == "all"))

    app_uuid_break = app_break

    def app_send_dtmf(self, ch: SimChannel, arg: str) -> None:
        other = self.channels.get(ch.other_leg or ch.loopback_peer or "")
        if other is not None:
            self.dtmf(other, arg.split("@", 1)[0], source="INBAND_AUDIO")

    def app_transfer(self, ch: SimChannel, arg: str) -> None:
        parts = arg.split()
        if parts and parts[0] in ("-bleg", "-both"):
            parts = parts[1:]
        dest = parts[0] if parts else ""
        raise TransferUnwind(dest, parts[1] if len(parts) > 1 else "XML",
                             parts[2] if len(parts) > 2 else ch.context)

    def app_bridge(self, ch: SimChannel, arg: str) -> str | None:
        """Dial the first target that answers (',' = simultaneous, '|' = in turn)."""
        ch.variables.pop("originate_disposition", None)
        last_cause = "NO_ANSWER"
        for group in split_top(arg, "|"):
            target = split_top(group, ",")[0]
            self.set_callstate(ch, "RING_WAIT")
            try:
                b = self.originate_leg(target, originator=ch)
            except OriginateFailed as e:
                last_cause = e.cause
                continue
            ch.variables["originate_disposition"] = "SUCCESS"
            ch.variables["DIALSTATUS"] = "SUCCESS"
            self._bridged(ch, b, originator=True)
            return None
        ch.variables["originate_disposition"] = last_cause
        ch.variables["DIALSTATUS"] = last_cause
        self.set_callstate(ch, "ACTIVE" if ch.answered else "DOWN")
        return None

    def app_intercept(self, ch: SimChannel, arg: str) -> None:
        parts = arg.split()
        bleg = bool(parts) and parts[0] == "-bleg"
        target_uuid = parts[-1] if parts else ""
        target = self.channels.get(target_uuid)
        if target is not None and bleg:
            target = self.channels.get(target.other_leg or target.loopback_peer or "")
        if target is None or target.hangup_cause:
            return
        self.answer(ch)
        loser = self.partner(target)
        target.other_leg = None
        if loser is not None:
            loser.other_leg = None
            self.hangup(loser.uuid, "PICKED_OFF")
        self._take_over(target, ch.uuid)
        self.answer(target)
        self._bridged(ch, target, originator=True, wait_peer=True)

    def app_socket(self, ch: SimChannel, arg: str) -> None:
        # Outbound event socket mode is not simulated: behave like an outbound client that
        # answers, plays a short prompt and hangs up.
        self.answer(ch)
        self.sleep(0.5)
        self.hangup(ch.uuid, "NORMAL_CLEARING")
        self.wait(ch, None)

    def app_eavesdrop(self, ch: SimChannel, arg: str) -> str:
        target = self.channels.get(arg.strip())
        if target is None:
            return "_none_"
        self.answer(ch)
        ch.variables["eavesdrop_target"] = target.uuid
        while target.uuid in self.channels and not target.hangup_cause:
            if self.wait(ch, 0.2 * self.speed, media=True) is not None:
                continue
        return "_none_"

    # -- bridging ------------------------------------------------------------------------
    def partner(self, ch: SimChannel) -> SimChannel | None:
        """The bridged leg, or the leg being dialled for ``ch`` while it rings."""
        if ch.other_leg and ch.other_leg in self.channels:
            return self.channels[ch.other_leg]
        for other in self.channels.values():
            if other.other_leg == ch.uuid and other.other_type == "originator" and not other.gone:
                return other
        return None

    def _take_over(self, ch: SimChannel, other_uuid: str) -> None:
        """Pull a channel out of whatever it runs so it can be bridged to ``other_uuid``."""
        ch.unwind_pending.append(BridgeUnwind(other_uuid, False))
        self._send(ch, ch.unwind_pending[-1])

    def _after_bridge_request(self, ch: SimChannel, b: BridgeUnwind) -> Callable[[], None]:
        if ch.unwind_pending and b in ch.unwind_pending:
            ch.unwind_pending.remove(b)
        if b.originator:
            other = self.channels.get(b.other)
            if other is None:
                return lambda: self.park(ch, "")

            def run() -> None:
                self._bridged(ch, other, originator=True, wait_peer=True)
                self._after_bridge_end(ch)
            return run

        def run_b() -> None:
            self._exchange(ch, b.other)
            self._after_bridge_end(ch)
        return run_b

    def _after_bridge_end(self, ch: SimChannel) -> None:
        if ch.variables.get("park_after_bridge") == "true":
            self.park(ch, "")

    def _bridged(self, a: SimChannel, b: SimChannel, *, originator: bool,
                 wait_peer: bool = False) -> None:
        """``a`` fires CHANNEL_BRIDGE/UNBRIDGE and waits until the bridge ends."""
        if wait_peer:
            for _ in range(100):
                if b.other_leg == a.uuid or b.gone:
                    break
                gevent.sleep(0.005)
        now = int(time.time() * 1_000_000)
        a.other_leg, a.other_type, a.bridged_us = b.uuid, "originatee", now
        b.other_leg, b.other_type, b.bridged_us = a.uuid, "originator", now
        a.variables["bridge_uuid"] = b.uuid
        a.variables["signal_bond"] = b.uuid
        b.variables["bridge_uuid"] = a.uuid
        b.variables["signal_bond"] = a.uuid
        a.variables["last_bridge_to"] = b.uuid
        if not a.callee_id_number:
            # the caller now knows whom it talks to (Kazoo's callee_id_* fields)
            a.callee_id_name = b.caller_id_name if b.direction == "inbound" else b.destination
            a.callee_id_number = b.caller_id_number if b.direction == "inbound" \
                else b.destination
        self.set_callstate(a, "ACTIVE")
        ab = [("Bridge-A-Unique-ID", a.uuid), ("Bridge-B-Unique-ID", b.uuid)]
        self.chan_event(a, "CHANNEL_BRIDGE", before=ab)
        try:
            while True:
                msg = self.wait(a, None, idle=True)
                if msg and msg[0] == "bridge_end" and msg[1] == b.uuid:
                    break
        finally:
            self.chan_event(a, "CHANNEL_UNBRIDGE", before=ab)
            if a.other_leg == b.uuid:
                a.other_leg, a.other_type = None, None
            if b.other_leg == a.uuid and not b.gone:
                self._send(b, ("bridge_end", a.uuid))

    def _exchange(self, ch: SimChannel, other_uuid: str) -> None:
        """The originatee side of a bridge: no application, just media until it ends."""
        ch.other_leg, ch.other_type = other_uuid, "originator"
        if ch.state != "CS_EXCHANGE_MEDIA":
            self.set_state(ch, "CS_EXCHANGE_MEDIA")
        try:
            while True:
                msg = self.wait(ch, None, idle=True)
                if msg and msg[0] == "bridge_end":
                    break
        finally:
            partner = self.channels.get(other_uuid)
            if partner is not None and partner.other_leg == ch.uuid:
                self._send(partner, ("bridge_end", ch.uuid))

    def uuid_bridge(self, a: SimChannel, b: SimChannel) -> None:
        a.unwind_pending.append(BridgeUnwind(b.uuid, True))
        self._send(a, a.unwind_pending[-1])
        self._take_over(b, a.uuid)

    # -- transfer ------------------------------------------------------------------------
    def transfer(self, ch: SimChannel, dest: str, dialplan: str, context: str) -> None:
        # the new caller profile exists at once; the running application then unwinds
        ch.transfer_us = int(time.time() * 1_000_000)
        ch.transfer_source = f"{int(time.time())}:{new_uuid()}:bl_xfer:{dest}/{context}/{dialplan}"
        ch.rdnis = ch.destination
        ch.profile_index += 1
        if dialplan.lower() != "inline":
            ch.destination, ch.context, ch.dialplan = dest, context, dialplan
        self._send(ch, TransferUnwind(dest, dialplan, context))

    def _after_transfer(self, ch: SimChannel, t: TransferUnwind) -> Callable[[], None]:
        partner = self.channels.get(ch.other_leg) if ch.other_leg else None
        if partner is not None and partner.other_leg == ch.uuid:
            self._send(partner, ("bridge_end", ch.uuid))
        ch.other_leg, ch.other_type = None, None
        if t.dialplan.lower() == "inline":
            apps = parse_inline(t.dest)
        else:
            found = self.lookup(t.dest, t.context)
            if found is None:
                raise HangupUnwind(self._no_route(ch))
            apps = found
        ch.variables["transfer_history"] = f"{int(time.time())}:{new_uuid()}:uuid_br:{t.dest}"
        ch.hit_dialplan = True
        self.set_state(ch, "CS_ROUTING")
        self.set_state(ch, "CS_EXECUTE")
        return lambda: self.run_apps(ch, apps)

    def _no_route(self, ch: SimChannel) -> str:
        self.hangup(ch.uuid, "NO_ROUTE_DESTINATION")
        return "NO_ROUTE_DESTINATION"

    # -- originate -----------------------------------------------------------------------
    def originate_leg(self, dial: str, *, originator: SimChannel | None = None,
                      app: list[tuple[str, str]] | None = None,
                      cid: tuple[str, str] | None = None,
                      timeout: float | None = None) -> SimChannel:
        """Create the outbound leg of ``dial``, wait for the answer. Raises OriginateFailed.

        With ``originator`` (the bridge app) the new leg becomes its originatee; otherwise
        ``app`` is what the answered leg runs."""
        variables, endpoint = parse_dial_string(dial)
        if originator is not None:
            # a bridged leg inherits the caller's identity unless told otherwise
            cid = cid or (originator.caller_id_name, originator.caller_id_number)
        name_v = variables.get("origination_caller_id_name")
        num_v = variables.get("origination_caller_id_number")
        cid_name = name_v or (cid[0] if cid else "Outbound Call")
        cid_num = num_v or (cid[1] if cid else "0000000000")
        want_uuid = variables.get("origination_uuid")
        if want_uuid and want_uuid in self.channels:
            raise OriginateFailed("DESTINATION_OUT_OF_ORDER")
        timeout = float(variables.get("originate_timeout", timeout or self.originate_timeout))
        kind, _, rest = endpoint.partition("/")
        if kind == "error":
            raise OriginateFailed(rest or "CALL_REJECTED")
        if kind == "loopback":
            return self._originate_loopback(rest, variables, cid_name, cid_num, want_uuid,
                                             originator, app, timeout)
        if kind in ("user", "sofia", "verto.rtc", "freetdm", "sip", "rtc"):
            return self._originate_remote(endpoint, variables, cid_name, cid_num, want_uuid,
                                          originator, app, timeout)
        raise OriginateFailed("CHAN_NOT_IMPLEMENTED")

    def _outbound(self, name: str, tmp_name: str, variables: dict[str, str], cid_name: str,
                  cid_num: str, dest: str, context: str, want_uuid: str | None,
                  originator: SimChannel | None, sip: bool, source: str) -> SimChannel:
        ch = self._new_channel(uuid=new_uuid(), name=tmp_name, direction="outbound",
                               caller_id_name=cid_name, caller_id_number=cid_num,
                               destination=dest, context=context, source=source,
                               variables={}, sip=sip)
        ch.answer_result = gevent.event.AsyncResult()  # type: ignore[attr-defined]
        ch.callee_id_name, ch.callee_id_number = "Outbound Call", dest
        if originator is not None:
            ch.other_leg, ch.other_type = originator.uuid, "originator"
        ch.state = "CS_NONE"
        self.chan_event(ch, "CODEC", with_vars=False)
        if want_uuid:
            ch.name = name
            ch.variables["channel_name"] = name
            self.rename(ch, want_uuid)
        ch.name = name
        ch.variables["channel_name"] = name
        ch.variables.update(variables)
        if want_uuid:
            ch.variables["origination_uuid"] = want_uuid
        self.chan_event(ch, "CHANNEL_OUTGOING", with_vars=False)
        return ch

    def _originate_loopback(self, rest: str, variables: dict[str, str], cid_name: str,
                            cid_num: str, want_uuid: str | None, originator: SimChannel | None,
                            app: list[tuple[str, str]] | None, timeout: float) -> SimChannel:
        parts = rest.split("/")
        ext = parts[0]
        context = parts[1] if len(parts) > 1 and parts[1] else "default"
        a = self._outbound(f"loopback/{ext}-a", f"loopback/{rest}-a", variables, cid_name,
                           cid_num, ext, context, want_uuid, originator, False, "mod_loopback")
        a.variables.update({"originate_early_media": "true", "originate_endpoint": "loopback"})
        b = self._new_channel(uuid=new_uuid(), name=f"loopback/{ext}-b", direction="inbound",
                              caller_id_name=cid_name, caller_id_number=cid_num,
                              destination=ext, context=context, variables={})
        b.callee_id_name, b.callee_id_number = "Outbound Call", ext
        b.variables.update(variables)
        if want_uuid:
            b.variables["origination_uuid"] = want_uuid
        a.variables["other_loopback_leg_uuid"] = b.uuid
        a.variables["loopback_leg"] = "A"
        b.variables["other_loopback_leg_uuid"] = a.uuid
        b.variables["loopback_leg"] = "B"
        a.loopback_peer, b.loopback_peer = b.uuid, a.uuid
        self.set_state(a, "CS_INIT")
        self.set_state(b, "CS_INIT")
        self.chan_event(b, "CHANNEL_CREATE")
        self.chan_event(a, "CHANNEL_CREATE")
        self.chan_event(a, "CHANNEL_ORIGINATE")
        self.set_state(a, "CS_ROUTING")
        self.set_state(a, "CS_CONSUME_MEDIA")
        apps = self.lookup(ext, context)

        def run_b() -> None:
            self.set_callstate(b, "RINGING")
            self.set_state(b, "CS_ROUTING")
            if apps is None:
                b.hit_dialplan = True
                raise HangupUnwind(self._no_route(b))
            b.hit_dialplan = True
            b.variables["DP_MATCH"] = ext
            self.set_state(b, "CS_EXECUTE")
            self.run_apps(b, apps)

        self.start(b, run_b)
        self._await_answer(a, timeout)
        return self._launch_originated(a, originator, app)

    def _originate_remote(self, endpoint: str, variables: dict[str, str], cid_name: str,
                          cid_num: str, want_uuid: str | None, originator: SimChannel | None,
                          app: list[tuple[str, str]] | None, timeout: float) -> SimChannel:
        kind, _, target = endpoint.partition("/")
        name = endpoint if kind == "sofia" else f"sofia/internal/{target}"
        dest = target.split("@", 1)[0].split("/")[-1]
        ch = self._outbound(name, name, variables, cid_name, cid_num, dest, "default",
                            want_uuid, originator, True, "mod_sofia")
        self._originated_leg_up(ch)
        self.set_callstate(ch, "RINGING")
        behaviour = self.endpoint_behaviour.get(target) or self.endpoint_behaviour.get(dest) \
            or "answer"

        def ring() -> None:
            self.sleep(self.ring_seconds)
            if ch.gone or ch.hangup_cause:
                return
            if behaviour == "answer":
                self._mark_answered(ch)
            elif behaviour == "busy":
                self.hangup(ch.uuid, "USER_BUSY")
            elif behaviour == "reject":
                self.hangup(ch.uuid, "CALL_REJECTED")
            elif behaviour == "unregistered":
                self.hangup(ch.uuid, "USER_NOT_REGISTERED")

        gevent.spawn(ring)
        self._await_answer(ch, timeout)
        return self._launch_originated(ch, originator, app)

    def _originated_leg_up(self, ch: SimChannel) -> None:
        """A dialled (non-loopback) leg comes up: the events FreeSWITCH sends until it rings."""
        self.set_state(ch, "CS_INIT")
        self.chan_event(ch, "CHANNEL_CREATE")
        self.chan_event(ch, "CHANNEL_ORIGINATE")
        self.set_state(ch, "CS_ROUTING")
        self.set_state(ch, "CS_CONSUME_MEDIA")

    def _await_answer(self, ch: SimChannel, timeout: float) -> None:
        res: gevent.event.AsyncResult = ch.answer_result  # type: ignore[attr-defined]
        watcher = self.listeners

        def on_event(ev: SimEvent) -> None:
            if ev.unique_id == ch.uuid and ev.name == "CHANNEL_HANGUP" and not res.ready():
                res.set("HANGUP")

        watcher.append(on_event)
        try:
            if ch.hangup_cause and not res.ready():
                res.set("HANGUP")
            outcome = res.get(timeout=timeout / self.speed) if not res.ready() else res.get()
        except gevent.Timeout:
            outcome = "TIMEOUT"
        finally:
            watcher.remove(on_event)
        if outcome == "ANSWER":
            return
        if outcome == "TIMEOUT":
            self.hangup(ch.uuid, "NO_ANSWER")
            self._ensure_runner(ch)
            raise OriginateFailed("NO_ANSWER")
        self._ensure_runner(ch)
        # over loopback the A leg only ever sees its twin clear normally
        cause = "NORMAL_CLEARING" if ch.source == "mod_loopback" else ch.hangup_cause
        raise OriginateFailed(cause or "NORMAL_CLEARING")

    def _ensure_runner(self, ch: SimChannel) -> None:
        if ch.greenlet is None and not ch.gone:
            self.start(ch, lambda: self.wait(ch, None))

    def _launch_originated(self, ch: SimChannel, originator: SimChannel | None,
                           app: list[tuple[str, str]] | None) -> SimChannel:
        ch.variables["endpoint_disposition"] = "ANSWER"
        self.chan_event(ch, "CALL_UPDATE", before=[("Direction", "RECV")])
        if originator is not None:
            self.start(ch, lambda: self._exchange(ch, originator.uuid))
            return ch
        ch.hit_dialplan = True
        apps = app or [("park", "")]

        def run() -> None:
            self.set_state(ch, "CS_EXECUTE")
            self.run_apps(ch, apps)

        self.start(ch, run)
        return ch

    def originate(self, args: str) -> str:
        """The ``originate`` api: ``<url> <exten>|&app(args) [dialplan] [context] [cid_name]
        [cid_num] [timeout]``."""
        url, rest = _split_first(args)
        if not url:
            return ("-USAGE: <call url> <exten>|&<application_name>(<app_args>) [<dialplan>] "
                    "[<context>] [<cid_name>] [<cid_num>] [<timeout_sec>]\n")
        target, rest = _split_first(rest)
        extra = rest.split()
        apps: list[tuple[str, str]]
        if not target or target.startswith("&"):
            m = re.match(r"^&([\w.-]+)(?:\((.*)\))?$", target or "&park", re.S)
            if not m:
                return "-ERR INVALID_GATEWAY\n"
            apps = [(m.group(1), m.group(2) or "")]
        else:
            dp = extra[0] if extra else "XML"
            ctx = extra[1] if len(extra) > 1 else "default"
            if dp.lower() == "inline":
                apps = parse_inline(target)
            else:
                found = self.lookup(target, ctx)
                if found is None:
                    apps = [("hangup", "NO_ROUTE_DESTINATION")]
                else:
                    apps = found
        cid = None
        if len(extra) >= 4:
            cid = (extra[2], extra[3])
        timeout = float(extra[4]) if len(extra) >= 5 and extra[4].isdigit() else None
        try:
            ch = self.originate_leg(url, app=apps, cid=cid, timeout=timeout)
        except OriginateFailed as e:
            return f"-ERR {e.cause}\n"
        return f"+OK {ch.uuid}\n"

    # -- calls created from Python -------------------------------------------------------
    def create_call(self, *, a_vars: dict[str, str], b_vars: dict[str, str], caller_id_name: str,
                    caller_id_number: str, destination: str, answered: bool, bridged: bool,
                    a_name: str, b_name: str) -> tuple[SimChannel, SimChannel | None]:
        """A phone calls in (inbound SIP leg) and the switch dials the callee (outbound leg)."""
        a = self._new_channel(uuid=new_uuid(), name=a_name, direction="inbound",
                              caller_id_name=caller_id_name, caller_id_number=caller_id_number,
                              destination=destination, context="default", source="mod_sofia",
                              variables=a_vars, sip=True)
        self.set_state(a, "CS_INIT")
        self.chan_event(a, "CHANNEL_CREATE")
        self.set_callstate(a, "RINGING")
        self.set_state(a, "CS_ROUTING")
        a.hit_dialplan = True
        self.set_state(a, "CS_EXECUTE")
        if not bridged:
            def run_a() -> None:
                if answered:
                    self._run_app(a, "answer", "")
                self._run_app(a, "park", "")
            self.start(a, run_a)
            return a, None
        b = self._new_channel(uuid=new_uuid(), name=b_name, direction="outbound",
                              caller_id_name=caller_id_name, caller_id_number=caller_id_number,
                              destination=destination, context="default", source="mod_sofia",
                              variables=b_vars, sip=True)
        b.callee_id_name, b.callee_id_number = destination, destination
        b.other_leg, b.other_type = a.uuid, "originator"
        b.answer_result = gevent.event.AsyncResult()  # type: ignore[attr-defined]
        self.chan_event(b, "CHANNEL_OUTGOING", with_vars=False)
        self._originated_leg_up(b)
        self.set_callstate(b, "RINGING")
        self.set_callstate(a, "RING_WAIT")
        ready = gevent.event.Event()

        def run_a2() -> None:
            app_uuid = new_uuid()
            data = [("Application-Data", f"sofia/internal/{destination}")]
            a.app, a.app_data = "bridge", data[0][1]
            a.variables["current_application"] = "bridge"
            self.chan_event(a, "CHANNEL_EXECUTE", extra=[("Application", "bridge")] + data
                            + [("Application-UUID", app_uuid)])
            ready.set()
            try:
                if not answered:
                    # ringing until someone answers (answer_call) or hangs up
                    while True:
                        msg = self.wait(a, None, idle=True)
                        if msg and msg[0] == "answer":
                            break
                self._mark_answered(b)
                self._mark_answered(a)
                self._bridged(a, b, originator=True)
            finally:
                if not a.gone:
                    self.chan_event(a, "CHANNEL_EXECUTE_COMPLETE",
                                    extra=[("Application", "bridge")] + data
                                    + [("Application-Response", "_none_"),
                                       ("Application-UUID", app_uuid)])
                a.app = None

        self.start(a, run_a2)
        ready.wait(timeout=1.0)
        self.start(b, lambda: self._exchange(b, a.uuid))
        return a, b


def _split_first(s: str) -> tuple[str, str]:
    s = s.strip()
    if not s:
        return "", ""
    # a leading {…} block may contain spaces inside quotes
    depth = 0
    quoted = False
    for i, c in enumerate(s):
        if c == "'":
            quoted = not quoted
        elif c in "{[(" and not quoted:
            depth += 1
        elif c in "}])" and not quoted:
            depth = max(0, depth - 1)
        elif c.isspace() and depth == 0 and not quoted:
            return s[:i], s[i:].strip()
    return s, ""
