"""Components every resource uses: the envelope and error schemas, the channel and metaflow-run
schemas, the error responses, the parameters, the headers and the security schemes.
"""

from __future__ import annotations

from typing import Any

from eslchan.api.channels import OWNER_ID
from eslchan.api.envelope import REQUEST_ID, START_KEY
from eslchan.api.openapi.common import (
    ACCOUNT,
    CHANNEL,
    UUID_PATTERN,
    error,
    error_example,
    json_response,
    nullable,
    param,
    ref,
)
from eslchan.config import ACCOUNT_ID

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
    "answer_state": "answered",
    "node": "fs1",
    "other_leg": "d220c187-e18e-4c42-bab2-459d10260091",
    "owner_id": "72855158432d790dfb22d03ff64c033e",
    "presence_id": "user_zu0bf7@account.realm.com",
    "timestamp": 63573977746,
    "username": "user_zu0bf7",
    "uuid": CHANNEL,
}
RUN_EXAMPLE = {
    "id": "8d6f1e0a2b3c4d5e9f8a7b6c5d4e3f2a",
    "kind": "metaflow",
    "module": "play",
    "tree": {"module": "play", "data": {"id": "welcome"}, "children": {"_": {"module": "hangup"}}},
    "channel": CHANNEL,
    "node": "fs1",
    "current": {"path": "", "module": "play"},
    "state": "running",
    "waiting": False,
    "notes": {},
    "started": 1795705445.25,
    "ended": None,
    "error": None,
    "error_details": None,
    "trail": [{"path": "", "module": "play", "started": 1795705445.25, "ended": None,
               "outcome": None, "branch": None, "next": None}],
    "trail_dropped": 0,
}
FINISHED_RUN_EXAMPLE = {
    **RUN_EXAMPLE,
    "module": "collect_dtmf",
    "tree": {"module": "collect_dtmf", "data": {"max_digits": 1},
             "children": {"1": {"module": "transfer", "data": {"target": "2600"}}}},
    "current": {"path": "children.1", "module": "transfer"},
    "state": "finished",
    "notes": {"digits": "1"},
    "ended": 1795705452.5,
    "trail": [
        {"path": "", "module": "collect_dtmf", "started": 1795705445.25, "ended": 1795705451.0,
         "outcome": "branch", "branch": "1", "next": "1"},
        {"path": "children.1", "module": "transfer", "started": 1795705451.0,
         "ended": 1795705452.5, "outcome": "continue", "branch": "_", "next": None},
    ],
}


