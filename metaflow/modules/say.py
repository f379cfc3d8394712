"""say: read a number, date, address... with FreeSWITCH's say engine; wait until said.

The language needs its say module (mod_say_<lang>), checked first. Even then FreeSWITCH says
nothing when its sound files are missing, and reports the ``say`` as done all the same
(``_none_``): a say that played no media (no PLAYBACK_START) fails the run, saying so."""

from eslchan.esl import commands as esl
from metaflow.base import CONTINUE, Context, Outcome, StateError
from metaflow.capabilities import Need, application, say


def _language(data: dict) -> str:
    return data.get("language", "en")[:2]


def requires(data: dict) -> list[Need]:
    return [application("say"), say(_language(data))]


def run(ctx: Context, data: dict) -> Outcome:
    parts = [esl.word(_language(data), "data.language"),
             esl.word(data.get("type", "number"), "data.type"),
             esl.word(data.get("method", "pronounced"), "data.method")]
    if data.get("gender"):
        parts.append(esl.word(data["gender"].upper(), "data.gender"))
    parts.append(esl.free_text(data["text"], "data.text"))
    done = ctx.execute_and_wait(ctx.arg_uuid(), "say", esl.join(parts, " "))
    if done is not None and not done.played and done.event.get("Event-Name") != "CHANNEL_DESTROY":
        ctx.note(said=False)
        raise StateError("FreeSWITCH said nothing: it has no sound files for say in this "
                         f"language ({_language(data)})", "data.language")
    ctx.note(said=True)
    return CONTINUE
