"""GET /v2/openapi.json: the OpenAPI 3.1 document of every route, parameter, envelope and error.

Schemas are JSON Schema 2020-12 (OpenAPI 3.1's dialect), so the tests validate every documented
example, and real answers, with jsonschema.

The document is assembled from parts: ``components`` holds what every resource shares (envelope,
errors, channel and run schemas, parameters, headers); each module in ``RESOURCES`` documents one
resource with ``paths()`` and, when it has schemas of its own, ``schemas()``. Documenting a new
resource is one new module and one more entry in ``RESOURCES``. A schema name, and a method of a
path, belong to exactly one part: a second definition stops the import rather than silently
replacing the first.
"""

from __future__ import annotations

import copy
import json
from types import ModuleType
from typing import Any

from flask import Blueprint, Response

from eslchan import __version__
from eslchan.api.envelope import not_modified, revision_of
from eslchan.api.openapi import (
    accounts,
    auth,
    callflows,
    calls,
    channels,
    components,
    console,
    events,
    runs,
    system,
    webhooks,
)

# Paths appear in the document in this order.
RESOURCES: tuple[ModuleType, ...] = (
    auth,
    accounts,
    channels,
    calls,
    runs,
    callflows,
    events,
    webhooks,
    system,
    console,
)


def _merge(into: dict[str, Any], part: dict[str, Any], kind: str, source: str) -> None:
    """Add ``part`` to ``into``, refusing a name ``into`` already has."""
    taken = into.keys() & part.keys()
    if taken:
        raise ValueError(f"openapi: {source} defines {kind} already defined elsewhere: {sorted(taken)}")
    into.update(part)


def _paths(resources: tuple[ModuleType, ...]) -> dict[str, Any]:
    """Every part's paths; two parts may document one path's different methods (GET and PUT
    of a collection), never the same one twice."""
    paths: dict[str, Any] = {}
    for resource in resources:
        for path, item in resource.paths().items():
            _merge(paths.setdefault(path, {}), item, f"methods of {path}", resource.__name__)
    return paths


def _schemas(resources: tuple[ModuleType, ...]) -> dict[str, Any]:
    schemas = components.schemas()
    for resource in resources:
        resource_schemas = getattr(resource, "schemas", None)
        if resource_schemas is not None:
            _merge(schemas, resource_schemas(), "schemas", resource.__name__)
    return schemas


def build_document() -> dict[str, Any]:
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
            "client address: past auth.failed_auth_per_minute a wrong key from that address gets 429 "
            "(the right key still gets its token). Requests outside the account's tenancy policy get "
            "403 naming the rule, and nothing reaches FreeSWITCH (SECURITY.md). Oversized request "
            "headers get 431, an oversized request line 414, in the envelope. Any origin may call "
            "(CORS), since the token travels in a header and never in a cookie.",
        },
        "jsonSchemaDialect": "https://json-schema.org/draft/2020-12/schema",
        "security": [{"authToken": []}, {"bearer": []}],
        "paths": _paths(RESOURCES),
        "components": {
            "schemas": _schemas(RESOURCES),
            "responses": components.responses(),
            "parameters": components.parameters(),
            "headers": components.headers(),
            "securitySchemes": components.security_schemes(),
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
