"""Webhooks: list, create, read, replace, patch, delete an account's hooks, a hook's attempts and
the account's, the bulk re-enable; the hooks offered and their sample payloads; also the payload
and the signed request a receiver gets."""

from __future__ import annotations

import copy
from typing import Any

import schemas as schema_files
from eslchan.api.openapi.common import (
    ACCOUNT,
    AUTHED_ERRORS,
    BODY_ERRORS,
    CHANNEL,
    envelope_example,
    error,
    error_example,
    json_response,
    nullable,
    param,
    param_refs,
    ref,
    response_refs,
    success,
)
from eslchan.api.webhooks import HOOK_ID
from eslchan.webhooks import HOOK_DESCRIPTIONS, HOOK_NAMES, samples
from eslchan.webhooks.payload import HOOKS

HOOK = "5c2a0f8e9b7d4c3a8e1f0d2b4a6c8e0f"
FIELDS_EXAMPLE = {
    "name": "CRM",
    "uri": "https://crm.example.com/hooks/calls",
    "http_verb": "post",
    "hook": "all",
    "retries": 2,
    "custom_data": {"crm_account": "acme-17"},
    "enabled": True,
    "include_subaccounts": False,
}
HOOK_EXAMPLE = {
    "id": HOOK,
    **FIELDS_EXAMPLE,
    "disable_reason": None,
    "failures": 0,
    "pending": 0,
    "dropped": 0,
    "created": 63902404800,
    "modified": 63902404800,
}
SECRET_EXAMPLE = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw0sH0kG7xRZ0="
ATTEMPT_EXAMPLE = {
    "hook_id": HOOK,
    "delivery_id": f"{HOOK}-42",
    "timestamp": 63902404861,
    "time": "2025-01-06T10:01:01.25Z",
    "result": "failure",
    "response_code": 503,
    "latency_ms": 12.5,
    "reason": "HTTP 503",
    "retries_left": 1,
    "hook_event": "channel_answer",
    "call_id": CHANNEL,
}
PAYLOAD_EXAMPLE = {
    "hook_event": "channel_destroy",
    "call_id": CHANNEL,
    "other_leg_call_id": "d220c187-e18e-4c42-bab2-459d10260091",
    "call_direction": "inbound",
    "caller_id_name": "Alice",
    "caller_id_number": "1001",
    "callee_id_name": "Bob",
    "callee_id_number": "2000",
    "account_id": ACCOUNT,
    "owner_id": "72855158432d790dfb22d03ff64c033e",
    "authorizing_id": "63fbb9ac78e11f3ccb387928a423798a",
    "authorizing_type": "device",
    "timestamp": 63902404861,
    "custom_channel_vars": {"account_id": ACCOUNT},
    "node": "fs1",
    "hangup_cause": "NORMAL_CLEARING",
    "hangup_code": "sip:200",
    "duration_seconds": 61,
    "billing_seconds": 58,
    "ringing_seconds": 3,
    "crm_account": "acme-17",
}


OFFERED_EXAMPLE = [{"id": name, "name": name, "description": HOOK_DESCRIPTIONS[name]} for name in HOOK_NAMES]
SAMPLE = samples.PREFIX + "channel_destroy"


def _schema_file(name: str) -> dict[str, Any]:
    """A schema of schemas/, the same file the API validates with."""
    schema = copy.deepcopy(schema_files.load(name))
    for key in ("$schema", "$id"):
        schema.pop(key, None)
    return schema


