"""Metaflow runs: a channel's, an account's, one run; stop one. Starting one is PUT on the
channel (channels.py). Runs that are over stay readable for [metaflow] finished_runs_seconds
(at most finished_runs_max, finished_runs_per_account per account)."""

from __future__ import annotations

from typing import Any

from eslchan.api.openapi.common import (
    AUTHED_ERRORS,
    CHANNEL,
    PARAMETER_REF,
    UUID_PATTERN,
    envelope_example,
    json_response,
    param_refs,
    ref,
    response_refs,
    success,
)
from eslchan.api.openapi.components import FINISHED_RUN_EXAMPLE, RUN_EXAMPLE


def paths() -> dict[str, Any]:
    channel_params = param_refs("AccountId", "ChannelUuid")
    return {
        "/v2/accounts/{account_id}/channels/{channel_uuid}/metaflows": {
            "get": {
                "operationId": "listRuns",
                "summary": "The metaflow runs of the channel: running, then those over that are kept",
                "tags": ["metaflows"],
                "parameters": [*channel_params, {"$ref": PARAMETER_REF + "IfNoneMatch"}],
                "responses": {
                    "200": json_response(
                        success({"type": "array", "items": ref("Run")}),
                        envelope_example([RUN_EXAMPLE, FINISHED_RUN_EXAMPLE]),
                        "runs of the channel",
                    ),
                    **response_refs(r304="NotModified", r404="BadIdentifier", r503="ClusterStateUnavailable",
                                   **AUTHED_ERRORS),
                },
            }
        },
        "/v2/accounts/{account_id}/channels/{channel_uuid}/metaflows/{run_id}": {
            "delete": {
                "operationId": "stopRun",
                "summary": "Stop a metaflow run (and the media it started); a run already over "
                "is answered as it ended",
                "tags": ["metaflows"],
                "parameters": param_refs("AccountId", "ChannelUuid", "RunId"),
                "responses": {
                    "200": json_response(
                        success(ref("Run")),
                        envelope_example({**RUN_EXAMPLE, "state": "stopped"}),
                        "the run, stopped",
                    ),
                    **response_refs(r404="BadIdentifier", r503="ClusterStateUnavailable", **AUTHED_ERRORS),
                },
            }
        },
        "/v2/accounts/{account_id}/metaflows": {
            "get": {
                "operationId": "listAccountRuns",
                "summary": "The account's metaflow runs, running and over, newest first; "
                "also those of channels that are gone",
                "tags": ["metaflows"],
                "parameters": [
                    *param_refs("AccountId"),
                    {
                        "name": "channel",
                        "in": "query",
                        "schema": {"type": "string", "pattern": UUID_PATTERN},
                        "description": "only the runs of this channel (which may be gone)",
                        "example": CHANNEL,
                    },
                    {"$ref": PARAMETER_REF + "IfNoneMatch"},
                ],
                "responses": {
                    "200": json_response(
                        success({"type": "array", "items": ref("Run")}),
                        envelope_example([FINISHED_RUN_EXAMPLE]),
                        "runs of the account",
                    ),
                    **response_refs(r304="NotModified", r503="ClusterStateUnavailable", **AUTHED_ERRORS),
                },
            }
        },
        "/v2/accounts/{account_id}/metaflows/{run_id}": {
            "get": {
                "operationId": "getRun",
                "summary": "One metaflow run of the account, running or over: its trail "
                "(each node run and the branch it took), outcome and error",
                "tags": ["metaflows"],
                "parameters": [*param_refs("AccountId", "RunId"), {"$ref": PARAMETER_REF + "IfNoneMatch"}],
                "responses": {
                    "200": json_response(
                        success(ref("Run")), envelope_example(FINISHED_RUN_EXAMPLE), "the run"
                    ),
                    **response_refs(r304="NotModified", r404="BadIdentifier", r503="ClusterStateUnavailable",
                                   **AUTHED_ERRORS),
                },
            }
        },
    }
