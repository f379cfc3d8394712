"""The switch's core: events, channel life, private commands, the dialplan.

Every channel runs its applications in its own greenlet and reacts to outside requests
(hangup, transfer, uuid_bridge, break, sendmsg execute) through its inbox, so the event
order of one channel is the order FreeSWITCH uses: CREATE … ANSWER … HANGUP …
HANGUP_COMPLETE, DESTROY.

:class:`SwitchCore` is the base of :class:`~eslchan.simulator.switch.Switch`; the dialplan
applications (``apps``), answer/hold/DTMF/recording (``callstate``), bridging and transfer
(``bridging``) and originate (``originate``) are mixins beside it, and the channel runner
here hands a transfer, a bridge request or a break over to them.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from typing import Any

import gevent
import gevent.queue

from eslchan.simulator.channels import (
    CALLSTATE_NUMBERS,
    BreakUnwind,
    BridgeUnwind,
    Exec,
    HangupUnwind,
    SimChannel,
    TransferUnwind,
    Unwind,
    new_uuid,
)
from eslchan.simulator.coredb import CoreDb, DbLag
from eslchan.simulator.dialstring import Dialplan, default_dialplan
from eslchan.simulator.hooks import HookRun, due
from eslchan.simulator.interfaces import DEFAULT_MODULES, Interfaces
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
    "CHANNEL_PROGRESS": ("switch_channel.c", "switch_channel_perform_mark_ring_ready_value", "3505"),
    "CHANNEL_PROGRESS_MEDIA": ("switch_channel.c", "switch_channel_perform_mark_pre_answered", "3560"),
    "CHANNEL_STATE": ("switch_channel.c", "switch_channel_perform_set_running_state", "2408"),
    "CHANNEL_UNBRIDGE": ("switch_ivr_bridge.c", "switch_ivr_multi_threaded_bridge", "1879"),
    "CHANNEL_UNPARK": ("switch_ivr.c", "switch_ivr_park", "1213"),
    "CHANNEL_UUID": ("switch_core_session.c", "switch_core_session_set_uuid", "2051"),
    "CODEC": ("switch_core_codec.c", "switch_core_session_set_read_codec", "279"),
    "CUSTOM": ("mod_event_socket.c", "parse_command", "2275"),
    "DTMF": ("switch_channel.c", "switch_channel_queue_dtmf", "501"),
    "HEARTBEAT": ("switch_core.c", "send_heartbeat", "95"),
    "MEDIA_BUG_START": ("switch_core_media_bug.c", "switch_core_media_bug_add", "1014"),
    "MEDIA_BUG_STOP": ("switch_core_media_bug.c", "switch_core_media_bug_destroy", "84"),
    "PLAYBACK_START": ("switch_ivr_play_say.c", "switch_ivr_play_file", "1646"),
    "PLAYBACK_STOP": ("switch_ivr_play_say.c", "switch_ivr_play_file", "2020"),
    "PRIVATE_COMMAND": ("switch_ivr.c", "switch_ivr_parse_next_event", "804"),
    "RECORD_START": ("switch_ivr_async.c", "record_callback", "1253"),
    "RECORD_STOP": ("switch_ivr_async.c", "record_callback", "1389"),
    "RE_SCHEDULE": ("switch_scheduler.c", "switch_scheduler_execute", "73"),
    "SHUTDOWN": ("switch_core.c", "switch_core_destroy", "3023"),
}


#: Wakes a channel's thread so it looks at its DTMF queue and private commands again.
NUDGE = ("nudge",)


class OriginateFailed(Exception):
    def __init__(self, cause: str) -> None:
        super().__init__(cause)
        self.cause = cause


class SwitchCore:
    """The FreeSWITCH model's core: channels, their events and how applications run.

    Not used alone: :class:`~eslchan.simulator.switch.Switch` adds what the runner and
    ``_run_app`` call on ``self`` — the applications (``app_*``, ``park``) and bridging and
    transfer (``_after_bridge_request``, ``_after_transfer``) — and originate."""

    def __init__(self, *, hostname: str, core_uuid: str, speed: float,
                 publish: Callable[[SimEvent], None], modules: set[str] | frozenset[str] = DEFAULT_MODULES,
                 sound_files: bool = False, execute_pickup: float = 0.01, core_db: bool = True,
                 db_lag: DbLag | None = None, seed: int | None = 0) -> None:
        self.hostname = hostname
        self.domain = hostname  # the default domain of user/ endpoints (the Simulator's)
        # FreeSWITCH's core database (switch.conf core-db): without it `show` answers -ERR
        self.core_db = core_db
        self.interfaces = Interfaces(modules)
        # the recorded server had no sound files: say and file prompts play nothing
        self.sound_files = sound_files
        # a queued sendmsg execute is picked up by the channel's own thread at its next frame,
        # about 10 ms later (real seconds, not scaled): a uuid_bridge sent meanwhile goes first
        # (esl-captures 18)
        self.execute_pickup = execute_pickup
        # vars.xml globals a channel variable falls back to
        self.global_vars: dict[str, str] = {"hold_music": "local_stream://moh"}
        # runs an api command as if a client sent it (the digit parser's api: actions); the
        # Simulator plugs its own in
        self.run_api: Callable[[str], str] = lambda line: "-ERR no api\n"
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
        # the far end of a dialled user/ or SIP endpoint, by target or user:
        # answer|early|busy|no_answer|reject|unregistered; a user/ endpoint with none is not
        # registered (USER_NOT_REGISTERED), anything else answers
        self.endpoint_behaviour: dict[str, str] = {}
        self.gateways: dict[str, str] = {}   # sofia gateways: name -> up|down
        self.originate_timeout = 60.0
        self.sessions_since_startup = 0
        self.peak = 0
        self._session_id = 0
        self.listeners: list[Callable[[SimEvent], None]] = []
        # what `show channels` / `show calls` read: lags the events like FreeSWITCH's
        self.coredb = CoreDb(self, DbLag() if db_lag is None else db_lag, seed)
        self.listeners.append(self.coredb.on_event)
        self.hooks: list[HookRun] = []  # every time FreeSWITCH would act on a hook variable

    def fire_hooks(self, ch: SimChannel, *moments: str) -> None:
        """Record the hook variables FreeSWITCH would act on now (see ``hooks``)."""
        for moment in moments:
            self.hooks.extend(due(ch.uuid, ch.variables, moment))

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
        if callstate == "RINGING":
            self.fire_hooks(ch, "ring")
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
             idle: bool = False, dtmf: bool | Callable[[], bool] = False) -> Any:
        """Wait for the next inbox message, as the loop of whatever the channel runs does.

        Unwinds (hangup, transfer, bridge) raise at once; a break raises only in ``media``.
        Queued private commands (sendmsg execute, broadcasts) that are due run here when the
        channel is ``idle`` (park, a bridge), and nested inside ``media`` as FreeSWITCH's
        play_file does, unless an event-locked one is running. With ``dtmf`` (or while it
        returns true) this loop reads the channel's DTMF: a digit read fires its DTMF event and
        is returned as ``("dtmf", digit)``; otherwise digits stay queued, unseen."""
        deadline = None if timeout is None else time.monotonic() + timeout / self.speed
        while True:
            try:
                msg = ch.inbox.get_nowait()  # unwinds and answers go before anything queued
            except gevent.queue.Empty:
                msg = None
            if msg is None:
                if ch.dtmf_queue and (dtmf() if callable(dtmf) else dtmf):
                    return ("dtmf", self._read_digit(ch))
                wake_at = deadline
                if (idle or (media and not ch.event_lock)) and ch.private:
                    head = ch.private[0]
                    now = time.monotonic()
                    if head.due <= now:
                        ch.private.popleft()
                        self._run_private(ch, head)
                        if idle and ch.bridge_ends:
                            return None  # the bridge ended meanwhile: let its loop see it
                        continue
                    wake_at = head.due if wake_at is None else min(wake_at, head.due)
                remaining = None if wake_at is None else wake_at - time.monotonic()
                if deadline is not None and deadline <= time.monotonic():
                    return None
                try:
                    msg = ch.inbox.get(timeout=None if remaining is None else max(0.0, remaining))
                except gevent.queue.Empty:
                    continue
            if isinstance(msg, BreakUnwind):
                if media:
                    raise msg
                continue
            if isinstance(msg, Unwind):
                raise msg
            if msg == NUDGE:
                continue
            if msg[0] == "bridge_end":
                self._bridge_ended(ch, msg[1])
            return msg

    def _bridge_ended(self, ch: SimChannel, peer: str) -> None:
        """The bridge with ``peer`` is over: the bridge's loop reads it from
        ``ch.bridge_ends`` even when an application running inside the bridge (media from
        uuid_broadcast or sendmsg) took the message. Such media does not keep the leg up:
        the originatee is hung up with the bridge, as FreeSWITCH hangs up a bridge's B leg,
        and so is the originator when hangup_after_bridge is set (Kazoo sets it on its
        legs); park_after_bridge, or an originator without it, lets the media finish."""
        ch.bridge_ends.add(peer)
        if ch.bridge_depth is None or ch.app_depth <= ch.bridge_depth or ch.hangup_cause:
            return  # the bridge loop itself got it
        if ch.other_type == "originator":
            hang_up = ch.variables.get("park_after_bridge") != "true"
        else:
            hang_up = ch.variables.get("hangup_after_bridge") == "true"
        if hang_up:
            other = self.channels.get(peer)
            self.hangup(ch.uuid, (other.hangup_cause if other is not None else None)
                        or "NORMAL_CLEARING")

    def _send(self, ch: SimChannel, msg: Any) -> None:
        ch.inbox.put(msg)

    # -- private commands (sendmsg execute, broadcasts) ----------------------------------
    def queue_private(self, ch: SimChannel, ex: Exec) -> None:
        """Queue a private command; the channel's thread picks it up ``execute_pickup``
        seconds later, at the earliest."""
        ex.due = time.monotonic() + self.execute_pickup
        ch.private.append(ex)
        gevent.spawn_later(self.execute_pickup, self._send, ch, NUDGE)

    def _run_private(self, ch: SimChannel, ex: Exec) -> None:
        """switch_ivr_parse_event: run the application ``loops`` times (-1: until a break
        stops the broadcast or one run is shorter than half a second), then PRIVATE_COMMAND."""
        ch.broadcasting += 1
        ch.stop_broadcast = False
        if ex.event_lock:
            ch.event_lock += 1
        try:
            done = 0
            while ex.loops < 0 or done < ex.loops:
                began = time.monotonic()
                self._run_app(ch, ex.app, ex.arg, ex.event_uuid)
                done += 1
                if ch.gone or ch.hangup_cause or ch.stop_broadcast \
                        or (time.monotonic() - began) * self.speed < 0.5:
                    break
        finally:
            if ex.event_lock:
                ch.event_lock -= 1
            ch.broadcasting -= 1
            if not ch.broadcasting:
                ch.stop_broadcast = False
            if not ch.gone:
                self.fire("PRIVATE_COMMAND", ex.private_headers + ch.headers(with_vars=False),
                          body=ex.body, unique_id=ch.uuid)

    def broadcast(self, ch: SimChannel, app: str, arg: str, *, loops: int = 1) -> None:
        """switch_ivr_broadcast: an event-locked private command (hold music, a digit action)."""
        headers = [("call-command", "execute"), ("execute-app-name", app),
                   ("execute-app-arg", arg), ("event-lock", "true"), ("lead-frames", "5")]
        if loops != 1:
            headers.append(("loops", str(loops)))
        self.queue_private(ch, Exec(app, arg, loops=loops, event_lock=True,
                                    private_headers=headers))

    def break_media(self, ch: SimChannel, flush: bool) -> None:
        """uuid_break: ``flush`` drops the queued private commands; a running one ends
        its loops (CF_STOP_BROADCAST) and its current media stops."""
        if flush:
            ch.private.clear()
        if ch.broadcasting:
            ch.stop_broadcast = True
        self._send(ch, BreakUnwind(flush))

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
        if ch.greenlet is None:
            # a leg still being originated: its own thread, started now, carries the hangup
            # out, so the originate answers -ERR before the leg's DESTROY (esl-captures 14)
            self.start(ch, lambda: self.wait(ch, None))
            self._send(ch, HangupUnwind(cause))
        elif ch.greenlet.dead:
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
        self.fire_hooks(ch, "hangup")
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
        self.fire_hooks(ch, "reporting")
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

    def sort_cid(self, ch: SimChannel) -> None:
        """switch_channel_sort_cid: an outbound channel about to run an extension (the
        originate's application, or a dialplan after a transfer) becomes the caller of its
        own dialplan, once: its caller and callee ids swap (SPEC §8; loopback ``-a`` legs
        show ``Outbound Call``/``<context>`` from then on)."""
        if ch.direction != "outbound" or ch.cf_dialplan:
            return
        ch.cf_dialplan = True
        if ch.caller_id_name:
            ch.variables["pre_transfer_caller_id_name"] = ch.caller_id_name
        if ch.caller_id_number:
            ch.variables["pre_transfer_caller_id_number"] = ch.caller_id_number
        ch.variables["channel_cid_flipped"] = "yes"
        self.flip_cid(ch)

    def flip_cid(self, ch: SimChannel) -> None:
        """switch_channel_flip_cid: caller and callee ids swap, told by a CALL_UPDATE."""
        old_name, old_number = ch.caller_id_name, ch.caller_id_number
        ch.caller_id_name, ch.caller_id_number = ch.callee_id_name, ch.callee_id_number
        ch.callee_id_name, ch.callee_id_number = old_name, old_number
        before = [("Direction", "RECV")]
        if ch.other_leg:
            before.append(("Bridged-To", ch.other_leg))
        self.chan_event(ch, "CALL_UPDATE", before=before)

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
        """switch_core_session_execute_application: an application no loaded module provides
        hangs the call up (DESTINATION_OUT_OF_ORDER) with no CHANNEL_EXECUTE. The
        Application-Response is the channel's ``current_application_response``, which the
        application (or one nested in it) sets."""
        if ch.gone or ch.hangup_cause:
            return
        if not self.interfaces.has("application", app):
            log.info("simulated channel %s: Invalid Application %s", ch.uuid, app)
            self.hangup(ch.uuid, "DESTINATION_OUT_OF_ORDER")
            return
        handler = getattr(self, "app_" + app, None)
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
        ch.variables.pop("current_application_response", None)
        data = [("Application-Data", arg)] if arg else []
        self.chan_event(ch, "CHANNEL_EXECUTE",
                        extra=[("Application", app)] + data + [("Application-UUID", app_uuid)])
        try:
            r = handler(ch, arg) if handler is not None else None
            if isinstance(r, str):
                ch.variables["current_application_response"] = r
        finally:
            if not ch.gone:
                response = ch.variables.get("current_application_response", "_none_")
                self.chan_event(ch, "CHANNEL_EXECUTE_COMPLETE", extra=[("Application", app)] + data
                                + [("Application-Response", response),
                                   ("Application-UUID", app_uuid)])
            ch.app_depth -= 1
            ch.app, ch.app_data = prev_app, prev_data
