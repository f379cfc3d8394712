"""The rest of Kazoo's webhooks API, as Monster UI's webhooks app and scripts use it: the hooks
offered, sample payloads, an account's attempts across its hooks and the bulk re-enable of
auto-disabled hooks; against real receivers, as hostile tenants, and checked against the
OpenAPI document."""

from __future__ import annotations

import json

import pytest
from conftest import eventually
from test_api_openapi import response_schema, validator
from test_webhooks_delivery import attempts, calls, create_hook, delivered, hook_state, hooks_daemon_config
from webhook_receiver import Receiver

import schemas
from eslchan.api.openapi import document
from eslchan.demo import ACME, ACME_SALES, ADMIN, GLOBEX, PARTIES

pytestmark = pytest.mark.timeout(90)

OFFERED = ["channel_create", "channel_answer", "channel_bridge", "channel_destroy", "all"]
SAMPLES = ["webhooks_channel_create", "webhooks_channel_answer", "webhooks_channel_bridge",
           "webhooks_channel_destroy"]  # fmt: skip
RE_ENABLE = {"data": {"re-enable": True}}
#: the payload fields that say whose call it is
IDENTITY = (
    "call_id", "other_leg_call_id", "account_id", "owner_id", "authorizing_id", "caller_id_name",
    "caller_id_number", "callee_id_name", "callee_id_number", "node", "other_leg_destination_number",
)  # fmt: skip


@pytest.fixture
def daemon_config(simulator, keys, tmp_path):
    # one failed delivery disables a hook; few attempts kept, so the bound shows
    return hooks_daemon_config(simulator, keys, tmp_path / "webhooks", disable_after=1, attempts_kept=4)


@pytest.fixture
def receiver():
    r = Receiver().start()
    yield r
    r.stop()


def re_enable(
    http, account: str, as_account: str | None = None, *, descendants: bool = False, body=RE_ENABLE
):
    path = f"/v2/accounts/{account}/{'descendants/' if descendants else ''}webhooks"
    return http.request("PATCH", path, body, token=http.token(as_account or account))


def broken_hook(http, simulator, daemon, account: str, receiver: Receiver, name: str) -> dict:
    """A hook of ``account`` that eslchan disabled: its receiver failed the one delivery it had."""
    receiver.status = 503
    hook = create_hook(http, account, name=name, uri=receiver.url(), hook="channel_create", retries=0)
    calls(simulator, daemon, 1, account)
    eventually(lambda: hook_state(http, account, hook["id"])["disable_reason"], timeout=10)
    return hook


def leaves(value) -> list:
    if isinstance(value, dict):
        return [leaf for v in value.values() for leaf in leaves(v)]
    return [value]


# --- the hooks offered and their samples ---------------------------------------------------


def test_the_hooks_offered_are_those_a_hook_may_name(http):
    for account in (ACME_SALES, GLOBEX, ADMIN):  # any valid token
        resp = http.get("/v2/webhooks", token=http.token(account))
        assert resp.status == 200, resp.json
        offered = resp.json["data"]
        assert [h["id"] for h in offered] == OFFERED
        assert all(h["name"] == h["id"] and h["description"].strip() for h in offered)
    # what a tenant may ask for (the schema) is what the service fires on (the list offered)
    assert schemas.load("webhooks")["properties"]["hook"]["enum"] == OFFERED
    for name in OFFERED:  # each one listed is accepted by a hook ...
        assert create_hook(http, ACME, name=name, uri="http://127.0.0.1:9/", hook=name)["hook"] == name
    resp = http.request(  # ... and one not listed is not
        "PUT", f"/v2/accounts/{ACME}/webhooks",
        {"data": {"name": "x", "uri": "http://127.0.0.1:9/", "hook": "object"}}, token=http.token(ACME),
    )  # fmt: skip
    assert resp.status == 400 and "data.hook" in resp.json["data"]
    for path in ("/v2/webhooks", "/v2/webhooks/samples", f"/v2/webhooks/samples/{SAMPLES[0]}"):
        assert http.get(path, token=None).status == 401
        assert http.get(path, token="not-a-token").status == 401


