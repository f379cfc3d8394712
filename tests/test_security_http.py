"""Logins, bounded waits, /health and hostile HTTP, over real HTTP to the daemon on the
simulator: the right key is never locked out, every command answers within the command
timeout (bgapi too, socket writes too), /health tells strangers only up/degraded/down, and a
client's oversized headers get 431 in the envelope without a traceback."""

from __future__ import annotations

import json
import logging
import socket
import time

import gevent
import pytest
from conftest import eventually
from tenants import (
    Tenant,
    no_hook_ran,  # noqa: F401 (a fixture)
    refused,
    settle,
)

from eslchan.config import LinkOptions
from eslchan.demo import ACME, ADMIN, demo_config
from eslchan.esl import commands as esl
from eslchan.esl.errors import CommandTimeout, LinkDown

pytestmark = [pytest.mark.timeout(90), pytest.mark.usefixtures("no_hook_ran")]

TIMEOUT = 1.0  # the daemon's link.command_timeout in this module


@pytest.fixture
def daemon_config(simulator, keys):
    link = LinkOptions(backoff_initial=0.1, backoff_max=1.0, command_timeout=TIMEOUT)
    return demo_config([("fs1", simulator.host, simulator.port, "ClueCon")], keys, listen="127.0.0.1:0",
                       link=link)


# --- logins ------------------------------------------------------------------------------------

def test_failed_logins_never_lock_the_right_key_out(daemon, http):
    limit = daemon.config.auth.failed_auth_per_minute
    guess = {"data": {"api_key": "guess-0123456789abcdef"}}
    for _ in range(limit):
        assert http.request("PUT", "/v2/api_auth", guess).status == 401
    limited = http.request("PUT", "/v2/api_auth", {"data": {"api_key": "guess-0123456789abcdeg"}})
    assert refused(limited, 429)["data"]["retry_after"] >= 1
    for _ in range(3):  # everyone else behind the same address still logs in
        assert http.request("PUT", "/v2/api_auth", {"data": {"api_key": http.keys[ACME]}}).status == 201


def test_a_broken_dashboard_with_a_bad_token_counts_as_no_login(daemon, http):
    for _ in range(100):
        resp = http.get(f"/v2/accounts/{ACME}/channels", token="expired-or-garbage")
        refused(resp, 401)
    # no failed login was counted: a wrong key is a plain 401, the right one a token
    assert http.request("PUT", "/v2/api_auth", {"data": {"api_key": "guess-0123456789abcdef"}}).status == 401
    assert http.request("PUT", "/v2/api_auth", {"data": {"api_key": http.keys[ACME]}}).status == 201


# --- bounded waits -------------------------------------------------------------------------------

def test_bgapi_actions_answer_within_the_command_timeout_when_the_switch_stalls(simulator, daemon, http):
    lone = Tenant(simulator, daemon, http, ACME, bridged=False)
    call = Tenant(simulator, daemon, http, ACME)
    simulator.stall(3.5)
    started = time.monotonic()
    resp = lone.post(action="intercept", target_type="number", target_id="2001", timeout=20)
    took = time.monotonic() - started
    body = refused(resp, 504)
    assert body["data"]["node"] == "fs1"
    assert took < TIMEOUT + 2, took  # was: the originate's timeout + 10 s (30 s here)
    started = time.monotonic()
    refused(call.post(action="send_dtmf", digits="5"), 504)
    assert time.monotonic() - started < TIMEOUT + 2
    # the node is up but stalling: /health says so, and says nothing else to a stranger
    health = http.get("/health")
    assert health.status == 200
    assert health.json["data"] == {"status": "degraded", "nodes": {"fs1": {"state": "degraded"}}}
    detail = http.get("/health", token=http.token(ADMIN)).json["data"]["nodes"]["fs1"]
    assert detail["command_timeouts"] >= 2 and detail["link_state"] == "up"
    # once the switch answers in time again, it is up
    eventually(lambda: simulator.stall_until < time.monotonic(), timeout=8)
    eventually(lambda: call.post(action="send_dtmf", digits="1").status == 200, timeout=10)
    assert http.get("/health").json["data"]["nodes"]["fs1"] == {"state": "up"}


def test_a_bgapi_action_answers_once_the_job_is_accepted_not_when_it_ends(simulator, daemon, http):
    simulator.switch.endpoint_behaviour["ringforever"] = "no_answer"
    lone = Tenant(simulator, daemon, http, ACME, bridged=False)
    started = time.monotonic()
    resp = lone.post(action="intercept", target_type="device", target_id="ringforever", timeout=30)
    assert resp.status == 200, resp.json
    assert time.monotonic() - started < TIMEOUT + 2  # the phone rings on; the answer does not wait
    assert resp.json["data"]["reply"].startswith("+OK Job-UUID")
    run = daemon.interpreter.get(resp.json["data"]["id"])
    assert run.state == "running"
    lone.hang_up()
    eventually(lambda: run.state != "running")


