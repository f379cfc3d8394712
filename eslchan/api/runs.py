"""Metaflow runs of a channel: list them while they run, stop one."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, current_app

from eslchan.api.channels import checked_account, find_channel
from eslchan.api.envelope import ApiError, respond

bp = Blueprint("runs", __name__)


@bp.route("/v2/accounts/<account_id>/channels/<channel_uuid>/metaflows", methods=["GET"])
def list_runs(account_id: str, channel_uuid: str) -> Response:
    checked_account(account_id)
    channel = find_channel(account_id, channel_uuid)
    return respond([run.as_dict() for run in _interpreter().runs(channel.uuid)])


@bp.route("/v2/accounts/<account_id>/channels/<channel_uuid>/metaflows/<run_id>", methods=["DELETE"])
def stop_run(account_id: str, channel_uuid: str, run_id: str) -> Response:
    checked_account(account_id)
    channel = find_channel(account_id, channel_uuid)
    interpreter = _interpreter()
    run = interpreter.get(run_id)
    # only a run of this (already tenant-checked) channel: a run id alone must not reach across
    if run is None or run.channel_uuid != channel.uuid:
        raise ApiError(404, "bad identifier", [run_id])
    interpreter.stop(run_id)
    return respond(run.as_dict())


def _interpreter() -> Any:
    return current_app.extensions["eslchan"].interpreter
