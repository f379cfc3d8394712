"""say: read a number, date, address... with FreeSWITCH's say engine; wait until said."""

from eslchan.esl import commands as esl
from metaflow.base import CONTINUE, Context, Outcome


def run(ctx: Context, data: dict) -> Outcome:
    parts = [esl.word(data.get("language", "en")[:2], "data.language"),
             esl.word(data.get("type", "number"), "data.type"),
             esl.word(data.get("method", "pronounced"), "data.method")]
    if data.get("gender"):
        parts.append(esl.word(data["gender"].upper(), "data.gender"))
    parts.append(esl.free_text(data["text"], "data.text"))
    ctx.execute_and_wait(ctx.arg_uuid(), "say", esl.join(parts, " "))
    return CONTINUE
