"""Starting calls: PUT /v2/accounts/{A}/channels and Kazoo's quickcall of a device or a user."""

from __future__ import annotations

import copy
from typing import Any

import schemas as schema_files
from eslchan.api.openapi.common import (
    AUTHED_ERRORS,
    BODY_ERRORS,
    CHANNEL,
    CONTROL_ERRORS,
    POLICY_ERRORS,
    envelope_example,
    error,
    error_example,
    param,
    param_refs,
    ref,
    response_refs,
    success,
)
from eslchan.api.openapi.components import CHANNEL_EXAMPLE
from eslchan.config.quickcall import ENTITY_ID

RUN_ID = "4f0c2d8e6a1b4c3d9e7f5a2b1c0d8e6f"
STARTED_EXAMPLE = {
    **CHANNEL_EXAMPLE,
    "answered": False,
    "answer_state": "ringing",
    "direction": "outbound",
    "destination": "1001",
    "other_leg": None,
    "caller_id_name": "CRM",
    "caller_id_number": "5550100",
    "callee_id_name": "Outbound Call",
    "callee_id_number": "1001",
    "authorizing_id": None,
    "authorizing_type": None,
    "presence_id": "1001@acme.example.com",
    "username": None,
    "elapsed_s": 0,
    "call_id": CHANNEL,
    "other_leg_call_id": None,
    "name": "sofia/internal/1001@acme.example.com",
    "context": "default",
    "state": "CS_CONSUME_MEDIA",
    "callstate": "RINGING",
    "application": None,
    "hangup_cause": None,
    "custom_channel_vars": {"account_id": "4b8c4a8b3f1c4d2e9a7b6c5d4e3f2a1b", "crm_ticket": "T-1042"},
    "stale": False,
    "run_id": RUN_ID,
}
QUICKCALL_EXAMPLE = {
    **STARTED_EXAMPLE,
    "caller_id_name": "Device QuickCall",
    "caller_id_number": "2600",
    "authorizing_id": "63fbb9ac78e11f3ccb387928a423798a",
    "authorizing_type": "device",
    "custom_channel_vars": {"account_id": "4b8c4a8b3f1c4d2e9a7b6c5d4e3f2a1b",
                            "authorizing_id": "63fbb9ac78e11f3ccb387928a423798a",
                            "authorizing_type": "device"},
}
CREATE_EXAMPLE = {
    "data": {
        "endpoint": "user/1001@acme.example.com",
        "caller_id_name": "CRM",
        "caller_id_number": "5550100",
        "timeout": 30,
        "custom_channel_vars": {"eslchan_crm_ticket": "T-1042"},
        "metaflow": {"module": "play", "data": {"id": "welcome"}},
    }
}


def schemas() -> dict[str, Any]:
    create = copy.deepcopy(schema_files.load("channels.create"))
    quick = copy.deepcopy(schema_files.load("quickcall"))
    for schema in (create, quick):
        schema.pop("$schema", None)
        schema.pop("$id", None)
    flow = create["properties"]["metaflow"]
    create["properties"]["metaflow"] = {**ref("MetaflowNode"), "description": flow["description"]}
    return {
        "CreateCall": {"type": "object", "required": ["data"], "properties": {"data": create}},
        "QuickcallOptions": quick,
        "StartedCall": {
            "allOf": [ref("ChannelDetail")],
            "type": "object",
            "description": "the new channel as eslchan knows it when FreeSWITCH has just created it "
            "(ringing, usually), and the run that follows it",
            "required": ["uuid", "node", "run_id"],
            "properties": {
                "run_id": {"type": "string", "description": "the call's run (kind originate): "
                           "GET /v2/accounts/{A}/metaflows/{run_id} says how it went"},
            },
        },
        "AcceptedQuickcall": {
            "type": "object",
            "description": "a GET quickcall: FreeSWITCH took the job; the channel may not exist yet",
            "required": ["uuid", "node", "run_id"],
            "properties": {
                "uuid": {"type": "string"}, "call_id": {"type": "string"}, "node": {"type": "string"},
                "answer_state": {"type": ["string", "null"]}, "run_id": {"type": "string"},
            },
        },
    }


_STARTED_ERRORS = {**AUTHED_ERRORS, **POLICY_ERRORS, **BODY_ERRORS, **CONTROL_ERRORS}
_REFUSED = error_example(502, "freeswitch error", {"text": "-ERR USER_NOT_REGISTERED", "node": "fs1"})
_TIMED_OUT = error_example(504, "freeswitch timeout", {
    "node": "fs1", "uuid": CHANNEL, "run": RUN_ID,
    "reason": "FreeSWITCH created no channel within 5 s; the call goes on, its run tells how it ends"})


