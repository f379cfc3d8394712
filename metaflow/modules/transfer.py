"""transfer: blind (uuid_transfer of self, peer or both into the dialplan) or attended, as
Kazoo's konami transfer does it:

1. both legs are parked (``uuid_transfer -both park inline``, with ``park_after_bridge`` so
   no leg hangs up when a bridge ends); the transferee (this channel's peer) hears ``moh``;
2. the transferor (this channel) hears ``ringback`` and, once it plays, a leg to ``target``
   is originated;
3. when the target answers, transferor and target are bridged (a consultation);
4. the transferor pressing ``takeback_dtmf`` at any time hangs up the target and takes the
   transferee back; the target not answering within ``timeout`` or hanging up does too;
5. the transferor hanging up completes the transfer: transferee and target are bridged (also
   when the target answers only after that);
6. the transferee hanging up leaves transferor and target to talk (once the target answers).

FreeSWITCH runs a queued application only when the channel's thread picks it up, about a
frame later; a bridge requested meanwhile goes first and the application then runs inside
the bridge (esl-captures 18). So the music and the ringback are ``playback`` loops (they read
DTMF and ``uuid_break`` stops them, unlike ``endless_playback``), the ringback must be
playing before the target is dialled, and every bridge is preceded by breaking the leg's
media and waiting for it to stop. ``park_after_bridge`` is put back as it was on the legs
that stay connected, so a later hangup of one ends the other as it would have before.

Branches: ``takeback``, ``timeout`` (the target did not answer in time) or ``failed`` (busy,
rejected, hung up), else ``_``; the flow stops once transferor and target, or transferee and
target, are connected for good. The run's notes say what happened (``transfer_outcome``).
"""

from __future__ import annotations

import time
import uuid as _uuid
from collections import deque
from typing import Any

import gevent
from gevent import GreenletExit

from eslchan.esl import commands as esl
from eslchan.esl.errors import CommandRejected, EslError
from eslchan.policy import AccountPolicy, PolicyViolation
from eslchan.registry.waiting import ChannelGone
from metaflow.base import CONTINUE, STOP, Context, EventStream, Outcome, branch
from metaflow.capabilities import Need, application
from metaflow.dial import endpoint, originate_vars
from metaflow.modules.park import park_both

FLAGS = {"self": None, "peer": "-bleg", "bleg": "-bleg", "both": "-both"}
#: FreeSWITCH may ring the target this much longer than ``timeout``: eslchan's own timer
#: decides, so an unanswered target is the ``timeout`` branch, not a failed originate.
RING_MARGIN = 2
#: media loops: a ringback or a music that plays until it is broken
LOOPS = 1000
#: how long to wait for FreeSWITCH to start or stop a leg's media, or to join two legs
SETTLE_SECONDS = 5.0
#: originate failures that mean the target did not answer in time
UNANSWERED = ("NO_ANSWER", "NO_USER_RESPONSE", "PROGRESS_TIMEOUT", "ALLOTTED_TIMEOUT")


def requires(data: dict) -> list[Need]:
    return [application("playback")] if _kind(data) == "attended" else []


def _kind(data: dict) -> str:
    kind = data.get("transfer_type")
    if kind is None:  # Kazoo's POST transfer with takeback/moh/ringback is an attended one
        kind = "attended" if {"takeback_dtmf", "moh", "ringback"} & set(data) else "blind"
    return str(kind)


def policy(data: dict, account: AccountPolicy) -> list[PolicyViolation]:
    """The target's realm; a blind transfer's dialplan and context (the account's own context
    when the request names none)."""
    found = [account.realm_rule(data["target"], "target")]
    if _kind(data) == "blind":
        if data.get("dialplan"):
            found.append(account.dialplan(data["dialplan"], "dialplan"))
        if data.get("context") and (data.get("dialplan") or "").lower() != "inline":
            found.append(account.context_rule(data["context"], "context"))
    return [v for v in found if v is not None]


def run(ctx: Context, data: dict) -> Outcome:
    return attended(ctx, data) if _kind(data) == "attended" else blind(ctx, data)


def blind(ctx: Context, data: dict) -> Outcome:
    leg = data.get("leg", "self")
    args = [ctx.arg_uuid()]
    if FLAGS[leg]:
        ctx.require_peer(f"a transfer of leg '{leg}' needs a bridged call")
        args.append(esl.word(FLAGS[leg]))
    args += [esl.dial_target(data["target"], "data.target"),
             esl.dialplan(data.get("dialplan") or ctx.config.default_dialplan, "data.dialplan"),
             esl.context(data.get("context") or ctx.policy.context, "data.context")]
    ctx.api(esl.api("uuid_transfer", *args))
    return CONTINUE


def attended(ctx: Context, data: dict) -> Outcome:
    transferee = ctx.require_peer("an attended transfer needs the transferor bridged to a transferee")
    return AttendedTransfer(ctx, data, transferee).run()