def schemas() -> dict[str, Any]:
    fields = _schema_file("webhooks")
    string_or_null = nullable("string")
    integer_or_null = nullable("integer")
    return {
        "WebhookFields": fields,
        "WebhookPatch": {
            **{k: v for k, v in fields.items() if k != "required"},
            "description": 'Only the fields given change; e.g. {"enabled": true} re-enables a hook '
            "eslchan disabled after repeated failures, and its queue is delivered",
        },
        "Webhook": {
            "type": "object",
            "required": [
                "id",
                "name",
                "uri",
                "hook",
                "http_verb",
                "retries",
                "enabled",
                "pending",
                "dropped",
            ],
            "properties": {
                "id": {"type": "string", "pattern": HOOK_ID.pattern},
                **fields["properties"],
                "disable_reason": {
                    **string_or_null,
                    "description": "why eslchan disabled the hook (repeated failures); null otherwise",
                },
                "failures": {"type": "integer", "description": "failed deliveries in a row"},
                "pending": {"type": "integer", "description": "events queued, not yet delivered"},
                "dropped": {
                    "type": "integer",
                    "description": "events not queued because the hook's queue was full (overflow)",
                },
                "created": {"type": "integer", "description": "Gregorian seconds"},
                "modified": {"type": "integer", "description": "Gregorian seconds"},
                "secret": {
                    "type": "string",
                    "pattern": "^whsec_[A-Za-z0-9+/=]+$",
                    "description": "the signing secret; only in the answer that creates the hook or "
                    "rotates the secret",
                },
            },
        },
        "WebhookReEnable": _schema_file("webhooks.reenable"),
        "WebhookOffered": {
            "type": "object",
            "description": "A hook this eslchan offers: what a webhook's hook field may name",
            "required": ["id", "name", "description"],
            "properties": {
                "id": {"enum": list(HOOK_NAMES)},
                "name": {"type": "string"},
                "description": {"type": "string"},
            },
        },
        "WebhookAttempt": {
            "type": "object",
            "required": ["hook_id", "delivery_id", "timestamp", "result", "latency_ms"],
            "properties": {
                "hook_id": {"type": "string"},
                "delivery_id": {"type": "string", "description": "the webhook-id header of the request"},
                "timestamp": {"type": "integer", "description": "Gregorian seconds"},
                "time": {"type": "string", "format": "date-time"},
                "result": {"enum": ["success", "failure"]},
                "response_code": {**integer_or_null, "description": "the receiver's HTTP status"},
                "latency_ms": {"type": "number"},
                "reason": {
                    **string_or_null,
                    "description": "why it failed (HTTP 503, timeout, refused, ...)",
                },
                "retries_left": {"type": "integer"},
                "hook_event": string_or_null,
                "call_id": string_or_null,
            },
        },
        "WebhookPayload": {
            "type": "object",
            "description": "What a receiver gets: POST with this JSON body, or GET with it as a query "
            "string (nested objects as outer[inner]=value). Headers (Standard Webhooks): webhook-id "
            "(stable across retries: deduplicate on it, delivery is at least once), webhook-timestamp "
            "(Unix seconds of the attempt) and webhook-signature: v1,<base64 of HMAC-SHA256(key, "
            "'<webhook-id>.<webhook-timestamp>.<body, or the whole query string of a get hook>')>, "
            "key = the hook's secret without 'whsec_', base64-decoded. Refuse a bad signature and a "
            "timestamp more than a few minutes old. The hook's custom_data is added, overwriting "
            "fields of the same name.",
            "required": ["hook_event", "call_id", "account_id", "timestamp"],
            "properties": {
                "hook_event": {"enum": list(HOOKS)},
                "call_id": {"type": "string"},
                "other_leg_call_id": string_or_null,
                "call_direction": string_or_null,
                "caller_id_name": string_or_null,
                "caller_id_number": string_or_null,
                "callee_id_name": string_or_null,
                "callee_id_number": string_or_null,
                "account_id": {"type": "string"},
                "owner_id": string_or_null,
                "authorizing_id": string_or_null,
                "authorizing_type": string_or_null,
                "timestamp": {"type": "integer", "description": "the event's time, Gregorian seconds"},
                "custom_channel_vars": {"type": "object", "additionalProperties": {"type": "string"}},
                "node": {"type": "string"},
                "other_leg_destination_number": {**string_or_null, "description": "channel_bridge only"},
                "hangup_cause": {**string_or_null, "description": "channel_destroy only"},
                "hangup_code": {**string_or_null, "description": "channel_destroy only, e.g. sip:486"},
                "duration_seconds": {**integer_or_null, "description": "channel_destroy only"},
                "billing_seconds": {**integer_or_null, "description": "channel_destroy only"},
                "ringing_seconds": {**integer_or_null, "description": "channel_destroy only"},
                "removed": {
                    "type": "string",
                    "description": "channel_destroy only: eslchan dropped the channel without a FreeSWITCH "
                    "event (resync, node gone)",
                },
            },
        },
    }


_NOT_ENABLED = json_response(
    error(),
    error_example(404, "faulty request", {"reason": "webhooks are not enabled on this eslchan"}),
    "webhooks are not enabled on this eslchan (no [webhooks] table)",
)


def _not_found(example_id: str, what: str) -> dict[str, Any]:
    """404 for an unknown id (the id in data), and also when webhooks are off (a reason)."""
    ids = {"type": "array", "items": {"type": "string"}}
    off = {"type": "object", "required": ["reason"], "properties": {"reason": {"type": "string"}}}
    return json_response(
        error({"anyOf": [ids, off]}),
        error_example(404, "bad identifier", [example_id]),
        f"{what}; also when webhooks are not enabled on this eslchan",
    )


