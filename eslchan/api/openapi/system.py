"""Unauthenticated system endpoints: /health, /metrics and /v2/openapi.json itself."""

from __future__ import annotations

from typing import Any

from eslchan.api.openapi.common import (
    envelope_example,
    error,
    error_example,
    json_response,
    param_refs,
    ref,
    response_refs,
    success,
)

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


def schemas() -> dict[str, Any]:
    return {
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
                "nodes": {"type": "object", "additionalProperties": ref("NodeHealth")},
                "nodes_up": {"type": "integer", "minimum": 0},
                "channels": {"type": "integer", "minimum": 0},
                "uptime_s": {"type": "integer", "minimum": 0},
            },
        },
    }


def paths() -> dict[str, Any]:
    return {
        "/health": {
            "get": {
                "operationId": "health",
                "summary": "Per-node ESL link state; 503 when no node is connected",
                "tags": ["system"],
                "security": [],
                "parameters": param_refs(),
                "responses": {
                    "200": json_response(
                        success(ref("Health")), envelope_example(HEALTH_UP), "at least one node up"
                    ),
                    "503": json_response(
                        error(ref("Health")),
                        error_example(503, "no node connected", HEALTH_DOWN),
                        "no node is up",
                    ),
                    **response_refs(r405="MethodNotAllowed"),
                },
            }
        },
        "/metrics": {
            "get": {
                "operationId": "metrics",
                "summary": "Prometheus metrics: channels per node, link state, events received/dropped, "
                "API requests by route and status, ESL command latency, snapshot comparisons and the "
                "channels they repaired",
                "tags": ["system"],
                "security": [],
                "responses": {
                    "200": {
                        "description": "Prometheus text exposition format",
                        "content": {
                            "text/plain": {
                                "schema": {"type": "string"},
                                "example": 'eslchan_channels{node="fs1"} 2.0\n'
                                'eslchan_registry_repairs_total{kind="removed",node="fs1"} 1.0\n',
                            }
                        },
                    },
                    **response_refs(r405="MethodNotAllowed"),
                },
            }
        },
        "/v2/openapi.json": {
            "get": {
                "operationId": "openapi",
                "summary": "This document, bare (not in the envelope) so OpenAPI tools read it as is",
                "tags": ["system"],
                "security": [],
                "parameters": param_refs("IfNoneMatch"),
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
                    **response_refs(r304="NotModified", r405="MethodNotAllowed"),
                },
            }
        },
    }
