"""Shared fixtures. gevent patches the stdlib first, as the daemon's entry point does."""

from gevent import monkey

monkey.patch_all()

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CAPTURES = REPO.parent / "shared" / "esl-captures"


@pytest.fixture(scope="session")
def captures_dir() -> Path:
    """The real FreeSWITCH 1.10 traffic recordings kept beside the repository."""
    if not (CAPTURES / "README.md").exists():
        pytest.skip(f"ESL captures not found at {CAPTURES}")
    return CAPTURES


# --- the daemon on the simulator, over real TCP and real HTTP -----------------------------------

import http.client as _http_client  # noqa: E402  (the `http` fixture below takes the name)
import json as _json  # noqa: E402
from dataclasses import dataclass  # noqa: E402

import gevent  # noqa: E402

#: Fixed demo API keys for tests (the demo itself generates random ones).
TEST_KEYS = {
    "ad000000000000000000000000000000": "admin-key-0123456789abcdef",
    "acc00000000000000000000000000001": "acme-key-0123456789abcdef",
    "acc00000000000000000000000000002": "sales-key-0123456789abcdef",
    "acc00000000000000000000000000003": "globex-key-0123456789abcdef",
}


def eventually(predicate, timeout: float = 5.0, interval: float = 0.02):
    """Wait (cooperatively) until predicate() is truthy; return its value or fail the test."""
    deadline = gevent.get_hub().loop.now() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if gevent.get_hub().loop.now() > deadline:
            pytest.fail(f"condition not met within {timeout}s: {getattr(predicate, '__name__', predicate)}")
        gevent.sleep(interval)


@pytest.fixture
def simulator():
    """A started FreeSWITCH simulator on a free loopback port, 20x faster than real time."""
    from eslchan.simulator import Simulator

    sim = Simulator(speed=20.0)
    sim.start()
    yield sim
    sim.stop()


@pytest.fixture
def keys() -> dict[str, str]:
    return dict(TEST_KEYS)


@pytest.fixture
def daemon_config(simulator, keys):
    from eslchan.demo import demo_config

    return demo_config([("fs1", simulator.host, simulator.port, "ClueCon")], keys, listen="127.0.0.1:0")


@pytest.fixture
def daemon(daemon_config):
    """The whole daemon (links, registry, interpreter, HTTP) against the simulator, links up."""
    from eslchan.daemon import Daemon

    d = Daemon(daemon_config)
    d.start()
    eventually(lambda: all(link.is_up for link in d.links.values()), timeout=10)
    yield d
    d.stop(drain_seconds=0.5)


@dataclass
class Response:
    status: int
    headers: dict
    body: bytes

    @property
    def json(self):
        return _json.loads(self.body)


class HttpClient:
    """A tiny real-HTTP client for the daemon under test (one connection per request)."""

    def __init__(self, host: str, port: int, keys: dict[str, str]):
        self.host, self.port, self.keys = host, port, keys
        self._tokens: dict[str, str] = {}

    def request(self, method, path, body=None, *, token=None, headers=None, raw: bytes | None = None):
        hdrs = dict(headers or {})
        if token is not None:
            hdrs["X-Auth-Token"] = token
        data = raw
        if body is not None:
            data = _json.dumps(body).encode()
            hdrs.setdefault("Content-Type", "application/json")
        conn = _http_client.HTTPConnection(self.host, self.port, timeout=30)
        try:
            conn.request(method, path, body=data, headers=hdrs)
            resp = conn.getresponse()
            return Response(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
        finally:
            conn.close()

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def token(self, account_id: str) -> str:
        """A real token for the account, from PUT /v2/api_auth (cached per test)."""
        if account_id not in self._tokens:
            resp = self.request("PUT", "/v2/api_auth", {"data": {"api_key": self.keys[account_id]}})
            assert resp.status == 201 or resp.status == 200, resp.body
            self._tokens[account_id] = resp.json["auth_token"]
        return self._tokens[account_id]


@pytest.fixture
def http(daemon, keys) -> HttpClient:
    host, port = daemon.http_address
    return HttpClient(host, port, keys)


def wait_for(predicate, timeout: float = 5.0) -> bool:
    """Wait (cooperatively) until predicate() is truthy; False if it is not within timeout.
    For `assert wait_for(...)`, and for waits whose outcome the test checks otherwise."""
    with gevent.Timeout(timeout, False):
        while not predicate():
            gevent.sleep(0.005)
        return True
    return False


@pytest.fixture
def quiet_simulator():
    """A started simulator 50x faster than real time that sends no HEARTBEAT within a test,
    for tests that look at every event it sends."""
    from eslchan.simulator import Simulator

    sim = Simulator(speed=50.0, heartbeat_interval=3600)
    sim.start()
    yield sim
    sim.stop()


# --- a real Redis for the cluster tests (tests/cluster_support.py) -----------------------------


@pytest.fixture(scope="session")
def redis_server():
    """Debian's redis-server on a free port, without persistence (skipped when not installed)."""
    from cluster_support import RedisServer

    server = RedisServer()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server) -> str:
    """The server's URL, its data emptied for this test."""
    redis_server.client().flushall()
    return redis_server.url
