"""GET /v2/accounts/{account_id}/descendants: the sub-accounts an account may act on."""

from __future__ import annotations

from typing import Any

from eslchan.api.openapi.common import (
    ACCOUNT,
    AUTHED_ERRORS,
    PARAMETER_REF,
    envelope_example,
    json_response,
    param_refs,
    ref,
    response_refs,
    success,
)
from eslchan.config import ACCOUNT_ID

SUB_ACCOUNT = "4b8c4a8b3f1c4d2e9a7b6c5d4e3f2a1c"
SUB_SUB_ACCOUNT = "4b8c4a8b3f1c4d2e9a7b6c5d4e3f2a1d"
DESCENDANTS_EXAMPLE = [
    {"id": SUB_ACCOUNT, "name": "Acme Sales", "parent": ACCOUNT, "tree": [ACCOUNT]},
    {"id": SUB_SUB_ACCOUNT, "name": "Acme Sales EMEA", "parent": SUB_ACCOUNT, "tree": [ACCOUNT, SUB_ACCOUNT]},
]


def schemas() -> dict[str, Any]:
    account_id = {"type": "string", "pattern": ACCOUNT_ID.pattern}
    return {
        "Descendant": {
            "type": "object",
            "required": ["id", "name", "parent", "tree"],
            "properties": {
                "id": account_id,
                "name": {"type": "string"},
                "parent": account_id,
                "tree": {
                    "type": "array",
                    "items": account_id,
                    "minItems": 1,
                    "description": "the accounts from the one asked about down to this one's parent "
                    "(never an account above the one asked about)",
                },
            },
        },
    }


def paths() -> dict[str, Any]:
    return {
        "/v2/accounts/{account_id}/descendants": {
            "get": {
                "operationId": "listDescendants",
                "summary": "Every account below this one (sub-accounts, theirs, ...), depth first",
                "description": "As in Kazoo: the account itself is not listed. A token may use its own "
                "account and every account listed here.",
                "tags": ["accounts"],
                "parameters": [*param_refs("AccountId"), {"$ref": PARAMETER_REF + "IfNoneMatch"}],
                "responses": {
                    "200": json_response(
                        success({"type": "array", "items": ref("Descendant")}),
                        envelope_example(DESCENDANTS_EXAMPLE),
                        "the sub-accounts, depth first, by name within a level",
                    ),
                    **response_refs(r304="NotModified", **AUTHED_ERRORS),
                },
            }
        }
    }
