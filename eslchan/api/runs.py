"""Metaflow runs: a channel's runs (running and over), an account's, one run; stop one.

A run that is over stays readable for a while ([metaflow] finished_runs_*) with its trail,
outcome and error, also once its channel is gone: through the account-wide routes, since the
channel-scoped ones need the channel."""

from __future__ import annotations

import re
from typing import Any

from flask import Blueprint, Response, current_app, request

from eslchan.api.channels import checked_account, find_channel
from eslchan.api.envelope import ApiError, field_error, respond
from eslchan.esl import commands
from eslchan.esl.commands import CommandError

bp = Blueprint("runs", __name__)

#: a run's id, as the interpreter makes them (uuid4, hex): nothing else is looked up, here or
#: in a cluster's Redis
RUN_ID = re.compile(r"[0-9a-f]{32}")


def _find(run_id: str) -> Any:
    """The run (running, remembered, or another instance's), or None; 400 for what cannot
    be a run id."""
    if not RUN_ID.fullmatch(run_id):
        raise field_error("run_id", "pattern", "a run id is 32 lowercase hexadecimal characters",
                          value=run_id[:64])
    return _interpreter().get(run_id)


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
    run = _find(run_id)
    # only a run of this (already tenant-checked) channel: a run id alone must not reach across
    if run is None or run.channel_uuid != channel.uuid:
        raise ApiError(404, "bad identifier", [run_id])
    interpreter.stop(run_id)  # a run already over is answered as it ended
    # another instance's run was stopped there: its record says how it ended
    return respond((interpreter.get(run_id) or run).as_dict())


@bp.route("/v2/accounts/<account_id>/metaflows", methods=["GET"])
def account_runs(account_id: str) -> Response:
    """The account's runs, running and over, newest first; ``?channel=<uuid>`` for one
    channel's, also once the channel is gone."""
    checked_account(account_id)
    runs = _interpreter().account_runs(account_id)
    wanted = request.args.get("channel")
    if wanted is not None:
        try:
            wanted = str(commands.uuid(wanted, "channel"))
        except CommandError as exc:
            raise field_error("channel", "pattern", str(exc), value=wanted) from None
        runs = [r for r in runs if r.channel_uuid == wanted]
    return respond([run.as_dict() for run in runs])


@bp.route("/v2/accounts/<account_id>/metaflows/<run_id>", methods=["GET"])
def get_run(account_id: str, run_id: str) -> Response:
    checked_account(account_id)
    run = _find(run_id)
    if run is None or run.account_id != account_id:  # another tenant's run does not exist
        raise ApiError(404, "bad identifier", [run_id])
    return respond(run.as_dict())


def _interpreter() -> Any:
    return current_app.extensions["eslchan"].interpreter