_NO_SAMPLE = _not_found(samples.PREFIX + "object", "no such sample (the list names them)")
_NOT_FOUND = _not_found(
    HOOK, "no such webhook in this account (unknown and other accounts' hooks look the same)"
)


def _hook_param() -> dict[str, Any]:
    return param(
        "webhook_id", "path", {"type": "string", "pattern": HOOK_ID.pattern}, "the webhook's id", example=HOOK
    )


def _body(schema: str, example: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "required": True,
        "description": description,
        "content": {"application/json": {"schema": {
            "type": "object", "required": ["data"], "properties": {"data": ref(schema)}
        }, "example": {"data": example}}},
    }  # fmt: skip


def _re_enable(whose: str) -> dict[str, Any]:
    """Kazoo's bulk re-enable, of the account's hooks or also of its descendants'."""
    return {
        "summary": f"Re-enable {whose} webhooks that eslchan disabled after repeated failures",
        "description": "Each hook with a disable_reason is enabled again as PATCH "
        '{"enabled": true} on it does: its failures are cleared and its queue is delivered. A '
        "hook its tenant disabled (enabled false, no disable_reason) stays disabled.",
        "tags": ["webhooks"],
        "parameters": param_refs("AccountId"),
        "requestBody": _body("WebhookReEnable", {"re-enable": True}, "what to do"),
        "responses": {
            "200": json_response(
                success({"type": "array", "items": ref("Webhook")}),
                envelope_example([HOOK_EXAMPLE]),
                "the webhooks re-enabled (none: an empty list)",
            ),
            "404": _NOT_ENABLED,
            **response_refs(**AUTHED_ERRORS, **BODY_ERRORS),
        },
    }


def _offered_paths() -> dict[str, Any]:
    """What this eslchan offers, for any valid token."""
    sample_param = param(
        "sample_id", "path", {"type": "string"}, "a sample's id, from the list", example=SAMPLE
    )
    return {
        "/v2/webhooks": {
            "get": {
                "operationId": "listOfferedWebhooks",
                "summary": "The hooks this eslchan offers (what a webhook's hook field may name)",
                "tags": ["webhooks"],
                "parameters": param_refs(),
                "responses": {
                    "200": json_response(
                        success({"type": "array", "items": ref("WebhookOffered")}),
                        envelope_example(OFFERED_EXAMPLE),
                        "the hooks",
                    ),
                    "404": _NOT_ENABLED,
                    **response_refs(**AUTHED_ERRORS),
                },
            },
        },
        "/v2/webhooks/samples": {
            "get": {
                "operationId": "listWebhookSamples",
                "summary": "The ids of the sample payloads, one per hook event (Kazoo's names)",
                "tags": ["webhooks"],
                "parameters": param_refs(),
                "responses": {
                    "200": json_response(
                        success({"type": "array", "items": {"type": "string"}}),
                        envelope_example(samples.sample_ids()),
                        "the sample ids",
                    ),
                    "404": _NOT_ENABLED,
                    **response_refs(**AUTHED_ERRORS),
                },
            },
        },
        "/v2/webhooks/samples/{sample_id}": {
            "get": {
                "operationId": "getWebhookSample",
                "summary": "A sample payload, in a list of one",
                "description": "Built by the function that builds every delivery, from a made-up "
                "call: exactly the fields a receiver gets (a hook's custom_data aside).",
                "tags": ["webhooks"],
                "parameters": [*param_refs(), sample_param],
                "responses": {
                    "200": json_response(
                        success(
                            {"type": "array", "items": ref("WebhookPayload"), "minItems": 1, "maxItems": 1}
                        ),
                        envelope_example([samples.sample(SAMPLE)]),
                        "the sample",
                    ),
                    "404": _NO_SAMPLE,
                    **response_refs(**AUTHED_ERRORS),
                },
            },
        },
    }


