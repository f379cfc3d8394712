"""The dialplan applications a simulated channel runs (``app_*``), with media playback and
digit collection, as a mixin of :class:`~eslchan.simulator.switch.Switch`.

``SwitchCore._run_app`` finds ``app_<name>`` on the switch and runs it in the channel's
greenlet between CHANNEL_EXECUTE and CHANNEL_EXECUTE_COMPLETE; a string it returns is the
Application-Response. An application a loaded module provides but the model has no
``app_<name>`` for runs with no visible effect; one no loaded module provides hangs the call
up (``SwitchCore._run_app``).
"""

from __future__ import annotations

import re
import time

import gevent

from eslchan.simulator.channels import (
    BreakUnwind,
    DigitBinding,
    Eavesdrop,
    SimChannel,
    TransferUnwind,
    Unwind,
)
from eslchan.simulator.core import OriginateFailed
from eslchan.simulator.dialstring import split_top
from eslchan.simulator.media import media_duration, media_type


def _terminators(value: str | None) -> str:
    """playback_terminators as mod_dptools' on_dtmf reads it: ``*`` when unset."""
    if value is None:
        return "*"
    return {"any": "1234567890*#", "none": ""}.get(value.lower(), value)


class Applications:
    """The dialplan applications; ``self`` is the whole
    :class:`~eslchan.simulator.switch.Switch`."""

    def app_answer(self, ch: SimChannel, arg: str) -> None:
        self.answer(ch)

    def app_pre_answer(self, ch: SimChannel, arg: str) -> None:
        self.pre_answer(ch)

    def app_ring_ready(self, ch: SimChannel, arg: str) -> None:
        self.ring_ready(ch)

    def app_acknowledge_call(self, ch: SimChannel, arg: str) -> None:
        """Sends a SIP 100 Trying: nothing an ESL client sees besides the execute."""

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
            if left <= 0 or self.wait(ch, left * self.speed, dtmf=True) is None:
                break

    def park(self, ch: SimChannel, arg: str) -> None:
        self._run_app(ch, "park", arg)

    def app_park(self, ch: SimChannel, arg: str) -> None:
        ch.parked = True
        self.chan_event(ch, "CHANNEL_PARK")
        try:
            while True:
                self.wait(ch, None, idle=True, dtmf=True)
        finally:
            ch.parked = False
            if not ch.gone:
                self.chan_event(ch, "CHANNEL_UNPARK")

    def app_echo(self, ch: SimChannel, arg: str) -> None:
        while True:
            self.wait(ch, None, idle=True, dtmf=True)

    def app_playback(self, ch: SimChannel, arg: str) -> str:
        if arg.startswith("say:"):  # play_file's say: is text for the channel's tts_engine
            engine = ch.variables.get("tts_engine")
            if not engine:
                return "FILE PLAYED"
            if not self.interfaces.has("speech", engine):
                return "PLAYBACK ERROR"
        return self.play(ch, arg)

    app_broadcast = app_playback

    def app_speak(self, ch: SimChannel, arg: str) -> None:
        """speak <engine>|<voice>|<text>: an engine no loaded module provides says nothing
        ("Invalid TTS module"), and the completion cannot tell (``_none_`` either way)."""
        parts = arg.split("|", 2)
        engine = parts[0] if len(parts) == 3 else ch.variables.get("tts_engine", "")
        if self.interfaces.has("speech", engine):
            self.play(ch, "speak:" + arg)
        return None

    def app_say(self, ch: SimChannel, arg: str) -> None:
        """say <lang> <type> <method> <text>: needs the language's say module and its sound
        files; without them nothing plays (no PLAYBACK_START) and the completion is ``_none_``."""
        lang = arg.split(" ", 1)[0]
        if self.interfaces.has("say", lang) and self.sound_files:
            self.play(ch, "say:" + arg)
        return None

    def play(self, ch: SimChannel, path: str, *, forever: bool = False,
             digits: list[str] | None = None, reads: bool = True) -> str:
        """Play media for its duration; with ``digits`` a DTMF digit ends it early. Without
        ``reads`` (endless_playback) the channel's digits stay unread meanwhile. Media played
        to a call that is not answered pre-answers it (early media), as switch_ivr_play_file
        does."""
        if not ch.answered:
            self.pre_answer(ch)
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
                msg = self.wait(ch, None if left is None else left * self.speed, media=True,
                                dtmf=reads)
                if msg is None and left is not None:
                    break
                if msg and msg[0] == "bridge_end":
                    # wait() noted it for the bridge's loop (and hung the leg up if the bridge
                    # takes it down): the media plays on to its end, as FreeSWITCH's does
                    continue
                if msg and msg[0] != "dtmf":
                    # the call was answered: the thread leaves the media for the loop it runs
                    # in, which gets the message
                    self._send(ch, msg)
                    break
                if msg and msg[0] == "dtmf":
                    terminators = _terminators(ch.variables.get("playback_terminators"))
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
        except Unwind:
            # a transfer, bridge or hangup took the channel: the file did not play out
            ch.variables["current_application_response"] = "PLAYBACK ERROR"
            raise
        finally:
            if not ch.gone:
                ch.variables["playback_last_offset_pos"] = "0"
                ch.variables["playback_seconds"] = str(int(duration or 0))
                self.chan_event(ch, "PLAYBACK_STOP", extra=info + [("Playback-Status", status)])
        return "FILE PLAYED"

    def app_endless_playback(self, ch: SimChannel, arg: str) -> str:
        """Plays until a call-control event (transfer, bridge, hangup) takes the channel:
        uuid_break only starts the file again, and DTMF is neither read nor breaks it."""
        while True:
            self.play(ch, arg, forever=True, reads=False)

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

    def app_bind_digit_action(self, ch: SimChannel, arg: str) -> None:
        """<realm>,<digits>,<string>[,<value>][,<dtmf target leg>][,<event target leg>]"""
        parts = arg.split(",")
        if len(parts) < 3 or not all(parts[:3]):
            return
        value = parts[3] if len(parts) > 3 else ""
        target = parts[5] if len(parts) > 5 else "self"
        self.bind_digits(ch, DigitBinding(parts[0], parts[1], parts[2], value, target))

    def app_clear_digit_action(self, ch: SimChannel, arg: str) -> None:
        self.clear_digits(ch, arg.split(",", 1)[0].strip())

    def app_digit_action_set_realm(self, ch: SimChannel, arg: str) -> None:
        realm = arg.split(",", 1)[0].strip()
        if realm and ch.bindings is not None:
            ch.realm = realm

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
            msg = self.wait(ch, timeout_ms / 1000.0, dtmf=True)
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

    def app_break(self, ch: SimChannel, arg: str) -> None:
        self.break_media(ch, arg.strip() == "all")

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

    def app_eavesdrop(self, ch: SimChannel, arg: str) -> None:
        """switch_ivr_eavesdrop_session, as mod_dptools' eavesdrop starts it: the flags come
        from the eavesdropper's variables (eavesdrop_enable_dtmf, on unless false;
        eavesdrop_whisper_aleg: the target's far end hears it; eavesdrop_whisper_bleg: the
        target's own party does); a media bug on the target (MEDIA_BUG_START/STOP) for as
        long as both are up. With DTMF on, the eavesdropper's digits switch the mode: 1 the
        far end hears it, 2 the target's party, 3 both (three-way), 0 listen again, *
        ends. A target that is not up, or the eavesdropper itself, is refused at once."""
        target_uuid = arg.strip()
        target = self.channels.get(target_uuid)
        media_up = ch.answered or ch.answer_state == "early"
        if target is None or target is ch or target.gone or target.hangup_cause or not media_up:
            return None
        flags = Eavesdrop(target.uuid, _true(ch.variables.get("eavesdrop_whisper_aleg")),
                          _true(ch.variables.get("eavesdrop_whisper_bleg")),
                          ch.variables.get("eavesdrop_enable_dtmf") is None
                          or _true(ch.variables.get("eavesdrop_enable_dtmf")))
        self.chan_event(ch, "CODEC")  # the eavesdropper reads the target's codec now
        bug = [("Media-Bug-Function", "eavesdrop"), ("Media-Bug-Target", target_uuid)]
        self.chan_event(target, "MEDIA_BUG_START", before=bug)
        ch.eavesdrop = flags
        try:
            while not (target.gone or target.hangup_cause):
                msg = self.wait(ch, 0.05 * self.speed, dtmf=flags.dtmf)
                if msg is None or msg[0] != "dtmf":
                    continue
                digit = msg[1]
                if digit == "*":
                    break
                switch = {"1": (True, False), "2": (False, True), "3": (True, True), "0": (False, False)}
                if digit in switch:
                    flags.mux_read, flags.mux_write = switch[digit]
        finally:
            ch.eavesdrop = None
            if not target.gone:
                self.chan_event(target, "MEDIA_BUG_STOP", before=bug)
            if not ch.gone:
                self.chan_event(ch, "CODEC")
        return None


def _true(value: str | None) -> bool:
    """switch_true: yes, on, true, t, enabled, active, allow, or a non-zero number."""
    if value is None:
        return False
    low = value.strip().lower()
    if low in ("yes", "on", "true", "t", "enabled", "active", "allow"):
        return True
    return low.lstrip("-").isdigit() and int(low) != 0
