"""The daemon: one process wiring ESL links → channel registry → REST API and interpreter.

Each layer only knows the one below it: links deliver events to the registry's node
synchroniser, the interpreter waits on the registry and sends through the links, and the
Flask app reads the registry and hands actions to the interpreter.

With a ``[cluster]`` table the instance holds the event links of the nodes it leases only,
and the API, the interpreter and webhooks read the cluster's mirror instead of the registry
and send through command-only links to every node (eslchan/cluster).
"""

from __future__ import annotations

import gc
import logging
import re
import signal
from dataclasses import replace
from typing import Any

import gevent
from gevent.event import Event as GEvent

from eslchan.api import create_app
from eslchan.api.events import WRITE_TIMEOUT, hub_of
from eslchan.api.wsgi import HttpServer
from eslchan.config import Config, load_config
from eslchan.esl.link import NodeLink
from eslchan.policy import PolicyBook
from eslchan.registry import ChannelRegistry, NodeSync
from eslchan.webhooks import WebhookService
from metaflow import Interpreter

log = logging.getLogger("eslchan.daemon")
#: the event stream accepts ?auth_token= (EventSource cannot send headers): keep it out of logs
_QUERY_TOKEN = re.compile(r"(auth_token=)[^&\s\"]+")


class _AccessLog:
    """gevent's WSGI access log, sent to our logger instead of stderr."""

    def write(self, line: str) -> None:
        log.debug(_QUERY_TOKEN.sub(r"\1[redacted]", line.rstrip()))


class Daemon:
    def __init__(self, config: Config):
        self.config = config
        policies = PolicyBook.from_config(config)
        channels = config.channels
        # what tenants may set shows in custom_channel_vars, whatever the mapping's prefix
        self.registry = ChannelRegistry(channels.mapping, extra_prefixes=policies.variable_prefixes())
        self.sync = NodeSync(
            self.registry,
            grace_seconds=channels.stale_grace_seconds,
            snapshot_lag=channels.snapshot_lag_seconds,
            check_interval=channels.anti_entropy_seconds,
        )
        self.links: dict[str, NodeLink] = {}
        self.cluster = None
        view: Any = self.registry  # what the API, the interpreter and webhooks read
        book = None
        if config.cluster is not None:
            from eslchan.cluster import ClusterInstance  # only here: the single process needs no Redis

            self.cluster = ClusterInstance(
                config, self.registry, self.sync,
                on_node_up=lambda node: gevent.spawn(self.interpreter.node_up, node),
            )  # fmt: skip
            self.links = self.cluster.command_links
            view, book = self.cluster.mirror, self.cluster.runs
        for node in config.nodes if self.cluster is None else ():
            link = NodeLink(
                node,
                config.link,
                on_event=self.registry.apply,
                on_up=self._on_up,
                on_down=self.sync.on_down,
                on_lost_events=self._on_lost_events,
            )
            self.links[node.name] = link
        self.interpreter = Interpreter(view, self.links, config.metaflow, policies=policies, book=book)
        # opens (or creates) the webhooks database now: a directory in use or unwritable
        # stops the start-up before anything listens (in a cluster: the shared store in Redis)
        self.webhooks: WebhookService | None = None
        if config.webhooks is not None and self.cluster is not None:
            self.webhooks = self.cluster.shared_webhooks(config.webhooks, config.accounts)
        elif config.webhooks is not None:
            self.webhooks = WebhookService(config.webhooks, view, config.accounts)
        self.app = create_app(config, view, self.links, self.interpreter, webhooks=self.webhooks,
                              cluster=self.cluster)
        self.app.config[WRITE_TIMEOUT] = config.http.stream_write_timeout
        self.http = HttpServer(
            (config.http.host, config.http.port), self.app, log=_AccessLog(), error_log=log
        )
        self._stopped = GEvent()
        self._started = False
        self._housekeeping: gevent.Greenlet | None = None

    # -- link life -------------------------------------------------------------------------

    def _on_up(self, node: str) -> None:
        self.sync.resync(self.links[node])
        # what the node can do may have changed while it was away (restart, modules loaded)
        gevent.spawn(self.interpreter.node_up, node)

    def _on_lost_events(self, node: str) -> None:
        log.warning("node %s lost events; resyncing", node, extra={"node": node})
        self.sync.resync(self.links[node])

    def _expire_stale(self) -> None:
        while True:
            gevent.sleep(1.0)
            self.sync.expire_stale()

    # -- process life ----------------------------------------------------------------------

    @property
    def http_address(self) -> tuple[str, int]:
        return self.http.server_host, self.http.server_port

    @property
    def url(self) -> str:
        host, port = self.http_address
        return f"http://{host}:{port}"

    def start(self) -> None:
        if self._started:  # the demo starts the daemon before serve_forever() does
            return
        try:
            self.http.start()  # first: a taken port must fail before any link greenlet runs
        except OSError:
            if self.webhooks is not None:
                self.webhooks.stop()  # let go of the database for whoever retries
            raise
        self._started = True
        if self.webhooks is not None:
            self.webhooks.start()  # listening before the links deliver their first event
        if self.cluster is not None:
            self.cluster.start()
        else:
            for link in self.links.values():
                link.start()
        self._housekeeping = gevent.spawn(self._expire_stale)
        self.sync.start()
        log.info("eslchan listening on %s with %d node(s)", self.url, len(self.links))

    def stop(self, drain_seconds: float | None = None) -> None:
        """Stop accepting, let in-flight requests and metaflow runs finish, then close links."""
        drain = self.config.http.drain_seconds if drain_seconds is None else drain_seconds
        hub_of(self.app).close()  # event streams never finish by themselves: end them first
        self.http.stop(timeout=drain)
        self.interpreter.drain(timeout=drain)
        if self._housekeeping is not None:
            self._housekeeping.kill()
        self.sync.stop()
        if self.cluster is not None:
            self.cluster.stop()  # the last changes written, the nodes given up for the others
        else:
            for link in self.links.values():
                link.stop()
        if self.webhooks is not None:
            self.webhooks.stop()  # no event comes any more: persist what is still in memory
        self._stopped.set()

    def reload(self) -> None:
        """SIGHUP: take new accounts, keys and policies from the config file; ESL links stay
        as they are."""
        if self.config.source is None:
            return
        try:
            fresh = load_config(self.config.source)
        except Exception as exc:  # a bad file must not take the daemon down
            log.error("reload refused, keeping the running configuration: %s", exc)
            return
        self.config = replace(self.config, accounts=fresh.accounts, auth=fresh.auth, policy=fresh.policy)
        self.app.config["ESLCHAN"] = self.config
        if self.webhooks is not None:
            self.webhooks.set_accounts(fresh.accounts)
        self.interpreter.policies = PolicyBook.from_config(self.config)
        self.registry.show_prefixes(self.interpreter.policies.variable_prefixes())
        log.info("reloaded %d account(s)", len(fresh.accounts))

    def serve_forever(self) -> None:
        self.start()
        # Everything allocated so far (modules, app, config) lives as long as the process:
        # keep it out of the collector's full passes, which otherwise pause for tens of ms.
        gc.freeze()
        gevent.signal_handler(signal.SIGTERM, lambda: gevent.spawn(self.stop))
        gevent.signal_handler(signal.SIGINT, lambda: gevent.spawn(self.stop))
        gevent.signal_handler(signal.SIGHUP, self.reload)
        self._stopped.wait()
        log.info("eslchan stopped")
