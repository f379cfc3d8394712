"""GET /v2/accounts/{account_id}/callflows: the stored flows the ``callflow`` module can run."""

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

CALLFLOWS_EXAMPLE = [
    {"id": "main_menu", "name": "Main menu", "modules": ["play", "collect_dtmf", "transfer", "hangup"]},
    {"id": "voicemail_prompt", "name": "voicemail_prompt", "modules": ["play", "hangup"]},
]


def schemas() -> dict[str, Any]:
    return {
        "StoredCallflow": {
            "type": "object",
            "required": ["id", "name", "modules"],
            "properties": {
                "id": {
                    "type": "string",
                    "pattern": "^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$",
                    "description": 'the name to give the callflow module: {"module": "callflow", '
                    '"data": {"id": ...}}',
                },
                "name": {"type": "string", "description": "the document's own name, else its id"},
                "modules": {
                    "type": "array",
                    "items": {"type": "string"},
                    "maxItems": 16,
                    "description": "the modules the flow uses, depth first",
                },
                "error": {"type": "string", "description": "only when the file cannot be read"},
            },
        },
    }


def paths() -> dict[str, Any]:
    return {
        "/v2/accounts/{account_id}/callflows": {
            "get": {
                "operationId": "listStoredCallflows",
                "summary": "The flows stored in metaflow.callflows_dir, which the callflow module runs",
                "description": "The operator's files <callflows_dir>/<id>.json (at most 500), each with "
                "the modules it uses. Empty when no callflows_dir is configured.",
                "tags": ["metaflows"],
                "parameters": [*param_refs("AccountId"), {"$ref": PARAMETER_REF + "IfNoneMatch"}],
                "responses": {
                    "200": json_response(
                        success({"type": "array", "items": ref("StoredCallflow")}),
                        envelope_example(CALLFLOWS_EXAMPLE),
                        "the stored flows, by id",
                    ),
                    **response_refs(r304="NotModified", **AUTHED_ERRORS),
                },
            }
        }
    }
