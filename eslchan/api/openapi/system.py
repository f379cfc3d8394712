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

HEALTH_UP = {"status": "ok", "nodes": {"fs1": {"state": "up"}, "fs2": {"state": "degraded"}}}
HEALTH_DETAILS = {
    "status": "ok",
    "nodes": {
        "fs1": {
            "state": "up",
            "link_state": "up",
            "up": True,
            "address": "10.0.0.11:8021",
            "channels": 2,
            "events_received": 1520,
            "events_dropped": 0,
            "reconnects": 0,
            "command_timeouts": 0,
            "last_error": None,
        }
    },
    "nodes_up": 1,
    "channels": 2,
    "uptime_s": 3600,
}
HEALTH_DOWN = {"status": "unavailable", "nodes": {"fs1": {"state": "down"}}}


def schemas() -> dict[str, Any]:
    return {
        "NodeHealth": {
            "type": "object",
            "required": ["state"],
            "description": "state alone without a superduper-admin token (or http.health_details); "
            "the rest are the details",
            "properties": {
                "state": {
                    "enum": ["up", "degraded", "down"],
                    "description": "degraded: linked, but the last command went unanswered in time",
                },
                "link_state": {"enum": ["connecting", "up", "down", "auth_failed"]},
                "up": {"type": "boolean"},
                "address": {"type": "string", "description": "host:port of the node's event socket"},
                "channels": {"type": "integer", "minimum": 0},
                "events_received": {"type": "integer", "minimum": 0},
                "events_dropped": {"type": "integer", "minimum": 0},
                "reconnects": {"type": "integer", "minimum": 0},
                "command_timeouts": {"type": "integer", "minimum": 0},
                "last_error": {"type": ["string", "null"], "description": "why the link last failed"},
                "owner": {"type": ["string", "null"],
                          "description": "in cluster mode: the instance holding the node's event link"},
            },
        },
        "ClusterRole": {
            "type": "object",
            "description": "in cluster mode: this instance's role; owners, instances and "
            "publish_pending only with details",
            "properties": {
                "instance": {"type": "string"},
                "redis": {"enum": ["reachable", "unreachable"]},
                "serving": {"type": "boolean", "description": "false: Redis has not answered for longer "
                            "than the lease, channels and runs answer 503 here"},
                "owned_nodes": {"type": "array", "items": {"type": "string"},
                                "description": "the nodes whose event link this instance holds"},
                "owners": {"type": "object", "additionalProperties": {"type": ["string", "null"]}},
                "instances": {"type": "array", "items": {"type": "string"}},
                "mirror_lag_s": {"type": "number",
                                 "description": "how long the last channel change took from its owner here"},
                "mirror_age_s": {"type": ["number", "null"],
                                 "description": "seconds since Redis last answered this instance's mirror"},
                "mirror_seq": {"type": "integer", "description": "the last stream record applied"},
                "publish_pending": {"type": "integer", "description": "changes not yet written"},
            },
        },
        "Health": {
            "type": "object",
            "required": ["status", "nodes"],
            "properties": {
                "status": {"enum": ["ok", "degraded", "unavailable"]},
                "nodes": {"type": "object", "additionalProperties": ref("NodeHealth")},
                "nodes_up": {"type": "integer", "minimum": 0},
                "channels": {"type": "integer", "minimum": 0},
                "uptime_s": {"type": "integer", "minimum": 0},
                "cluster": ref("ClusterRole"),
            },
        },
    }


def paths() -> dict[str, Any]:
    return {
        "/health": {
            "get": {
                "operationId": "health",
                "summary": "Per-node state (up, degraded, down); 503 when no node is connected",
                "description": "Needs no token and then shows only each node's state. With a "
                "superduper admin's token (or http.health_details = true) it adds each node's address, "
                "counters and last error, and the totals. A cluster instance adds its role (cluster: "
                "the nodes it owns, its mirror's lag, whether Redis answers; each node's owner) and "
                "answers 503 'cluster state unavailable' while Redis has not answered it for longer "
                "than the lease.",
                "tags": ["system"],
                "security": [],  # a token is optional: it only adds details
                "parameters": param_refs(),
                "responses": {
                    "200": {
                        "description": "at least one node up",
                        "headers": {"X-Request-ID": {"$ref": "#/components/headers/RequestId"}},
                        "content": {"application/json": {
                            "schema": success(ref("Health")),
                            "examples": {
                                "public": {"value": envelope_example(HEALTH_UP)},
                                "details": {"value": envelope_example(HEALTH_DETAILS)},
                            },
                        }},
                    },
                    "503": json_response(
                        error(ref("Health")),
                        error_example(503, "no node connected", HEALTH_DOWN),
                        "no node is up, or (cluster mode) this instance cannot reach Redis",
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
