"""What the console needs from the server, over real HTTP: its packaged files served with a
strict policy, the account tree (descendants), the stored callflows, and stream events that
name each channel's account."""

from __future__ import annotations

import json
import re
from dataclasses import replace

import pytest
from conftest import eventually
from test_api_events import Sse

from eslchan.api.accounts import descendants
from eslchan.api.callflows import MAX_FILE_BYTES
from eslchan.api.console import CSP, FILES, STATIC
from eslchan.config import Account
from eslchan.demo import ACME, ACME_SALES, ADMIN, GLOBEX, PARTIES

pytestmark = pytest.mark.timeout(60)

ALICE, BOB, CAROL, DAVE = PARTIES


# --- the packaged files -------------------------------------------------------------------------


def test_root_redirects_to_the_console(http):
    for path in ("/", "/console"):
        resp = http.get(path)
        assert resp.status == 302
        assert resp.headers["location"].endswith("/console/")


def test_the_console_page_is_served_with_a_strict_policy(http):
    resp = http.get("/console/")
    assert resp.status == 200
    assert resp.headers["content-type"].startswith("text/html")
    assert b'name="api_key"' in resp.body
    csp = resp.headers["content-security-policy"]
    assert csp == CSP
    directives = dict(d.strip().split(" ", 1) for d in csp.split(";"))
    assert directives["script-src"] == "'self'"  # no inline script, no eval, no other origin
    assert directives["connect-src"] == "'self'"
    assert directives["default-src"] == "'none'"
    assert directives["frame-ancestors"] == "'none'"
    assert resp.headers["x-content-type-options"] == "nosniff"
    assert resp.headers["cache-control"] == "no-cache"
    # the page holds no inline script or style for the policy to refuse
    assert not re.search(rb"<script(?![^>]*\bsrc=)", resp.body)
    assert b"<style" not in resp.body and b" style=" not in resp.body


def test_a_cached_file_is_revalidated_with_its_etag(http):
    first = http.get("/console/app.js")
    assert first.status == 200
    assert first.headers["content-type"].startswith("text/javascript")
    again = http.get("/console/app.js", headers={"If-None-Match": first.headers["etag"]})
    assert again.status == 304 and again.body == b""
    assert http.get("/console/style.css").headers["content-type"].startswith("text/css")


def test_every_module_the_console_imports_is_served(http):
    """The modules import each other by relative path: a missing or misnamed one breaks the page."""
    pending = ["app.js"]
    seen = set()
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        seen.add(name)
        resp = http.get(f"/console/{name}")
        assert resp.status == 200, name
        pending.extend(re.findall(r'from "\./([a-z]+\.js)"', resp.body.decode()))
    page = http.get("/console/").body.decode()
    for ref in re.findall(r'(?:src|href)="([^"#]+)"', page):
        assert http.get(f"/console/{ref}").status == 200, ref
    assert {"app.js", "model.js", "board.js", "api.js", "session.js", "stream.js"} <= seen


@pytest.mark.parametrize(
    "path",
    [
        "/console/nothing.js",
        "/console/../setup.cfg",
        "/console/%2e%2e/%2e%2e/setup.cfg",
        "/console/..%2f..%2fsetup.cfg",
        "/console/etc/passwd",
        "/console/static/app.js",
    ],
)
def test_only_the_packaged_files_are_served(http, path):
    resp = http.get(path)
    assert resp.status == 404
    assert resp.json["status"] == "error"


def test_files_are_served_from_memory_not_from_a_path():
    # a request names a key of this dict; nothing outside the static directory is in it
    assert FILES and all(not name.startswith(("/", ".")) and ".." not in name for name in FILES)
    assert set(FILES) == {p.relative_to(STATIC).as_posix() for p in STATIC.rglob("*") if p.is_file()}


# --- GET /v2/accounts/{A}/descendants -----------------------------------------------------------


def test_descendants_of_a_reseller_and_of_the_admin(http):
    acme = http.get(f"/v2/accounts/{ACME}/descendants", token=http.token(ACME))
    assert acme.status == 200
    assert acme.json["data"] == [{"id": ACME_SALES, "name": "Acme Sales", "parent": ACME, "tree": [ACME]}]

    admin = http.get(f"/v2/accounts/{ADMIN}/descendants", token=http.token(ADMIN))
    assert [d["id"] for d in admin.json["data"]] == [ACME, ACME_SALES, GLOBEX]  # depth first, by name
    assert admin.json["data"][1]["tree"] == [ADMIN, ACME]

    # a reseller asking about its sub-account learns nothing above that sub-account
    sales = http.get(f"/v2/accounts/{ACME_SALES}/descendants", token=http.token(ACME))
    assert sales.status == 200 and sales.json["data"] == []


def test_descendants_are_tenancy_checked(http):
    assert http.get(f"/v2/accounts/{ACME}/descendants", token=http.token(GLOBEX)).status == 403
    assert http.get(f"/v2/accounts/{ADMIN}/descendants", token=http.token(ACME)).status == 403
    assert http.get(f"/v2/accounts/{ACME}/descendants").status == 401
    assert http.get("/v2/accounts/ACME/descendants", token=http.token(ADMIN)).status == 400


