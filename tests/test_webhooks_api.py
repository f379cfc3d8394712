"""The webhooks API as a hostile tenant uses it: every field attacked, ids forged, other tenants'
hooks probed, bounds pushed; and its answers match the OpenAPI document."""

from __future__ import annotations

import pytest
from test_api_openapi import response_schema, validator
from test_webhooks_delivery import hooks_daemon_config

from eslchan.api.openapi import document
from eslchan.demo import ACME, ACME_SALES, GLOBEX, demo_config

pytestmark = pytest.mark.timeout(90)

VALID = {"name": "CRM", "uri": "http://127.0.0.1:9/hook", "hook": "channel_create"}


@pytest.fixture
def daemon_config(simulator, keys, tmp_path):
    return hooks_daemon_config(
        simulator, keys, tmp_path / "webhooks", max_hooks_per_account=3, custom_data_max_bytes=200
    )


def base(account: str = ACME) -> str:
    return f"/v2/accounts/{account}/webhooks"


def create(http, data, account: str = ACME, as_account: str | None = None):
    return http.request("PUT", base(account), {"data": data}, token=http.token(as_account or account))


def errors(resp) -> dict:
    assert resp.status == 400, (resp.status, resp.body[:300])
    assert resp.json["status"] == "error" and resp.json["message"] == "validation error"
    return resp.json["data"]


def test_create_read_list_replace_delete(http):
    resp = create(http, {**VALID, "custom_data": {"crm": "7"}, "id": "f" * 32, "secret": "whsec_mine"})
    assert resp.status == 201, resp.json
    hook = resp.json["data"]
    assert hook["id"] != "f" * 32 and hook["secret"] != "whsec_mine"  # eslchan's, never the tenant's
    assert resp.headers["location"] == f"{base()}/{hook['id']}"
    assert hook | {"secret": None} == hook | {
        "name": "CRM", "uri": VALID["uri"], "hook": "channel_create", "http_verb": "post", "retries": 2,
        "custom_data": {"crm": "7"}, "enabled": True, "include_subaccounts": False, "disable_reason": None,
        "failures": 0, "pending": 0, "dropped": 0, "secret": None,
    }  # fmt: skip
    token = http.token(ACME)
    listed = http.get(base(), token=token).json["data"]
    assert [h["id"] for h in listed] == [hook["id"]] and "secret" not in listed[0]
    one = f"{base()}/{hook['id']}"
    replaced = http.request(
        "POST", one, {"data": {**VALID, "name": "CRM 2", "http_verb": "get"}}, token=token
    )
    assert replaced.status == 200, replaced.json
    assert replaced.json["data"]["name"] == "CRM 2" and replaced.json["data"]["custom_data"] == {}
    back = http.get(one, token=token).json["data"]  # what a client read, sent back, is accepted
    assert http.request("POST", one, {"data": back}, token=token).status == 200
    patched = http.request("PATCH", one, {"data": {"retries": 4}}, token=token).json["data"]
    assert patched["retries"] == 4 and patched["name"] == "CRM 2"
    assert http.request("DELETE", one, token=token).status == 200
    assert http.get(one, token=token).status == 404
    assert http.get(base(), token=token).json["data"] == []


