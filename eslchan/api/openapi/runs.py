"""A channel's metaflow runs: list them, stop one. Starting one is PUT on the channel (channels.py)."""

from __future__ import annotations

from typing import Any

from eslchan.api.openapi.common import (
    AUTHED_ERRORS,
    PARAMETER_REF,
    envelope_example,
    json_response,
    param_refs,
    ref,
    response_refs,
    success,
)
from eslchan.api.openapi.components import RUN_EXAMPLE


def paths() -> dict[str, Any]:
    channel_params = param_refs("AccountId", "ChannelUuid")
    return {
        "/v2/accounts/{account_id}/channels/{channel_uuid}/metaflows": {
            "get": {
                "operationId": "listRuns",
                "summary": "The metaflow runs of the channel",
                "tags": ["metaflows"],
                "parameters": [*channel_params, {"$ref": PARAMETER_REF + "IfNoneMatch"}],
                "responses": {
                    "200": json_response(
                        success({"type": "array", "items": ref("Run")}),
                        envelope_example([RUN_EXAMPLE]),
                        "runs of the channel",
                    ),
                    **response_refs(r304="NotModified", r404="BadIdentifier", **AUTHED_ERRORS),
                },
            }
        },
        "/v2/accounts/{account_id}/channels/{channel_uuid}/metaflows/{run_id}": {
            "delete": {
                "operationId": "stopRun",
                "summary": "Stop a metaflow run",
                "tags": ["metaflows"],
                "parameters": param_refs("AccountId", "ChannelUuid", "RunId"),
                "responses": {
                    "200": json_response(
                        success(ref("Run")),
                        envelope_example({**RUN_EXAMPLE, "state": "stopped"}),
                        "the run, stopped",
                    ),
                    **response_refs(r404="BadIdentifier", **AUTHED_ERRORS),
                },
            }
        },
    }
