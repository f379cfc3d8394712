"""GET /v2/openapi.json: the OpenAPI 3.1 document of every route, parameter, envelope and error.

Schemas are JSON Schema 2020-12 (OpenAPI 3.1's dialect), so the tests validate every documented
example, and real answers, with jsonschema.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from flask import Blueprint, Response

from eslchan import __version__
from eslchan.api.channels import OWNER_ID
from eslchan.api.envelope import REQUEST_ID, START_KEY, not_modified, revision_of
from eslchan.config import ACCOUNT_ID

REF = "#/components/schemas/"
UUID_PATTERN = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
ACCOUNT = "4b8c4a8b3f1c4d2e9a7b6c5d4e3f2a1b"
CHANNEL = "dab25c76-7479-4ed2-ba92-6b725d68e351"
TOKEN = "eyJhY2NvdW50X2lkIjoiNGI4YzRhOGIzZjFjNGQyZTlhN2I2YzVkNGUzZjJhMWIifQ.Z1ZBzw.5xQ2hL0c8mJf3tYkK9uQ"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": REF + name}


def _nullable(kind: str, **extra: Any) -> dict[str, Any]:
    return {"type": [kind, "null"], **extra}


def _envelope_example(data: Any, status: str = "success", **extra: Any) -> dict[str, Any]:
    doc = {
        "auth_token": TOKEN,
        "data": data,
        "request_id": "5f1d0b7e2a9c4f6b8e3d1a0c9b8a7f6e",
        "revision": "0c7d2f5a9b1e4c3d8a6f0b2e4d6c8a1f",
        "status": status,
        "timestamp": "2026-11-26T15:04:05Z",
        "node": "eslchan-1",
        "version": __version__,
    }
    doc.update(extra)
    return doc


def _error_example(code: int, message: str, data: Any) -> dict[str, Any]:
    return _envelope_example(data, "error", error=str(code), message=message)


CHANNEL_EXAMPLE = {
    "answered": True,
    "authorizing_id": "63fbb9ac78e11f3ccb387928a423798a",
    "authorizing_type": "device",
    "callee_id_name": "Bob",
    "callee_id_number": "2000",
    "caller_id_name": "Alice",
    "caller_id_number": "1001",
    "destination": "user_zu0bf7",
    "direction": "outbound",
    "elapsed_s": 42,
    "is_onhold": False,
    "node": "fs1",
    "other_leg": "d220c187-e18e-4c42-bab2-459d10260091",
    "owner_id": "72855158432d790dfb22d03ff64c033e",
    "presence_id": "user_zu0bf7@account.realm.com",
    "timestamp": 63573977746,
    "username": "user_zu0bf7",
    "uuid": CHANNEL,
}
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
RUN_EXAMPLE = {
    "id": "8d6f1e0a2b3c4d5e",
    "kind": "metaflow",
    "module": "play",
    "tree": {"module": "play", "data": {"id": "welcome"}, "children": {"_": {"module": "hangup"}}},
    "channel": CHANNEL,
    "node": "fs1",
    "current": {"path": "", "module": "play"},
    "state": "running",
    "started": 1795705445.25,
    "ended": None,
    "error": None,
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


def _schemas() -> dict[str, Any]:
    string_or_null = _nullable("string")
    channel_props: dict[str, Any] = {
        "uuid": {"type": "string", "pattern": UUID_PATTERN, "description": "Unique-ID"},
        "answered": {"type": "boolean", "description": "true once CHANNEL_ANSWER was seen"},
        "direction": {**string_or_null, "description": "Call-Direction: inbound or outbound"},
        "destination": {**string_or_null, "description": "Caller-Destination-Number"},
        "username": {**string_or_null, "description": "mapped username variable, lower-cased"},
        "presence_id": string_or_null,
        "other_leg": {**string_or_null, "description": "Other-Leg-Unique-ID while bridged"},
        "owner_id": string_or_null,
        "authorizing_id": string_or_null,
        "authorizing_type": string_or_null,
        "timestamp": {"type": "integer", "description": "creation, Gregorian seconds (Unix + 62167219200)"},
        "caller_id_name": string_or_null,
        "caller_id_number": string_or_null,
        "callee_id_name": string_or_null,
        "callee_id_number": string_or_null,
        "is_onhold": {"type": "boolean"},
        "node": {"type": "string", "description": "configured FreeSWITCH node name"},
        "elapsed_s": {"type": "number", "minimum": 0, "description": "seconds since creation"},
    }
    envelope_props: dict[str, Any] = {
        "auth_token": {"type": "string", "description": "the token the request carried (or was issued)"},
        "data": {},
        "request_id": {"type": "string", "description": "X-Request-ID of the request, or a fresh one"},
        "revision": {"type": "string", "description": "ETag of data; send it as If-None-Match for a 304"},
        "status": {"enum": ["success"]},
        "timestamp": {"type": "string", "format": "date-time"},
        "node": {"type": "string", "description": "host name of the eslchan instance that answered"},
        "version": {"type": "string"},
    }
    envelope_required = list(envelope_props)
    envelope_props.update(
        {
            "page_size": {"type": "integer", "description": "listings with ?page_size: rows in this page"},
            "start_key": {"type": "string", "description": "the start_key this page was asked from"},
            "next_start_key": {"type": "string", "description": "start_key of the next page, if any"},
        }
    )
    keyword_errors = {
        "type": "object",
        "description": "JSON-Schema keyword (required, type, enum, pattern, ...) -> details",
        "additionalProperties": {
            "type": "object",
            "required": ["message"],
            "properties": {"message": {"type": "string"}},
        },
    }
    node_schema = {
        "type": "object",
        "required": ["module"],
        "properties": {
            "module": {"type": "string", "description": "a known metaflow module"},
            "data": {"type": "object", "description": "validated by schemas/metaflows.<module>.json"},
            "children": {"type": "object", "additionalProperties": _ref("MetaflowNode")},
        },
    }
    return {
        "Envelope": {
            "type": "object",
            "required": envelope_required,
            "properties": envelope_props,
        },
        "ErrorEnvelope": {
            "type": "object",
            "required": [*envelope_required, "error", "message"],
            "properties": {
                **envelope_props,
                "status": {"enum": ["error"]},
                "error": {"type": "string", "pattern": "^[1-5][0-9]{2}$", "description": "the HTTP status"},
                "message": {"type": "string"},
            },
        },
        "ValidationErrors": {
            "type": "object",
            "description": "dotted path of the offending field -> keyword -> details",
            "additionalProperties": keyword_errors,
        },
        "Channel": {
            "type": "object",
            "required": ["uuid", "answered", "timestamp", "node"],
            "properties": channel_props,
        },
        "ChannelDetail": {
            "allOf": [_ref("Channel")],
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
        "ApiAuthRequest": {
            "type": "object",
            "required": ["data"],
            "properties": {
                "data": {
                    "type": "object",
                    "required": ["api_key"],
                    "properties": {"api_key": {"type": "string", "minLength": 1}},
                }
            },
        },
        "ApiAuthResult": {
            "type": "object",
            "required": ["account_id", "account_name", "token_ttl"],
            "properties": {
                "account_id": {"type": "string", "pattern": ACCOUNT_ID.pattern},
                "account_name": {"type": "string"},
                "superduper_admin": {"type": "boolean"},
                "token_ttl": {"type": "integer", "description": "seconds the token is valid"},
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
        "MetaflowNode": node_schema,
        "MetaflowRequest": {
            "type": "object",
            "required": ["data"],
            "properties": {
                "action": {"enum": ["metaflow"]},
                "data": {
                    "description": "the root node, or Kazoo's shape with the node under data.data",
                    "oneOf": [
                        _ref("MetaflowNode"),
                        {
                            "type": "object",
                            "required": ["data"],
                            "properties": {"data": _ref("MetaflowNode")},
                            "not": {"required": ["module"]},
                        },
                    ],
                },
            },
        },
        "Run": {
            "type": "object",
            "required": ["id", "state"],
            "properties": {
                "id": {"type": "string"},
                "kind": {"type": "string", "description": "metaflow (PUT) or action (POST)"},
                "module": {"type": "string", "description": "module of the root node"},
                "tree": _ref("MetaflowNode"),
                "channel": {"type": "string"},
                "node": {"type": "string"},
                "current": {
                    "type": ["object", "null"],
                    "description": "the node running now: its path in the tree and its module",
                    "properties": {"path": {"type": "string"}, "module": {"type": ["string", "null"]}},
                },
                "state": {"type": "string", "description": "running, then done, stopped or failed"},
                "started": {"type": "number", "description": "Unix seconds"},
                "ended": {"type": ["number", "null"]},
                "error": {"type": ["string", "object", "null"]},
            },
        },
        "StreamEvent": {
            "type": "object",
            "description": "data of one message of the live event stream (GET /v2/accounts/{A}/events)",
            "required": ["uuid", "node", "event", "timestamp", "channel"],
            "properties": {
                "uuid": {"type": "string", "pattern": UUID_PATTERN},
                "node": {"type": "string"},
                "event": {"type": "string", "description": "FreeSWITCH's Event-Name, e.g. CHANNEL_ANSWER"},
                "timestamp": {"type": "integer", "description": "the event's time, Gregorian seconds"},
                "channel": _ref("Channel"),
                "removed": {
                    "type": "string",
                    "description": "only on a channel_destroy eslchan made itself: why the channel was "
                    "dropped without a FreeSWITCH event (resync, node gone)",
                },
            },
        },
        "NodeHealth": {
            "type": "object",
            "required": ["state", "up"],
            "properties": {
                "state": {"enum": ["connecting", "up", "down", "auth_failed"]},
                "up": {"type": "boolean"},
                "channels": {"type": "integer", "minimum": 0},
                "events_received": {"type": "integer", "minimum": 0},
                "events_dropped": {"type": "integer", "minimum": 0},
                "reconnects": {"type": "integer", "minimum": 0},
                "last_error": {"type": ["string", "null"], "description": "why the link last failed"},
            },
        },
        "Health": {
            "type": "object",
            "required": ["status", "nodes", "nodes_up", "channels"],
            "properties": {
                "status": {"enum": ["ok", "unavailable"]},
                "nodes": {"type": "object", "additionalProperties": _ref("NodeHealth")},
                "nodes_up": {"type": "integer", "minimum": 0},
                "channels": {"type": "integer", "minimum": 0},
                "uptime_s": {"type": "integer", "minimum": 0},
            },
        },
    }


def _success(data_schema: dict[str, Any]) -> dict[str, Any]:
    return {"allOf": [_ref("Envelope"), {"properties": {"data": data_schema}}]}


def _error(data_schema: dict[str, Any] | None = None) -> dict[str, Any]:
    if data_schema is None:
        return _ref("ErrorEnvelope")
    return {"allOf": [_ref("ErrorEnvelope"), {"properties": {"data": data_schema}}]}


_H = "#/components/headers/"


def _json(schema: dict[str, Any], example: Any, description: str) -> dict[str, Any]:
    headers = {"X-Request-ID": {"$ref": _H + "RequestId"}}
    if isinstance(example, dict) and example.get("status") == "success":
        headers["ETag"] = {"$ref": _H + "ETag"}
    return {
        "description": description,
        "headers": headers,
        "content": {"application/json": {"schema": schema, "example": example}},
    }


HEALTH_UP = {
    "status": "ok",
    "nodes": {
        "fs1": {
            "state": "up",
            "up": True,
            "channels": 2,
            "events_received": 1520,
            "events_dropped": 0,
            "reconnects": 0,
        }
    },
    "nodes_up": 1,
    "channels": 2,
    "uptime_s": 3600,
}
HEALTH_DOWN = {
    "status": "unavailable",
    "nodes": {
        "fs1": {
            "state": "connecting",
            "up": False,
            "channels": 2,
            "events_received": 1520,
            "events_dropped": 0,
            "reconnects": 3,
            "last_error": "ConnectionRefusedError: [Errno 111] Connection refused",
        }
    },
    "nodes_up": 0,
    "channels": 2,
    "uptime_s": 3600,
}


def _responses() -> dict[str, Any]:
    validation = _ref("ValidationErrors")
    return {
        "NotModified": {"description": "the caller's If-None-Match holds the current revision; no body"},
        "InvalidJson": _json(
            _error({"type": "object", "required": ["json"]}),
            _error_example(
                400,
                "invalid json",
                {"json": {"invalid": {"message": "Expecting value", "line": 1, "column": 1}}},
            ),
            "the body is not JSON, or not a JSON object",
        ),
        "ValidationError": _json(
            _error(validation),
            _error_example(
                400,
                "validation error",
                {"data.target": {"required": {"message": "Field is required but missing"}}},
            ),
            "bad input (schema violation, malformed id, action the channel's state does not allow, "
            "invalid JSON: data.json.invalid)",
        ),
        "Unauthorized": _json(
            _error(), _error_example(401, "invalid_credentials", {}), "no, invalid or expired token"
        ),
        "Forbidden": _json(
            _error(),
            _error_example(403, "forbidden", {"account_id": ACCOUNT}),
            "the token's account may not act on this account (or on the system-wide listing)",
        ),
        "BadIdentifier": _json(
            _error({"type": "array", "items": {"type": "string"}}),
            _error_example(404, "bad identifier", [CHANNEL]),
            "no such channel in this account (unknown and foreign channels look the same)",
        ),
        "FaultyRequest": _json(
            _error(), _error_example(404, "faulty request", {"path": "/v2/nothing"}), "unknown path"
        ),
        "MethodNotAllowed": {
            "description": "the path exists but not with this method; Allow lists the methods",
            "headers": {"Allow": {"schema": {"type": "string"}}},
            "content": {
                "application/json": {
                    "schema": _error(),
                    "example": _error_example(
                        405, "method not allowed", {"allowed_methods": ["GET", "HEAD"]}
                    ),
                }
            },
        },
        "TooLarge": _json(
            _error(),
            _error_example(413, "payload too large", {"max_body_bytes": 65536}),
            "the body is larger than http.max_body_bytes",
        ),
        "RateLimited": {
            "description": "too many failed authentications from this address; retry later",
            "headers": {"Retry-After": {"schema": {"type": "integer"}}},
            "content": {
                "application/json": {
                    "schema": _error(),
                    "example": _error_example(429, "too many requests", {"retry_after": 42}),
                }
            },
        },
        "FreeswitchError": _json(
            _error({"type": "object", "required": ["text"], "properties": {"text": {"type": "string"}}}),
            _error_example(502, "freeswitch error", {"text": "-ERR No such channel!", "node": "fs1"}),
            "FreeSWITCH refused the command (-ERR / -USAGE); its text is in data.text",
        ),
        "Unavailable": _json(
            _error(),
            _error_example(503, "node unavailable", {"node": "fs1", "reason": "link down"}),
            "the channel's node is not connected",
        ),
        "Timeout": _json(
            _error(),
            _error_example(504, "freeswitch timeout", {"node": "fs1", "reason": "no reply in 5 s"}),
            "FreeSWITCH did not answer within link.command_timeout",
        ),
    }


def _param(
    name: str,
    where: str,
    schema: dict[str, Any],
    description: str,
    required: bool = False,
    example: Any = None,
) -> dict[str, Any]:
    p: dict[str, Any] = {"name": name, "in": where, "schema": schema, "description": description}
    if required or where == "path":
        p["required"] = True
    if example is not None:
        p["example"] = example
    return p


def _parameters() -> dict[str, Any]:
    return {
        "AccountId": _param(
            "account_id",
            "path",
            {"type": "string", "pattern": ACCOUNT_ID.pattern},
            "the account (32 lowercase hex)",
            example=ACCOUNT,
        ),
        "UserId": _param(
            "user_id",
            "path",
            {"type": "string", "pattern": OWNER_ID.pattern},
            "owner_id of the channels",
            example="72855158432d790dfb22d03ff64c033e",
        ),
        "DeviceId": _param(
            "device_id",
            "path",
            {"type": "string", "pattern": OWNER_ID.pattern},
            "authorizing_id of the channels",
            example="63fbb9ac78e11f3ccb387928a423798a",
        ),
        "ChannelUuid": _param(
            "channel_uuid",
            "path",
            {"type": "string", "pattern": UUID_PATTERN},
            "the channel's Unique-ID",
            example=CHANNEL,
        ),
        "RunId": _param("run_id", "path", {"type": "string"}, "a metaflow run id", example=RUN_EXAMPLE["id"]),
        "RequestId": _param(
            "X-Request-ID",
            "header",
            {"type": "string", "pattern": REQUEST_ID.pattern},
            "echoed as request_id and in the X-Request-ID response header",
            example="crm-4711",
        ),
        "IfNoneMatch": _param(
            "If-None-Match",
            "header",
            {"type": "string"},
            "a revision from an earlier answer: 304 if data is unchanged",
            example='"0c7d2f5a9b1e4c3d8a6f0b2e4d6c8a1f"',
        ),
        "Accept": _param(
            "Accept",
            "header",
            {"type": "string", "enum": ["application/json", "text/csv"]},
            "text/csv answers a listing as CSV (one row per channel)",
            example="text/csv",
        ),
        "PageSize": _param(
            "page_size",
            "query",
            {"type": "integer", "minimum": 1, "maximum": 10000},
            "answer at most this many channels (oldest first); the envelope then carries "
            "page_size and, when more follow, next_start_key",
            example=50,
        ),
        "StartKey": _param(
            "start_key",
            "query",
            {"type": "string", "pattern": START_KEY.pattern},
            "next_start_key of the previous page (needs page_size)",
            example="00001795701657000000-" + CHANNEL,
        ),
        "AcceptQuery": _param(
            "accept",
            "query",
            {"type": "string", "enum": ["csv", "text/csv"]},
            "the same as Accept: text/csv, for links that cannot set headers",
            example="csv",
        ),
    }


_P = "#/components/parameters/"
_R = "#/components/responses/"


def _p(*names: str) -> list[dict[str, str]]:
    return [{"$ref": _P + n} for n in ("RequestId", *names)]


def _r(**codes: str) -> dict[str, Any]:
    return {code.removeprefix("r"): {"$ref": _R + name} for code, name in codes.items()}


_AUTHED = {
    "r400": "ValidationError",
    "r401": "Unauthorized",
    "r403": "Forbidden",
    "r405": "MethodNotAllowed",
    "r429": "RateLimited",
}
_BODY = {"r413": "TooLarge"}
_CONTROL = {"r404": "BadIdentifier", "r502": "FreeswitchError", "r503": "Unavailable", "r504": "Timeout"}


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
                {"$ref": _P + "IfNoneMatch"},
                {"$ref": _P + "Accept"},
                {"$ref": _P + "AcceptQuery"},
                {"$ref": _P + "PageSize"},
                {"$ref": _P + "StartKey"},
            ],
            "responses": {
                "200": {
                    "description": "the channels, oldest first (a page of them with page_size)",
                    "content": {
                        "application/json": {
                            "schema": _success({"type": "array", "items": _ref("Channel")}),
                            "example": _envelope_example([CHANNEL_EXAMPLE]),
                        },
                        "text/csv": {"schema": {"type": "string"}, "example": csv_example},
                    },
                },
                **_r(r304="NotModified", **_AUTHED),
            },
        }
    }


STREAM_EXAMPLE = (
    "retry: 3000\n: eslchan events for account " + ACCOUNT + "\n\n"
    "id: 1\nevent: channel_create\ndata: "
    + json.dumps(
        {
            "uuid": CHANNEL,
            "node": "fs1",
            "event": "CHANNEL_CREATE",
            "timestamp": 63573977746,
            "channel": {**CHANNEL_EXAMPLE, "answered": False, "elapsed_s": 0},
        },
        separators=(",", ":"),
    )
    + "\n\n: keepalive\n\n"
)


_NAME = "[A-Za-z][A-Za-z0-9_]{0,63}"


def _event_stream() -> dict[str, Any]:
    return {
        "get": {
            "operationId": "streamAccountEvents",
            "summary": "The account's channel events, live, as Server-Sent Events (text/event-stream)",
            "description": "Each message has id (1, 2, ... per stream), event (the lower-cased event "
            "name: channel_create, channel_answer, channel_bridge, channel_hold, channel_destroy, ...) "
            "and data (a StreamEvent). A ': keepalive' comment comes every 15 s. There is no replay: "
            "after a reconnect, list the channels again. A client that falls behind gets "
            "'event: overflow' and the stream ends; when its token expires or is revoked (checked at "
            "each keepalive) it gets 'event: unauthorized' and the stream ends. Errors before the "
            "stream starts are the usual JSON envelope.",
            "tags": ["channels"],
            "security": [{"authToken": []}, {"bearer": []}, {"authTokenQuery": []}],
            "parameters": [
                *_p("AccountId"),
                _param(
                    "events",
                    "query",
                    {"type": "string", "pattern": f"^{_NAME}(,{_NAME}){{0,31}}$"},
                    "only these events (comma-separated, either case); all channel events by default",
                    example="CHANNEL_CREATE,CHANNEL_DESTROY",
                ),
                _param(
                    "descendants",
                    "query",
                    {"type": "string", "enum": ["true", "false"]},
                    "true: also the channels of the account's sub-accounts",
                    example="true",
                ),
                _param(
                    "auth_token",
                    "query",
                    {"type": "string"},
                    "the token, for EventSource, which cannot send headers (a header token wins)",
                ),
            ],
            "responses": {
                "200": {
                    "description": "the stream; it ends on overflow, on an expired token or when "
                    "eslchan stops",
                    "headers": {"X-Request-ID": {"$ref": _H + "RequestId"}},
                    "content": {
                        "text/event-stream": {"schema": {"type": "string"}, "example": STREAM_EXAMPLE}
                    },
                },
                "503": _json(
                    _error({"type": "object", "properties": {"max_streams": {"type": "integer"}}}),
                    _error_example(503, "too many event streams", {"max_streams": 100}),
                    "the instance already serves its maximum of open streams (or is stopping); "
                    "Retry-After says when to try again",
                ),
                **_r(**_AUTHED),
            },
        }
    }


def build_document() -> dict[str, Any]:
    channel_params = _p("AccountId", "ChannelUuid")
    paths: dict[str, Any] = {
        "/v2/api_auth": {
            "put": {
                "operationId": "createToken",
                "summary": "Exchange an account's API key for a signed, expiring token",
                "tags": ["auth"],
                "security": [],
                "parameters": _p(),
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": _ref("ApiAuthRequest"),
                            "example": {"data": {"api_key": "0123456789abcdef0123456789abcdef"}},
                        }
                    },
                },
                "responses": {
                    "201": _json(
                        _success(_ref("ApiAuthResult")),
                        _envelope_example(
                            {
                                "account_id": ACCOUNT,
                                "account_name": "Acme",
                                "superduper_admin": False,
                                "token_ttl": 3600,
                            }
                        ),
                        "the token is in auth_token; send it as X-Auth-Token or Authorization: Bearer",
                    ),
                    **_r(
                        r400="ValidationError",
                        r401="Unauthorized",
                        r405="MethodNotAllowed",
                        r413="TooLarge",
                        r429="RateLimited",
                    ),
                },
            }
        },
        "/v2/channels": _listing(
            "All channels of all nodes (superduper admin, and only with system_wide_channels_list on; "
            "otherwise 403)",
            _p(),
            "listSystemChannels",
        ),
        "/v2/accounts/{account_id}/channels": _listing(
            "The account's live channels", _p("AccountId"), "listAccountChannels"
        ),
        "/v2/accounts/{account_id}/users/{user_id}/channels": _listing(
            "Channels whose owner_id is the user", _p("AccountId", "UserId"), "listUserChannels"
        ),
        "/v2/accounts/{account_id}/devices/{device_id}/channels": _listing(
            "Channels whose authorizing_id is the device", _p("AccountId", "DeviceId"), "listDeviceChannels"
        ),
        "/v2/accounts/{account_id}/channels/{channel_uuid}": {
            "get": {
                "operationId": "getChannel",
                "summary": "One channel's details",
                "tags": ["channels"],
                "parameters": [*channel_params, {"$ref": _P + "IfNoneMatch"}],
                "responses": {
                    "200": _json(
                        _success(_ref("ChannelDetail")), _envelope_example(DETAIL_EXAMPLE), "the channel"
                    ),
                    **_r(r304="NotModified", r404="BadIdentifier", **_AUTHED),
                },
            },
            "post": {
                "operationId": "runAction",
                "summary": "Run one action (transfer, hangup, break, intercept, callflow, move, play, ...)",
                "description": "Runs exactly what PUT {module: action, data: params} runs; answers once "
                "FreeSWITCH accepted the command.",
                "tags": ["channels"],
                "parameters": channel_params,
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": _ref("ActionRequest"),
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
                    "200": _json(
                        _success(_ref("ActionResult")),
                        _envelope_example(ACTION_RESULT_EXAMPLE),
                        "FreeSWITCH accepted the command",
                    ),
                    **_r(**_AUTHED, **_BODY, **_CONTROL),
                },
            },
            "put": {
                "operationId": "startMetaflow",
                "summary": "Put a metaflow (a tree of actions) on the channel",
                "description": "The whole tree is validated first; the run then goes on in the background.",
                "tags": ["metaflows"],
                "parameters": channel_params,
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": _ref("MetaflowRequest"),
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
                                "schema": _success(_ref("Run")),
                                "example": _envelope_example(RUN_EXAMPLE),
                            }
                        },
                    },
                    **_r(**_AUTHED, **_BODY, **_CONTROL),
                },
            },
        },
        "/v2/accounts/{account_id}/channels/{channel_uuid}/metaflows": {
            "get": {
                "operationId": "listRuns",
                "summary": "The metaflow runs of the channel",
                "tags": ["metaflows"],
                "parameters": [*channel_params, {"$ref": _P + "IfNoneMatch"}],
                "responses": {
                    "200": _json(
                        _success({"type": "array", "items": _ref("Run")}),
                        _envelope_example([RUN_EXAMPLE]),
                        "runs of the channel",
                    ),
                    **_r(r304="NotModified", r404="BadIdentifier", **_AUTHED),
                },
            }
        },
        "/v2/accounts/{account_id}/channels/{channel_uuid}/metaflows/{run_id}": {
            "delete": {
                "operationId": "stopRun",
                "summary": "Stop a metaflow run",
                "tags": ["metaflows"],
                "parameters": _p("AccountId", "ChannelUuid", "RunId"),
                "responses": {
                    "200": _json(
                        _success(_ref("Run")),
                        _envelope_example({**RUN_EXAMPLE, "state": "stopped"}),
                        "the run, stopped",
                    ),
                    **_r(r404="BadIdentifier", **_AUTHED),
                },
            }
        },
        "/v2/accounts/{account_id}/events": _event_stream(),
        "/health": {
            "get": {
                "operationId": "health",
                "summary": "Per-node ESL link state; 503 when no node is connected",
                "tags": ["system"],
                "security": [],
                "parameters": _p(),
                "responses": {
                    "200": _json(
                        _success(_ref("Health")), _envelope_example(HEALTH_UP), "at least one node up"
                    ),
                    "503": _json(
                        _error(_ref("Health")),
                        _error_example(503, "no node connected", HEALTH_DOWN),
                        "no node is up",
                    ),
                    **_r(r405="MethodNotAllowed"),
                },
            }
        },
        "/metrics": {
            "get": {
                "operationId": "metrics",
                "summary": "Prometheus metrics: channels per node, link state, events received/dropped, "
                "API requests by route and status, ESL command latency",
                "tags": ["system"],
                "security": [],
                "responses": {
                    "200": {
                        "description": "Prometheus text exposition format",
                        "content": {
                            "text/plain": {
                                "schema": {"type": "string"},
                                "example": 'eslchan_channels{node="fs1"} 2.0\n',
                            }
                        },
                    },
                    **_r(r405="MethodNotAllowed"),
                },
            }
        },
        "/v2/openapi.json": {
            "get": {
                "operationId": "openapi",
                "summary": "This document, bare (not in the envelope) so OpenAPI tools read it as is",
                "tags": ["system"],
                "security": [],
                "parameters": _p("IfNoneMatch"),
                "responses": {
                    "200": {
                        "description": "the OpenAPI document",
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "required": ["openapi", "info", "paths", "components"],
                                }
                            }
                        },
                    },
                    **_r(r304="NotModified", r405="MethodNotAllowed"),
                },
            }
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "eslchan",
            "version": __version__,
            "description": "Kazoo-compatible channels API over FreeSWITCH's Event Socket. Every JSON "
            "answer is the Kazoo envelope (this document and /metrics excepted); errors add error, "
            "message and details in data. Unknown paths answer 404 'faulty request' "
            "(components.responses.FaultyRequest). Every answer carries X-Request-ID; successes carry "
            "ETag (= revision) and honour If-None-Match with 304. Failed authentications are counted per "
            "client address: past auth.failed_auth_per_minute the address gets 429. Any origin may call "
            "(CORS), since the token travels in a header and never in a cookie.",
        },
        "jsonSchemaDialect": "https://json-schema.org/draft/2020-12/schema",
        "security": [{"authToken": []}, {"bearer": []}],
        "paths": paths,
        "components": {
            "schemas": _schemas(),
            "responses": _responses(),
            "parameters": _parameters(),
            "headers": {
                "RequestId": {
                    "description": "the caller's X-Request-ID or a fresh one; the envelope's request_id",
                    "schema": {"type": "string"},
                },
                "ETag": {
                    "description": "the envelope's revision, quoted; send it back as If-None-Match",
                    "schema": {"type": "string"},
                },
            },
            "securitySchemes": {
                "authToken": {"type": "apiKey", "in": "header", "name": "X-Auth-Token"},
                "bearer": {"type": "http", "scheme": "bearer"},
                "authTokenQuery": {
                    "type": "apiKey",
                    "in": "query",
                    "name": "auth_token",
                    "description": "only GET /v2/accounts/{account_id}/events accepts it",
                },
            },
        },
    }


_DOCUMENT = build_document()
_BODY_JSON = json.dumps(_DOCUMENT, indent=1)
_REVISION = revision_of(_DOCUMENT)  # the document never changes: digest it once, not per GET


def document() -> dict[str, Any]:
    return copy.deepcopy(_DOCUMENT)


bp = Blueprint("openapi", __name__)


@bp.route("/v2/openapi.json", methods=["GET"])
def openapi_json() -> Response:
    headers = {"ETag": f'"{_REVISION}"'}
    if not_modified(_REVISION):
        return Response(status=304, headers=headers)
    return Response(_BODY_JSON, status=200, mimetype="application/json", headers=headers)
