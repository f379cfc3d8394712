"""Webhooks against hostile tenants and a hostile network: signatures a receiver can check,
forbidden destinations refused at creation and at delivery (DNS rebinding), connections pinned to
the checked address, TLS checked on the URI's host name."""

from __future__ import annotations

import shutil
import ssl
import subprocess
from contextlib import contextmanager

import pytest
from conftest import HttpClient, eventually, wait_for
from test_webhooks_delivery import calls, create_hook, hooks_config, hooks_daemon_config
from webhook_receiver import Receiver

from eslchan.daemon import Daemon
from eslchan.demo import ACME, demo_config

pytestmark = pytest.mark.timeout(90)

PUBLIC = "93.184.215.14"  # a globally routable address (nothing is sent to it in these tests)


@contextmanager
def running(simulator, keys, webhooks):
    config = demo_config(
        [("fs1", simulator.host, simulator.port, "ClueCon")], keys, listen="127.0.0.1:0", webhooks=webhooks
    )
    daemon = Daemon(config)
    daemon.start()
    try:
        eventually(lambda: all(link.is_up for link in daemon.links.values()), timeout=10)
        yield daemon, HttpClient(*daemon.http_address, keys)
    finally:
        daemon.stop(drain_seconds=0.5)


class FakeDns:
    """The resolver hook: answers from a table the test changes, like a rebinding DNS server."""

    def __init__(self, **names: list[str]):
        self.names = {k.replace("_", "."): v for k, v in names.items()}
        self.asked: list[str] = []

    def __call__(self, host: str, port: int) -> list[str]:
        self.asked.append(host)
        if host not in self.names:
            raise OSError(-2, "Name or service not known")
        return list(self.names[host])


@pytest.fixture
def daemon_config(simulator, keys, tmp_path):
    """For the ``daemon`` fixture: webhooks on, loopback receivers allowed."""
    return hooks_daemon_config(simulator, keys, tmp_path / "webhooks")


@pytest.fixture
def receiver():
    r = Receiver().start()
    yield r
    r.stop()


@pytest.fixture
def strict(simulator, keys, tmp_path):
    """The daemon with the default destination policy (nothing but public addresses)."""
    with running(simulator, keys, hooks_config(tmp_path / "hooks", allowed_networks=())) as (daemon, http):
        dns = FakeDns(crm_example_com=[PUBLIC], rebind_example_com=[PUBLIC],
                      mixed_example_com=[PUBLIC, "10.0.0.7"], localhost=["127.0.0.1"])  # fmt: skip
        daemon.webhooks.destinations.resolve = dns
        yield daemon, http, dns


def put(http, uri: str, account: str = ACME):
    return http.request(
        "PUT",
        f"/v2/accounts/{account}/webhooks",
        {"data": {"name": "x", "uri": uri, "hook": "all"}},
        token=http.token(account),
    )


FORBIDDEN = [
    "http://127.0.0.1/",
    "http://127.255.0.1:8021/",  # the ESL port of a local FreeSWITCH
    "http://localhost:8000/v2/channels",
    "http://[::1]/",
    "http://[::ffff:127.0.0.1]/",  # IPv4-mapped loopback
    "http://[::ffff:7f00:1]/",
    "http://[64:ff9b::a00:1]/",  # NAT64 of 10.0.0.1
    "http://[2002:a00:1::]/",  # 6to4 of 10.0.0.1
    "http://169.254.169.254/latest/meta-data/",  # cloud metadata
    "http://[fe80::1]/",
    "http://10.1.2.3/",
    "http://172.16.0.1/",
    "http://192.168.1.1/",
    "http://100.64.0.1/",  # shared address space (CGNAT)
    "http://0.0.0.0/",
    "http://[::]/",
    "http://224.0.0.1/",
    "http://[ff02::1]/",
    "http://240.0.0.1/",
    "http://192.0.2.10/",  # documentation range
    "http://mixed.example.com/",  # one private address among public ones
]
MALFORMED = [
    "ftp://crm.example.com/",
    "file:///etc/passwd",
    "gopher://crm.example.com:25/",
    "javascript:alert(1)",
    "crm.example.com/hook",
    "//crm.example.com/",
    "http:///path",
    "http://user:pass@crm.example.com/",
    "http://crm.example.com@127.0.0.1/",
    "http://crm.example.com/a b",
    "http://crm.example.com/\r\nX-Injected: 1",
    "http://crm.example.com/\x00",
    "http://crm.example.com/#fragment",
    "http://crm.example.com:0/",
    "http://crm.example.com:99999/",
    "http://crm.example.com:/",
    "http://crm.example.com:80x/",
    "http://2130706433/",  # 127.0.0.1 as one number
    "http://0x7f.1/",
    "http://127.1/",
    "http://0177.0.0.1/",
    "http://[fe80::1%25eth0]/",
    "http://crm\\.example.com/",
    "http://crm.exämple.com/",
    "http://-crm.example.com/",
    "http://unknown.example.com/",  # does not resolve
    "http://" + "a" * 64 + ".example.com/",
    "http://crm.example.com/" + "x" * 2100,
    "https://crm.example.com/" + "%" * 10,
]