class AttendedTransfer:
    def __init__(self, ctx: Context, data: dict, transferee: str):
        self.ctx = ctx
        self.transferor = ctx.uuid
        self.transferee = transferee
        self.target = str(_uuid.uuid4())
        self.timeout = int(data.get("timeout", 20))
        # FreeSWITCH reports the DTMF letters in upper case; the schema also accepts a-d
        self.takeback = data.get("takeback_dtmf", "*1").upper()
        self.moh = ctx.media(data["moh"], "data.moh") if data.get("moh") else esl.media(ctx.config.moh, "moh")
        self.ringback = ctx.media(data.get("ringback", "%(2000,4000,440,480)"), "data.ringback")
        variables = originate_vars(ctx, self.target, self.timeout + RING_MARGIN)
        variables[esl.system_var("park_after_bridge")] = esl.word("true")  # survives the transferor
        self.dial = esl.dial_string(endpoint(ctx, "number", data["target"], "data.target"), variables)
        ctx.note(transfer_type="attended", target_leg=self.target, transferee=transferee)
        self.answered = False
        self.transferor_gone = False
        self.transferee_gone = False
        self.typed = ""
        self.parked_before: dict[str, str | None] = {}  # park_after_bridge before we set it
        self.media: dict[str, str] = {}  # leg -> Application-UUID of the music we play it
        self.started: set[str] = set()  # of those, the ones FreeSWITCH has started
        self.running: set[str] = set()  # ...and that are in a loop right now (each loop
        # completes and starts again with the same Application-UUID)
        self.backlog: deque[Any] = deque()  # events read while waiting for something else
        self.stream: EventStream | None = None

    # -- commands ------------------------------------------------------------------------

    def api(self, name: str, *args: esl.Arg) -> None:
        self.ctx.api(esl.api(name, *args))

    def kill_target(self) -> None:
        try:
            self.api("uuid_kill", esl.uuid(self.target), esl.hangup_cause("NORMAL_CLEARING"))
        except EslError:
            pass  # already gone

    def play(self, leg: str, media: esl.Arg) -> None:
        """Music on a leg, as a playback loop: it reads DTMF, and uuid_break ends it."""
        cmd = esl.execute(esl.uuid(leg), "playback", media, loops=LOOPS)
        self.media[leg] = str(cmd.event_uuid)
        self.ctx.send(cmd)

    def quiet(self, leg: str) -> None:
        """Stop the music we play on ``leg`` (``uuid_break all`` also drops it, or anything
        else, still queued) and wait for FreeSWITCH to end the loop it is in, so nothing of it
        is left to run inside the bridge that follows."""
        app_uuid = self.media.pop(leg, None)
        if app_uuid is None:
            return
        try:
            self.api("uuid_break", esl.uuid(leg), esl.word("all"))
        except EslError:
            return  # the leg is gone
        if app_uuid in self.running:  # not running: the break dropped it from the queue
            self.wait_for(lambda: app_uuid not in self.running)

    def bridge(self, a: str, b: str) -> bool:
        """Join ``a`` and ``b`` once their media is quiet; True when FreeSWITCH reports them
        bridged (CHANNEL_BRIDGE), False when it refuses or never does."""
        self.quiet(a)
        self.quiet(b)
        try:
            with self.ctx.expect({"CHANNEL_BRIDGE"}, lambda e: e.get("Other-Leg-Unique-ID") == b,
                                 uuid=a) as waiter:
                self.api("uuid_bridge", esl.uuid(a), esl.uuid(b))
                return self.ctx.wait(waiter, SETTLE_SECONDS) is not None
        except (CommandRejected, ChannelGone):
            return False

    def remember_parking(self) -> None:
        """park_after_bridge of both legs as the call had it, to put back afterwards."""
        for leg in (self.transferor, self.transferee):
            try:
                self.parked_before[leg] = self.ctx.get_variable(leg, esl.system_var("park_after_bridge"))
            except EslError:
                self.parked_before[leg] = None

    def restore_parking(self, *legs: str) -> None:
        """The connected legs get their own park_after_bridge back (the target, which
        eslchan dialled, none): a hangup of one then ends the other as it would have."""
        for leg in legs:
            before = self.parked_before.get(leg)
            args = [esl.uuid(leg), esl.system_var("park_after_bridge")]
            if before:
                args.append(esl.var_value(before, "park_after_bridge"))
            try:
                self.api("uuid_setvar", *args)
            except (EslError, esl.CommandError):
                pass  # the leg is already gone

    # -- events --------------------------------------------------------------------------

    def next_item(self, timeout: float | None) -> Any:
        if self.backlog:
            return self.backlog.popleft()
        assert self.stream is not None
        item = self.stream.get(timeout)
        if isinstance(item, dict):
            self.track(item)
        return item

    def track(self, event: dict) -> None:
        app_uuid = event.get("Application-UUID")
        name = event.get("Event-Name")
        if name == "CHANNEL_EXECUTE" and app_uuid in self.media.values():
            self.started.add(app_uuid)
            self.running.add(app_uuid)
        elif name == "CHANNEL_EXECUTE_COMPLETE":
            self.running.discard(app_uuid)
        elif name == "CHANNEL_DESTROY":
            gone = self.media.get(event.get("Unique-ID", ""))
            self.running.discard(gone)

    def wait_for(self, done: Any) -> None:
        """Read events until ``done()`` (bounded); the others wait in the backlog, in order."""
        assert self.stream is not None
        deadline = time.monotonic() + SETTLE_SECONDS
        kept: list[Any] = []
        while not done():
            left = deadline - time.monotonic()
            if left <= 0:
                break
            item = self.stream.get(left)
            if item is None:
                break
            if isinstance(item, dict):
                self.track(item)
            kept.append(item)
        self.backlog.extend(kept)

    # -- the transfer --------------------------------------------------------------------

    def take_back(self, outcome: str) -> Outcome:
        self.ctx.note(transfer_outcome=outcome)
        if self.transferor_gone:  # nobody is left to take the transferee back
            self.kill_target()
            self.api("uuid_kill", esl.uuid(self.transferee), esl.hangup_cause("NORMAL_CLEARING"))
            return STOP
        if not self.transferee_gone:
            # first, so the target's end ends nothing
            if self.bridge(self.transferor, self.transferee):
                self.restore_parking(self.transferor, self.transferee)
            else:  # FreeSWITCH refused or never joined them: both legs stay parked
                self.ctx.note(taken_back=False)
        else:
            self.quiet(self.transferor)
            self.restore_parking(self.transferor)
        self.kill_target()
        return branch(outcome)

    def originate(self) -> None:
        try:
            self.ctx.bgapi(esl.bgapi("originate", self.dial, esl.app_ref("park")),
                           timeout=self.timeout + RING_MARGIN + 10)
        except EslError as exc:
            assert self.stream is not None
            self.stream.put(("originate_failed", str(exc)))

    def run(self) -> Outcome:
        ctx = self.ctx
        with ctx.events({self.transferor, self.transferee, self.target}, gone_on_destroy=False) as stream:
            self.stream = stream
            self.remember_parking()
            park_both(ctx, self.transferor, self.transferee)  # neither hangs up when unbridged
            try:
                self.play(self.transferee, self.moh)
                self.play(self.transferor, self.ringback)
                ringback = self.media[self.transferor]
                # dial only once the ringback plays: it is then no queued application that a
                # quick answer's bridge could overtake
                self.wait_for(lambda: ringback in self.started)
                ctx.spawn(self.originate)
                deadline = time.monotonic() + self.timeout
                while True:
                    item = self.next_item(None if self.answered else deadline - time.monotonic())
                    if item is None:
                        return self.take_back("timeout")
                    outcome = self.step(item)
                    if outcome is not None:
                        return outcome
            except GreenletExit:
                # the run was stopped mid-transfer: give the transferor its call back
                if not (self.transferor_gone or self.transferee_gone):
                    with gevent.Timeout(SETTLE_SECONDS * 2, False):
                        self.take_back("stopped")
                raise

    def step(self, item: object) -> Outcome | None:
        if isinstance(item, tuple):  # the originate failed (no answer, busy, bad target...)
            if self.answered:
                return None
            cause = str(item[1]) if len(item) > 1 else ""
            return self.take_back("timeout" if any(c in cause for c in UNANSWERED) else "failed")
        event: dict = item  # type: ignore[assignment]
        name, uuid = event.get("Event-Name"), event.get("Unique-ID")
        if uuid == self.target and name == "CHANNEL_ANSWER" and not self.answered:
            leg = self.transferee if self.transferor_gone else self.transferor
            if not self.bridge(leg, self.target):
                return self.take_back("failed")
            self.answered = True
            if self.transferor_gone:
                self.ctx.note(transfer_outcome="completed")
                self.restore_parking(self.transferee, self.target)
                return STOP
            if self.transferee_gone:
                self.restore_parking(self.transferor, self.target)
                return STOP
            return None
        if uuid == self.target and name == "CHANNEL_DESTROY":
            return self.take_back("failed")
        if uuid == self.transferee and name == "CHANNEL_DESTROY":
            # the transferee left: transferor and target are on their own (once it answers)
            self.transferee_gone = True
            self.ctx.note(transfer_outcome="transferee_gone")
            if self.transferor_gone and not self.answered:
                self.kill_target()
            if self.answered:
                self.restore_parking(self.transferor, self.target)
            return STOP if self.answered or self.transferor_gone else None
        if uuid == self.transferor and name == "CHANNEL_DESTROY":
            self.transferor_gone = True
            if self.transferee_gone:  # nobody left for the target
                self.kill_target()
                return STOP
            if self.answered:  # the transferor hung up after consulting: complete it
                if not self.bridge(self.transferee, self.target):
                    return self.take_back("failed")
                self.ctx.note(transfer_outcome="completed")
                self.restore_parking(self.transferee, self.target)
                return STOP
            return None  # partial: the transferee gets the target when it answers
        if uuid == self.transferor and name == "DTMF" and self.takeback:
            self.typed = (self.typed + event.get("DTMF-Digit", "").upper())[-len(self.takeback):]
            if self.typed == self.takeback:
                return self.take_back("takeback")
        return None
