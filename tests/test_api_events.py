"""GET /v2/accounts/{A}/events: live channel events as Server-Sent Events, over real HTTP against
the daemon on the simulator. Streams are read incrementally, line by line, as a browser would."""

from __future__ import annotations

import http.client
import json
import logging
import socket
from dataclasses import replace

import pytest
from conftest import eventually
from test_api_http import place

from eslchan.api.events import hub_of
from eslchan.config import hash_api_key
from eslchan.daemon import Daemon
from eslchan.demo import ACME, ACME_SALES, ADMIN, GLOBEX, PARTIES, demo_config

pytestmark = pytest.mark.timeout(90)

ALICE, BOB, CAROL, DAVE = PARTIES  # Acme, Acme, Acme Sales, Globex


class Sse:
    """One event stream: ``next()`` returns the next message's fields, or None at the end."""

    def __init__(
        self, host: str, port: int, path: str, *, token: str | None = None, headers: dict | None = None
    ):
        self.conn = http_client_conn(host, port)
        hdrs = {"Accept": "text/event-stream", **(headers or {})}
        if token is not None:
            hdrs["X-Auth-Token"] = token
        self.conn.request("GET", path, headers=hdrs)
        self.resp = self.conn.getresponse()
        self.status = self.resp.status
        self.headers = {k.lower(): v for k, v in self.resp.getheaders()}
        self.comments: list[str] = []
        self.seen: list[dict] = []
        self._fields: dict[str, str] = {}

    def json(self) -> dict:
        return json.loads(self.resp.read())

    def line(self) -> dict | None | bool:
        """Read one line: the message it completes, False if none yet, None at the end."""
        raw = self.resp.readline()
        if not raw:
            return None
        text = raw.decode("utf-8").rstrip("\n").rstrip("\r")
        if not text:
            fields, self._fields = self._fields, {}
            if "data" not in fields and "event" not in fields:
                return False  # e.g. the opening "retry:" dispatches nothing, as in a browser
            if "data" in fields and fields.get("event") not in ("overflow", "unauthorized"):
                fields["json"] = json.loads(fields["data"])
            self.seen.append(fields)
            return fields
        if text.startswith(":"):
            self.comments.append(text[1:].strip())
        else:
            key, _, value = text.partition(":")
            self._fields[key] = value[1:] if value.startswith(" ") else value
        return False

    def next(self) -> dict | None:
        while (msg := self.line()) is False:
            pass
        return msg

    def until(self, predicate) -> dict:
        while True:
            msg = self.next()
            assert msg is not None, f"stream ended before the expected message; saw {self.seen}"
            if predicate(msg):
                return msg

    def close(self) -> None:
        self.resp.close()
        self.conn.close()


def http_client_conn(host: str, port: int) -> http.client.HTTPConnection:
    # the timeout only keeps a broken test from hanging; nothing is asserted about time
    return http.client.HTTPConnection(host, port, timeout=30)


@pytest.fixture
def sse(daemon):
    host, port = daemon.http_address
    opened: list[Sse] = []

    def open_(path: str, **kw) -> Sse:
        stream = Sse(host, port, path, **kw)
        opened.append(stream)
        return stream

    yield open_
    for stream in opened:
        stream.close()


def is_event(name: str, uuid: str):
    return lambda m: m.get("event") == name and m["json"]["uuid"] == uuid


def uuids_seen(stream: Sse) -> set[str]:
    return {m["json"]["uuid"] for m in stream.seen if "json" in m}