@pytest.mark.parametrize("uri", FORBIDDEN)
def test_forbidden_destinations_are_refused_at_creation(strict, uri):
    daemon, http, _ = strict
    resp = put(http, uri)
    assert resp.status == 400, resp.json
    assert resp.json["message"] == "validation error"
    detail = resp.json["data"]["data.uri"]["forbidden"]
    assert "forbidden" in detail["message"] or "address" in detail["message"]
    assert daemon.webhooks.hooks_of(ACME) == []


@pytest.mark.parametrize("uri", MALFORMED)
def test_malformed_uris_are_refused_at_creation(strict, uri):
    daemon, http, _ = strict
    resp = put(http, uri)
    assert resp.status == 400, resp.json
    assert "data.uri" in resp.json["data"]
    assert daemon.webhooks.hooks_of(ACME) == []


def test_a_public_destination_is_accepted(strict):
    _, http, dns = strict
    resp = put(http, "https://CRM.example.com./hooks?x=1")
    assert resp.status == 201, resp.json
    assert "crm.example.com" in dns.asked


def test_dns_rebinding_at_delivery_is_refused_and_logged(strict, simulator, receiver):
    daemon, http, dns = strict
    hook = create_hook(
        http, ACME, name="x", uri=f"http://rebind.example.com:{receiver.port}/hook", hook="all"
    )
    dns.names["rebind.example.com"] = ["127.0.0.1"]  # the name now points at this machine
    calls(simulator, daemon, 1)
    eventually(lambda: daemon.webhooks.stats["failed_attempts"] >= 2)
    resp = http.get(f"/v2/accounts/{ACME}/webhooks/{hook['id']}/attempts", token=http.token(ACME))
    reasons = {a["reason"] for a in resp.json["data"]}
    assert reasons == {
        "forbidden destination: rebind.example.com is forbidden: 127.0.0.1 is a loopback address"
    }
    assert all(a["response_code"] is None for a in resp.json["data"])
    assert receiver.got == []  # nothing ever reached the loopback receiver
    dns.names["rebind.example.com"] = [PUBLIC, "127.0.0.1"]  # a mixed answer is no better
    wait_for(lambda: False, timeout=0.5)
    assert receiver.got == []


def test_the_connection_goes_to_the_checked_address(simulator, keys, tmp_path, receiver):
    """``pinned.test`` exists only in the resolver hook, never in the system's DNS: the delivery
    reaches the receiver only if it connects to the address that was checked, by that address."""
    with running(simulator, keys, hooks_config(tmp_path / "hooks")) as (daemon, http):
        daemon.webhooks.destinations.resolve = FakeDns(pinned_test=["127.0.0.1"])
        create_hook(
            http, ACME, name="x", uri=f"http://pinned.test:{receiver.port}/hook", hook="channel_create"
        )
        calls(simulator, daemon, 1)
        eventually(lambda: receiver.accepted)
        assert receiver.got[0].headers["host"] == f"pinned.test:{receiver.port}"


def test_a_receiver_rejects_forgeries_and_replays(daemon, http, simulator):
    receiver = Receiver(tolerance=1.0).start()
    try:
        hook = create_hook(http, ACME, name="x", uri=receiver.url(), hook="channel_create")
        receiver.secret = hook["secret"]
        calls(simulator, daemon, 1)
        eventually(lambda: receiver.got)
        original = receiver.got[0]
        assert original.verdict == "ok"

        def resend(body: bytes = original.body, **headers: str) -> str:
            from http.client import HTTPConnection

            sent = {k: v for k, v in original.headers.items() if k.startswith("webhook-")}
            sent.update({k.replace("_", "-"): v for k, v in headers.items()})
            conn = HTTPConnection("127.0.0.1", receiver.port, timeout=5)
            conn.request("POST", "/hook", body=body, headers=sent)
            conn.getresponse().read()
            conn.close()
            return receiver.got[-1].verdict

        assert resend() == "replayed id"  # the same request again
        assert resend(body=original.body.replace(b"channel_create", b"channel_destroy")) == "bad signature"
        now = str(int(original.headers["webhook-timestamp"]) + 5)
        assert resend(webhook_timestamp=now) == "bad signature"  # the timestamp is signed
        assert resend(webhook_id=original.headers["webhook-id"] + "0") == "bad signature"  # so is the id
        wait_for(lambda: False, timeout=1.5)
        receiver.seen_ids.clear()  # even a receiver that forgot the ids refuses it once it is old
        assert resend() == "stale timestamp"
    finally:
        receiver.stop()


