"""The daemon: one process wiring ESL links → channel registry → REST API and interpreter.

Each layer only knows the one below it: links deliver events to the registry's node
synchroniser, the interpreter waits on the registry and sends through the links, and the
Flask app reads the registry and hands actions to the interpreter.
"""

from __future__ import annotations

import gc
import logging
import re
import signal
import socket
from dataclasses import replace

import gevent
from gevent.event import Event as GEvent
from gevent.pywsgi import WSGIServer

from eslchan.api import create_app
from eslchan.api.events import hub_of
from eslchan.config import Config, load_config
from eslchan.esl.link import NodeLink
from eslchan.registry import ChannelRegistry, NodeSync
from metaflow import Interpreter

log = logging.getLogger("eslchan.daemon")
#: the event stream accepts ?auth_token= (EventSource cannot send headers): keep it out of logs
_QUERY_TOKEN = re.compile(r"(auth_token=)[^&\s\"]+")


class _AccessLog:
    """gevent's WSGI access log, sent to our logger instead of stderr."""

    def write(self, line: str) -> None:
        log.debug(_QUERY_TOKEN.sub(r"\1[redacted]", line.rstrip()))


class HttpServer(WSGIServer):
    """gevent's WSGI server with Nagle off: it writes headers and body in two sends, and with
    Nagle the body waits for the client's delayed ACK (~40 ms per response)."""

    def handle(self, sock, address):  # type: ignore[no-untyped-def]
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:  # not TCP (e.g. a unix socket): nothing to tune
            pass
        return super().handle(sock, address)


class Daemon:
    def __init__(self, config: Config):
        self.config = config
        channels = config.channels
        self.registry = ChannelRegistry(channels.mapping)
        self.sync = NodeSync(
            self.registry,
            grace_seconds=channels.stale_grace_seconds,
            snapshot_lag=channels.snapshot_lag_seconds,
            check_interval=channels.anti_entropy_seconds,
        )
        self.links: dict[str, NodeLink] = {}
        for node in config.nodes:
            link = NodeLink(
                node,
                config.link,
                on_event=self.registry.apply,
                on_up=self._on_up,
                on_down=self.sync.on_down,
                on_lost_events=self._on_lost_events,
            )
            self.links[node.name] = link
        self.interpreter = Interpreter(self.registry, self.links, config.metaflow)
        self.app = create_app(config, self.registry, self.links, self.interpreter)
        self.http = HttpServer(
            (config.http.host, config.http.port), self.app, log=_AccessLog(), error_log=log
        )
        self._stopped = GEvent()
        self._housekeeping: gevent.Greenlet | None = None

    # -- link life -------------------------------------------------------------------------

    def _on_up(self, node: str) -> None:
        self.sync.resync(self.links[node])

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
        self.http.start()  # first: a taken port must fail before any link greenlet runs
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
        for link in self.links.values():
            link.stop()
        self._stopped.set()

    def reload(self) -> None:
        """SIGHUP: take new accounts and keys from the config file; ESL links stay as they are."""
        if self.config.source is None:
            return
        try:
            fresh = load_config(self.config.source)
        except Exception as exc:  # a bad file must not take the daemon down
            log.error("reload refused, keeping the running configuration: %s", exc)
            return
        self.config = replace(self.config, accounts=fresh.accounts, auth=fresh.auth)
        self.app.config["ESLCHAN"] = self.config
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
