"""hold: put the call on hold (the peer hears music) until this channel presses unhold_key,
or until something else takes it off hold."""

from eslchan.esl import commands as esl
from metaflow.base import CONTINUE, Context, Outcome

HOLD_MUSIC = "hold_music"


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
    with ctx.events() as stream:
        ctx.api(esl.api("uuid_hold", uuid))
        typed, held = "", False
        while True:
            event = stream.get(None if held else 5.0)
            if event is None:  # FreeSWITCH never said the call is held
                return CONTINUE
            name = event.get("Event-Name")
            if name == "CHANNEL_HOLD":
                held = True
                if not key:
                    return CONTINUE
            if name == "CHANNEL_UNHOLD":
                return CONTINUE
            if name == "DTMF":
                typed = (typed + event.get("DTMF-Digit", ""))[-len(key):]
                if typed == key:
                    ctx.api_and_wait(esl.api("uuid_hold", esl.word("off"), uuid), {"CHANNEL_UNHOLD"})
                    return CONTINUE
