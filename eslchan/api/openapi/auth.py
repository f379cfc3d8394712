"""PUT /v2/api_auth: an account's API key exchanged for a token."""

from __future__ import annotations

from typing import Any

from eslchan.api.openapi.common import (
    ACCOUNT,
    envelope_example,
    json_response,
    param_refs,
    ref,
    response_refs,
    success,
)
from eslchan.config import ACCOUNT_ID


def schemas() -> dict[str, Any]:
    return {
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
    }


def paths() -> dict[str, Any]:
    return {
        "/v2/api_auth": {
            "put": {
                "operationId": "createToken",
                "summary": "Exchange an account's API key for a signed, expiring token",
                "tags": ["auth"],
                "security": [],
                "parameters": param_refs(),
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": ref("ApiAuthRequest"),
                            "example": {"data": {"api_key": "0123456789abcdef0123456789abcdef"}},
                        }
                    },
                },
                "responses": {
                    "201": json_response(
                        success(ref("ApiAuthResult")),
                        envelope_example(
                            {
                                "account_id": ACCOUNT,
                                "account_name": "Acme",
                                "superduper_admin": False,
                                "token_ttl": 3600,
                            }
                        ),
                        "the token is in auth_token; send it as X-Auth-Token or Authorization: Bearer",
                    ),
                    **response_refs(
                        r400="ValidationError",
                        r401="Unauthorized",
                        r405="MethodNotAllowed",
                        r413="TooLarge",
                        r429="RateLimited",
                        r431="HeadersTooLarge",
                    ),
                },
            }
        },
    }
