"""audio_level: adjust the read or write volume of the channel (uuid_audio)."""

from eslchan.esl import commands as esl
from metaflow.base import CONTINUE, Context, Outcome


def run(ctx: Context, data: dict) -> Outcome:
    uuid = ctx.arg_uuid()
    if data.get("action", "start") == "stop":
        cmd = esl.api("uuid_audio", uuid, esl.word("stop"))
    else:
        cmd = esl.api("uuid_audio", uuid, esl.word("start"),
                      esl.enum(data.get("mode", "read"), ("read", "write"), "data.mode"),
                      esl.word("level"), esl.integer(data.get("level", 0), "data.level", -4, 4))
    ctx.api(cmd)
    return CONTINUE