@pytest.mark.parametrize(
    ("data", "path", "keyword"),
    [
        ({"uri": VALID["uri"], "hook": "all"}, "data.name", "required"),
        ({**VALID, "name": ""}, "data.name", "minLength"),
        ({**VALID, "name": "x" * 129}, "data.name", "maxLength"),
        ({**VALID, "name": 7}, "data.name", "type"),
        ({**VALID, "name": "a\nb"}, "data.name", "pattern"),
        ({**VALID, "name": "crm\n"}, "data.name", "pattern"),
        ({**VALID, "name": "evil\u202egnp.exe"}, "data.name", "pattern"),  # right-to-left override
        ({**VALID, "name": "zero\u200bwidth"}, "data.name", "pattern"),
        ({**VALID, "name": "   "}, "data.name", "pattern"),
        ({**VALID, "name": "\x1b[31mred"}, "data.name", "pattern"),
        ({"name": "x", "hook": "all"}, "data.uri", "required"),
        ({**VALID, "uri": ["http://a"]}, "data.uri", "type"),
        ({**VALID, "uri": ""}, "data.uri", "minLength"),
        ({**VALID, "hook": "channel_hangup"}, "data.hook", "enum"),
        ({**VALID, "hook": "ALL"}, "data.hook", "enum"),
        ({**VALID, "hook": "*"}, "data.hook", "enum"),
        ({"name": "x", "uri": VALID["uri"]}, "data.hook", "required"),
        ({**VALID, "http_verb": "put"}, "data.http_verb", "enum"),
        ({**VALID, "http_verb": "POST"}, "data.http_verb", "enum"),
        ({**VALID, "http_verb": "delete"}, "data.http_verb", "enum"),
        ({**VALID, "http_verb": "get\r\nX: y"}, "data.http_verb", "enum"),
        ({**VALID, "retries": -1}, "data.retries", "minimum"),
        ({**VALID, "retries": 5}, "data.retries", "maximum"),
        ({**VALID, "retries": 10**30}, "data.retries", "maximum"),
        ({**VALID, "retries": "2"}, "data.retries", "type"),
        ({**VALID, "retries": True}, "data.retries", "type"),
        ({**VALID, "retries": 2.5}, "data.retries", "type"),
        ({**VALID, "enabled": "yes"}, "data.enabled", "type"),
        ({**VALID, "include_subaccounts": 1}, "data.include_subaccounts", "type"),
        ({**VALID, "custom_data": "x"}, "data.custom_data", "type"),
        ({**VALID, "custom_data": ["x"]}, "data.custom_data", "type"),
        ({**VALID, "custom_data": {"n": 1}}, "data.custom_data.n", "type"),
        ({**VALID, "custom_data": {"n": {"deep": "x"}}}, "data.custom_data.n", "type"),
        ({**VALID, "custom_data": {"n": None}}, "data.custom_data.n", "type"),
        ({**VALID, "custom_data": {"n": "v" * 1025}}, "data.custom_data.n", "maxLength"),
        ({**VALID, "custom_data": {f"k{i}": "v" for i in range(33)}}, "data.custom_data", "maxProperties"),
        ({**VALID, "custom_data": {"k": "v" * 150, "l": "v" * 150}}, "data.custom_data", "maxSize"),
        ({**VALID, "custom_data": {"a[b]": "v"}}, "data.custom_data.a[b]", "propertyNames"),
        ({**VALID, "custom_data": {"k\n": "v"}}, "data.custom_data.k\n", "propertyNames"),
        ({**VALID, "custom_data": {"": "v"}}, "data.custom_data.", "propertyNames"),
        ({**VALID, "format": "form-data"}, "data.format", "additionalProperties"),
        ({**VALID, "modifiers": {"type": "user"}}, "data.modifiers", "additionalProperties"),
        ({**VALID, "rotate_secret": "yes"}, "data.rotate_secret", "type"),
    ],
)
def test_every_field_is_checked(http, daemon, data, path, keyword):
    detail = errors(create(http, data))
    assert keyword in detail[path], detail
    assert daemon.webhooks.hooks_of(ACME) == []  # nothing stored


def test_bodies_that_are_not_a_hook(http, daemon):
    token = http.token(ACME)
    for raw in (b"", b"[]", b'{"data": []}', b'{"data": "x"}', b"{", b'{"data": {"name": "\\ud800"}}'):
        resp = http.request("PUT", base(), raw=raw, token=token, headers={"Content-Type": "application/json"})
        assert resp.status == 400, raw
    assert daemon.webhooks.hooks_of(ACME) == []