def test_descendants_survive_a_parent_cycle():
    def account(i: str, parent: str | None) -> Account:
        return Account(
            id=i * 32, name=i, parent=parent and parent * 32, superduper_admin=False, api_key_hash=""
        )

    accounts = {
        a.id: a for a in (account("a", None), account("b", "a"), account("c", "b"), account("d", "c"))
    }
    accounts["a" * 32] = replace(accounts["a" * 32], parent="d" * 32)  # a -> b -> c -> d -> a
    found = descendants(accounts, "a" * 32)
    assert [d["name"] for d in found] == ["b", "c", "d"]


# --- GET /v2/accounts/{A}/callflows -------------------------------------------------------------


@pytest.fixture
def daemon_config(daemon_config, tmp_path):
    flows = tmp_path / "callflows"
    flows.mkdir()
    (flows / "menu.json").write_text(
        json.dumps(
            {
                "name": "Main menu",
                "flow": {
                    "module": "play",
                    "data": {"id": "welcome"},
                    "children": {
                        "_": {
                            "module": "collect_dtmf",
                            "data": {},
                            "children": {"1": {"module": "transfer"}, "_": {"module": "hangup"}},
                        }
                    },
                },
            }
        )
    )
    (flows / "plain.json").write_text(json.dumps({"module": "hangup", "data": {}}))
    (flows / "broken.json").write_text("{not json")
    (flows / "huge.json").write_text(" " * (MAX_FILE_BYTES + 1) + "{}")
    (flows / ".hidden.json").write_text("{}")  # not a name the callflow module accepts
    (flows / "notes.txt").write_text("not a flow")
    return replace(daemon_config, metaflow=replace(daemon_config.metaflow, callflows_dir=flows))


def test_stored_callflows_are_listed_by_name(http):
    resp = http.get(f"/v2/accounts/{ACME}/callflows", token=http.token(ACME))
    assert resp.status == 200
    by_id = {f["id"]: f for f in resp.json["data"]}
    assert sorted(by_id) == ["broken", "huge", "menu", "plain"]
    assert by_id["menu"] == {
        "id": "menu",
        "name": "Main menu",
        "modules": ["play", "collect_dtmf", "transfer", "hangup"],
    }
    assert by_id["plain"] == {"id": "plain", "name": "plain", "modules": ["hangup"]}
    assert "cannot be read" in by_id["broken"]["error"]
    assert "larger than" in by_id["huge"]["error"]


def test_stored_callflows_are_tenancy_checked(http):
    assert http.get(f"/v2/accounts/{ACME}/callflows", token=http.token(GLOBEX)).status == 403
    assert http.get(f"/v2/accounts/{ACME}/callflows").status == 401


# --- the event stream names each channel's account ----------------------------------------------


def test_stream_events_name_the_channels_account(daemon, simulator, http):
    host, port = daemon.http_address
    stream = Sse(
        host,
        port,
        f"/v2/accounts/{ACME}/events?descendants=true&events=CHANNEL_CREATE",
        token=http.token(ACME),
    )
    try:
        assert stream.status == 200
        sub = simulator.create_call(account_id=CAROL.account_id, caller_id_name="Carol")
        own = simulator.create_call(account_id=ALICE.account_id, caller_id_name="Alice")
        accounts = {}

        def both_seen():
            msg = stream.next()
            accounts[msg["json"]["uuid"]] = msg["json"]["account_id"]
            return own.a_uuid in accounts and sub.a_uuid in accounts

        eventually(both_seen, timeout=10)
        assert accounts[sub.a_uuid] == ACME_SALES and accounts[own.a_uuid] == ACME
    finally:
        stream.close()


def test_the_answers_match_their_openapi_documentation(http, daemon):
    from test_api_openapi import response_schema, validator

    from eslchan.api.openapi import document

    doc = document()
    cases = [
        (
            "/v2/accounts/{account_id}/descendants",
            http.get(f"/v2/accounts/{ADMIN}/descendants", token=http.token(ADMIN)),
        ),
        (
            "/v2/accounts/{account_id}/descendants",
            http.get(f"/v2/accounts/{ACME}/descendants", token=http.token(GLOBEX)),
        ),
        (
            "/v2/accounts/{account_id}/callflows",
            http.get(f"/v2/accounts/{ACME}/callflows", token=http.token(ACME)),
        ),
        ("/v2/accounts/{account_id}/callflows", http.get(f"/v2/accounts/{ACME}/callflows")),
    ]
    for path, resp in cases:
        pointer = response_schema(doc, path, "get", resp.status)
        errors = list(validator(doc, pointer).iter_errors(resp.json))
        assert not errors, (path, resp.status, [e.message for e in errors])
    assert "/console/{filename}" in doc["paths"] and doc["paths"]["/"]["get"]["responses"]["302"]