def test_a_call_streams_create_answer_bridge_destroy(simulator, daemon, http, sse):
    acme = http.token(ACME)
    stream = sse(f"/v2/accounts/{ACME}/events", token=acme)
    assert stream.status == 200
    assert stream.headers["content-type"].startswith("text/event-stream")
    assert stream.headers["cache-control"] == "no-cache"
    call = place(simulator, daemon, ALICE)

    created = stream.until(is_event("channel_create", call.a_uuid))
    assert created["json"]["event"] == "CHANNEL_CREATE"
    assert created["json"]["node"] == "fs1"
    assert created["json"]["channel"]["uuid"] == call.a_uuid
    answered = stream.until(is_event("channel_answer", call.a_uuid))
    assert answered["json"]["channel"]["answered"] is True
    assert _number(answered) > _number(created)
    bridged = stream.until(is_event("channel_bridge", call.a_uuid))
    assert bridged["json"]["channel"]["other_leg"] == call.b_uuid

    simulator.hangup(call.a_uuid)
    destroyed = stream.until(is_event("channel_destroy", call.a_uuid))
    assert destroyed["json"]["channel"]["owner_id"] == ALICE.user_id
    assert isinstance(destroyed["json"]["timestamp"], int)
    stream.until(is_event("channel_destroy", call.b_uuid))
    # ids are "<epoch>.<number>": one epoch, numbers rising (other accounts' events in between)
    assert len({m["id"].split(".")[0] for m in stream.seen}) == 1
    ids = [_number(m) for m in stream.seen]
    assert ids == sorted(set(ids))
    # each message shows the channel as it was at that event, not as it is later
    assert created["json"]["channel"]["answered"] is False


def test_the_data_matches_the_openapi_document(simulator, daemon, http, sse):
    from test_api_openapi import validator

    doc = http.get("/v2/openapi.json").json
    stream = sse(f"/v2/accounts/{ACME}/events", token=http.token(ACME))
    call = place(simulator, daemon, BOB)
    simulator.hangup(call.a_uuid)
    stream.until(is_event("channel_destroy", call.a_uuid))
    check = validator(doc, "/components/schemas/StreamEvent")
    for msg in stream.seen:
        assert not list(check.iter_errors(msg["json"])), msg


def test_other_tenants_calls_never_appear(simulator, daemon, http, sse):
    stream = sse(f"/v2/accounts/{ACME}/events", token=http.token(ACME))
    dave = place(simulator, daemon, DAVE)
    carol = place(simulator, daemon, CAROL)  # a sub-account: only with ?descendants=true
    alice = place(simulator, daemon, ALICE)
    simulator.hangup(dave.a_uuid)
    simulator.hangup(alice.a_uuid)
    # events arrive in order over the one link: once Alice's destroy is here, Dave's came before
    stream.until(is_event("channel_destroy", alice.a_uuid))
    seen = uuids_seen(stream)
    assert alice.a_uuid in seen
    assert not seen & (set(dave.uuids) | set(carol.uuids))


def test_descendants_only_with_the_flag_and_only_downwards(simulator, daemon, http, sse):
    acme = sse(f"/v2/accounts/{ACME}/events?descendants=true", token=http.token(ACME))
    sales = sse(f"/v2/accounts/{ACME_SALES}/events?descendants=true", token=http.token(ACME_SALES))
    admin = sse(f"/v2/accounts/{ACME_SALES}/events", token=http.token(ADMIN))
    carol = place(simulator, daemon, CAROL)
    alice = place(simulator, daemon, ALICE)
    dave = place(simulator, daemon, DAVE)
    marker = place(simulator, daemon, CAROL)

    acme.until(is_event("channel_create", marker.a_uuid))
    assert carol.a_uuid in uuids_seen(acme) and alice.a_uuid in uuids_seen(acme)
    assert not uuids_seen(acme) & set(dave.uuids)
    sales.until(is_event("channel_create", marker.a_uuid))
    # the sub-account sees itself, never its parent
    assert carol.a_uuid in uuids_seen(sales)
    assert not uuids_seen(sales) & (set(alice.uuids) | set(dave.uuids))
    # a superduper admin may open any account's stream
    admin.until(is_event("channel_create", marker.a_uuid))
    assert not uuids_seen(admin) & set(alice.uuids)

    # asking for a parent's stream, with or without descendants, is forbidden
    up = sse(f"/v2/accounts/{ACME}/events?descendants=true", token=http.token(ACME_SALES))
    assert up.status == 403
    assert up.json()["message"] == "forbidden"


