"""sound_touch: pitch/rate/tempo effects with mod_soundtouch, started or stopped.

Without mod_soundtouch the application does not exist, and FreeSWITCH answers an execute of
a missing application by hanging the call up (esl-captures 16): the module is refused
before anything is sent."""

from eslchan.esl import commands as esl
from metaflow.base import CONTINUE, Context, Outcome
from metaflow.capabilities import Need, application


def requires(data: dict) -> list[Need]:
    return [application("soundtouch")]


def _num(value: float) -> str:
    return f"{float(value):.3f}".rstrip("0").rstrip(".") or "0"


def run(ctx: Context, data: dict) -> Outcome:
    if data.get("action", "start") == "stop":
        text = "stop"
    else:
        words = ["send_leg"] if data.get("sending_leg") else []
        words += ["hook_dtmf"] if data.get("hook_dtmf") else []
        words += [f"{_num(data.get('adjust_in_semitones', 0))}s",
                  f"{_num(data.get('adjust_in_octaves', 0))}o",
                  f"{_num(data.get('pitch', 1))}p", f"{_num(data.get('rate', 1))}r",
                  f"{_num(data.get('tempo', 1))}t"]
        text = " ".join(words)
    ctx.send(esl.execute(ctx.arg_uuid(), "soundtouch", esl.free_text(text, "data")))
    return CONTINUE
