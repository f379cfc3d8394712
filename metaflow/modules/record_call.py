"""record_call: start, stop, mask, unmask or toggle the recording of the channel.

The recording in progress is remembered per channel (shared by every run on it), so toggle
really toggles, and stop/mask/unmask act on the file that was started."""

import time

from eslchan.esl import commands as esl
from metaflow.base import CONTINUE, Context, Outcome, StateError


def _start(ctx: Context, data: dict) -> None:
    ch = ctx.channel
    if data.get("record_on_answer") and not ch.answered:
        ctx.wait_for({"CHANNEL_ANSWER"}, None)
    if data.get("record_on_bridge") and not ctx.channel.other_leg:
        ctx.wait_for({"CHANNEL_BRIDGE"}, None)
    fmt = data.get("format", "wav")
    name = data.get("media_name") or f"{ctx.uuid}-{int(time.time())}"
    if not name.endswith(f".{fmt}"):
        name = f"{name}.{fmt}"
    # each account records in its own directory, so no name reaches another account's files
    path = esl.media(ctx.policy.recording_path(name, "data.media_name"), "data.media_name")
    uuid = ctx.arg_uuid()
    for var, key in (("RECORD_MIN_SEC", "record_min_sec"), ("record_sample_rate", "record_sample_rate")):
        if data.get(key) is not None:
            ctx.api(esl.api("uuid_setvar", uuid, esl.system_var(var),
                            esl.integer(data[key], f"data.{key}", 0, 192000)))
    if data.get("label"):
        ctx.api(esl.api("uuid_setvar", uuid, esl.system_var("eslchan_recording_label"),
                        esl.var_value(data["label"], "data.label")))
    limit = esl.integer(data.get("time_limit", 3600), "data.time_limit", 1, 10800)
    ctx.note(recording=str(path))
    ctx.api(esl.api("uuid_record", uuid, esl.word("start"), path, limit))
    ctx.state["recording"] = str(path)
    ctx.state["masked"] = False


def run(ctx: Context, data: dict) -> Outcome:
    state = ctx.state
    action = data.get("action", "toggle")
    if action == "toggle":
        action = "stop" if state.get("recording") else "start"
    if action == "start":
        if state.get("recording"):
            raise StateError("the channel is already being recorded", "data.action")
        _start(ctx, data)
        ctx.note(recording_action="start")
        return CONTINUE
    path = state.get("recording")
    if not path:
        raise StateError(f"cannot {action}: the channel is not being recorded", "data.action")
    ctx.note(recording=path, recording_action=action)
    ctx.api(esl.api("uuid_record", ctx.arg_uuid(), esl.word(action), esl.media(path, "recording")))
    if action == "stop":
        state.pop("recording", None)
        state.pop("masked", None)
    else:
        state["masked"] = action == "mask"
    return CONTINUE