def test_samples_are_what_a_receiver_gets_without_anyones_data(daemon, http, simulator, receiver):
    hook = create_hook(http, ACME, name="CRM", uri=receiver.url(), hook="all")
    receiver.secret = hook["secret"]
    call = simulator.create_call(account_id=ACME, user_id="e" * 32, device_id="d" * 32)
    eventually(lambda: (ch := daemon.registry.find(call.a_uuid)) is not None and ch.other_leg)
    simulator.hangup(call.a_uuid)
    eventually(lambda: {"channel_destroy", "channel_bridge"} <= {e for e, _ in delivered(receiver)})
    real = {}
    for got in receiver.accepted:
        if got.payload["call_id"] == call.a_uuid:
            real[got.payload["hook_event"]] = got.payload
    assert set(real) == {"channel_create", "channel_answer", "channel_bridge", "channel_destroy"}

    token = http.token(GLOBEX)  # any tenant reads the samples
    listed = http.get("/v2/webhooks/samples", token=token)
    assert listed.status == 200 and listed.json["data"] == SAMPLES
    tenant_data = {acc.id for acc in daemon.config.accounts} | {"fs1", call.a_uuid, call.b_uuid}
    tenant_data |= {v for p in PARTIES for v in (p.user_id, p.device_id, p.name, p.number)}
    tenant_data |= {v for payload in real.values() for k in IDENTITY if (v := payload.get(k))}
    for sample_id in SAMPLES:
        resp = http.get(f"/v2/webhooks/samples/{sample_id}", token=token)
        assert resp.status == 200, resp.json
        (sample,) = resp.json["data"]
        event = sample_id.removeprefix("webhooks_")
        assert sample["hook_event"] == event
        assert set(sample) == set(real[event]), event  # the fields a delivery has, no more, no less
        assert not tenant_data & set(leaves(sample)), event
        assert all(sample[k] for k in ("call_id", "account_id", "caller_id_number", "node"))
    again = http.get(f"/v2/webhooks/samples/{SAMPLES[-1]}", token=http.token(ACME))
    assert again.json["data"] == resp.json["data"] and again.json["revision"] == resp.json["revision"]


@pytest.mark.parametrize(
    "sample_id",
    ["webhooks_all", "webhooks_object", "webhooks_parking", "channel_create", "webhooks_",
     "WEBHOOKS_CHANNEL_CREATE", "webhooks_channel_create%00", "webhooks_channel_create%0a", "x" * 300],
)  # fmt: skip
def test_an_unknown_sample_is_404(http, sample_id):
    resp = http.get(f"/v2/webhooks/samples/{sample_id}", token=http.token(ACME))
    assert resp.status == 404 and resp.json["message"] == "bad identifier", resp.json
    assert len(resp.json["data"][0]) <= 64


# --- an account's attempts -----------------------------------------------------------------


def test_an_accounts_attempts_span_its_hooks_newest_first_and_bounded(daemon, http, simulator, receiver):
    down = Receiver().start()
    try:
        down.status = 503
        ok = create_hook(http, ACME, name="ok", uri=receiver.url(), hook="channel_create")
        failing = create_hook(http, ACME, name="down", uri=down.url(), hook="channel_create", retries=2)
        sales = create_hook(http, ACME_SALES, name="sales", uri=receiver.url(), hook="channel_create")
        globex = create_hook(http, GLOBEX, name="globex", uri=receiver.url(), hook="channel_create")
        calls(simulator, daemon, 3, ACME)
        calls(simulator, daemon, 1, ACME_SALES)
        calls(simulator, daemon, 1, GLOBEX)
        eventually(lambda: len(receiver.accepted) == 5 and len(down.got) == 3, timeout=10)
        eventually(lambda: hook_state(http, ACME, failing["id"])["disable_reason"])
        token = http.token(ACME)
        resp = http.get(f"/v2/accounts/{ACME}/webhooks/attempts", token=token)
        assert resp.status == 200, resp.json
        log = resp.json["data"]
        assert len(log) == 4  # six attempts were made; attempts_kept bounds the answer
        assert {a["hook_id"] for a in log} == {ok["id"], failing["id"]}  # never a sub-account's
        stamps = [a["time"] for a in log]
        assert stamps == sorted(stamps, reverse=True)
        for entry in log:  # each is its hook's own attempt, as the hook's listing has it
            assert entry in attempts(http, ACME, entry["hook_id"])
        # the parent reads its sub-account's; nobody reads up or across
        below = http.get(f"/v2/accounts/{ACME_SALES}/webhooks/attempts", token=token).json["data"]
        assert [a["hook_id"] for a in below] == [sales["id"]]
        for account, as_account in ((ACME, ACME_SALES), (ACME, GLOBEX), (GLOBEX, ACME)):
            path = f"/v2/accounts/{account}/webhooks/attempts"
            resp = http.get(path, token=http.token(as_account))
            assert resp.status == 403 and globex["id"] not in resp.body.decode()
        assert http.get(f"/v2/accounts/{ACME}/webhooks/attempts", token=None).status == 401
        assert http.get("/v2/accounts/not-an-account/webhooks/attempts", token=token).status == 400
        # an account without hooks has no attempts, rather than someone else's
        create_hook(http, ADMIN, name="admin", uri=receiver.url(), hook="channel_create", enabled=False)
        assert http.get(f"/v2/accounts/{ADMIN}/webhooks/attempts", token=http.token(ADMIN)).json["data"] == []
    finally:
        down.stop()


