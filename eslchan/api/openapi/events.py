"""GET /v2/accounts/{account_id}/events: the account's channel events as Server-Sent Events."""

from __future__ import annotations

import json
from typing import Any

from eslchan.api.openapi.common import (
    ACCOUNT,
    AUTHED_ERRORS,
    CHANNEL,
    HEADER_REF,
    POLICY_ERRORS,
    UUID_PATTERN,
    error,
    error_example,
    json_response,
    param,
    param_refs,
    ref,
    response_refs,
)
from eslchan.api.openapi.components import CHANNEL_EXAMPLE
from eslchan.config import ACCOUNT_ID

STREAM_EXAMPLE = (
    "retry: 3000\n: eslchan events for account " + ACCOUNT + "\n\n"
    "id: 5f3a9c01.4711\nevent: channel_create\ndata: "
    + json.dumps(
        {
            "uuid": CHANNEL,
            "account_id": ACCOUNT,
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


def schemas() -> dict[str, Any]:
    return {
        "StreamEvent": {
            "type": "object",
            "description": "data of one message of the live event stream (GET /v2/accounts/{A}/events)",
            "required": ["uuid", "account_id", "node", "event", "timestamp", "channel"],
            "properties": {
                "uuid": {"type": "string", "pattern": UUID_PATTERN},
                "account_id": {
                    "type": "string",
                    "pattern": ACCOUNT_ID.pattern,
                    "description": "the channel's account: the stream's own or, with descendants=true, "
                    "a sub-account's (the account to use in that channel's URLs)",
                },
                "node": {"type": "string"},
                "event": {"type": "string", "description": "FreeSWITCH's Event-Name, e.g. CHANNEL_ANSWER"},
                "timestamp": {"type": "integer", "description": "the event's time, Gregorian seconds"},
                "channel": ref("Channel"),
                "old_uuid": {
                    "type": "string",
                    "description": "only on channel_uuid: the uuid the channel had until now (FreeSWITCH "
                    "renamed it); drop what was known under it",
                },
                "removed": {
                    "type": "string",
                    "description": "only on a channel_destroy eslchan made itself: why the channel was "
                    "dropped without a FreeSWITCH event: gone (a snapshot comparison found FreeSWITCH no "
                    "longer has it) or node down (its node stayed unreachable past the stale grace)",
                    "enum": ["gone", "node down"],
                },
            },
        },
    }


def paths() -> dict[str, Any]:
    return {"/v2/accounts/{account_id}/events": _event_stream()}


def _event_stream() -> dict[str, Any]:
    return {
        "get": {
            "operationId": "streamAccountEvents",
            "summary": "The account's channel events, live, as Server-Sent Events (text/event-stream)",
            "description": "Each message has id ('<epoch>.<number>', numbers rising), event (the "
            "lower-cased event name: channel_create, channel_answer, channel_bridge, channel_hold, "
            "channel_destroy, ...) and data (a StreamEvent). A ': keepalive' comment comes every 15 s. "
            "A client that reconnects with the Last-Event-ID header (EventSource sends it by itself) "
            "first gets the messages it missed, if the instance still has them all (the single process "
            "keeps http.event_history of them while streams are open and for "
            "http.event_history_seconds after; a cluster instance reads them back from the shared "
            "stream, within its retention, whichever instance the client was on). Otherwise the "
            "stream starts with 'event: reset' (data: {reason}): list the channels again, then carry "
            "on; a cluster instance whose mirror had to start again from the snapshots sends it on its "
            "open streams too. A client that falls behind gets "
            "'event: overflow' and the stream ends; when its token expires or is revoked (checked at "
            "each keepalive) it gets 'event: unauthorized' and the stream ends. A client that does not "
            "take a write within http.stream_write_timeout is disconnected. Each account holds at most "
            "its policy's max_streams streams (429 with Retry-After beyond; in cluster mode counted "
            "across the instances). Errors before the "
            "stream starts are the usual JSON envelope.",
            "tags": ["channels"],
            "security": [{"authToken": []}, {"bearer": []}, {"authTokenQuery": []}],
            "parameters": [
                *param_refs("AccountId"),
                param(
                    "events",
                    "query",
                    {"type": "string", "pattern": f"^{_NAME}(,{_NAME}){{0,31}}$"},
                    "only these events (comma-separated, either case); all channel events by default",
                    example="CHANNEL_CREATE,CHANNEL_DESTROY",
                ),
                param(
                    "descendants",
                    "query",
                    {"type": "string", "enum": ["true", "false"]},
                    "true: also the channels of the account's sub-accounts",
                    example="true",
                ),
                param(
                    "Last-Event-ID",
                    "header",
                    {"type": "string", "maxLength": 64},
                    "the id of the last message the client had: what it missed comes first (or "
                    "'event: reset')",
                    example="5f3a9c01.4711",
                ),
                param(
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
                    "headers": {"X-Request-ID": {"$ref": HEADER_REF + "RequestId"}},
                    "content": {
                        "text/event-stream": {"schema": {"type": "string"}, "example": STREAM_EXAMPLE}
                    },
                },
                "503": json_response(
                    error({"type": "object", "properties": {"max_streams": {"type": "integer"}}}),
                    error_example(503, "too many event streams", {"max_streams": 100}),
                    "the instance already serves its maximum of open streams (or is stopping); "
                    "Retry-After says when to try again",
                ),
                **response_refs(**AUTHED_ERRORS, r429=POLICY_ERRORS["r429"]),
            },
        }
    }
