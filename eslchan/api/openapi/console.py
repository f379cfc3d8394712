"""The operations console's pages: / redirects to /console/, which serves the packaged app."""

from __future__ import annotations

from typing import Any

from eslchan.api.openapi.common import HEADER_REF, PARAMETER_REF, param, response_refs

_PAGE_HEADERS = {
    "ETag": {"$ref": HEADER_REF + "ETag"},
    "Content-Security-Policy": {
        "description": "scripts, styles and connections from this origin only; no inline script",
        "schema": {"type": "string"},
    },
}


def _page(
    op_id: str, summary: str, description: str, media: dict[str, Any], extra: list[Any]
) -> dict[str, Any]:
    return {
        "get": {
            "operationId": op_id,
            "summary": summary,
            "description": description,
            "tags": ["console"],
            "security": [],
            "parameters": [*extra, {"$ref": PARAMETER_REF + "IfNoneMatch"}],
            "responses": {
                "200": {"description": "the file", "headers": _PAGE_HEADERS, "content": media},
                **response_refs(r304="NotModified", r404="FaultyRequest"),
            },
        }
    }


def paths() -> dict[str, Any]:
    return {
        "/": {
            "get": {
                "operationId": "consoleRedirect",
                "summary": "Redirects to the operations console (/console/)",
                "tags": ["console"],
                "security": [],
                "responses": {
                    "302": {
                        "description": "to /console/",
                        "headers": {"Location": {"schema": {"type": "string"}, "example": "/console/"}},
                    }
                },
            }
        },
        "/console/": _page(
            "consoleIndex",
            "The operations console (HTML)",
            "A live call board per account, call details and actions, node health. It logs in with an "
            "API key and then uses only the public API.",
            {"text/html": {"schema": {"type": "string"}}},
            [],
        ),
        "/console/{filename}": _page(
            "consoleFile",
            "Get one of the console's packaged files (JavaScript modules, CSS, icons)",
            "Unknown names are a 404; files are served from the package, never from a request path.",
            {
                "text/javascript": {"schema": {"type": "string"}},
                "text/css": {"schema": {"type": "string"}},
                "image/svg+xml": {"schema": {"type": "string"}},
            },
            [param("filename", "path", {"type": "string"}, "a file of the console", example="app.js")],
        ),
    }
