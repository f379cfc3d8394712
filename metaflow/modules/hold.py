"""hold: put the call on hold (the peer hears this channel's hold music) until this channel
presses ``unhold_key``, or until something else takes it off hold.

FreeSWITCH suspends a held leg, and its bridge then reads none of its DTMF (esl-captures 17):
no DTMF event would ever come for the key. So the key is a digit binding on the switch
(``bind_digit_action``), which sees digits as they arrive whatever the leg runs; dialling it
runs FreeSWITCH's ``unhold`` application on the leg, and eslchan sees that run.

A leg whose callstate never becomes HELD (a loopback leg) cannot be taken off hold by
FreeSWITCH at all: the key then ends the run as failed, naming why, and the peer's music is
stopped. Stopping the run takes the call off hold too.
"""

from __future__ import annotations

from eslchan.esl import commands as esl
from eslchan.esl.errors import CommandRejected, EslError
from eslchan.registry.waiting import ChannelGone
from metaflow.base import CONTINUE, Context, Outcome, StateError
from metaflow.capabilities import Need, application

HOLD_MUSIC = "hold_music"


def requires(data: dict) -> list[Need]:
    if not data.get("unhold_key", "1"):
        return []
    return [application("bind_digit_action"), application("clear_digit_action"), application("unhold")]


def run(ctx: Context, data: dict) -> Outcome:
    uuid = ctx.arg_uuid()
    peer = ctx.peer()
    if data.get("moh_aleg") and peer:
        ctx.act_on(peer)  # before the first command: all of the hold, or nothing
    # FreeSWITCH plays the holding channel's hold_music to its peer
    if data.get("moh_bleg"):
        music = ctx.media(data["moh_bleg"], "data.moh_bleg")
        ctx.api(esl.api("uuid_setvar", uuid, esl.system_var(HOLD_MUSIC), music))
    if data.get("moh_aleg") and peer:
        ctx.api(esl.api("uuid_setvar", esl.uuid(peer), esl.system_var(HOLD_MUSIC),
                        ctx.media(data["moh_aleg"], "data.moh_aleg")))
    key = data.get("unhold_key", "1")
    realm = esl.word(f"eslchan_hold_{ctx.run.id[:12]}", "realm") if key else None
    if realm is not None:
        ctx.execute_and_wait(uuid, "bind_digit_action",
                             esl.digit_binding(realm, esl.digits(key, "data.unhold_key"), "unhold"),
                             timeout=5.0)
    released = False
    try:
        with ctx.events() as stream:
            ctx.api(esl.api("uuid_hold", uuid))
            held = key_pressed = False
            while True:
                event = stream.get(None if held else 5.0)
                if event is None:  # FreeSWITCH never said the call is held
                    break
                name = event.get("Event-Name")
                if name == "CHANNEL_HOLD":
                    held = True
                    if realm is None:  # no key to wait for: the call stays held
                        released = True
                        return CONTINUE
                elif name == "CHANNEL_UNHOLD":
                    ctx.note(unheld_by="unhold_key" if key_pressed else "other")
                    break
                elif name == "CHANNEL_EXECUTE" and event.get("Application") == "unhold":
                    key_pressed = True
                elif (name == "CHANNEL_EXECUTE_COMPLETE" and event.get("Application") == "unhold"
                      and key_pressed):
                    # the key ran unhold, and FreeSWITCH did not take the call off hold
                    ctx.note(unheld_by="unhold_key")
                    released = True
                    _release(ctx, uuid, realm, unhold=True)
                    raise StateError("the unhold key was pressed but FreeSWITCH cannot take this call "
                                     "off hold: its callstate never became HELD (a loopback leg)",
                                     "data.unhold_key")
        released = True
        _release(ctx, uuid, realm, unhold=False)
        return CONTINUE
    finally:
        if not released:  # stopped or failed while held: no binding left, no call held for good
            _release(ctx, uuid, realm, unhold=True)


def _release(ctx: Context, uuid: esl.Arg, realm: esl.Arg | None, *, unhold: bool) -> None:
    """Clear the binding; with ``unhold``, take the call off hold, or at least stop the
    peer's music when FreeSWITCH cannot (a loopback leg)."""
    try:
        if realm is not None:
            ctx.send(esl.execute(uuid, "clear_digit_action", realm))
        if not unhold:
            return
        try:
            ctx.api(esl.api("uuid_hold", esl.word("off"), uuid))
        except CommandRejected:
            channel = ctx.registry.get(ctx.node, str(uuid))
            if channel is not None and channel.other_leg:
                ctx.api(esl.api("uuid_break", esl.uuid(channel.other_leg)))
    except (EslError, ChannelGone):
        pass  # the call is going away: nothing left to release