# --- bulk re-enable ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "path", "keyword"),
    [
        ({"data": {}}, "data.re-enable", "required"),
        ({"data": {"re-enable": "yes"}}, "data.re-enable", "type"),
        ({"data": {"re-enable": 1}}, "data.re-enable", "type"),
        ({"data": {"re-enable": False}}, "data.re-enable", "enum"),
        ({"data": {"re-enable": None}}, "data.re-enable", "type"),
        ({"data": {"re-enable": True, "enabled": True}}, "data.enabled", "additionalProperties"),
        ({"data": {"reenable": True}}, "data.reenable", "additionalProperties"),
        ({"data": {"enabled": True}}, "data.re-enable", "required"),
        ({"data": []}, "data", "type"),
        ({"data": "re-enable"}, "data", "type"),
        ({"re-enable": True}, "data", "required"),
    ],
)
@pytest.mark.parametrize("descendants", [False, True])
def test_bad_re_enable_bodies_change_nothing(
    http, simulator, daemon, receiver, body, path, keyword, descendants
):
    hook = broken_hook(http, simulator, daemon, ACME, receiver, "CRM")
    resp = re_enable(http, ACME, body=body, descendants=descendants)
    assert resp.status == 400 and resp.json["message"] == "validation error", resp.json
    assert keyword in resp.json["data"][path], resp.json["data"]
    assert hook_state(http, ACME, hook["id"])["enabled"] is False


def test_a_body_that_is_not_json_is_refused(http):
    for raw in (b"", b"{", b"[]", b"re-enable=true"):
        resp = http.request(
            "PATCH", f"/v2/accounts/{ACME}/webhooks", raw=raw, token=http.token(ACME),
            headers={"Content-Type": "application/json"},
        )  # fmt: skip
        assert resp.status == 400, raw


def test_re_enable_wakes_only_what_eslchan_disabled_and_it_delivers_again(daemon, http, simulator, receiver):
    off = create_hook(http, ACME, name="off", uri=receiver.url(), hook="channel_create", enabled=False)
    fine_receiver = Receiver().start()
    try:
        fine = create_hook(http, ACME, name="fine", uri=fine_receiver.url(), hook="channel_create")
        broken = broken_hook(http, simulator, daemon, ACME, receiver, "broken")
        receiver.secret = broken["secret"]
        stuck_call = receiver.got[0].payload["call_id"]
        sales = broken_hook(http, simulator, daemon, ACME_SALES, receiver, "sales")
        globex = broken_hook(http, simulator, daemon, GLOBEX, receiver, "globex")
        assert hook_state(http, ACME, broken["id"])["failures"] == 1

        receiver.status = 200  # the receiver is back
        resp = re_enable(http, ACME)
        assert resp.status == 200, resp.json
        (doc,) = resp.json["data"]  # the account's own auto-disabled hook, and only it
        assert doc["id"] == broken["id"] and doc["enabled"] is True
        assert doc["failures"] == 0 and doc["disable_reason"] is None and "secret" not in doc
        state = hook_state(http, ACME, off["id"])
        assert state["enabled"] is False and state["disable_reason"] is None  # the tenant's choice stands
        assert hook_state(http, ACME, fine["id"])["enabled"] is True
        assert hook_state(http, ACME_SALES, sales["id"])["enabled"] is False  # not a descendant route
        assert hook_state(http, GLOBEX, globex["id"])["enabled"] is False

        # the event that failed is delivered now, signed, then the next ones
        eventually(lambda: [r.payload["call_id"] for r in receiver.accepted][:1] == [stuck_call], timeout=10)
        (later,) = calls(simulator, daemon, 1, ACME)
        eventually(lambda: later in [r.payload["call_id"] for r in receiver.accepted], timeout=10)
        assert all(r.verdict == "ok" for r in receiver.got[-2:])
        assert hook_state(http, ACME, broken["id"])["pending"] == 0
        assert attempts(http, ACME, broken["id"])[0]["result"] == "success"
        assert re_enable(http, ACME).json["data"] == []  # nothing left to re-enable
    finally:
        fine_receiver.stop()