def test_401_403_and_bad_parameters_answer_in_the_envelope(daemon, http, sse):
    path = f"/v2/accounts/{ACME}/events"
    missing = sse(path)
    assert missing.status == 401
    assert missing.json()["message"] == "invalid_credentials"
    bad = sse(path + "?auth_token=not-a-token")
    assert bad.status == 401
    assert bad.json()["status"] == "error"
    other = sse(f"/v2/accounts/{GLOBEX}/events", token=http.token(ACME))
    assert other.status == 403
    assert other.json()["data"] == {"account_id": GLOBEX}
    malformed = sse("/v2/accounts/ACME/events", token=http.token(ACME))
    assert malformed.status == 400
    for query in (
        "events=CHANNEL_CREATE;uuid_kill",
        "events=",
        "events=CHANNEL_CREATE,,X",
        "events=" + ",".join(["CHANNEL_CREATE"] * 33),
        "descendants=yes",
    ):
        resp = sse(f"{path}?{query}", token=http.token(ACME))
        assert resp.status == 400, query
        body = resp.json()
        assert body["message"] == "validation error"
        assert set(body["data"]) <= {"events", "descendants"}, body
    assert hub_of(daemon.app).streams == 0


def test_auth_token_in_the_query_and_bearer_header_work(simulator, daemon, http, sse):
    token = http.token(ACME)
    by_query = sse(f"/v2/accounts/{ACME}/events?auth_token={token}")
    by_bearer = sse(f"/v2/accounts/{ACME}/events", headers={"Authorization": f"Bearer {token}"})
    assert by_query.status == 200 and by_bearer.status == 200
    call = place(simulator, daemon, ALICE)
    by_query.until(is_event("channel_create", call.a_uuid))
    by_bearer.until(is_event("channel_create", call.a_uuid))


def test_events_filter(simulator, daemon, http, sse):
    stream = sse(f"/v2/accounts/{ACME}/events?events=CHANNEL_CREATE,channel_destroy", token=http.token(ACME))
    call = place(simulator, daemon, ALICE)
    simulator.hangup(call.a_uuid)
    stream.until(is_event("channel_destroy", call.b_uuid))
    assert {m["event"] for m in stream.seen} == {"channel_create", "channel_destroy"}
    assert [m["event"] for m in stream.seen if m["json"]["uuid"] == call.a_uuid] == [
        "channel_create",
        "channel_destroy",
    ]


def _number(message: dict) -> int:
    """The event number of a message id ("<epoch>.<number>")."""
    return int(message["id"].split(".")[1])


def _history_for(daemon, seconds: float, count: int = 10_000) -> None:
    config = daemon.app.config["ESLCHAN"]
    daemon.app.config["ESLCHAN"] = replace(
        config, http=replace(config.http, event_history_seconds=seconds, event_history=count))


def test_keepalive_comments_and_disconnect_unsubscribes(simulator, daemon, http, sse):
    daemon.app.config["EVENTS_KEEPALIVE_SECONDS"] = 0.05  # a gone client is noticed at the next write
    _history_for(daemon, 0.2)  # the history outlives the last stream this long, then goes
    hub = hub_of(daemon.app)
    assert hub.streams == 0 and not hub.listening
    one = sse(f"/v2/accounts/{ACME}/events", token=http.token(ACME))
    two = sse(f"/v2/accounts/{GLOBEX}/events", token=http.token(GLOBEX))
    assert hub.streams == 2 and hub.listening
    assert "eslchan_event_streams 2.0" in http.get("/metrics").body.decode()
    while "keepalive" not in one.comments:
        assert one.line() is False  # nothing happens on Acme: only comments come
    one.close()
    eventually(lambda: hub.streams == 1)
    two.close()
    eventually(lambda: hub.streams == 0)
    eventually(lambda: not hub.listening)  # the registry has no listener left for streams
    # the registry still works for the rest of the daemon, and a new stream starts afresh
    again = sse(f"/v2/accounts/{ACME}/events", token=http.token(ACME))
    call = place(simulator, daemon, ALICE)
    again.until(is_event("channel_create", call.a_uuid))


