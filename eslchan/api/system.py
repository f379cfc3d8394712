"""Operations endpoints: GET /health (per-node link state) and GET /metrics (Prometheus text).

/health needs no token and then says only, per node, ``up``, ``degraded`` (linked, but its
last command went unanswered) or ``down``: addresses, error texts and counts are for a
superduper admin's token, or for everyone with ``[http] health_details = true``. A cluster
instance adds its role (the nodes it owns, its mirror's lag, whether Redis answers) and is
``unavailable`` (503) while it cannot reach Redis: it then serves no channel state.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Mapping
from typing import Any

from flask import Blueprint, Flask, Response, current_app, g, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from eslchan.api.auth import presented_token
from eslchan.api.envelope import ApiError, request_id, respond

access_log = logging.getLogger("eslchan.access")

LINK_STATES = ("connecting", "up", "down", "auth_failed")
#: Methods counted by name; the server passes any token as a method, and each distinct label
#: value would be a new series kept for the life of the process.
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class _LiveCollector(Collector):
    """Read at scrape time from the registry and the links, so the numbers are never stale."""

    def __init__(self, registry: Any, links: Mapping[str, Any]):
        self._registry = registry
        self._links = links

    def collect(self) -> Iterator[Any]:
        channels = GaugeMetricFamily("eslchan_channels", "Live channels tracked, per node", labels=["node"])
        counts = dict.fromkeys(self._links, 0)  # a configured node with no channel still shows 0
        for ch in self._registry.all():
            counts[ch.node] = counts.get(ch.node, 0) + 1
        for node, count in sorted(counts.items()):
            channels.add_metric([node], count)
        yield channels

        up = GaugeMetricFamily("eslchan_link_up", "1 when the node's ESL link is up", labels=["node"])
        degraded = GaugeMetricFamily(
            "eslchan_link_degraded", "1 when the node's link is up but its last command went unanswered",
            labels=["node"],
        )
        state = GaugeMetricFamily(
            "eslchan_link_state",
            "The node's ESL link state (1 for the current one)",
            labels=["node", "state"],
        )
        received = CounterMetricFamily(
            "eslchan_events_received", "ESL events received from the node", labels=["node"]
        )
        dropped = CounterMetricFamily(
            "eslchan_events_dropped", "ESL events dropped (queue overflow) for the node", labels=["node"]
        )
        reconnects = CounterMetricFamily("eslchan_link_reconnects", "ESL link reconnections", labels=["node"])
        lost = CounterMetricFamily(
            "eslchan_lost_event_reports",
            "Times FreeSWITCH or the queue reported lost events",
            labels=["node"],
        )
        queue = GaugeMetricFamily(
            "eslchan_event_queue", "Events received but not yet applied", labels=["node"]
        )
        repairs = CounterMetricFamily(
            "eslchan_registry_repairs",
            "Channels a snapshot comparison repaired, after FreeSWITCH confirmed the difference: "
            "added (FreeSWITCH had them, the registry did not) or removed (the other way round)",
            labels=["node", "kind"],
        )
        checks = CounterMetricFamily(
            "eslchan_registry_checks", "Snapshot comparisons completed (resyncs and checks)", labels=["node"]
        )
        done = getattr(self._registry, "checks", {})
        repaired = getattr(self._registry, "repairs", {})
        for node in sorted(set(self._links) | set(done)):
            checks.add_metric([node], float(done.get(node, 0)))
            for kind in ("added", "removed"):
                repairs.add_metric([node, kind], float(repaired.get(node, {}).get(kind, 0)))
        yield repairs
        yield checks

        for name, link in sorted(self._links.items()):
            up.add_metric([name], 1 if link.is_up else 0)
            degraded.add_metric([name], 1 if getattr(link, "degraded", False) else 0)
            for s in LINK_STATES:
                state.add_metric([name, s], 1 if link.state == s else 0)
            stats = dict(link.stats)
            received.add_metric([name], float(stats.get("events_received", 0)))
            dropped.add_metric([name], float(stats.get("events_dropped", 0)))
            reconnects.add_metric([name], float(stats.get("reconnects", 0)))
            lost.add_metric([name], float(stats.get("lost_event_reports", 0)))
            queue.add_metric([name], float(stats.get("event_queue", 0)))
        yield from (up, degraded, state, received, dropped, reconnects, lost, queue)


class _ClusterCollector(Collector):
    """A cluster instance's leases, mirror and stream, read at scrape time."""

    def __init__(self, cluster: Any):
        self._cluster = cluster

    def collect(self) -> Iterator[Any]:
        cluster = self._cluster
        owned = GaugeMetricFamily("eslchan_cluster_lease_owned",
                                  "1 when this instance holds the node's lease (its event link)",
                                  labels=["node"])
        for node in sorted(cluster.command_links):
            owned.add_metric([node], 1 if node in cluster.leases.owned else 0)
        yield owned
        yield GaugeMetricFamily("eslchan_cluster_instances", "Live instances this instance sees",
                                value=len(cluster.leases.live))
        yield GaugeMetricFamily("eslchan_cluster_redis_up", "1 while Redis answers this instance",
                                value=1 if cluster.fresh else 0)
        yield GaugeMetricFamily("eslchan_cluster_mirror_lag_seconds",
                                "Time the last channel change took from its owner to this mirror",
                                value=cluster.mirror.lag)
        age = cluster.mirror.age
        yield GaugeMetricFamily("eslchan_cluster_mirror_age_seconds",
                                "Seconds since Redis last answered this mirror",
                                value=-1 if age is None else age)
        yield CounterMetricFamily("eslchan_cluster_mirror_rebuilds",
                                  "Times the mirror started again from the snapshots",
                                  value=cluster.mirror.rebuilds)
        yield GaugeMetricFamily("eslchan_cluster_mirror_position",
                                "The last stream record the mirror applied", value=cluster.mirror.seq)
        length = cluster.stream_length()
        if length is not None:
            yield GaugeMetricFamily("eslchan_cluster_stream_length", "Records in the shared stream",
                                    value=length)
        stats = cluster.publisher.stats
        published = CounterMetricFamily("eslchan_cluster_published",
                                        "Channel changes this instance wrote to the stream, or not",
                                        labels=["outcome"])
        for outcome in ("published", "dropped", "refused"):
            published.add_metric([outcome], float(stats[outcome]))
        yield published
        yield GaugeMetricFamily("eslchan_cluster_publish_pending", "Changes waiting to be written",
                                value=cluster.publisher.pending)
        yield CounterMetricFamily("eslchan_cluster_handovers", "Nodes this instance handed over",
                                  value=cluster.leases.handovers)
        yield CounterMetricFamily("eslchan_cluster_events_received",
                                  "ESL events the event links of the nodes this instance owns received",
                                  value=cluster.events_received)
        yield CounterMetricFamily("eslchan_cluster_runs_reaped",
                                  "Runs of dead instances this instance marked failed",
                                  value=cluster.runs.reaped)
        deliverer = cluster.webhooks
        if deliverer is not None:  # this instance has [webhooks]: it may deliver them
            yield GaugeMetricFamily("eslchan_cluster_webhooks_delivering",
                                    "1 while this instance holds the webhooks lease and delivers",
                                    value=1 if deliverer.delivering else 0)
            yield CounterMetricFamily("eslchan_cluster_webhooks_takeovers",
                                      "Times this instance took the webhooks lease",
                                      value=deliverer.stats["takeovers"])
            yield CounterMetricFamily("eslchan_cluster_webhooks_events_lost",
                                      "Stream records trimmed before the deliverer read them "
                                      "(their events were not delivered)",
                                      value=deliverer.stats["lost_in_stream"])