def test_descendants_re_enable_reaches_down_never_up_or_across(daemon, http, simulator, receiver):
    acme = broken_hook(http, simulator, daemon, ACME, receiver, "acme")
    sales = broken_hook(http, simulator, daemon, ACME_SALES, receiver, "sales")
    globex = broken_hook(http, simulator, daemon, GLOBEX, receiver, "globex")
    admin = broken_hook(http, simulator, daemon, ADMIN, receiver, "admin")

    def enabled() -> dict[str, bool]:
        return {
            name: hook_state(http, account, hook["id"])["enabled"]
            for name, account, hook in (("acme", ACME, acme), ("sales", ACME_SALES, sales),
                                        ("globex", GLOBEX, globex), ("admin", ADMIN, admin))
        }  # fmt: skip

    # a sub-account (no reseller) and another tenant cannot reach Acme's tree, nor the admin's
    for account, as_account in ((ACME, ACME_SALES), (ACME, GLOBEX), (ADMIN, ACME), (GLOBEX, ACME)):
        for descendants in (False, True):
            resp = re_enable(http, account, as_account, descendants=descendants)
            assert resp.status == 403 and resp.json["data"] == {"account_id": account}, (account, as_account)
    resp = re_enable(http, "not-an-account", ACME, descendants=True)
    assert resp.status == 400 and "account_id" in resp.json["data"]
    assert http.request("PATCH", f"/v2/accounts/{ACME}/descendants/webhooks", RE_ENABLE).status == 401
    assert not any(enabled().values())

    receiver.status = 200  # the receiver is back: a re-enabled hook stays enabled
    # the leaf's own descendants route: itself only
    resp = re_enable(http, ACME_SALES, descendants=True)
    assert resp.status == 200 and [h["id"] for h in resp.json["data"]] == [sales["id"]]
    assert enabled() == {"acme": False, "sales": True, "globex": False, "admin": False}

    down = Receiver().start()
    try:
        sales_2 = broken_hook(http, simulator, daemon, ACME_SALES, down, "sales 2")
        down.status = 200
        resp = re_enable(http, ACME, descendants=True)  # the reseller: itself and below, never above
        assert resp.status == 200, resp.json
        assert [h["id"] for h in resp.json["data"]] == [acme["id"], sales_2["id"]]
        assert enabled() == {"acme": True, "sales": True, "globex": False, "admin": False}
        eventually(lambda: down.accepted)  # what it failed to take is delivered now

        resp = re_enable(http, ADMIN, descendants=True)  # the top of the tree reaches every account
        assert [h["id"] for h in resp.json["data"]] == [admin["id"], globex["id"]]
        assert all(enabled().values())
    finally:
        down.stop()


# --- the OpenAPI document ------------------------------------------------------------------


def test_answers_match_the_openapi_document(http, simulator, daemon, receiver):
    doc = document()
    hook = broken_hook(http, simulator, daemon, ACME, receiver, "CRM")
    token = http.token(ACME)
    hooks, below = "/v2/accounts/{account_id}/webhooks", "/v2/accounts/{account_id}/descendants/webhooks"
    samples, one_sample = "/v2/webhooks/samples", "/v2/webhooks/samples/{sample_id}"
    cases = [
        ("/v2/webhooks", "get", http.get("/v2/webhooks", token=token)),
        ("/v2/webhooks", "get", http.get("/v2/webhooks", token=None)),
        (samples, "get", http.get("/v2/webhooks/samples", token=token)),
        (one_sample, "get", http.get(f"/v2/webhooks/samples/{SAMPLES[3]}", token=token)),
        (one_sample, "get", http.get("/v2/webhooks/samples/webhooks_object", token=token)),
        (hooks + "/attempts", "get", http.get(f"/v2/accounts/{ACME}/webhooks/attempts", token=token)),
        (hooks + "/attempts", "get", http.get(f"/v2/accounts/{GLOBEX}/webhooks/attempts", token=token)),
        (hooks, "patch", re_enable(http, ACME, body={"data": {"re-enable": "yes"}})),
        (hooks, "patch", re_enable(http, GLOBEX, ACME)),
        (below, "patch", re_enable(http, ACME, ACME_SALES, descendants=True)),
        (hooks, "patch", re_enable(http, ACME)),
        (below, "patch", re_enable(http, ACME, descendants=True)),
    ]
    assert cases[-2][2].json["data"][0]["id"] == hook["id"]
    for path, method, resp in cases:
        pointer = response_schema(doc, path, method, resp.status)
        problems = [e.message for e in validator(doc, pointer).iter_errors(resp.json)]
        assert not problems, (path, method, resp.status, problems)
    # the document's own sample is the one served
    example = doc["paths"][one_sample]["get"]["responses"]["200"]["content"]["application/json"]["example"]
    assert json.loads(json.dumps(example["data"])) == cases[3][2].json["data"]
