"""Helpers every part of the OpenAPI document uses: $ref builders, envelope and error examples,
response and parameter builders, and the example ids the examples share.
"""

from __future__ import annotations

from typing import Any

from eslchan import __version__

REF = "#/components/schemas/"
HEADER_REF = "#/components/headers/"
PARAMETER_REF = "#/components/parameters/"
RESPONSE_REF = "#/components/responses/"
UUID_PATTERN = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
ACCOUNT = "4b8c4a8b3f1c4d2e9a7b6c5d4e3f2a1b"
CHANNEL = "dab25c76-7479-4ed2-ba92-6b725d68e351"
TOKEN = "eyJhY2NvdW50X2lkIjoiNGI4YzRhOGIzZjFjNGQyZTlhN2I2YzVkNGUzZjJhMWIifQ.Z1ZBzw.5xQ2hL0c8mJf3tYkK9uQ"


def ref(name: str) -> dict[str, str]:
    return {"$ref": REF + name}


def nullable(kind: str, **extra: Any) -> dict[str, Any]:
    return {"type": [kind, "null"], **extra}


def envelope_example(data: Any, status: str = "success", **extra: Any) -> dict[str, Any]:
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


def error_example(code: int, message: str, data: Any) -> dict[str, Any]:
    return envelope_example(data, "error", error=str(code), message=message)


def success(data_schema: dict[str, Any]) -> dict[str, Any]:
    return {"allOf": [ref("Envelope"), {"properties": {"data": data_schema}}]}


def error(data_schema: dict[str, Any] | None = None) -> dict[str, Any]:
    if data_schema is None:
        return ref("ErrorEnvelope")
    return {"allOf": [ref("ErrorEnvelope"), {"properties": {"data": data_schema}}]}


def json_response(schema: dict[str, Any], example: Any, description: str) -> dict[str, Any]:
    headers = {"X-Request-ID": {"$ref": HEADER_REF + "RequestId"}}
    if isinstance(example, dict) and example.get("status") == "success":
        headers["ETag"] = {"$ref": HEADER_REF + "ETag"}
    return {
        "description": description,
        "headers": headers,
        "content": {"application/json": {"schema": schema, "example": example}},
    }


def param(
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


def param_refs(*names: str) -> list[dict[str, str]]:
    """$refs to the named component parameters, X-Request-ID first (every operation takes it)."""
    return [{"$ref": PARAMETER_REF + n} for n in ("RequestId", *names)]


def response_refs(**codes: str) -> dict[str, Any]:
    """r404="BadIdentifier" -> {"404": $ref to that component response}."""
    return {code.removeprefix("r"): {"$ref": RESPONSE_REF + name} for code, name in codes.items()}


# Error answers shared by families of operations, as response_refs keywords.
AUTHED_ERRORS = {
    "r400": "ValidationError",
    "r401": "Unauthorized",
    "r403": "Forbidden",
    "r405": "MethodNotAllowed",
    "r431": "HeadersTooLarge",
}
BODY_ERRORS = {"r413": "TooLarge"}
#: what starts a run on a channel: outside the account's policy (403), past its limits (429)
POLICY_ERRORS = {"r403": "PolicyForbidden", "r429": "LimitReached"}
CONTROL_ERRORS = {
    "r404": "BadIdentifier",
    "r502": "FreeswitchError",
    "r503": "Unavailable",
    "r504": "Timeout",
}
