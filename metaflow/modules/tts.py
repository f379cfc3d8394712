"""tts: speak text with the text-to-speech engine and wait until it is said; one of the
``terminators`` pressed meanwhile cuts it short (and counts for the next collect_dtmf).

With no such engine loaded FreeSWITCH says nothing and reports the ``speak`` as done
(``_none_``, esl-captures 16): the engine is checked first, and a missing one refused."""

from eslchan.esl import commands as esl
from metaflow.base import CONTINUE, Context, Outcome
from metaflow.capabilities import Need, application, speech
from metaflow.modules.play import play_to

# Kazoo's voice names mapped to flite's voices; other names pass through to the engine.
FLITE_VOICES = {"female": "slt", "male": "kal"}


def requires(data: dict) -> list[Need]:
    return [application("speak"), speech(data.get("engine", "flite"))]


def run(ctx: Context, data: dict) -> Outcome:
    engine = data.get("engine", "flite")
    voice = data.get("voice", "female")
    if engine == "flite":
        voice = FLITE_VOICES.get(voice, voice)
    arg = esl.join([esl.word(engine, "data.engine"), esl.word(voice, "data.voice"),
                    esl.free_text(data["text"], "data.text")], "|")
    play_to(ctx, data, "speak", arg, "self")
    return CONTINUE