def test_a_revoked_token_ends_the_stream(daemon, http, sse):
    daemon.app.config["EVENTS_KEEPALIVE_SECONDS"] = 0.05  # the token is checked again at keepalives
    stream = sse(f"/v2/accounts/{ACME}/events", token=http.token(ACME))
    other = sse(f"/v2/accounts/{GLOBEX}/events", token=http.token(GLOBEX))
    config = daemon.app.config["ESLCHAN"]
    accounts = [
        replace(a, api_key_hash=hash_api_key("a-new-acme-key-0123456789")) if a.id == ACME else a
        for a in config.accounts
    ]
    daemon.app.config["ESLCHAN"] = replace(config, accounts=accounts)  # what a SIGHUP reload does

    notice = stream.next()
    assert notice is not None and notice["event"] == "unauthorized"
    assert stream.next() is None  # and the stream ends
    eventually(lambda: hub_of(daemon.app).streams == 1)
    assert other.line() is False  # Globex's key did not change: its stream goes on


def test_the_query_token_stays_out_of_the_access_log(daemon, http, sse, caplog):
    daemon.app.config["EVENTS_KEEPALIVE_SECONDS"] = 0.05  # the stream's line is logged once it ends
    token = http.token(ACME)
    with caplog.at_level(logging.DEBUG, logger="eslchan.daemon"):
        sse(f"/v2/accounts/{ACME}/events?auth_token={token}").close()
        eventually(lambda: any("/events" in r.getMessage() for r in caplog.records))
    lines = [r.getMessage() for r in caplog.records]
    assert any("auth_token=[redacted]" in line for line in lines), lines
    assert not any(token in line for line in lines)


def test_at_most_n_streams(daemon, http, sse):
    daemon.app.config["EVENTS_MAX_STREAMS"] = 1
    daemon.app.config["EVENTS_KEEPALIVE_SECONDS"] = 0.05  # a gone client is noticed at the next write
    token = http.token(ACME)
    first = sse(f"/v2/accounts/{ACME}/events", token=token)
    assert first.status == 200
    second = sse(f"/v2/accounts/{ACME}/events", token=token)
    assert second.status == 503
    assert second.json()["data"] == {"max_streams": 1}
    first.close()
    eventually(lambda: hub_of(daemon.app).streams == 0)
    assert sse(f"/v2/accounts/{ACME}/events", token=token).status == 200


def test_a_slow_client_is_told_overflow_and_closed(simulator, daemon, http):
    daemon.app.config["EVENTS_QUEUE_MAX"] = 1
    hub = hub_of(daemon.app)
    host, port = daemon.http_address
    client = socket.socket()
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # fills fast while we do not read
    client.connect((host, port))
    client.sendall(
        f"GET /v2/accounts/{ACME}/events HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        f"X-Auth-Token: {http.token(ACME)}\r\n\r\n".encode()
    )
    eventually(lambda: hub.streams == 1)

    def overflowed() -> bool:
        if hub.overflows:
            return True
        # more traffic until the stream falls behind: we are not reading
        simulator.create_call(account_id=ACME, user_id=ALICE.user_id, caller_id_name="Alice")
        return False

    eventually(overflowed, timeout=60, interval=0.01)
    assert hub.streams == 0  # dropped from the fan-out at once (the history listens on a while)
    client.settimeout(30)
    received = b""
    while chunk := client.recv(65536):
        received += chunk
    client.close()
    assert received.startswith(b"HTTP/1.1 200")
    assert b"event: overflow" in received
    # the stream ended properly (last chunk), after the overflow notice
    assert received.endswith(b"0\r\n\r\n")
    assert received.rindex(b"event: overflow") > received.rfind(b"event: channel_")
    assert "eslchan_event_stream_overflows_total 1.0" in http.get("/metrics").body.decode()