def test_a_switch_that_stops_reading_cannot_hold_a_writer(simulator, daemon):
    """Writes are bounded too: a peer that stops reading gets a timeout, and the connection
    (whose next command would follow half a command) is closed and rebuilt."""
    link = daemon.links["fs1"]
    call = simulator.create_call(account_id=ACME)
    eventually(lambda: daemon.registry.find(call.a_uuid) is not None)
    small = esl.api("uuid_getvar", esl.uuid(call.a_uuid), esl.var_name("eslchan_x"))
    big = esl.api("uuid_setvar", esl.uuid(call.a_uuid), esl.var_name("eslchan_blob"),
                  esl.var_value("v" * (16 << 20), max_len=1 << 25))  # more than both ends buffer
    simulator.stall(30)
    # the switch takes this one in, then stops reading its socket while it stalls
    with pytest.raises(CommandTimeout, match="no answer"):
        link.api(small)
    began = time.monotonic()
    with pytest.raises(CommandTimeout, match="did not take"):
        link.api(big)
    assert time.monotonic() - began < TIMEOUT + 1
    eventually(lambda: link.stats["reconnects"] >= 1 or not link.is_up, timeout=5)
    with pytest.raises((LinkDown, CommandTimeout)):  # the cut connection takes nothing more
        link.api(small)
    simulator.stall_until = 0
    eventually(lambda: link.is_up, timeout=10)


# --- /health -----------------------------------------------------------------------------------

def test_health_tells_strangers_only_the_state_of_each_node(simulator, daemon, http):
    address = f"{simulator.host}:{simulator.port}"
    for token in (None, "not-a-token", http.token(ACME)):
        resp = http.get("/health", token=token)
        assert resp.status == 200
        assert resp.json["data"] == {"status": "ok", "nodes": {"fs1": {"state": "up"}}}
        assert address not in resp.body.decode() and str(simulator.port) not in resp.body.decode()
    detail = http.get("/health", token=http.token(ADMIN)).json["data"]
    assert detail["nodes"]["fs1"]["address"] == address
    simulator.stop()
    eventually(lambda: not daemon.links["fs1"].is_up)
    down = http.get("/health")
    assert down.status == 503
    assert down.json["data"] == {"status": "unavailable", "nodes": {"fs1": {"state": "down"}}}
    assert "refused" not in down.body.decode().lower()  # no error text for strangers


# --- hostile HTTP ------------------------------------------------------------------------------

def raw_request(daemon, data: bytes) -> tuple[int, dict, dict | None]:
    host, port = daemon.http_address
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(data)
        out = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            out += chunk
    head, _, body = out.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
    return int(lines[0].split()[1]), headers, json.loads(body) if body else None


@pytest.mark.parametrize("request_bytes,status", [
    (b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n", 431),
    (b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 9_000 + b"\r\n\r\n", 431),
    (b"GET /health HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-%d: a\r\n" % i for i in range(150)) + b"\r\n",
     431),
    (b"GET /health HTTP/1.1\r\n" + b"".join(b"X-%d: %s\r\n" % (i, b"b" * 7000) for i in range(20)) + b"\r\n",
     431),
    (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
    (b"NONSENSE\r\n\r\n", 400),
    (b"GET / HTTP/9.9\r\nHost: x\r\n\r\n", 400),
])
def test_oversized_or_malformed_requests_get_the_envelope_and_no_traceback(
        daemon, caplog, capfd, request_bytes, status):
    caplog.set_level(logging.DEBUG)
    got, headers, body = raw_request(daemon, request_bytes)
    assert got == status
    assert headers["content-type"] == "application/json"
    assert body["status"] == "error" and body["error"] == str(status) and body["message"]
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text
    assert "Traceback" not in capfd.readouterr().err
    # the server is still fine
    assert raw_request(daemon, b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")[0] == 200


def test_a_client_that_resets_mid_answer_is_no_server_error(simulator, daemon, http, caplog, capfd):
    caplog.set_level(logging.DEBUG)
    for _ in range(20):
        simulator.create_call(account_id=ACME)
    eventually(lambda: len(daemon.registry.for_account(ACME)) >= 40)
    host, port = daemon.http_address
    for _ in range(20):
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        sock.connect((host, port))
        sock.sendall(f"GET /v2/accounts/{ACME}/channels HTTP/1.1\r\nHost: x\r\n"
                     f"X-Auth-Token: {http.token(ACME)}\r\n\r\n".encode())
        sock.close()  # RST at once
    settle(0.3)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text
    assert "Traceback" not in capfd.readouterr().err
    gevent.sleep(0)


def test_an_idle_or_trickling_connection_is_closed(daemon, monkeypatch):
    from eslchan.api.wsgi import ApiHandler

    monkeypatch.setattr(ApiHandler, "header_timeout", 0.5)
    host, port = daemon.http_address
    idle = socket.create_connection((host, port), timeout=5)
    trickle = socket.create_connection((host, port), timeout=5)
    trickle.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")  # and never the blank line
    for sock in (idle, trickle):
        started = time.monotonic()
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
        assert time.monotonic() - started < 3
        sock.close()
    # a request sent in time is served as always
    assert raw_request(daemon, b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")[0] == 200
