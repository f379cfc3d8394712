"""The /v2 REST API (SPEC §5): a Flask application factory, one blueprint per resource.

The app never talks to FreeSWITCH for listings; it reads the channel registry. Actions and
metaflows go through the metaflow interpreter, whose errors map to HTTP statuses here.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from flask import Flask, current_app, request

from eslchan.api import (
    accounts,
    auth,
    callflows,
    calls,
    channels,
    console,
    envelope,
    events,
    openapi,
    runs,
    system,
)
from eslchan.api import webhooks as webhooks_api
from eslchan.api.auth import FailureLimiter, Tenancy, TokenService
from eslchan.api.system import Metrics
from eslchan.config import Config
from eslchan.policy import PolicyBook

__all__ = ["Metrics", "create_app"]


class ApiState:
    """What the blueprints share, kept in ``app.extensions["eslchan"]``.

    The configuration is read from ``app.config["ESLCHAN"]`` on each use, so a reload that swaps
    it (new accounts, keys or signing key) takes effect at once without a new app.
    """

    def __init__(
        self,
        app: Flask,
        registry: Any,
        links: Mapping[str, Any],
        interpreter: Any,
        metrics: Metrics,
        webhooks: Any = None,
        cluster: Any = None,
    ):
        self._app = app
        self.registry = registry
        self.links = links
        self.interpreter = interpreter
        self.metrics = metrics
        #: the WebhookService, or None when webhooks are off
        self.webhooks = webhooks
        #: the ClusterInstance, or None in the single process
        self.cluster = cluster
        self.started = time.monotonic()
        self._for: Config | None = None
        self._tokens: TokenService | None = None
        self._tenancy: Tenancy | None = None
        self._limiter: FailureLimiter | None = None
        self._policies: PolicyBook | None = None

    @property
    def config(self) -> Config:
        return self._app.config["ESLCHAN"]

    def _refresh(self) -> None:
        config = self.config
        if config is not self._for:
            self._tokens = TokenService(config)
            self._tenancy = Tenancy.from_config(config)
            self._policies = PolicyBook.from_config(config)
            if self._limiter is None:
                self._limiter = FailureLimiter(config.auth.failed_auth_per_minute)
                if self.cluster is not None:  # counted across the instances
                    self._limiter = self.cluster.failure_limiter(config.auth.failed_auth_per_minute,
                                                                 self._limiter)
            else:  # keep counting failures across a reload
                self._limiter.per_minute = config.auth.failed_auth_per_minute
            self._for = config

    @property
    def tokens(self) -> TokenService:
        self._refresh()
        assert self._tokens is not None
        return self._tokens

    @property
    def tenancy(self) -> Tenancy:
        self._refresh()
        assert self._tenancy is not None
        return self._tenancy

    @property
    def policies(self) -> PolicyBook:
        """Every account's policy (its event-stream limit is read here)."""
        self._refresh()
        assert self._policies is not None
        return self._policies

    @property
    def limiter(self) -> Any:
        self._refresh()
        assert self._limiter is not None
        return self._limiter


#: blueprints that read the channels or the runs (which a cut-off cluster instance must not serve)
_CLUSTER_STATE_READERS = frozenset({"channels", "runs", "events"})


def _cluster_state_served() -> None:
    """A cluster instance that lost Redis does not serve what it can no longer know is true."""
    if request.blueprint not in _CLUSTER_STATE_READERS:
        return
    cluster = current_app.extensions["eslchan"].cluster
    if not cluster.fresh:
        age = cluster.mirror.age
        raise envelope.ApiError(
            503, "cluster state unavailable",
            {"reason": "this instance cannot reach the cluster's Redis: its channels may be stale",
             "instance": cluster.name, "mirror_age_s": None if age is None else round(age, 1)},
            headers={"Retry-After": "5"},
        )  # fmt: skip


def create_app(
    config: Config,
    registry: Any,
    links: Mapping[str, Any],
    interpreter: Any,
    *,
    metrics: Metrics | None = None,
    webhooks: Any = None,
    cluster: Any = None,
) -> Flask:
    """Build the API app over the daemon's registry, links and interpreter.

    ``metrics`` lets the caller share one :class:`Metrics` (built with ``Metrics(registry, links)``,
    which subscribes to the links' command latencies); by default the app makes its own.
    ``webhooks`` is the daemon's WebhookService; without one the webhooks endpoints answer 404.
    ``cluster`` is the daemon's ClusterInstance (``registry`` is then its mirror): channels,
    runs and event streams answer 503 while its mirror is older than the lease bound.
    """
    app = Flask("eslchan.api", static_folder=None)
    app.config["MAX_CONTENT_LENGTH"] = config.http.max_body_bytes
    app.config["TRAP_HTTP_EXCEPTIONS"] = False
    app.url_map.strict_slashes = False
    app.config["ESLCHAN"] = config
    app.extensions["eslchan"] = ApiState(
        app,
        registry,
        links,
        interpreter,
        metrics if metrics is not None else Metrics(registry, links, cluster),
        webhooks,
        cluster,
    )
    listeners = getattr(interpreter, "originate_listeners", None)
    if listeners is not None:  # calls started are counted in /metrics by outcome
        listeners.append(app.extensions["eslchan"].metrics.count_originate)
    envelope.install(app)
    if cluster is not None:
        app.before_request(_cluster_state_served)
    system.install(app)
    events.install(app)
    webhooks_api.install(app)
    for blueprint in (
        auth.bp,
        accounts.bp,
        channels.bp,
        calls.bp,
        runs.bp,
        callflows.bp,
        events.bp,
        webhooks_api.bp,
        system.bp,
        openapi.bp,
        console.bp,
    ):
        app.register_blueprint(blueprint)
    return app
