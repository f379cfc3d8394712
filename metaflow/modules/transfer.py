"""transfer: blind (uuid_transfer of self, peer or both into the dialplan) or attended, as
Kazoo's konami transfer does it:

1. both legs are parked (``uuid_transfer -both park inline``, with ``park_after_bridge`` so
   no leg hangs up when a bridge ends); the transferee (this channel's peer) hears ``moh``;
2. a leg to ``target`` is originated and the transferor (this channel) hears ``ringback``;
3. when the target answers, transferor and target are bridged (a consultation);
4. the transferor pressing ``takeback_dtmf`` at any time hangs up the target and takes the
   transferee back; the target not answering within ``timeout`` or hanging up does too;
5. the transferor hanging up completes the transfer: transferee and target are bridged (also
   when the target answers only after that);
6. the transferee hanging up leaves transferor and target to talk (once the target answers).

Branches: ``takeback``, ``timeout`` or ``failed`` (the target did not answer or hung up), else
``_``; the flow stops once transferor and target, or transferee and target, are connected for
good. The run's notes say what happened (``transfer_outcome``).
"""

from __future__ import annotations

import time
import uuid as _uuid

import gevent
from gevent import GreenletExit

from eslchan.esl import commands as esl
from eslchan.esl.errors import CommandRejected, EslError
from eslchan.policy import AccountPolicy, PolicyViolation
from metaflow.base import CONTINUE, STOP, Context, Outcome, branch
from metaflow.dial import endpoint, originate_vars
from metaflow.modules.park import park_both

FLAGS = {"self": None, "peer": "-bleg", "bleg": "-bleg", "both": "-both"}


def _kind(data: dict) -> str:
    kind = data.get("transfer_type")
    if kind is None:  # Kazoo's POST transfer with takeback/moh/ringback is an attended one
        kind = "attended" if {"takeback_dtmf", "moh", "ringback"} & set(data) else "blind"
    return kind


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
        variables = originate_vars(ctx, self.target, self.timeout)
        variables[esl.system_var("park_after_bridge")] = esl.word("true")  # survives the transferor
        self.dial = esl.dial_string(endpoint(ctx, "number", data["target"], "data.target"), variables)
        ctx.note(transfer_type="attended", target_leg=self.target, transferee=transferee)
        self.answered = False
        self.transferor_gone = False
        self.transferee_gone = False
        self.typed = ""

    def api(self, name: str, *args: esl.Arg) -> None:
        self.ctx.api(esl.api(name, *args))

    def bridge(self, a: str, b: str) -> None:
        self.api("uuid_bridge", esl.uuid(a), esl.uuid(b))

    def connect(self, leg: str) -> bool:
        """Bridge ``leg`` to the target; False when FreeSWITCH refuses (a leg vanished
        meanwhile), so the caller gives the call back instead of leaving the legs parked."""
        try:
            self.bridge(leg, self.target)
        except CommandRejected:
            return False
        return True

    def kill_target(self) -> None:
        try:
            self.api("uuid_kill", esl.uuid(self.target), esl.hangup_cause("NORMAL_CLEARING"))
        except EslError:
            pass  # already gone

    def take_back(self, outcome: str) -> Outcome:
        self.ctx.note(transfer_outcome=outcome)
        if self.transferor_gone:  # nobody is left to take the transferee back
            self.kill_target()
            self.api("uuid_kill", esl.uuid(self.transferee), esl.hangup_cause("NORMAL_CLEARING"))
            return STOP
        if not self.transferee_gone:
            self.bridge(self.transferor, self.transferee)  # first, so the target's end ends nothing
        self.kill_target()
        return branch(outcome)

    def originate(self, stream: object) -> None:
        try:
            self.ctx.bgapi(esl.bgapi("originate", self.dial, esl.app_ref("park")), timeout=self.timeout + 10)
        except EslError as exc:
            stream.put(("originate_failed", str(exc)))  # type: ignore[attr-defined]

    def run(self) -> Outcome:
        ctx = self.ctx
        with ctx.events({self.transferor, self.transferee, self.target}, gone_on_destroy=False) as stream:
            park_both(ctx, self.transferor, self.transferee)  # neither hangs up when unbridged
            ctx.send(esl.execute(esl.uuid(self.transferee), "endless_playback", self.moh))
            ctx.send(esl.execute(esl.uuid(self.transferor), "endless_playback", self.ringback))
            ctx.spawn(self.originate, stream)
            deadline = time.monotonic() + self.timeout
            try:
                while True:
                    item = stream.get(None if self.answered else deadline - time.monotonic())
                    if item is None:
                        return self.take_back("timeout")
                    outcome = self.step(item)
                    if outcome is not None:
                        return outcome
            except GreenletExit:
                # the run was stopped mid-transfer: give the transferor its call back
                if not (self.transferor_gone or self.transferee_gone):
                    with gevent.Timeout(5, False):
                        self.take_back("stopped")
                raise

    def step(self, item: object) -> Outcome | None:
        if isinstance(item, tuple):  # the originate failed (no answer, busy, bad target...)
            return None if self.answered else self.take_back("failed")
        event: dict = item  # type: ignore[assignment]
        name, uuid = event.get("Event-Name"), event.get("Unique-ID")
        if uuid == self.target and name == "CHANNEL_ANSWER" and not self.answered:
            if not self.connect(self.transferee if self.transferor_gone else self.transferor):
                return self.take_back("failed")
            self.answered = True
            if self.transferor_gone:
                self.ctx.note(transfer_outcome="completed")
            return STOP if self.transferor_gone or self.transferee_gone else None
        if uuid == self.target and name == "CHANNEL_DESTROY":
            return self.take_back("failed")
        if uuid == self.transferee and name == "CHANNEL_DESTROY":
            # the transferee left: transferor and target are on their own (once it answers)
            self.transferee_gone = True
            self.ctx.note(transfer_outcome="transferee_gone")
            if self.transferor_gone and not self.answered:
                self.kill_target()
            return STOP if self.answered or self.transferor_gone else None
        if uuid == self.transferor and name == "CHANNEL_DESTROY":
            self.transferor_gone = True
            if self.transferee_gone:  # nobody left for the target
                self.kill_target()
                return STOP
            if self.answered:  # the transferor hung up after consulting: complete it
                if not self.connect(self.transferee):
                    return self.take_back("failed")
                self.ctx.note(transfer_outcome="completed")
                return STOP
            return None  # partial: the transferee gets the target when it answers
        if uuid == self.transferor and name == "DTMF" and self.takeback:
            self.typed = (self.typed + event.get("DTMF-Digit", "").upper())[-len(self.takeback):]
            if self.typed == self.takeback:
                return self.take_back("takeback")
        return None
