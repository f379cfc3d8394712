"""What the cluster tests share: a real Redis server on a free port, a TCP proxy the tests can
cut (a partition), cluster configurations, and eslchan instances as ``eslchan serve`` processes.

Redis is Debian's ``redis-server`` (``.ci/run`` installs it); without it the tests that need
it are skipped, saying so. Each test gets a fresh dataset (FLUSHALL).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import replace
from pathlib import Path
from typing import Any

import gevent
import pytest
from gevent.server import StreamServer

from eslchan.config import ClusterConfig, Config
from eslchan.demo import demo_config

REDIS_SERVER = shutil.which("redis-server") or ("/usr/bin/redis-server" if os.path.exists(
    "/usr/bin/redis-server") else None)
NO_REDIS = "no redis-server binary (Debian: apt-get install redis-server; .ci/run installs it)"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisServer:
    """A throwaway redis-server: no persistence, in a temporary directory."""

    def __init__(self) -> None:
        if REDIS_SERVER is None:
            if os.environ.get("ESLCHAN_REQUIRE_REDIS"):  # CI installed it: its absence is a failure
                pytest.fail(NO_REDIS)
            pytest.skip(NO_REDIS)
        self.dir = tempfile.TemporaryDirectory(prefix="eslchan-redis-")
        for _ in range(5):
            self.port = free_port()
            self.proc = subprocess.Popen(
                [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                 "--appendonly", "no", "--dir", self.dir.name, "--protected-mode", "no"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )
            if self._ready():
                return
            self.proc.kill()
            self.proc.wait()
        raise RuntimeError("redis-server did not start")

    def _ready(self) -> bool:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return True
            except OSError:
                pass
            time.sleep(0.05)
        return False

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> Any:
        import redis

        return redis.Redis.from_url(self.url)

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()
        self.dir.cleanup()


class TcpProxy:
    """A TCP proxy to ``port`` that a test can cut (every connection dropped, new ones
    refused) and restore: a network partition between one eslchan and Redis."""

    def __init__(self, port: int) -> None:
        self.target = port
        self.cut_off = False
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self.server = StreamServer(("127.0.0.1", 0), self._handle)
        self.server.start()
        self.port = self.server.server_port

    def _handle(self, client: socket.socket, _address: Any) -> None:
        if self.cut_off:
            client.close()
            return
        try:
            upstream = socket.create_connection(("127.0.0.1", self.target))
        except OSError:
            client.close()
            return
        pair = (client, upstream)
        self._pairs.append(pair)
        a = gevent.spawn(self._pump, client, upstream)
        b = gevent.spawn(self._pump, upstream, client)
        gevent.joinall([a, b], count=1)
        for s in pair:
            s.close()
        gevent.killall([a, b])
        if pair in self._pairs:
            self._pairs.remove(pair)

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass

    def cut(self) -> None:
        self.cut_off = True
        for pair in list(self._pairs):
            for s in pair:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()

    def restore(self) -> None:
        self.cut_off = False

    def stop(self) -> None:
        self.cut()
        self.server.stop()


def cluster_config(nodes: list[tuple[str, str, int, str]], keys: dict[str, str], redis_url: str,
                   instance: str, *, lease: float = 1.0, signing_key: str = "s" * 64,
                   listen: str = "127.0.0.1:0", **cluster: Any) -> Config:
    config = demo_config(nodes, keys, listen=listen)
    return replace(
        config,
        auth=replace(config.auth, signing_key=signing_key),
        cluster=ClusterConfig(redis_url=redis_url, instance=instance, lease_seconds=lease, **cluster),
    )


# --- eslchan instances as processes --------------------------------------------------------


def _toml(value: Any) -> str:
    return json.dumps(value)  # TOML's basic strings, numbers, booleans and arrays read as JSON's


def write_config(path: Path, *, nodes: list[tuple[str, str, int, str]], keys: dict[str, str],
                 redis_url: str, instance: str, port: int, lease: float, signing_key: str,
                 webhooks: dict[str, Any] | None = None) -> Path:
    """A TOML file for ``eslchan serve`` with the demo's accounts, these nodes, this cluster
    (and a ``[webhooks]`` table of these settings, if given)."""
    from eslchan.demo import ACME, ACME_SALES, ADMIN, GLOBEX

    lines = [
        "[http]", f"listen = {_toml(f'127.0.0.1:{port}')}", "drain_seconds = 1.0", "",
        "[logging]", 'level = "INFO"', "",
        "[auth]", f"signing_key = {_toml(signing_key)}", "",
        "[link]", "backoff_initial = 0.1", "backoff_max = 1.0", "",
        "[channels]", "system_wide_channels_list = true", "stale_grace_seconds = 10.0", "",
        "[cluster]", f"redis_url = {_toml(redis_url)}", f"instance = {_toml(instance)}",
        f"lease_seconds = {lease}", "",
    ]
    if webhooks is not None:
        lines += ["[webhooks]", *(f"{key} = {_toml(value)}" for key, value in webhooks.items()), ""]
    for name, host, nport, password in nodes:
        lines += ["[[nodes]]", f"name = {_toml(name)}", f"host = {_toml(host)}", f"port = {nport}",
                  f"password = {_toml(password)}", ""]
    for acc, name, parent, admin in ((ADMIN, "Admin", None, True), (ACME, "Acme", ADMIN, False),
                                     (ACME_SALES, "Acme Sales", ACME, False),
                                     (GLOBEX, "Globex", ADMIN, False)):
        lines += ["[[accounts]]", f"id = {_toml(acc)}", f"name = {_toml(name)}",
                  f"api_key = {_toml(keys[acc])}", f"superduper_admin = {_toml(admin)}"]
        if parent:
            lines.append(f"parent = {_toml(parent)}")
        lines.append("")
    path.write_text("\n".join(lines))
    return path


class Instance:
    """``eslchan serve --config`` in a process of its own."""

    def __init__(self, workdir: Path, name: str, **config: Any) -> None:
        self.name = name
        self.port = free_port()
        self.config_path = write_config(workdir / f"{name}.toml", instance=name, port=self.port, **config)
        self.log_path = workdir / f"{name}.log"
        self.proc: subprocess.Popen | None = None
        self.url = f"http://127.0.0.1:{self.port}"

    def start(self) -> Instance:
        log = open(self.log_path, "ab")  # noqa: SIM115 - the process writes it until it ends
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "eslchan", "serve", "--config", str(self.config_path)],
            stdout=log, stderr=log, start_new_session=True,
        )
        log.close()
        return self

    def kill(self) -> None:
        """kill -9: no goodbye to Redis, its leases lapse by themselves."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def terminate(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()

    def request(self, method: str, path: str, body: Any = None, token: str | None = None,
                timeout: float = 10) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json",
                                              **({"X-Auth-Token": token} if token else {})})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return resp.status, json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            try:
                return exc.code, json.loads(raw)
            except ValueError:
                return exc.code, raw
        except (urllib.error.URLError, OSError) as exc:
            return 0, str(exc)

    def token(self, api_key: str) -> str:
        status, body = self.request("PUT", "/v2/api_auth", {"data": {"api_key": api_key}})
        assert status == 201, (status, body)
        return body["auth_token"]

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