def schemas() -> dict[str, Any]:
    string_or_null = nullable("string")
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
        "answer_state": {"type": ["string", "null"], "enum": ["ringing", "early", "answered", "hangup", None],
                         "description": "Answer-State: ringing (a 180, CHANNEL_PROGRESS), early (early "
                         "media, CHANNEL_PROGRESS_MEDIA), answered, hangup"},
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
            "children": {"type": "object", "additionalProperties": ref("MetaflowNode")},
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
        "PolicyErrors": {
            "type": "object",
            "description": "dotted path of the field outside the account's policy -> policy -> the rule "
            "(variables, tenancy, contexts, dialplans, allow_inline, realms, endpoints, callflows, "
            "recordings, channels, commands) and why",
            "additionalProperties": {
                "type": "object",
                "required": ["policy"],
                "properties": {
                    "policy": {
                        "type": "object",
                        "required": ["message", "rule"],
                        "properties": {"message": {"type": "string"}, "rule": {"type": "string"}},
                    }
                },
            },
        },
        "LimitError": {
            "type": "object",
            "required": ["rule", "limit", "retry_after"],
            "properties": {
                "rule": {"enum": ["max_runs_per_channel", "max_runs", "max_streams", "max_originates"]},
                "limit": {"type": "integer", "minimum": 1},
                "reason": {"type": "string"},
                "retry_after": {"type": "integer", "minimum": 1},
            },
        },
        "Channel": {
            "type": "object",
            "required": ["uuid", "answered", "timestamp", "node"],
            "properties": channel_props,
        },
        "MetaflowNode": node_schema,
        "Run": {
            "type": "object",
            "required": ["id", "state"],
            "properties": {
                "id": {"type": "string"},
                "kind": {"type": "string", "description": "metaflow (PUT), action (POST) or originate (a "
                         "call eslchan started: its first step dials the channel, notes.call says how "
                         "far it got, notes.hangup_cause why it never answered)"},
                "module": {"type": "string", "description": "module of the root node"},
                "tree": ref("MetaflowNode"),
                "channel": {"type": "string"},
                "node": {"type": "string"},
                "current": {
                    "type": ["object", "null"],
                    "description": "the node running now: its path in the tree and its module",
                    "properties": {"path": {"type": "string"}, "module": {"type": ["string", "null"]}},
                },
                "state": {
                    "type": "string",
                    "enum": ["running", "finished", "stopped", "channel_gone", "failed"],
                    "description": "running, then how it ended: finished (the flow ran out), "
                    "stopped (DELETE, or eslchan shutting down), channel_gone (the call ended) "
                    "or failed (see error). A run that did not finish stopped the media it "
                    "had started on every leg still up.",
                },
                "waiting": {"type": "boolean", "description": "blocked on the call (digits, an answer)"},
                "notes": {"type": "object", "description": "what the modules report, e.g. digits, "
                          "transfer_outcome, hold_action, unheld_by, said, recording"},
                "started": {"type": "number", "description": "Unix seconds"},
                "ended": {"type": ["number", "null"]},
                "error": {"type": ["string", "null"]},
                "error_details": {"type": ["object", "null"],
                                  "description": "for a missing FreeSWITCH module: what is missing"},
                "instance": {"type": "string",
                             "description": "in cluster mode: the eslchan instance executing the run"},
                "trail": {
                    "type": "array",
                    "description": "the nodes run, in order (the latest 1000): which branch each took",
                    "items": {
                        "type": "object",
                        "properties": {
                            "path": {"type": "string", "description": "the node's path in the tree"},
                            "module": {"type": "string"},
                            "started": {"type": "number"},
                            "ended": {"type": ["number", "null"]},
                            "outcome": {
                                "type": ["string", "null"],
                                "description": "continue, branch, stop or goto; or how the run "
                                "ended in this node (failed, stopped, channel_gone); null while it runs",
                            },
                            "branch": {"type": ["string", "null"],
                                       "description": "the branch the module answered (_ to continue)"},
                            "next": {"type": ["string", "null"],
                                     "description": "the child followed (the branch, else _); "
                                     "null at the end"},
                        },
                    },
                },
                "trail_dropped": {"type": "integer", "description": "older trail entries not kept"},
            },
        },
    }