def paths() -> dict[str, Any]:
    one = [*param_refs("AccountId"), _hook_param()]
    hook_answer = json_response(success(ref("Webhook")), envelope_example(HOOK_EXAMPLE), "the webhook")
    rotated = json_response(
        success(ref("Webhook")),
        envelope_example({**HOOK_EXAMPLE, "secret": SECRET_EXAMPLE}),
        "the webhook; with its new secret when the request rotated it",
    )
    return {
        **_offered_paths(),
        "/v2/accounts/{account_id}/webhooks": {
            "get": {
                "operationId": "listWebhooks",
                "summary": "The account's webhooks",
                "tags": ["webhooks"],
                "parameters": param_refs("AccountId"),
                "responses": {
                    "200": json_response(
                        success({"type": "array", "items": ref("Webhook")}),
                        envelope_example([HOOK_EXAMPLE]),
                        "the webhooks, oldest first (no secrets)",
                    ),
                    "404": _NOT_ENABLED,
                    **response_refs(**AUTHED_ERRORS),
                },
            },
            "put": {
                "operationId": "createWebhook",
                "summary": "Create a webhook",
                "description": "The uri is checked against the operator's destination policy now (and "
                "again before every delivery): by default only public addresses are allowed. The answer "
                "holds the signing secret; it is not shown again. At most [webhooks] "
                "max_hooks_per_account hooks per account (400 beyond).",
                "tags": ["webhooks"],
                "parameters": param_refs("AccountId"),
                "requestBody": _body("WebhookFields", FIELDS_EXAMPLE, "the webhook's fields"),
                "responses": {
                    "201": json_response(
                        success(ref("Webhook")),
                        envelope_example({**HOOK_EXAMPLE, "secret": SECRET_EXAMPLE}),
                        "the webhook, with its secret; Location is its URL",
                    ),
                    "404": _NOT_ENABLED,
                    **response_refs(**AUTHED_ERRORS, **BODY_ERRORS),
                },
            },
            "patch": {"operationId": "reEnableWebhooks", **_re_enable("the account's")},
        },
        "/v2/accounts/{account_id}/webhooks/attempts": {
            "get": {
                "operationId": "listAccountWebhookAttempts",
                "summary": "The latest delivery attempts of all the account's webhooks, newest first",
                "description": "As many as one hook's listing keeps ([webhooks] attempts_kept); each "
                "names its hook_id.",
                "tags": ["webhooks"],
                "parameters": param_refs("AccountId"),
                "responses": {
                    "200": json_response(
                        success({"type": "array", "items": ref("WebhookAttempt")}),
                        envelope_example([ATTEMPT_EXAMPLE]),
                        "the attempts",
                    ),
                    "404": _NOT_ENABLED,
                    **response_refs(**AUTHED_ERRORS),
                },
            },
        },
        "/v2/accounts/{account_id}/descendants/webhooks": {
            "patch": {
                "operationId": "reEnableDescendantWebhooks",
                **_re_enable("the account's and every account's below it"),
            },
        },
        "/v2/accounts/{account_id}/webhooks/{webhook_id}": {
            "get": {
                "operationId": "getWebhook",
                "summary": "One webhook, with its delivery state",
                "tags": ["webhooks"],
                "parameters": one,
                "responses": {"200": hook_answer, "404": _NOT_FOUND, **response_refs(**AUTHED_ERRORS)},
            },
            "post": {
                "operationId": "replaceWebhook",
                "summary": "Replace a webhook's fields (Kazoo's edit); fields left out take their defaults",
                "description": 'Add "rotate_secret": true to data for a new secret, shown in the answer.',
                "tags": ["webhooks"],
                "parameters": one,
                "requestBody": _body("WebhookFields", FIELDS_EXAMPLE, "the webhook's fields"),
                "responses": {
                    "200": rotated,
                    "404": _NOT_FOUND,
                    **response_refs(**AUTHED_ERRORS, **BODY_ERRORS),
                },
            },
            "patch": {
                "operationId": "patchWebhook",
                "summary": 'Change some of a webhook\'s fields; {"enabled": true} re-enables it',
                "tags": ["webhooks"],
                "parameters": one,
                "requestBody": _body("WebhookPatch", {"enabled": True}, "the fields to change"),
                "responses": {
                    "200": rotated,
                    "404": _NOT_FOUND,
                    **response_refs(**AUTHED_ERRORS, **BODY_ERRORS),
                },
            },
            "delete": {
                "operationId": "deleteWebhook",
                "summary": "Delete a webhook and drop its queue",
                "tags": ["webhooks"],
                "parameters": one,
                "responses": {"200": hook_answer, "404": _NOT_FOUND, **response_refs(**AUTHED_ERRORS)},
            },
        },
        "/v2/accounts/{account_id}/webhooks/{webhook_id}/attempts": {
            "get": {
                "operationId": "listWebhookAttempts",
                "summary": "The webhook's latest delivery attempts, newest first",
                "description": "The last [webhooks] attempts_kept attempts: time, result, the receiver's "
                "status, latency and why it failed.",
                "tags": ["webhooks"],
                "parameters": one,
                "responses": {
                    "200": json_response(
                        success({"type": "array", "items": ref("WebhookAttempt")}),
                        envelope_example([ATTEMPT_EXAMPLE]),
                        "the attempts",
                    ),
                    "404": _NOT_FOUND,
                    **response_refs(**AUTHED_ERRORS),
                },
            },
        },
    }
