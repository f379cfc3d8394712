"""The channel listings, one channel's details, POST (one action) and PUT (a metaflow) on a channel."""

from __future__ import annotations

from typing import Any

from eslchan.api.openapi.common import (
    ACCOUNT,
    AUTHED_ERRORS,
    BODY_ERRORS,
    CHANNEL,
    CONTROL_ERRORS,
    PARAMETER_REF,
    POLICY_ERRORS,
    envelope_example,
    json_response,
    nullable,
    param_refs,
    ref,
    response_refs,
    success,
)
from eslchan.api.openapi.components import CHANNEL_EXAMPLE, RUN_EXAMPLE

DETAIL_EXAMPLE = {
    **CHANNEL_EXAMPLE,
    "call_id": CHANNEL,
    "other_leg_call_id": "d220c187-e18e-4c42-bab2-459d10260091",
    "name": "sofia/internal/1001@account.realm.com",
    "context": "default",
    "state": "CS_EXECUTE",
    "callstate": "ACTIVE",
    "application": "park",
    "hangup_cause": None,
    "custom_channel_vars": {
        "account_id": ACCOUNT,
        "owner_id": "72855158432d790dfb22d03ff64c033e",
    },
    "stale": False,
}
ACTION_RESULT_EXAMPLE = {
    "id": "3a9e5c7b1d2f4e6a",
    "action": "transfer",
    "channel": CHANNEL,
    "node": "fs1",
    "state": "running",
    "reply": "+OK",
    "data": {
        "target": "2600",
        "takeback_dtmf": "*1",
        "moh": "media_id",
        "leg": "bleg",
        "transfer_type": "attended",
    },
}


def schemas() -> dict[str, Any]:
    string_or_null = nullable("string")
    return {
        "ChannelDetail": {
            "allOf": [ref("Channel")],
            "type": "object",
            "required": ["call_id", "state"],
            "properties": {
                "call_id": {"type": "string"},
                "other_leg_call_id": string_or_null,
                "state": {**string_or_null, "description": "FreeSWITCH channel state, e.g. CS_EXECUTE"},
                "name": {
                    **string_or_null,
                    "description": "channel name, e.g. sofia/internal/1001@example.com",
                },
                "context": {**string_or_null, "description": "dialplan context"},
                "application": {**string_or_null, "description": "the application running now"},
                "callstate": string_or_null,
                "hangup_cause": string_or_null,
                "custom_channel_vars": {"type": "object", "additionalProperties": {"type": "string"}},
                "stale": {"type": "boolean", "description": "true while the node's link is down"},
            },
        },
        "ActionRequest": {
            "type": "object",
            "description": "one action; runs what PUT {module: action, data: params} runs. "
            "A top-level action is accepted too.",
            "properties": {
                "action": {"type": "string"},
                "data": {
                    "type": "object",
                    "properties": {"action": {"type": "string"}},
                    "additionalProperties": True,
                },
            },
            "anyOf": [{"required": ["action"]}, {"required": ["data"]}],
        },
        "ActionResult": {
            "type": "object",
            "description": "what the action did, once FreeSWITCH accepted its first command",
            "properties": {
                "id": {"type": "string", "description": "the run id (the action runs as a one-node flow)"},
                "action": {"type": "string"},
                "channel": {"type": "string"},
                "node": {"type": "string"},
                "state": {"type": "string"},
                "reply": {"type": ["string", "null"], "description": "FreeSWITCH's reply, e.g. +OK"},
                "data": {"type": "object", "description": "the action's parameters, defaults filled in"},
            },
        },
        "MetaflowRequest": {
            "type": "object",
            "required": ["data"],
            "properties": {
                "action": {"enum": ["metaflow"]},
                "data": {
                    "description": "the root node, or Kazoo's shape with the node under data.data",
                    "oneOf": [
                        ref("MetaflowNode"),
                        {
                            "type": "object",
                            "required": ["data"],
                            "properties": {"data": ref("MetaflowNode")},
                            "not": {"required": ["module"]},
                        },
                    ],
                },
            },
        },
    }


def _listing(summary: str, params: list[dict[str, str]], op_id: str) -> dict[str, Any]:
    csv_example = (
        "uuid,answered,direction,destination,username,presence_id,other_leg,owner_id,"
        "authorizing_id,authorizing_type,timestamp,caller_id_name,caller_id_number,callee_id_name,"
        "callee_id_number,is_onhold,node,elapsed_s\r\n"
        f"{CHANNEL},true,outbound,user_zu0bf7,user_zu0bf7,user_zu0bf7@account.realm.com,"
        "d220c187-e18e-4c42-bab2-459d10260091,72855158432d790dfb22d03ff64c033e,"
        "63fbb9ac78e11f3ccb387928a423798a,device,63573977746,Alice,1001,Bob,2000,false,fs1,42\r\n"
    )
    return {
        "get": {
            "operationId": op_id,
            "summary": summary,
            "description": "Answered from eslchan's memory, never by asking FreeSWITCH.",
            "tags": ["channels"],
            "parameters": [
                *params,
                {"$ref": PARAMETER_REF + "IfNoneMatch"},
                {"$ref": PARAMETER_REF + "Accept"},
                {"$ref": PARAMETER_REF + "AcceptQuery"},
                {"$ref": PARAMETER_REF + "PageSize"},
                {"$ref": PARAMETER_REF + "StartKey"},
            ],
            "responses": {
                "200": {
                    "description": "the channels, oldest first (a page of them with page_size)",
                    "headers": {
                        "X-Next-Start-Key": {
                            "description": "a page with more after it: the start_key of the next page "
                            "(JSON answers also carry it as next_start_key; CSV answers only here)",
                            "schema": {"type": "string"},
                        },
                        "Link": {
                            "description": 'a page with more after it: <the next page\'s URL>; rel="next"',
                            "schema": {"type": "string"},
                        },
                    },
                    "content": {
                        "application/json": {
                            "schema": success({"type": "array", "items": ref("Channel")}),
                            "example": envelope_example([CHANNEL_EXAMPLE]),
                        },
                        "text/csv": {"schema": {"type": "string"}, "example": csv_example},
                    },
                },
                **response_refs(r304="NotModified", r503="ClusterStateUnavailable", **AUTHED_ERRORS),
            },
        }
    }