def responses() -> dict[str, Any]:
    validation = ref("ValidationErrors")
    return {
        "NotModified": {"description": "the caller's If-None-Match holds the current revision; no body"},
        "InvalidJson": json_response(
            error({"type": "object", "required": ["json"]}),
            error_example(
                400,
                "invalid json",
                {"json": {"invalid": {"message": "Expecting value", "line": 1, "column": 1}}},
            ),
            "the body is not JSON, or not a JSON object",
        ),
        "ValidationError": json_response(
            error(validation),
            error_example(
                400,
                "validation error",
                {"data.target": {"required": {"message": "Field is required but missing"}}},
            ),
            "bad input (schema violation, malformed id, action the channel's state does not allow, "
            "invalid JSON: data.json.invalid)",
        ),
        "Unauthorized": json_response(
            error(), error_example(401, "invalid_credentials", {}), "no, invalid or expired token"
        ),
        "Forbidden": json_response(
            error(),
            error_example(403, "forbidden", {"account_id": ACCOUNT}),
            "the token's account may not act on this account (or on the system-wide listing)",
        ),
        "PolicyForbidden": json_response(
            error({"anyOf": [ref("PolicyErrors"), {"type": "object", "required": ["account_id"]}]}),
            error_example(
                403,
                "forbidden",
                {"data.name": {"policy": {"rule": "variables", "message": "'api_hangup_hook' is a "
                                          "variable FreeSWITCH runs, routes or identifies the call by "
                                          "(api_*): no tenant may set it"}}},
            ),
            "the token's account may not act on this account, or the request is outside the account's "
            "policy (data names each field and its rule); nothing was sent to FreeSWITCH",
        ),
        "LimitReached": {
            "description": "the account (or the channel) already holds as many metaflow runs or event "
            "streams as its policy allows; Retry-After says when to try again",
            "headers": {"Retry-After": {"schema": {"type": "integer"}}},
            "content": {
                "application/json": {
                    "schema": error(ref("LimitError")),
                    "example": error_example(429, "too many requests", {
                        "rule": "max_runs_per_channel", "limit": 4,
                        "reason": "the channel already has 4 metaflow runs", "retry_after": 5}),
                }
            },
        },
        "HeadersTooLarge": json_response(
            error(),
            error_example(431, "request header fields too large", {
                "max_header_line": 8192, "max_headers": 100, "max_header_bytes": 65536,
                "reason": "a header line is longer than 8192 bytes"}),
            "the request's header fields are too large (an oversized request line is 414 likewise)",
        ),
        "BadIdentifier": json_response(
            error({"type": "array", "items": {"type": "string"}}),
            error_example(404, "bad identifier", [CHANNEL]),
            "no such channel in this account (unknown and foreign channels look the same)",
        ),
        "FaultyRequest": json_response(
            error(), error_example(404, "faulty request", {"path": "/v2/nothing"}), "unknown path"
        ),
        "MethodNotAllowed": {
            "description": "the path exists but not with this method; Allow lists the methods",
            "headers": {"Allow": {"schema": {"type": "string"}}},
            "content": {
                "application/json": {
                    "schema": error(),
                    "example": error_example(405, "method not allowed", {"allowed_methods": ["GET", "HEAD"]}),
                }
            },
        },
        "TooLarge": json_response(
            error(),
            error_example(413, "payload too large", {"max_body_bytes": 65536}),
            "the body is larger than http.max_body_bytes",
        ),
        "RateLimited": {
            "description": "too many failed authentications from this address: a wrong key gets 429 "
            "until Retry-After (the right key still gets its token)",
            "headers": {"Retry-After": {"schema": {"type": "integer"}}},
            "content": {
                "application/json": {
                    "schema": error(),
                    "example": error_example(429, "too many requests", {"retry_after": 42}),
                }
            },
        },
        "FreeswitchError": json_response(
            error({
                "type": "object",
                "required": ["text"],
                "properties": {
                    "text": {"type": "string"},
                    "node": {"type": "string"},
                    "module": {"type": ["string", "null"], "description": "the metaflow module refused"},
                    "path": {"type": ["string", "null"], "description": "its node's path in the tree"},
                    "missing": {"type": "string",
                                "description": "e.g. application soundtouch (mod_soundtouch)"},
                    "kind": {"enum": ["application", "api", "speech", "say"]},
                    "name": {"type": "string"},
                    "freeswitch_module": {"type": "string"},
                },
            }),
            error_example(502, "freeswitch error", {"text": "-ERR No such channel!", "node": "fs1"}),
            "\"freeswitch error\": FreeSWITCH refused the command (-ERR / -USAGE); its text is in "
            "data.text. \"freeswitch cannot\": the node lacks what the action or a node of the "
            "metaflow needs (an application, a TTS engine, a say language: data.missing, e.g. "
            "\"TTS engine flite (mod_flite)\"), and nothing was sent to the call. Each node's "
            "modules are probed once per connection of its link.",
        ),
        "Unavailable": json_response(
            error(),
            error_example(503, "node unavailable", {"node": "fs1", "reason": "link down"}),
            "the channel's node is not connected; or (cluster mode) this instance cannot reach Redis: "
            "'cluster state unavailable', with Retry-After",
        ),
        "ClusterStateUnavailable": json_response(
            error(),
            error_example(503, "cluster state unavailable", {
                "reason": "this instance cannot reach the cluster's Redis: its channels may be stale",
                "instance": "eslchan-2", "mirror_age_s": 7.5}),
            "cluster mode: this instance has not heard from Redis for longer than the lease, so it "
            "serves no channel state (Retry-After); another instance does",
        ),
        "Timeout": json_response(
            error(),
            error_example(504, "freeswitch timeout", {"node": "fs1", "reason": "no reply in 5 s"}),
            "FreeSWITCH did not answer within link.command_timeout",
        ),
    }