def test_hook_ids_are_checked_and_other_tenants_hooks_are_not_there(http):
    acme = create(http, VALID).json["data"]["id"]
    sales = create(http, VALID, ACME_SALES).json["data"]["id"]
    globex = create(http, VALID, GLOBEX).json["data"]["id"]
    token = http.token(ACME)
    for bad in ("x", "F" * 32, "f" * 33, "f" * 31 + "%0a", "%20" + "f" * 32, "f" * 32 + "%00"):
        resp = http.get(f"{base()}/{bad}", token=token)
        assert resp.status == 400 and "webhook_id" in resp.json["data"], bad
    resp = http.get(f"{base()}/..%2f{acme}", token=token)  # a decoded slash is another path
    assert resp.status == 404 and resp.json["message"] == "faulty request"
    # another account's hook under one's own account: the same 404 as an unknown id
    for other in (sales, globex, "0" * 32):
        for method in ("GET", "POST", "PATCH", "DELETE"):
            body = {"data": {"enabled": False}} if method in ("POST", "PATCH") else None
            resp = http.request(method, f"{base()}/{other}", body, token=token)
            assert resp.status == 404 and resp.json["data"] == [other], (other, method)
        assert http.get(f"{base()}/{other}/attempts", token=token).status == 404
    # the parent reaches its sub-account's hooks through the sub-account's path
    assert http.get(f"{base(ACME_SALES)}/{sales}", token=token).status == 200
    # the sub-account and the other tenant do not reach up or across
    for account, as_account in ((ACME, ACME_SALES), (ACME, GLOBEX), (GLOBEX, ACME)):
        resp = http.get(
            f"{base(account)}/{acme if account == ACME else globex}", token=http.token(as_account)
        )
        assert resp.status == 403
        assert create(http, VALID, account, as_account).status == 403
    assert http.get(base(), token=None).status == 401
    assert http.get("/v2/accounts/not-an-account/webhooks", token=token).status == 400


def test_an_account_has_a_bounded_number_of_hooks(http):
    for _ in range(3):
        assert create(http, VALID).status == 201
    detail = errors(create(http, VALID))
    assert detail["webhooks"]["maxItems"]["target"] == 3
    assert create(http, VALID, ACME_SALES).status == 201  # the bound is per account


def test_patch_checks_what_it_changes_and_keeps_the_rest(http):
    hook = create(http, VALID).json["data"]
    one, token = f"{base()}/{hook['id']}", http.token(ACME)
    for bad in ({"uri": "http://10.0.0.1/"}, {"hook": "nope"}, {"name": ""}, {"custom_data": {"x": 1}}):
        assert http.request("PATCH", one, {"data": bad}, token=token).status == 400, bad
    assert http.get(one, token=token).json["data"]["uri"] == VALID["uri"]
    # POST replaces the whole hook: required fields are required
    assert "data.uri" in errors(
        http.request("POST", one, {"data": {"name": "x", "hook": "all"}}, token=token)
    )


def test_answers_match_the_openapi_document(http):
    doc = document()
    token = http.token(ACME)
    created = create(http, {**VALID, "custom_data": {"a": "b"}})
    hook_id = created.json["data"]["id"]
    one = f"{base()}/{hook_id}"
    hooks, one_path = "/v2/accounts/{account_id}/webhooks", "/v2/accounts/{account_id}/webhooks/{webhook_id}"
    rotate = {"data": {"rotate_secret": True}}
    cases = [
        (hooks, "put", created),
        (hooks, "put", create(http, {"name": "x"})),
        (hooks, "get", http.get(base(), token=token)),
        (one_path, "get", http.get(one, token=token)),
        (one_path, "get", http.get(f"{base()}/{'0' * 32}", token=token)),
        (one_path, "patch", http.request("PATCH", one, rotate, token=token)),
        (one_path, "post", http.request("POST", one, {"data": VALID}, token=token)),
        (one_path + "/attempts", "get", http.get(f"{one}/attempts", token=token)),
        (one_path, "delete", http.request("DELETE", one, token=token)),
    ]
    for path, method, resp in cases:
        pointer = response_schema(doc, path, method, resp.status)
        problems = [e.message for e in validator(doc, pointer).iter_errors(resp.json)]
        assert not problems, (path, method, resp.status, problems)


def test_without_a_webhooks_table_the_endpoints_say_so(simulator, keys):
    from conftest import HttpClient

    from eslchan.daemon import Daemon

    daemon = Daemon(
        demo_config([("fs1", simulator.host, simulator.port, "ClueCon")], keys, listen="127.0.0.1:0")
    )
    daemon.start()
    try:
        http = HttpClient(*daemon.http_address, keys)
        resp = create(http, VALID)
        assert resp.status == 404 and "not enabled" in resp.json["data"]["reason"]
        assert http.get(base(), token=None).status == 401  # still authenticated first
    finally:
        daemon.stop(drain_seconds=0.5)
