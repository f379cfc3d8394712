"""The channel model: one FreeSWITCH session, its caller profile, variables and the
header block that every channel event carries."""

from __future__ import annotations

import time
import uuid as uuidlib
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import gevent.queue

STATE_NUMBERS = {
    "CS_NEW": 0, "CS_INIT": 1, "CS_ROUTING": 2, "CS_SOFT_EXECUTE": 3, "CS_EXECUTE": 4,
    "CS_EXCHANGE_MEDIA": 5, "CS_PARK": 6, "CS_CONSUME_MEDIA": 7, "CS_HIBERNATE": 8,
    "CS_RESET": 9, "CS_HANGUP": 10, "CS_REPORTING": 11, "CS_DESTROY": 12, "CS_NONE": 13,
}
CALLSTATE_NUMBERS = {
    "DOWN": 0, "DIALING": 1, "RINGING": 2, "EARLY": 3, "ACTIVE": 4, "HELD": 5,
    "RING_WAIT": 6, "HANGUP": 7, "UNHELD": 8,
}


def new_uuid() -> str:
    return str(uuidlib.uuid4())


class Unwind(Exception):
    """Raised inside a channel's application greenlet to leave the running application."""


class HangupUnwind(Unwind):
    def __init__(self, cause: str) -> None:
        super().__init__(cause)
        self.cause = cause


class TransferUnwind(Unwind):
    def __init__(self, dest: str, dialplan: str, context: str) -> None:
        super().__init__(dest)
        self.dest, self.dialplan, self.context = dest, dialplan, context


class BreakUnwind(Unwind):
    """uuid_break: stop the current media application only."""

    def __init__(self, all_: bool = False) -> None:
        super().__init__("break")
        self.all = all_


class BridgeUnwind(Unwind):
    """Leave the current application because uuid_bridge/intercept takes the channel."""

    def __init__(self, other: str, originator: bool) -> None:
        super().__init__(other)
        self.other, self.originator = other, originator


@dataclass
class Exec:
    """A queued private command (``sendmsg`` execute, a broadcast): run by the channel's own
    thread when it next parses its private events, not before ``due`` (monotonic seconds)."""

    app: str
    arg: str
    event_uuid: str | None = None
    loops: int = 1                  # -1: until the broadcast is stopped
    event_lock: bool = False        # no other private command runs while this one does
    due: float = 0.0
    private_headers: list[tuple[str, str]] = field(default_factory=list)  # its PRIVATE_COMMAND
    body: str | None = None


@dataclass
class DigitBinding:
    """One ``bind_digit_action``: digits that, once dialled, run ``action`` (``exec:app`` or
    ``api:command``) with ``value`` on ``target`` (self or peer)."""

    realm: str
    digits: str
    action: str
    value: str
    target: str = "self"


@dataclass
class Eavesdrop:
    """A running eavesdrop (switch_ivr_eavesdrop_session) and its ED_* flags: ``mux_read``
    (the target's far end hears the eavesdropper), ``mux_write`` (the target's own party
    hears it), ``dtmf`` (the eavesdropper's digits switch them)."""

    target: str
    mux_read: bool = False
    mux_write: bool = False
    dtmf: bool = True

    @property
    def mode(self) -> str:
        """listen, whisper to the target's party (``mux_write``), to its far end
        (``mux_read``), or three-way (both)."""
        if self.mux_read and self.mux_write:
            return "three_way"
        if self.mux_write:
            return "whisper"
        return "whisper_other" if self.mux_read else "listen"