def parameters() -> dict[str, Any]:
    return {
        "AccountId": param(
            "account_id",
            "path",
            {"type": "string", "pattern": ACCOUNT_ID.pattern},
            "the account (32 lowercase hex)",
            example=ACCOUNT,
        ),
        "UserId": param(
            "user_id",
            "path",
            {"type": "string", "pattern": OWNER_ID.pattern},
            "owner_id of the channels",
            example="72855158432d790dfb22d03ff64c033e",
        ),
        "DeviceId": param(
            "device_id",
            "path",
            {"type": "string", "pattern": OWNER_ID.pattern},
            "authorizing_id of the channels",
            example="63fbb9ac78e11f3ccb387928a423798a",
        ),
        "ChannelUuid": param(
            "channel_uuid",
            "path",
            {"type": "string", "pattern": UUID_PATTERN},
            "the channel's Unique-ID",
            example=CHANNEL,
        ),
        "RunId": param("run_id", "path", {"type": "string", "pattern": "^[0-9a-f]{32}$"},
                       "a metaflow run id (32 lowercase hex)", example=RUN_EXAMPLE["id"]),
        "RequestId": param(
            "X-Request-ID",
            "header",
            {"type": "string", "pattern": REQUEST_ID.pattern},
            "echoed as request_id and in the X-Request-ID response header",
            example="crm-4711",
        ),
        "IfNoneMatch": param(
            "If-None-Match",
            "header",
            {"type": "string"},
            "a revision from an earlier answer: 304 if data is unchanged",
            example='"0c7d2f5a9b1e4c3d8a6f0b2e4d6c8a1f"',
        ),
        "Accept": param(
            "Accept",
            "header",
            {"type": "string", "enum": ["application/json", "text/csv"]},
            "text/csv answers a listing as CSV (one row per channel)",
            example="text/csv",
        ),
        "PageSize": param(
            "page_size",
            "query",
            {"type": "integer", "minimum": 1, "maximum": 10000},
            "answer at most this many channels (oldest first); the envelope then carries "
            "page_size and, when more follow, next_start_key",
            example=50,
        ),
        "StartKey": param(
            "start_key",
            "query",
            {"type": "string", "pattern": START_KEY.pattern},
            "next_start_key of the previous page (needs page_size)",
            example="00001795701657000000-" + CHANNEL,
        ),
        "AcceptQuery": param(
            "accept",
            "query",
            {"type": "string", "enum": ["csv", "text/csv"]},
            "the same as Accept: text/csv, for links that cannot set headers",
            example="csv",
        ),
    }


def headers() -> dict[str, Any]:
    return {
        "RequestId": {
            "description": "the caller's X-Request-ID or a fresh one; the envelope's request_id",
            "schema": {"type": "string"},
        },
        "ETag": {
            "description": "the envelope's revision, quoted; send it back as If-None-Match",
            "schema": {"type": "string"},
        },
    }


def security_schemes() -> dict[str, Any]:
    return {
        "authToken": {"type": "apiKey", "in": "header", "name": "X-Auth-Token"},
        "bearer": {"type": "http", "scheme": "bearer"},
        "authTokenQuery": {
            "type": "apiKey",
            "in": "query",
            "name": "auth_token",
            "description": "only GET /v2/accounts/{account_id}/events accepts it",
        },
    }