def _started(status: str, description: str, example: Any) -> dict[str, Any]:
    return {
        status: {
            "description": description,
            "headers": {"Location": {"schema": {"type": "string"},
                                     "description": "the new channel: /v2/accounts/{A}/channels/{uuid}"}},
            "content": {"application/json": {
                "schema": success({"anyOf": [ref("StartedCall"), ref("AcceptedQuickcall")]}),
                "example": envelope_example(example)}},
        },
        **response_refs(**_STARTED_ERRORS),
        "502": {
            "description": "FreeSWITCH refused the call before creating any channel (an unregistered "
            "phone, a missing gateway: data.text is its -ERR), or the node lacks what the metaflow "
            "needs (\"freeswitch cannot\")",
            "content": {"application/json": {"schema": error(), "example": _REFUSED}},
        },
        "504": {
            "description": "FreeSWITCH created no channel within link.command_timeout; the call is "
            "still followed: data.run is its run",
            "content": {"application/json": {"schema": error(), "example": _TIMED_OUT}},
        },
    }


def _quickcall(kind: str) -> dict[str, Any]:
    entity = param(f"{kind}_id", "path", {"type": "string", "pattern": ENTITY_ID.pattern},
                   f"the {kind} (its endpoint: [accounts.quickcall] {kind}s table, else its template)",
                   example="63fbb9ac78e11f3ccb387928a423798a")
    number = param("number", "path", {"type": "string", "maxLength": 64},
                   "what the answered device calls, through the account's own dialplan context",
                   example="2600")
    options = [
        param("auto_answer", "query", {"type": "boolean"},
              "ask the device to answer by itself (default true)"),
        param("cid-name", "query", {"type": "string"}, "the caller id name NUMBER sees"),
        param("cid-number", "query", {"type": "string"}, "the caller id number NUMBER sees"),
        param("timeout", "query", {"type": "integer", "minimum": 3, "maximum": 600},
              "seconds to ring the device (default 30)"),
        param("number_filter", "query", {"type": "boolean"},
              "remove spaces and , . - ( ) from NUMBER first (default true)"),
        param("target_call_id", "query", {"type": "string"},
              "a call of the account: the quickcall starts on its node"),
        param("auth_token", "query", {"type": "string"}, "the token, for a GET from a link"),
    ]
    described = (
        f"Kazoo's quickcall: ring the {kind}'s endpoint (the operator's, from [accounts.quickcall]) "
        "showing Device QuickCall / NUMBER; once answered it calls NUMBER through the account's "
        "context, showing cid-name / cid-number. Options come from the query string or, for a POST, "
        "the body's data; any other query parameter is a custom application variable (a variable "
        "the account may set). "
    )
    common = {"tags": ["calls"], "parameters": [*param_refs("AccountId"), entity, number, *options]}
    return {
        "get": {
            **common,
            "operationId": f"{kind}QuickcallGet",
            "summary": f"Quickcall from a {kind}, answered once FreeSWITCH took the job",
            "description": described + "A GET answers 202 as soon as FreeSWITCH accepted the job, as "
            "Kazoo's non-blocking form: a failure then shows only in the run and the event stream.",
            "responses": _started("202", "FreeSWITCH took the job", QUICKCALL_EXAMPLE),
        },
        "post": {
            **common,
            "operationId": f"{kind}QuickcallPost",
            "summary": f"Quickcall from a {kind}, answered once its channel exists",
            "description": described + "A POST answers 202 once FreeSWITCH created the device's "
            "channel, or with FreeSWITCH's refusal (502).",
            "requestBody": {"required": False, "content": {"application/json": {
                "schema": {"type": "object", "properties": {"data": ref("QuickcallOptions")}},
                "example": {"data": {"cid-name": "Sales", "cid-number": "5550100", "timeout": 20,
                                     "custom_application_vars": {"eslchan_campaign": "spring"}}}}}},
            "responses": _started("202", "the device's channel exists (it rings)", QUICKCALL_EXAMPLE),
        },
    }


def paths() -> dict[str, Any]:
    return {
        "/v2/accounts/{account_id}/channels": {
            "put": {
                "operationId": "createCall",
                "summary": "Start a call to one of the account's endpoints",
                "description": "Dials endpoint (it must match one of the account's endpoints globs; an "
                "account without any may not start calls: 403), on node, near_channel's node or the "
                "connected node with the fewest channels. The new channel carries the account (and "
                "owner_id, custom_channel_vars), so it is listed, streamed and controlled like any of "
                "its calls. Answers 201 as soon as FreeSWITCH created the channel, not when it is "
                "answered; its ringing, early media, answer or failure follow on the event stream, "
                "and in its run (kind originate, run_id), which runs metaflow once it is answered. "
                "Everything is checked before anything is dialled (grammar 400, policy 403 naming "
                "the rule, the account's calls still ringing past max_originates 429).",
                "tags": ["calls"],
                "parameters": param_refs("AccountId"),
                "requestBody": {"required": True, "content": {"application/json": {
                    "schema": ref("CreateCall"), "example": CREATE_EXAMPLE}}},
                "responses": _started("201", "FreeSWITCH created the channel", STARTED_EXAMPLE),
            }
        },
        "/v2/accounts/{account_id}/devices/{device_id}/quickcall/{number}": _quickcall("device"),
        "/v2/accounts/{account_id}/users/{user_id}/quickcall/{number}": _quickcall("user"),
    }