def paths() -> dict[str, Any]:
    channel_params = param_refs("AccountId", "ChannelUuid")
    return {
        "/v2/channels": _listing(
            "All channels of all nodes (superduper admin, and only with system_wide_channels_list on; "
            "otherwise 403)",
            param_refs(),
            "listSystemChannels",
        ),
        "/v2/accounts/{account_id}/channels": _listing(
            "The account's live channels", param_refs("AccountId"), "listAccountChannels"
        ),
        "/v2/accounts/{account_id}/users/{user_id}/channels": _listing(
            "Channels whose owner_id is the user", param_refs("AccountId", "UserId"), "listUserChannels"
        ),
        "/v2/accounts/{account_id}/devices/{device_id}/channels": _listing(
            "Channels whose authorizing_id is the device",
            param_refs("AccountId", "DeviceId"),
            "listDeviceChannels",
        ),
        "/v2/accounts/{account_id}/channels/{channel_uuid}": {
            "get": {
                "operationId": "getChannel",
                "summary": "One channel's details",
                "tags": ["channels"],
                "parameters": [*channel_params, {"$ref": PARAMETER_REF + "IfNoneMatch"}],
                "responses": {
                    "200": json_response(
                        success(ref("ChannelDetail")), envelope_example(DETAIL_EXAMPLE), "the channel"
                    ),
                    **response_refs(r304="NotModified", r404="BadIdentifier", r503="ClusterStateUnavailable",
                                   **AUTHED_ERRORS),
                },
            },
            "post": {
                "operationId": "runAction",
                "summary": "Run one action (transfer, hangup, break, intercept, callflow, move, play, ...)",
                "description": "Runs exactly what PUT {module: action, data: params} runs; answers once "
                "FreeSWITCH accepted the command (for a job sent with bgapi, such as intercept's "
                "originate: once FreeSWITCH accepted the job). The account's policy is checked first: "
                "a variable, context, dialplan, realm, endpoint, callflow or recording outside it is a "
                "403 naming the rule, and nothing reaches FreeSWITCH; past the runs allowed per channel "
                "or per account, 429 with Retry-After.",
                "tags": ["channels"],
                "parameters": channel_params,
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": ref("ActionRequest"),
                            "example": {
                                "data": {
                                    "action": "transfer",
                                    "target": "2600",
                                    "takeback_dtmf": "*1",
                                    "moh": "media_id",
                                }
                            },
                        }
                    },
                },
                "responses": {
                    "200": json_response(
                        success(ref("ActionResult")),
                        envelope_example(ACTION_RESULT_EXAMPLE),
                        "FreeSWITCH accepted the command",
                    ),
                    **response_refs(**{**AUTHED_ERRORS, **POLICY_ERRORS}, **BODY_ERRORS, **CONTROL_ERRORS),
                },
            },
            "put": {
                "operationId": "startMetaflow",
                "summary": "Put a metaflow (a tree of actions) on the channel",
                "description": "The whole tree is validated first, against the schemas (400) and the "
                "account's policy (403 naming the rule, before any run exists); past the runs allowed "
                "per channel or per account, 429 with Retry-After. The run then goes on in the "
                "background.",
                "tags": ["metaflows"],
                "parameters": channel_params,
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": ref("MetaflowRequest"),
                            "examples": {
                                "kazoo": {
                                    "summary": "Kazoo's shape",
                                    "value": {"action": "metaflow", "data": {"data": {"module": "hangup"}}},
                                },
                                "tree": {
                                    "summary": "a node with children",
                                    "value": {
                                        "action": "metaflow",
                                        "data": {
                                            "module": "collect_dtmf",
                                            "data": {"max_digits": 1},
                                            "children": {
                                                "1": {"module": "transfer", "data": {"target": "2600"}},
                                                "_": {"module": "hangup"},
                                            },
                                        },
                                    },
                                },
                            },
                        }
                    },
                },
                "responses": {
                    "202": {
                        "description": "validated and started; Location lists the channel's runs",
                        "headers": {"Location": {"schema": {"type": "string"}}},
                        "content": {
                            "application/json": {
                                "schema": success(ref("Run")),
                                "example": envelope_example(RUN_EXAMPLE),
                            }
                        },
                    },
                    **response_refs(**{**AUTHED_ERRORS, **POLICY_ERRORS}, **BODY_ERRORS, **CONTROL_ERRORS),
                },
            },
        },
    }