class SimChannel:
    """One channel. Public fields follow the contract; the rest is model state."""

    def __init__(self, *, uuid: str, name: str, direction: str, caller_id_name: str,
                 caller_id_number: str, destination: str, context: str = "default",
                 dialplan: str = "XML", source: str = "mod_loopback",
                 variables: dict[str, str] | None = None, sip: bool = False,
                 session_id: int = 1) -> None:
        now = time.time()
        self.uuid = uuid
        self.name = name
        self.direction = direction
        self.state = "CS_NEW"
        self.callstate = "DOWN"
        self.answer_state = "ringing"
        self.answered = False
        self.hit_dialplan = False
        self.caller_id_name = caller_id_name
        self.caller_id_number = caller_id_number
        self.orig_caller_id_name = caller_id_name
        self.orig_caller_id_number = caller_id_number
        self.callee_id_name = ""
        self.callee_id_number = ""
        self.ani = caller_id_number
        self.destination = destination
        self.context = context
        self.dialplan = dialplan
        self.source = source
        self.transfer_source = ""
        self.rdnis = ""
        self.profile_index = 1
        self.created = now
        self.created_us = int(now * 1_000_000)
        self.answered_us = 0
        self.progress_us = 0
        self.progress_media_us = 0
        self.bridged_us = 0
        self.hangup_us = 0
        self.transfer_us = 0
        self.variables: dict[str, str] = {}
        if variables:
            self.variables.update(variables)
        self.other_leg: str | None = None
        self.other_type: str | None = None
        self.loopback_peer: str | None = None
        self.held = False
        self.app: str | None = None
        self.app_data: str = ""
        self.app_depth = 0
        self.presence_count = 0
        self.hangup_cause: str | None = None
        self.sip = sip
        self.session_id = session_id
        self.recordings: dict[str, float] = {}
        self.audio: dict[str, Any] = {}
        self.inbox: gevent.queue.Queue = gevent.queue.Queue()
        self.greenlet: gevent.Greenlet | None = None
        self.gone = False
        self.apps: list[tuple[str, str]] = []     # the extension being run, for show channels
        self.bridge_originator = False            # this side fires CHANNEL_BRIDGE/UNBRIDGE
        self.parked = False
        self.cf_dialplan = False                  # caller id already sorted (sort_cid)
        self.bridge_ends: set[str] = set()        # peers whose bridge with us has ended
        self.bridge_depth: int | None = None      # app_depth of the bridge loop we are in
        self.unwind_pending: list[Unwind] = []
        self.private: deque[Exec] = deque()       # queued private commands (sendmsg execute)
        self.event_lock = 0                       # an event-locked private command is running
        self.broadcasting = 0                     # a private command runs (FreeSWITCH's CF_BROADCAST)
        self.stop_broadcast = False               # CF_STOP_BROADCAST: uuid_break ends the loops
        self.suspended = False                    # CF_SUSPEND: held; its bridge reads no DTMF
        self.dtmf_queue: deque[tuple[str, str]] = deque()  # received, not yet read: (digit, source)
        self.bindings: dict[str, list[DigitBinding]] | None = None  # the digit parser, per realm
        self.realm: str | None = None             # the parser's current realm
        self.dialled = ""                         # digits the parser holds
        self.dial_timer: Any = None
        self.eavesdrop: Eavesdrop | None = None   # what this leg's eavesdrop app listens to

    # -- header blocks -------------------------------------------------------------------
    @property
    def presence_id(self) -> str:
        return self.variables.get("presence_id", "")

    def state_headers(self) -> list[tuple[str, str]]:
        h = [
            ("Channel-State", self.state),
            ("Channel-Call-State", self.callstate),
            ("Channel-State-Number", self._state_number()),
            ("Channel-Name", self.name),
            ("Unique-ID", self.uuid),
            ("Call-Direction", self.direction),
            ("Presence-Call-Direction", self.direction),
            ("Channel-HIT-Dialplan", "true" if self.hit_dialplan else "false"),
        ]
        if self.presence_id:
            h.append(("Channel-Presence-ID", self.presence_id))
        h.append(("Channel-Call-UUID", self.uuid))
        h.append(("Answer-State", self.answer_state))
        if self.hangup_cause:
            h.append(("Hangup-Cause", self.hangup_cause))
        return h

    def _state_number(self) -> str:
        # while a hangup is under way FreeSWITCH already reports CS_HANGUP's number
        if self.hangup_cause and self.state not in ("CS_HANGUP", "CS_REPORTING", "CS_DESTROY"):
            return "10"
        return str(STATE_NUMBERS.get(self.state, 0))

    def codec_headers(self) -> list[tuple[str, str]]:
        return [
            ("Channel-Read-Codec-Name", "L16" if not self.sip else "PCMU"),
            ("Channel-Read-Codec-Rate", "8000"),
            ("Channel-Read-Codec-Bit-Rate", "128000" if not self.sip else "64000"),
            ("Channel-Write-Codec-Name", "L16" if not self.sip else "PCMU"),
            ("Channel-Write-Codec-Rate", "8000"),
            ("Channel-Write-Codec-Bit-Rate", "128000" if not self.sip else "64000"),
        ]

    def profile_headers(self, prefix: str = "Caller", *, index: bool = True) -> list[tuple[str, str]]:
        logical = self.direction
        h = [
            (f"{prefix}-Direction", self.direction),
            (f"{prefix}-Logical-Direction", logical),
            (f"{prefix}-Dialplan", self.dialplan.lower()),
        ]
        # FreeSWITCH leaves an empty caller id name out (an originate without one)
        if self.caller_id_name:
            h.append((f"{prefix}-Caller-ID-Name", self.caller_id_name))
        h.append((f"{prefix}-Caller-ID-Number", self.caller_id_number))
        if self.orig_caller_id_name:
            h.append((f"{prefix}-Orig-Caller-ID-Name", self.orig_caller_id_name))
        h.append((f"{prefix}-Orig-Caller-ID-Number", self.orig_caller_id_number))
        if self.callee_id_name:
            h.append((f"{prefix}-Callee-ID-Name", self.callee_id_name))
        if self.callee_id_number:
            h.append((f"{prefix}-Callee-ID-Number", self.callee_id_number))
        h += [
            (f"{prefix}-ANI", self.ani),
            (f"{prefix}-Destination-Number", self.destination),
            (f"{prefix}-Unique-ID", self.uuid),
            (f"{prefix}-Source", self.source),
        ]
        if self.transfer_source:
            h.append((f"{prefix}-Transfer-Source", self.transfer_source))
        h.append((f"{prefix}-Context", self.context))
        if self.rdnis:
            h.append((f"{prefix}-RDNIS", self.rdnis))
        h.append((f"{prefix}-Channel-Name", self.name))
        if index:
            h.append((f"{prefix}-Profile-Index", str(self.profile_index)))
        h += [
            (f"{prefix}-Profile-Created-Time", str(self.created_us)),
            (f"{prefix}-Channel-Created-Time", str(self.created_us)),
            (f"{prefix}-Channel-Answered-Time", str(self.answered_us)),
            (f"{prefix}-Channel-Progress-Time", str(self.progress_us)),
            (f"{prefix}-Channel-Progress-Media-Time", str(self.progress_media_us)),
            (f"{prefix}-Channel-Hangup-Time", str(self.hangup_us)),
            (f"{prefix}-Channel-Transfer-Time", str(self.transfer_us)),
            (f"{prefix}-Channel-Resurrect-Time", "0"),
            (f"{prefix}-Channel-Bridged-Time", str(self.bridged_us)),
            (f"{prefix}-Channel-Last-Hold", "0"),
            (f"{prefix}-Channel-Hold-Accum", "0"),
            (f"{prefix}-Screen-Bit", "true"),
            (f"{prefix}-Privacy-Hide-Name", "false"),
            (f"{prefix}-Privacy-Hide-Number", "false"),
        ]
        return h

    def variable_headers(self) -> list[tuple[str, str]]:
        return [("variable_" + k, v) for k, v in self.variables.items()]

    def headers(self, *, with_vars: bool = True, other: SimChannel | None = None,
                extra: list[tuple[str, str]] | None = None) -> list[tuple[str, str]]:
        """The channel block of an event: state, codecs, caller profile, other leg, variables."""
        h = self.state_headers()
        h += self.codec_headers()
        h += self.profile_headers()
        if self.other_type and self.other_leg:
            h.append(("Other-Type", self.other_type))
            if other is not None:
                h += other.profile_headers("Other-Leg", index=False)
            else:
                h.append(("Other-Leg-Unique-ID", self.other_leg))
        if with_vars:
            h += self.variable_headers()
        if extra:
            h += extra
        return h

    # -- show channels -------------------------------------------------------------------
    def show_row(self, hostname: str) -> dict[str, str]:
        created = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.created))
        return {
            "uuid": self.uuid, "direction": self.direction, "created": created,
            "created_epoch": str(int(self.created)), "name": self.name, "state": self.state,
            "cid_name": self.caller_id_name, "cid_num": self.caller_id_number, "ip_addr": "",
            "dest": self.destination, "application": self.app or "",
            "application_data": self.app_data or "", "dialplan": self.dialplan.lower(),
            "context": self.context, "read_codec": "L16", "read_rate": "8000",
            "read_bit_rate": "128000", "write_codec": "L16", "write_rate": "8000",
            "write_bit_rate": "128000", "secure": "", "hostname": hostname,
            "presence_id": self.presence_id, "presence_data": "", "accountcode": "",
            "callstate": self.callstate, "callee_name": self.callee_id_name,
            "callee_num": self.callee_id_number, "callee_direction": "",
            "call_uuid": self.uuid if self.direction == "outbound" else "",
            "sent_callee_name": "", "sent_callee_num": "",
            "initial_cid_name": self.orig_caller_id_name,
            "initial_cid_num": self.orig_caller_id_number, "initial_ip_addr": "",
            "initial_dest": self.destination, "initial_dialplan": self.dialplan.lower(),
            "initial_context": self.context,
        }


