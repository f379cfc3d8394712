"""Answer, ringing and early media, hold, DTMF with its digit parser, and recording, as a
mixin of :class:`~eslchan.simulator.switch.Switch` (``self`` is the whole switch): what a
channel's call state does when FreeSWITCH is asked to change it, with the events it fires.
"""

from __future__ import annotations

import time

import gevent

from eslchan.simulator.channels import DigitBinding, SimChannel
from eslchan.simulator.core import NUDGE

#: How long the digit parser waits for the next digit of a longer binding (FreeSWITCH's
#: bind_digit_digit_timeout default, in simulated seconds).
DIGIT_TIMEOUT = 1.5


class CallState:
    """Answer, hold, DTMF and recording of a channel; ``self`` is the whole
    :class:`~eslchan.simulator.switch.Switch`."""

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

    def ring_ready(self, ch: SimChannel) -> None:
        """switch_channel_mark_ring_ready (a 180, or ring_ready): CHANNEL_PROGRESS, then the
        callstate RINGING. A loopback leg passes it to its twin first, as mod_loopback
        does (esl-captures 14)."""
        twin = self._loopback_twin(ch)
        if twin is not None:
            self._mark_ring_ready(twin)
        self._mark_ring_ready(ch)

    def pre_answer(self, ch: SimChannel) -> None:
        """switch_channel_mark_pre_answered (a 183 with media, pre_answer, media played to an
        unanswered call): CHANNEL_PROGRESS_MEDIA with Answer-State early, then the callstate
        EARLY; the loopback twin first."""
        twin = self._loopback_twin(ch)
        if twin is not None:
            self._mark_pre_answered(twin)
        self._mark_pre_answered(ch)

    def _loopback_twin(self, ch: SimChannel) -> SimChannel | None:
        if not ch.loopback_peer or ch.variables.get("loopback_leg") != "B":
            return None
        return self.channels.get(ch.loopback_peer)

    def _mark_ring_ready(self, ch: SimChannel) -> None:
        if ch.progress_us or ch.answered or ch.answer_state == "early" or ch.hangup_cause:
            return  # CF_RING_READY is set once
        ch.progress_us = int(time.time() * 1_000_000)
        self.chan_event(ch, "CHANNEL_PROGRESS")
        if ch.callstate in ("DOWN", "DIALING"):
            self.set_callstate(ch, "RINGING")

    def _mark_pre_answered(self, ch: SimChannel) -> None:
        if ch.answered or ch.answer_state == "early" or ch.hangup_cause:
            return
        ch.answer_state = "early"
        ch.progress_media_us = int(time.time() * 1_000_000)
        self.fire_hooks(ch, "media", "pre_answer")
        self.chan_event(ch, "CHANNEL_PROGRESS_MEDIA")
        self.set_callstate(ch, "EARLY")

    def _mark_answered(self, ch: SimChannel) -> None:
        ch.answered = True
        ch.answer_state = "answered"
        ch.answered_us = int(time.time() * 1_000_000)
        self.fire_hooks(ch, "media", "answer")
        self.chan_event(ch, "CHANNEL_ANSWER")
        self.presence(ch, "Answered", "confirmed")
        self.set_callstate(ch, "ACTIVE")
        res = getattr(ch, "answer_result", None)
        if res is not None and not res.ready():
            res.set("ANSWER")

    def hold(self, ch: SimChannel, mode: str) -> str:
        """switch_ivr_hold/unhold/hold_toggle: decided by the callstate, which only a SIP leg
        moves to HELD. So on a loopback leg ``toggle`` holds again and ``off`` fails. Holding
        suspends the leg (its bridge reads no DTMF) and plays the hold music to its peer."""
        if mode == "toggle":
            if ch.callstate in ("ACTIVE", "UNHELD"):
                mode = "on"
            elif ch.callstate == "HELD":
                mode = "off"
            else:
                return "+OK Success\n"
        if mode == "off":
            if ch.callstate != "HELD":
                return "-ERR Operation failed\n"
            ch.held = ch.suspended = False
            self.set_callstate(ch, "UNHELD")
            other = self.channels.get(ch.other_leg) if ch.other_leg else None
            if other is not None:
                self.break_media(other, False)  # stop the hold music
            self.chan_event(ch, "CHANNEL_UNHOLD")
            self.set_callstate(ch, "ACTIVE")
            if other is not None and other.callstate == "HELD":
                self.set_callstate(other, "ACTIVE")
            self._send(ch, NUDGE)  # its bridge reads the digits that waited
            return "+OK Success\n"
        if ch.callstate == "HELD":
            return "-ERR Operation failed\n"
        ch.held = ch.suspended = True
        if ch.sip:
            self.set_callstate(ch, "HELD")
        other = self.channels.get(ch.other_leg) if ch.other_leg else None
        music = ch.variables.get("hold_music") or self.global_vars.get("hold_music")
        if other is not None and music:
            self.broadcast(other, "playback", music, loops=-1)
        self.chan_event(ch, "CHANNEL_HOLD")
        if ch.sip and other is not None and other.sip:
            self.set_callstate(other, "HELD")
        return "+OK Success\n"

    def dtmf(self, ch: SimChannel, digits: str, source: str = "RTP") -> None:
        """Digits arrive on ``ch`` (from its phone, uuid_recv_dtmf…), one every 100 ms."""
        for d in digits:
            if d in "wW":
                self.sleep(0.5 if d == "w" else 1.0)
                continue
            if ch.gone:
                return
            self.receive_digit(ch, d, source)
            self.sleep(0.1)

    def receive_digit(self, ch: SimChannel, digit: str, source: str, *, parsed: bool = False) -> None:
        """switch_channel_queue_dtmf: a digit parser (bind_digit_action) takes the digit
        first; otherwise it waits in the channel's DTMF queue until what the channel runs
        reads it, and only then is there a DTMF event (a held, suspended leg reads none)."""
        if not parsed and ch.bindings is not None:
            self._parse_digit(ch, digit, source)
            return
        ch.dtmf_queue.append((digit, source))
        self._send(ch, NUDGE)

    def _read_digit(self, ch: SimChannel) -> str:
        """switch_channel_dequeue_dtmf: the DTMF event fires when the digit is read."""
        digit, source = ch.dtmf_queue.popleft()
        self.chan_event(ch, "DTMF", extra=[("DTMF-Digit", digit), ("DTMF-Duration", "2000"),
                                           ("DTMF-Source", source)])
        return digit

    # the digit parser (switch_ivr_dmachine): fed as digits arrive, whatever the channel runs
    def _parse_digit(self, ch: SimChannel, digit: str, source: str) -> None:
        ch.dialled += digit
        if ch.dial_timer is not None:
            ch.dial_timer.kill(block=False)
            ch.dial_timer = None
        bindings = (ch.bindings or {}).get(ch.realm or "", [])
        exact = [b for b in bindings if b.digits == ch.dialled]
        longer = [b for b in bindings if b.digits != ch.dialled and b.digits.startswith(ch.dialled)]
        if exact and not longer:
            ch.dialled = ""
            self._digit_action(ch, exact[0])
        elif exact or longer:
            ch.dial_timer = gevent.spawn_later(DIGIT_TIMEOUT / self.speed, self._digit_timeout, ch, source)
        else:
            self._digits_unmatched(ch, source)

    def _digit_timeout(self, ch: SimChannel, source: str) -> None:
        ch.dial_timer = None
        bindings = (ch.bindings or {}).get(ch.realm or "", [])
        exact = [b for b in bindings if b.digits == ch.dialled]
        if exact:
            ch.dialled = ""
            self._digit_action(ch, exact[0])
        else:
            self._digits_unmatched(ch, source)

    def _digits_unmatched(self, ch: SimChannel, source: str) -> None:
        """No binding matches: the digits go round again, past the parser."""
        digits, ch.dialled = ch.dialled, ""
        for d in digits:
            self.receive_digit(ch, d, source, parsed=True)

    def _digit_action(self, ch: SimChannel, binding: DigitBinding) -> None:
        """digit_action_callback: ``exec[flags]:app`` broadcasts the app to the target leg
        (run by its thread, even while held in a bridge); ``api:cmd`` runs an api command."""
        target = ch
        if binding.target == "peer" and ch.other_leg:
            target = self.channels.get(ch.other_leg) or ch
        action = binding.action
        if action.lower().startswith("api:"):
            self.run_api(f"{action[4:]} {binding.value}".strip())
            return
        if action.lower().startswith("exec"):
            app = action.split(":", 1)[1] if ":" in action else ""
            if app and not target.gone:
                self.broadcast(target, app, binding.value)

    def bind_digits(self, ch: SimChannel, binding: DigitBinding) -> None:
        """bind_digit_action: the binding's realm becomes the parser's current one."""
        if ch.bindings is None:
            ch.bindings = {}
        ch.bindings.setdefault(binding.realm, []).append(binding)
        ch.realm = binding.realm

    def clear_digits(self, ch: SimChannel, realm: str) -> None:
        """clear_digit_action: one realm, or ``all`` (the parser goes, digits flow freely)."""
        if ch.bindings is None:
            return
        if realm in ("", "all"):
            ch.bindings, ch.realm, ch.dialled = None, None, ""
            return
        ch.bindings.pop(realm, None)
        if ch.realm == realm:
            ch.realm = None

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
        self.fire_hooks(ch, "record_stop")
        self.chan_event(ch, "RECORD_STOP", extra=[
            ("Record-File-Path", path), ("Record-Completion-Cause", "success")])