class Metrics:
    """The app's Prometheus metrics, in a CollectorRegistry of its own (several apps per process)."""

    def __init__(self, registry: Any, links: Mapping[str, Any], cluster: Any = None):
        # *_created series double every counter's output and no dashboard here reads them
        disable_created_metrics()
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "eslchan_api_requests",
            "REST API requests answered, by route, method and status",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.command_seconds = Histogram(
            "eslchan_esl_command_seconds",
            "ESL command round trip, by node, command and outcome",
            ["node", "command", "outcome"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )
        self.originates = Counter(
            "eslchan_originates",
            "Calls started (PUT .../channels, quickcall) by outcome: answered, failed (cause: "
            "FreeSWITCH's, TIMEOUT, LINK_DOWN) or refused before dialling (cause: the rule or reason)",
            ["outcome", "cause"],
            registry=self.registry,
        )
        self.registry.register(_LiveCollector(registry, links))
        if cluster is not None:
            self.registry.register(_ClusterCollector(cluster))
        for link in links.values():
            link.add_command_listener(self.on_command)

    def on_command(self, node: str, cmd: Any, seconds: float, error: str | None) -> None:
        outcome = "ok" if error is None else "error"
        self.command_seconds.labels(node, getattr(cmd, "name", "?"), outcome).observe(seconds)

    def count_originate(self, outcome: str, cause: str) -> None:
        """One call started: its outcome and cause (both from small fixed sets)."""
        self.originates.labels(outcome, cause).inc()

    def observe_request(self, route: str, method: str, status: int) -> None:
        method = method if method in _METHODS else "other"
        self.requests.labels(route, method, str(status)).inc()

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


def _count_request(resp: Response) -> Response:
    metrics: Metrics = current_app.extensions["eslchan"].metrics
    # the route template, never the raw path: ids in paths would make unbounded label sets
    route = request.url_rule.rule if request.url_rule is not None else "(unmatched)"
    metrics.observe_request(route, request.method, resp.status_code)
    return resp


def install(app: Flask) -> None:
    app.before_request(_start_clock)
    app.after_request(_count_request)
    app.after_request(_access_log)


def _start_clock() -> None:
    g.started = time.perf_counter()


def _access_log(resp: Response) -> Response:
    """One line per request, with its request id; the path only, as a query may hold a token."""
    started = g.get("started")
    millis = (time.perf_counter() - started) * 1e3 if started is not None else 0.0
    access_log.info(
        "%s %s %d %.1f ms", request.method, request.path, resp.status_code, millis,
        extra={"request_id": request_id(), "status": resp.status_code, "duration_ms": round(millis, 2)},
    )  # fmt: skip
    return resp


bp = Blueprint("system", __name__)


def node_state(link: Any) -> str:
    """What anyone may know of a node: up, degraded or down."""
    if not link.is_up:
        return "down"
    return "degraded" if getattr(link, "degraded", False) else "up"


def _details_allowed(ext: Any) -> bool:
    if ext.config.http.health_details:
        return True
    token = presented_token()
    account = ext.tokens.verify(token) if token else None  # a bad token is just no token here
    return bool(account is not None and account.superduper_admin)


@bp.route("/health", methods=["GET"])
def health() -> Response:
    ext = current_app.extensions["eslchan"]
    details = _details_allowed(ext)
    nodes: dict[str, dict[str, Any]] = {}
    for name, link in sorted(ext.links.items()):
        nodes[name] = {"state": node_state(link)}
        if details:
            stats = dict(link.stats)
            nodes[name].update(
                link_state=link.state,
                up=bool(link.is_up),
                address=f"{link.node.host}:{link.node.port}",
                channels=len(ext.registry.for_node(name)),
                events_received=stats.get("events_received", 0),
                events_dropped=stats.get("events_dropped", 0),
                reconnects=stats.get("reconnects", 0),
                command_timeouts=stats.get("command_timeouts", 0),
                last_error=stats.get("last_error"),
            )
    states = [n["state"] for n in nodes.values()]
    up = sum(1 for s in states if s != "down")
    data: dict[str, Any] = {
        "status": "unavailable" if not up else "degraded" if "degraded" in states else "ok",
        "nodes": nodes,
    }
    cluster = ext.cluster
    if cluster is not None:
        role = cluster.status()
        data["cluster"] = role if details else {k: role[k] for k in _CLUSTER_PUBLIC}
        for name, node in nodes.items():
            node["owner"] = role["owners"].get(name)
        if not role["serving"]:
            data["status"] = "unavailable"
    if details:
        data.update(nodes_up=up, channels=len(ext.registry), uptime_s=int(time.monotonic() - ext.started))
    if not up:
        raise ApiError(503, "no node connected", data)
    if data["status"] == "unavailable":
        raise ApiError(503, "cluster state unavailable", data)
    return respond(data)


#: what /health says of a cluster instance to anyone (the rest: with details)
_CLUSTER_PUBLIC = ("instance", "redis", "serving", "owned_nodes", "mirror_lag_s", "mirror_age_s")


@bp.route("/metrics", methods=["GET"])
def metrics() -> Response:
    body = current_app.extensions["eslchan"].metrics.exposition()
    return Response(body, status=200, content_type=CONTENT_TYPE_LATEST)