def test_rotating_the_secret_signs_with_the_new_one(daemon, http, simulator, receiver):
    hook = create_hook(http, ACME, name="x", uri=receiver.url(), hook="channel_create")
    path = f"/v2/accounts/{ACME}/webhooks/{hook['id']}"
    assert "secret" not in http.get(path, token=http.token(ACME)).json["data"]  # shown once only
    resp = http.request("PATCH", path, {"data": {"rotate_secret": True}}, token=http.token(ACME))
    assert resp.status == 200
    fresh = resp.json["data"]["secret"]
    assert fresh.startswith("whsec_") and fresh != hook["secret"]
    receiver.secret = hook["secret"]
    calls(simulator, daemon, 1)
    eventually(lambda: receiver.got)
    assert receiver.got[0].verdict == "bad signature"  # the old secret no longer verifies
    receiver.secret = fresh
    eventually(lambda: receiver.accepted)  # eslchan retries; the new secret verifies


# --- https: SNI and the certificate are checked on the URI's host name ------------------------


def _openssl(*args: str, cwd) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@pytest.fixture
def tls_files(tmp_path):
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
             "-days", "2", "-subj", "/CN=eslchan test CA", cwd=tmp_path)  # fmt: skip
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "srv.key", "-out", "srv.csr",
             "-subj", "/CN=hooks.test", cwd=tmp_path)  # fmt: skip
    (tmp_path / "ext.cnf").write_text("subjectAltName=DNS:hooks.test\n")
    _openssl("x509", "-req", "-in", "srv.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
             "-out", "srv.pem", "-days", "2", "-extfile", "ext.cnf", cwd=tmp_path)  # fmt: skip
    return tmp_path


def test_https_checks_the_certificate_against_the_uris_host_name(simulator, keys, tmp_path, tls_files):
    from gevent.pywsgi import WSGIServer

    got: list[str] = []

    def app(environ, start_response):
        got.append(environ.get("HTTP_HOST", ""))
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(tls_files / "srv.pem"), str(tls_files / "srv.key"))
    server = WSGIServer(("127.0.0.1", 0), app, ssl_context=context, log=None, error_log=None)
    server.start()
    port = server.server_port
    webhooks = hooks_config(tmp_path / "hooks", ca_file=tls_files / "ca.pem")
    try:
        with running(simulator, keys, webhooks) as (daemon, http):
            daemon.webhooks.destinations.resolve = FakeDns(hooks_test=["127.0.0.1"], other_test=["127.0.0.1"])
            good = create_hook(
                http, ACME, name="ok", uri=f"https://hooks.test:{port}/", hook="channel_create"
            )
            bad = create_hook(
                http, ACME, name="bad", uri=f"https://other.test:{port}/", hook="channel_create"
            )
            calls(simulator, daemon, 1)
            eventually(lambda: got)
            assert got == [f"hooks.test:{port}"]

            def reasons(hook):
                resp = http.get(f"/v2/accounts/{ACME}/webhooks/{hook['id']}/attempts", token=http.token(ACME))
                return [a["reason"] for a in resp.json["data"]]

            eventually(lambda: reasons(bad) and reasons(good))
            assert reasons(good) == [None]
            assert "certificate" in reasons(bad)[0].lower() or "hostname" in reasons(bad)[0].lower()
    finally:
        server.stop()


def test_the_readmes_verification_code_accepts_a_delivery_and_refuses_a_forgery(
    daemon, http, simulator, receiver
):
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text("utf-8")
    code = re.search(r"```python\n(.*?def verify.*?)\n```", readme, re.S).group(1)
    scope: dict = {}
    exec(code, scope)  # noqa: S102 - the README's own example, run as a reader would
    hook = create_hook(http, ACME, name="x", uri=receiver.url(), hook="channel_create")
    calls(simulator, daemon, 1)
    eventually(lambda: receiver.got)
    got = receiver.got[0]
    assert scope["verify"](hook["secret"], got.headers, got.body) is True
    assert scope["verify"](hook["secret"], got.headers, got.body + b" ") is False