def test_stopping_the_daemon_ends_open_streams(simulator, keys):
    config = demo_config([("fs1", simulator.host, simulator.port, "ClueCon")], keys, listen="127.0.0.1:0")
    daemon = Daemon(config)
    daemon.start()
    try:
        eventually(lambda: daemon.links["fs1"].is_up, timeout=10)
        host, port = daemon.http_address
        conn = http_client_conn(host, port)
        conn.request(
            "PUT",
            "/v2/api_auth",
            body=json.dumps({"data": {"api_key": keys[ACME]}}),
            headers={"Content-Type": "application/json"},
        )
        token = json.loads(conn.getresponse().read())["auth_token"]
        conn.close()
        conn = http_client_conn(host, port)
        conn.request("GET", f"/v2/accounts/{ACME}/events?auth_token={token}")
        resp = conn.getresponse()
        assert resp.status == 200
        assert resp.readline().startswith(b"retry:")
    finally:
        daemon.stop(drain_seconds=30)
    # a clean end of the chunked body (a killed handler would leave it incomplete)
    rest = resp.read()
    assert b"overflow" not in rest
    assert hub_of(daemon.app).streams == 0
    conn.close()


# --- Last-Event-ID ---------------------------------------------------------------------------


def test_a_client_back_with_last_event_id_gets_what_it_missed_then_goes_on(simulator, daemon, http, sse):
    token = http.token(ACME)
    first = sse(f"/v2/accounts/{ACME}/events", token=token)
    call = place(simulator, daemon, ALICE)
    last = first.until(is_event("channel_create", call.a_uuid))
    first.close()
    # while the client is away: its call hangs up, another tenant's call comes and goes
    simulator.hangup(call.a_uuid)
    other = place(simulator, daemon, DAVE)  # Globex
    eventually(lambda: daemon.registry.find(call.a_uuid) is None)

    again = sse(f"/v2/accounts/{ACME}/events", token=token, headers={"Last-Event-ID": last["id"]})
    destroyed = again.until(is_event("channel_destroy", call.a_uuid))
    missed = again.seen[: again.seen.index(destroyed) + 1]
    assert all(m.get("event") != "reset" for m in again.seen)
    # what came after the client's last event, in order, and its own account's only
    assert [_number(m) for m in missed] == sorted(_number(m) for m in missed)
    assert _number(missed[0]) > _number(last)
    assert all(m["json"]["account_id"] == ACME for m in missed)
    assert {m["json"]["uuid"] for m in missed} <= set(call.uuids)
    assert not {m["json"]["uuid"] for m in missed} & set(other.uuids)
    # nothing it already had is sent again: not its channel_create, not any id up to it
    assert all(_number(m) > _number(last) for m in missed)
    # and the stream goes on live
    later = place(simulator, daemon, ALICE)
    fresh = again.until(is_event("channel_create", later.a_uuid))
    assert _number(fresh) > _number(destroyed)


def test_a_client_further_behind_than_the_history_is_told_to_reset(simulator, daemon, http, sse):
    _history_for(daemon, 300, count=3)
    token = http.token(ACME)
    first = sse(f"/v2/accounts/{ACME}/events", token=token)
    call = place(simulator, daemon, ALICE)
    last = first.until(is_event("channel_create", call.a_uuid))
    first.close()
    for _ in range(3):  # a dozen events or more: past the three kept
        place(simulator, daemon, BOB)
    again = sse(f"/v2/accounts/{ACME}/events", token=token, headers={"Last-Event-ID": last["id"]})
    reset = again.next()
    assert reset is not None and reset["event"] == "reset"
    assert "no longer kept" in json.loads(reset["data"])["reason"]
    later = place(simulator, daemon, ALICE)  # then it goes on live
    again.until(is_event("channel_create", later.a_uuid))


@pytest.mark.parametrize("last_event_id", ["0badc0de.5", "garbage", "1.2.3"])
def test_an_id_from_another_process_or_malformed_is_a_reset(daemon, http, sse, last_event_id):
    stream = sse(f"/v2/accounts/{ACME}/events", token=http.token(ACME),
                 headers={"Last-Event-ID": last_event_id})
    assert stream.status == 200
    reset = stream.next()
    assert reset is not None and reset["event"] == "reset"