SHOW_CHANNEL_FIELDS = list(SimChannel(uuid="", name="", direction="", caller_id_name="",
                                      caller_id_number="", destination="").show_row(""))

CALL_B_FIELDS = ["b_uuid", "b_direction", "b_created", "b_created_epoch", "b_name", "b_state",
                 "b_cid_name", "b_cid_num", "b_ip_addr", "b_dest", "b_presence_id",
                 "b_presence_data", "b_accountcode", "b_callstate", "b_callee_name",
                 "b_callee_num", "b_callee_direction", "b_sent_callee_name", "b_sent_callee_num",
                 "call_created_epoch"]


def call_row(ra: dict[str, str], rb: dict[str, str] | None) -> dict[str, str]:
    """A row of ``show calls`` from two ``channels`` rows: the A leg's fields, then the
    bridged B leg's (empty if none)."""
    keys = ["uuid", "direction", "created", "created_epoch", "name", "state", "cid_name",
            "cid_num", "ip_addr", "dest", "presence_id", "presence_data", "accountcode",
            "callstate", "callee_name", "callee_num", "callee_direction", "call_uuid",
            "hostname", "sent_callee_name", "sent_callee_num"]
    row = {k: ra[k] for k in keys}
    if rb is None:
        row.update({k: "" for k in CALL_B_FIELDS})
    else:
        for k in CALL_B_FIELDS[:-1]:
            row[k] = rb.get(k[2:], "")
        row["call_created_epoch"] = ra["created_epoch"]
    return row


CALL_FIELDS = list(call_row(SimChannel(uuid="", name="", direction="", caller_id_name="",
                                       caller_id_number="", destination="").show_row(""), None))
