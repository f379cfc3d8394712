"""The REST app in-process (Flask's test client) over a registry fed real FreeSWITCH events.

Covers the envelope, auth, tenancy and the input checks that answer before any command is
built; the HTTP tests against the daemon on the simulator cover the rest end to end.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import pytest
from itsdangerous import TimestampSigner, URLSafeTimedSerializer

from eslchan.api import create_app
from eslchan.api.auth import TOKEN_SALT, TokenService
from eslchan.config import hash_api_key
from eslchan.demo import ACME, ACME_SALES, ADMIN, GLOBEX, demo_config
from eslchan.esl.parser import FrameParser, decode_event
from eslchan.registry import ChannelRegistry

pytestmark = pytest.mark.timeout(60)

KEYS = {
    ADMIN: "admin-key-0123456789abcdef",
    ACME: "acme-key-0123456789abcdef",
    ACME_SALES: "sales-key-0123456789abcdef",
    GLOBEX: "globex-key-0123456789abcdef",
}
#: In 05_bridge, user1/dev1 place one bridged call (two legs) and user2/dev2 another.
ACCOUNT_OF_OWNER = {"user1": ACME, "user2": GLOBEX}


def bridge_events(captures_dir: Path) -> list[dict[str, str]]:
    """The events of the recorded bridge scenario, up to (not including) the first hangup."""
    parser = FrameParser()
    raw = (captures_dir / "05_bridge.c1.recv").read_bytes()
    events = []
    for frame in parser.feed(raw):
        if not frame.is_event:
            continue
        event = decode_event(frame)
        if event.get("Event-Name") == "CHANNEL_HANGUP":
            break
        owner = event.get("variable_eslchan_owner_id")
        if owner in ACCOUNT_OF_OWNER:  # the capture's account names become configured account ids
            event["variable_eslchan_account_id"] = ACCOUNT_OF_OWNER[owner]
        events.append(event)
    return events


@pytest.fixture
def config():
    return demo_config([], KEYS, system_wide=True)


@pytest.fixture
def registry(captures_dir, config):
    reg = ChannelRegistry(config.channels.mapping)
    for event in bridge_events(captures_dir):
        reg.apply("fs1", event)
    assert len(reg) == 4
    return reg


@pytest.fixture
def app(config, registry):
    return create_app(config, registry, {}, None)


@pytest.fixture
def client(app):
    return app.test_client()


def token(client, account_id: str) -> str:
    resp = client.put("/v2/api_auth", json={"data": {"api_key": KEYS[account_id]}})
    assert resp.status_code == 201, resp.json
    return resp.json["auth_token"]


def auth(client, account_id: str) -> dict[str, str]:
    return {"X-Auth-Token": token(client, account_id)}


def uuids_of(registry, account_id: str) -> set[str]:
    return {ch.uuid for ch in registry.for_account(account_id)}


def assert_envelope(body: dict, status: str) -> None:
    for key in ("auth_token", "data", "request_id", "revision", "status", "timestamp", "node", "version"):
        assert key in body, key
    assert body["status"] == status


# --- auth ----------------------------------------------------------------------------------


def test_api_key_gives_a_token_in_the_envelope(client):
    resp = client.put("/v2/api_auth", json={"data": {"api_key": KEYS[ACME]}})
    assert resp.status_code == 201
    body = resp.json
    assert_envelope(body, "success")
    assert body["data"]["account_id"] == ACME
    assert body["auth_token"]
    # the token works as X-Auth-Token and as a bearer token
    path = f"/v2/accounts/{ACME}/channels"
    assert client.get(path, headers={"X-Auth-Token": body["auth_token"]}).status_code == 200
    assert client.get(path, headers={"Authorization": f"Bearer {body['auth_token']}"}).status_code == 200


def test_wrong_missing_or_malformed_api_key(client):
    resp = client.put("/v2/api_auth", json={"data": {"api_key": "not-a-key-of-anyone"}})
    assert resp.status_code == 401
    assert resp.json["message"] == "invalid_credentials"
    assert resp.json["error"] == "401"
    resp = client.put("/v2/api_auth", json={"data": {}})
    assert resp.status_code == 400
    assert resp.json["data"] == {"data.api_key": {"required": {"message": "Field is required but missing"}}}
    resp = client.put("/v2/api_auth", json={"data": {"api_key": 42}})
    assert resp.status_code == 400
    assert "type" in resp.json["data"]["data.api_key"]


def test_no_bad_or_forged_token_is_401(client, config):
    path = f"/v2/accounts/{ACME}/channels"
    assert client.get(path).status_code == 401
    assert client.get(path, headers={"X-Auth-Token": "garbage"}).status_code == 401
    real = token(client, ACME)
    tampered = real[:-2] + ("AA" if real[-2:] != "AA" else "BB")
    resp = client.get(path, headers={"X-Auth-Token": tampered})
    assert resp.status_code == 401
    assert resp.json["message"] == "invalid_credentials"
    # signed with another key: another deployment's token means nothing here
    other = URLSafeTimedSerializer("another-signing-key-0123456789", salt=TOKEN_SALT)
    forged = other.dumps({"account_id": ADMIN})
    assert client.get(path, headers={"X-Auth-Token": forged}).status_code == 401


def test_expired_token_is_401(client, config):
    class Yesterday(TimestampSigner):
        def get_timestamp(self) -> int:
            return int(time.time() - config.auth.token_ttl - 60)

    payload = {"account_id": ACME, "key": TokenService._key_tag(config.account(ACME))}
    path = f"/v2/accounts/{ACME}/channels"
    fresh = URLSafeTimedSerializer(config.auth.signing_key, salt=TOKEN_SALT).dumps(payload)
    assert client.get(path, headers={"X-Auth-Token": fresh}).status_code == 200  # only the age differs
    old = URLSafeTimedSerializer(config.auth.signing_key, salt=TOKEN_SALT, signer=Yesterday)
    resp = client.get(path, headers={"X-Auth-Token": old.dumps(payload)})
    assert resp.status_code == 401
    assert resp.json["message"] == "invalid_credentials"


def test_tokens_are_stateless_across_replicas(config, registry):
    """A second app with the same configuration (another replica, or a restart) accepts the token."""
    one = create_app(config, registry, {}, None).test_client()
    two = create_app(config, registry, {}, None).test_client()
    tok = token(one, ACME)
    assert two.get(f"/v2/accounts/{ACME}/channels", headers={"X-Auth-Token": tok}).status_code == 200


def test_failed_auth_is_rate_limited_per_client_address(config, registry):
    cfg = replace(config, auth=replace(config.auth, failed_auth_per_minute=3))
    client = create_app(cfg, registry, {}, None).test_client()
    attacker = {"REMOTE_ADDR": "192.0.2.66"}
    for _ in range(3):
        resp = client.put(
            "/v2/api_auth", json={"data": {"api_key": "guess-0123456789abcdef"}}, environ_base=attacker
        )
        assert resp.status_code == 401
    resp = client.put(
        "/v2/api_auth", json={"data": {"api_key": "guess-0123456789abcdeg"}}, environ_base=attacker
    )
    assert resp.status_code == 429  # a wrong key, once the address is limited
    assert int(resp.headers["Retry-After"]) >= 1
    assert resp.json["message"] == "too many requests"
    # the right key still gets its token: the address may be a NAT shared with a broken client
    resp = client.put("/v2/api_auth", json={"data": {"api_key": KEYS[ACME]}}, environ_base=attacker)
    assert resp.status_code == 201
    # a bad token on an ordinary request is a 401, not a login attempt
    resp = client.get(f"/v2/accounts/{ACME}/channels", headers={"X-Auth-Token": "x"}, environ_base=attacker)
    assert resp.status_code == 401
    # another address is not affected
    resp = client.put(
        "/v2/api_auth", json={"data": {"api_key": KEYS[ACME]}}, environ_base={"REMOTE_ADDR": "192.0.2.7"}
    )
    assert resp.status_code == 201


def test_a_new_api_key_revokes_the_old_keys_tokens(app, client, config):
    tok = token(client, ACME)
    path = f"/v2/accounts/{ACME}/channels"
    rotated = tuple(
        replace(a, api_key_hash=hash_api_key("acme-new-key-0123456789")) if a.id == ACME else a
        for a in config.accounts
    )
    app.config["ESLCHAN"] = replace(config, accounts=rotated)
    assert client.get(path, headers={"X-Auth-Token": tok}).status_code == 401
    fresh = client.put("/v2/api_auth", json={"data": {"api_key": "acme-new-key-0123456789"}}).json[
        "auth_token"
    ]
    assert client.get(path, headers={"X-Auth-Token": fresh}).status_code == 200


def test_reloaded_accounts_take_effect(app, client, config):
    """The daemon's SIGHUP swaps the configuration; a removed account's token stops working."""
    tok = token(client, GLOBEX)
    path = f"/v2/accounts/{GLOBEX}/channels"
    assert client.get(path, headers={"X-Auth-Token": tok}).status_code == 200
    app.config["ESLCHAN"] = replace(config, accounts=tuple(a for a in config.accounts if a.id != GLOBEX))
    assert client.get(path, headers={"X-Auth-Token": tok}).status_code == 401
    resp = client.put("/v2/api_auth", json={"data": {"api_key": KEYS[GLOBEX]}})
    assert resp.status_code == 401


# --- listings and tenancy ------------------------------------------------------------------


def test_account_listing_has_only_that_accounts_channels(client, registry):
    resp = client.get(f"/v2/accounts/{ACME}/channels", headers=auth(client, ACME))
    assert resp.status_code == 200
    assert_envelope(resp.json, "success")
    rows = resp.json["data"]
    assert {r["uuid"] for r in rows} == uuids_of(registry, ACME)
    assert len(rows) == 2
    for row in rows:
        assert row["owner_id"] == "user1"
        assert row["node"] == "fs1"
        assert row["answered"] is True
        assert "account_id" not in row  # used for access control, not printed
        assert row["timestamp"] > 63_000_000_000  # Gregorian seconds


def test_user_and_device_listings(client, registry):
    hdrs = auth(client, ACME)
    users = client.get(f"/v2/accounts/{ACME}/users/user1/channels", headers=hdrs)
    assert users.status_code == 200
    assert {r["uuid"] for r in users.json["data"]} == uuids_of(registry, ACME)
    devices = client.get(f"/v2/accounts/{ACME}/devices/dev1/channels", headers=hdrs)
    assert {r["uuid"] for r in devices.json["data"]} == uuids_of(registry, ACME)
    # user2 and dev2 are Globex's: under Acme they have no channels
    assert client.get(f"/v2/accounts/{ACME}/users/user2/channels", headers=hdrs).json["data"] == []
    assert client.get(f"/v2/accounts/{ACME}/devices/dev2/channels", headers=hdrs).json["data"] == []


def test_tenants_cannot_see_each_other(client, registry):
    acme, globex = auth(client, ACME), auth(client, GLOBEX)
    assert client.get(f"/v2/accounts/{GLOBEX}/channels", headers=acme).status_code == 403
    assert client.get(f"/v2/accounts/{ACME}/channels", headers=globex).status_code == 403
    resp = client.get(f"/v2/accounts/{GLOBEX}/users/user2/channels", headers=acme)
    assert resp.status_code == 403
    assert resp.json["message"] == "forbidden"


def test_parent_and_admin_reach_descendants_but_not_upwards(client):
    acme = auth(client, ACME)
    sales = auth(client, ACME_SALES)
    admin = auth(client, ADMIN)
    assert client.get(f"/v2/accounts/{ACME_SALES}/channels", headers=acme).status_code == 200
    assert client.get(f"/v2/accounts/{ACME}/channels", headers=sales).status_code == 403
    for account in (ACME, ACME_SALES, GLOBEX, ADMIN):
        assert client.get(f"/v2/accounts/{account}/channels", headers=admin).status_code == 200


def test_foreign_channel_is_bad_identifier_exactly_like_an_unknown_one(client, registry):
    hdrs = auth(client, ACME)
    foreign = sorted(uuids_of(registry, GLOBEX))[0]
    unknown = "00000000-0000-4000-8000-000000000000"
    answers = {}
    for uuid in (foreign, unknown):
        for method in ("GET", "POST", "PUT"):
            body = {"data": {"action": "hangup"}} if method == "POST" else {"data": {"module": "hangup"}}
            resp = client.open(
                f"/v2/accounts/{ACME}/channels/{uuid}",
                method=method,
                headers=hdrs,
                json=None if method == "GET" else body,
            )
            assert resp.status_code == 404, (method, resp.json)
            assert resp.json["message"] == "bad identifier"
            assert resp.json["data"] == [uuid]
            answers[(uuid, method)] = {
                k: v for k, v in resp.json.items() if k not in ("data", "request_id", "revision", "timestamp")
            }
    for method in ("GET", "POST", "PUT"):
        assert answers[(foreign, method)] == answers[(unknown, method)]


def test_channel_details(client, registry):
    ch = registry.for_account(ACME)[0]
    resp = client.get(f"/v2/accounts/{ACME}/channels/{ch.uuid.upper()}", headers=auth(client, ACME))
    assert resp.status_code == 200
    detail = resp.json["data"]
    assert detail["uuid"] == detail["call_id"] == ch.uuid
    assert detail["state"] == ch.state
    assert detail["custom_channel_vars"]["owner_id"] == "user1"  # prefix stripped, as Kazoo does


def test_system_wide_listing_rule(config, registry):
    on = create_app(config, registry, {}, None).test_client()
    resp = on.get("/v2/channels", headers=auth(on, ADMIN))
    assert resp.status_code == 200
    assert len(resp.json["data"]) == 4
    assert on.get("/v2/channels", headers=auth(on, ACME)).status_code == 403
    off_cfg = replace(config, channels=replace(config.channels, system_wide_channels_list=False))
    off = create_app(off_cfg, registry, {}, None).test_client()
    resp = off.get("/v2/channels", headers=auth(off, ADMIN))
    assert resp.status_code == 403
    assert resp.json["message"] == "forbidden"
    assert off.get("/v2/channels").status_code == 401


def test_listing_as_csv(client, registry):
    resp = client.get(f"/v2/accounts/{ACME}/channels", headers={**auth(client, ACME), "Accept": "text/csv"})
    assert resp.status_code == 200
    assert resp.mimetype == "text/csv"
    lines = resp.data.decode().strip().split("\r\n")
    header = lines[0].split(",")
    assert header[:3] == ["uuid", "answered", "direction"]
    assert len(lines) == 3
    rows = [dict(zip(header, line.split(","), strict=True)) for line in lines[1:]]
    assert {r["uuid"] for r in rows} == uuids_of(registry, ACME)
    assert {r["answered"] for r in rows} == {"true"}


def test_csv_by_query_parameter_and_json_by_default(client):
    hdrs = auth(client, ACME)
    resp = client.get(f"/v2/accounts/{ACME}/channels?accept=csv", headers=hdrs)
    assert resp.mimetype == "text/csv"
    assert resp.headers["Content-Disposition"].startswith("attachment")
    for accept in ("*/*", "application/json", "application/json, text/csv;q=0.5"):
        resp = client.get(f"/v2/accounts/{ACME}/channels", headers={**hdrs, "Accept": accept})
        assert resp.mimetype == "application/json", accept
    resp = client.get(
        f"/v2/accounts/{ACME}/channels", headers={**hdrs, "Accept": "text/csv, application/json;q=0.5"}
    )
    assert resp.mimetype == "text/csv"
    # errors stay in the JSON envelope whatever was asked for
    resp = client.get(f"/v2/accounts/{GLOBEX}/channels", headers={**hdrs, "Accept": "text/csv"})
    assert resp.status_code == 403
    assert resp.mimetype == "application/json"


def test_csv_keeps_caller_ids_from_becoming_formulas(client, registry):
    ch = registry.for_account(ACME)[0]
    ch.caller_id_name = '=HYPERLINK("http://evil")'
    resp = client.get(f"/v2/accounts/{ACME}/channels", headers={**auth(client, ACME), "Accept": "text/csv"})
    assert "'=HYPERLINK" in resp.data.decode()


# --- envelope ------------------------------------------------------------------------------


def test_request_id_echoed_or_generated(client):
    resp = client.get("/health", headers={"X-Request-ID": "crm-4711"})
    assert resp.headers["X-Request-ID"] == "crm-4711"
    assert resp.json["request_id"] == "crm-4711"
    resp = client.get("/health")
    assert resp.headers["X-Request-ID"] == resp.json["request_id"]
    assert len(resp.json["request_id"]) >= 16
    # something that is not a plain token is replaced, never echoed
    resp = client.get("/health", headers={"X-Request-ID": "a b<script>"})
    assert resp.json["request_id"] != "a b<script>"


def test_revision_and_if_none_match(client):
    hdrs = auth(client, ACME)
    path = f"/v2/accounts/{ACME}/users/nobody/channels"
    first = client.get(path, headers=hdrs)
    revision = first.json["revision"]
    assert first.headers["ETag"] == f'"{revision}"'
    again = client.get(path, headers={**hdrs, "If-None-Match": f'"{revision}"'})
    assert again.status_code == 304
    assert again.data == b""
    assert again.headers["ETag"] == f'"{revision}"'
    other = client.get(path, headers={**hdrs, "If-None-Match": '"something-else"'})
    assert other.status_code == 200


def test_browser_dashboards_on_other_origins_may_call(client):
    path = f"/v2/accounts/{ACME}/channels"
    pre = client.options(
        path,
        headers={
            "Origin": "https://dashboard.example",
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "X-Auth-Token",
        },
    )
    assert pre.status_code == 200
    assert pre.headers["Access-Control-Allow-Origin"] == "*"
    assert "GET" in pre.headers["Access-Control-Allow-Methods"]
    assert "X-Auth-Token" in pre.headers["Access-Control-Allow-Headers"]
    resp = client.get(path, headers={**auth(client, ACME), "Origin": "https://dashboard.example"})
    assert resp.headers["Access-Control-Allow-Origin"] == "*"
    assert "X-Request-ID" in resp.headers["Access-Control-Expose-Headers"]
    assert "Access-Control-Allow-Credentials" not in resp.headers


def test_unknown_path_and_wrong_method(client):
    resp = client.get("/v2/no/such/thing")
    assert resp.status_code == 404
    assert resp.json["message"] == "faulty request"
    assert resp.json["status"] == "error"
    resp = client.delete(f"/v2/accounts/{ACME}/channels")
    assert resp.status_code == 405
    assert "GET" in resp.headers["Allow"]
    assert_envelope(resp.json, "error")
    assert resp.json["error"] == "405"


def test_body_errors(client, registry):
    hdrs = auth(client, ACME)
    path = f"/v2/accounts/{ACME}/channels/{registry.for_account(ACME)[0].uuid}"
    resp = client.post(path, headers=hdrs, data=b'{"data": {"action": ')
    assert resp.status_code == 400
    assert set(resp.json["data"]) == {"json"}
    assert "invalid" in resp.json["data"]["json"]
    assert resp.json["data"]["json"]["invalid"]["message"]
    for not_an_object in (b"[1, 2]", b'"hangup"', b"42", b"null"):
        resp = client.post(path, headers=hdrs, data=not_an_object)
        assert resp.status_code == 400, not_an_object
        assert "json" in resp.json["data"]
    resp = client.post(path, headers=hdrs, data=b"\xff\xfe")
    assert resp.status_code == 400
    resp = client.post(path, headers=hdrs, data=b"[" * 50_000)
    assert resp.status_code == 400
    resp = client.post(path, headers=hdrs, json={"data": {"target": "2600"}})
    assert resp.status_code == 400
    assert resp.json["message"] == "validation error"
    assert resp.json["data"] == {"data.action": {"required": {"message": "Field is required but missing"}}}
    resp = client.put(path, headers=hdrs, json={"action": "dance", "data": {"module": "hangup"}})
    assert resp.status_code == 400
    assert "action" in resp.json["data"]


def test_oversized_body_is_413(client, config, registry):
    hdrs = auth(client, ACME)
    path = f"/v2/accounts/{ACME}/channels/{registry.for_account(ACME)[0].uuid}"
    big = b'{"data": {"action": "hangup", "pad": "' + b"x" * config.http.max_body_bytes + b'"}}'
    resp = client.post(path, headers={**hdrs, "Content-Type": "application/json"}, data=big)
    assert resp.status_code == 413
    assert_envelope(resp.json, "error")


def test_malformed_ids_are_400(client):
    hdrs = auth(client, ACME)
    resp = client.get(f"/v2/accounts/{ACME}/channels/not-a-uuid", headers=hdrs)
    assert resp.status_code == 400
    assert "uuid" in resp.json["data"]
    resp = client.post(
        f"/v2/accounts/{ACME}/channels/1234%0Aapi%20system", headers=hdrs, json={"data": {"action": "hangup"}}
    )
    assert resp.status_code == 400
    resp = client.get("/v2/accounts/ACME/channels", headers=hdrs)
    assert resp.status_code == 400
    assert "account_id" in resp.json["data"]
    resp = client.get(f"/v2/accounts/{ACME}%0A/channels", headers=auth(client, ADMIN))
    assert resp.status_code == 400
    resp = client.get(f"/v2/accounts/{ACME}/users/user1%0A/channels", headers=hdrs)
    assert resp.status_code == 400


# --- system --------------------------------------------------------------------------------


def test_health_without_nodes_is_503(client):
    resp = client.get("/health")
    assert resp.status_code == 503
    assert resp.json["data"] == {"status": "unavailable", "nodes": {}}  # no details without a token
    resp = client.get("/health", headers=auth(client, ADMIN))
    assert resp.status_code == 503
    assert resp.json["data"]["nodes_up"] == 0
    assert resp.json["data"]["channels"] == 4


def test_metrics_text(client):
    client.get(f"/v2/accounts/{ACME}/channels", headers=auth(client, ACME))
    client.get("/v2/nowhere")
    resp = client.get("/metrics")
    assert resp.status_code == 200
    assert resp.mimetype == "text/plain"
    text = resp.data.decode()
    assert 'eslchan_channels{node="fs1"} 4.0' in text
    assert (
        'eslchan_api_requests_total{method="GET",route="/v2/accounts/<account_id>/channels",status="200"} 1.0'
    ) in text
    assert 'route="(unmatched)",status="404"' in text


def test_made_up_methods_do_not_grow_the_metrics_without_bound(client):
    for i in range(20):
        resp = client.open(f"/v2/accounts/{ACME}/channels", method=f"BREW{i}")
        assert resp.status_code == 405
        assert_envelope(resp.json, "error")
    text = client.get("/metrics").data.decode()
    assert "BREW" not in text
    assert (
        'eslchan_api_requests_total{method="other",route="(unmatched)",status="405"} 20.0'
    ) in text


def test_each_app_counts_its_own_requests(config, registry):
    one = create_app(config, registry, {}, None).test_client()
    two = create_app(config, registry, {}, None).test_client()
    one.get("/v2/nowhere")
    assert 'status="404"' in one.get("/metrics").data.decode()
    assert 'status="404"' not in two.get("/metrics").data.decode()
