"""The REST API over real HTTP, against the whole daemon running on the FreeSWITCH simulator."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import gevent
import pytest
from conftest import eventually

from eslchan.config import LinkOptions
from eslchan.daemon import Daemon
from eslchan.demo import ACME, ACME_SALES, ADMIN, GLOBEX, PARTIES, demo_config

pytestmark = pytest.mark.timeout(90)

ALICE, BOB, CAROL, DAVE = PARTIES  # Acme, Acme, Acme Sales, Globex
KAZOO_DOC = Path(__file__).resolve().parents[2] / "shared" / "kazoo-channels-api.txt"


@pytest.fixture
def daemon_config(simulator, keys):
    """The demo tenancy, with a short command timeout so the 504 case is quick."""
    link = LinkOptions(backoff_initial=0.1, backoff_max=2.0, command_timeout=1.0)
    return demo_config(
        [("fs1", simulator.host, simulator.port, "ClueCon")], keys, listen="127.0.0.1:0", link=link
    )


def place(simulator, daemon, party, **kw):
    """A call from ``party``; returns it once the daemon's registry has both legs."""
    call = simulator.create_call(
        account_id=party.account_id,
        user_id=party.user_id,
        device_id=party.device_id,
        caller_id_name=party.name,
        caller_id_number=party.number,
        username=party.name.lower(),
        **kw,
    )

    def known():
        legs = [daemon.registry.find(u) for u in call.uuids]
        return all(ch is not None and ch.has_variables for ch in legs)

    eventually(known)
    if kw.get("bridged", True) and kw.get("answered", True):
        eventually(lambda: daemon.registry.find(call.a_uuid).other_leg == call.b_uuid)
    return call


def sent_to_freeswitch(simulator) -> list[str]:
    """What eslchan asked of FreeSWITCH beyond the link's own set-up and resync."""
    return [
        c
        for c in simulator.commands
        if not re.match(
            r"(auth|event|filter|api show|api uuid_dump|"
            r"api status|api version|api hostname|bgapi show)",
            c,
        )
    ]


def uuids(resp) -> set[str]:
    assert resp.status == 200, resp.body
    return {row["uuid"] for row in resp.json["data"]}


# --- listings ------------------------------------------------------------------------------


def test_listings_per_account_user_and_device_from_memory(simulator, daemon, http):
    alice = place(simulator, daemon, ALICE)
    bob = place(simulator, daemon, BOB)
    dave = place(simulator, daemon, DAVE)
    before = list(simulator.commands)
    acme = http.token(ACME)

    account = uuids(http.get(f"/v2/accounts/{ACME}/channels", token=acme))
    assert account == set(alice.uuids) | set(bob.uuids)
    user = uuids(http.get(f"/v2/accounts/{ACME}/users/{ALICE.user_id}/channels", token=acme))
    assert user == {alice.a_uuid}
    device = uuids(http.get(f"/v2/accounts/{ACME}/devices/{BOB.device_id}/channels", token=acme))
    assert device == {bob.a_uuid}
    assert uuids(http.get(f"/v2/accounts/{GLOBEX}/channels", token=http.token(GLOBEX))) == set(dave.uuids)
    # listings answer from memory: FreeSWITCH was asked nothing
    assert simulator.commands == before

    row = next(
        r
        for r in http.get(f"/v2/accounts/{ACME}/channels", token=acme).json["data"]
        if r["uuid"] == alice.a_uuid
    )
    assert row["answered"] is True
    assert row["other_leg"] == alice.b_uuid
    assert row["owner_id"] == ALICE.user_id
    assert row["authorizing_id"] == ALICE.device_id
    assert row["authorizing_type"] == "device"
    assert row["username"] == "alice"
    assert row["caller_id_number"] == ALICE.number
    assert row["node"] == "fs1"


def test_hung_up_channels_leave_the_listing(simulator, daemon, http):
    call = place(simulator, daemon, ALICE)
    acme = http.token(ACME)
    assert call.a_uuid in uuids(http.get(f"/v2/accounts/{ACME}/channels", token=acme))
    simulator.hangup(call.a_uuid)
    eventually(lambda: daemon.registry.find(call.a_uuid) is None)
    assert call.a_uuid not in uuids(http.get(f"/v2/accounts/{ACME}/channels", token=acme))


def test_system_wide_listing_only_for_superduper_admin(simulator, daemon, http):
    alice = place(simulator, daemon, ALICE)
    dave = place(simulator, daemon, DAVE)
    everything = uuids(http.get("/v2/channels", token=http.token(ADMIN)))
    assert set(alice.uuids) | set(dave.uuids) <= everything
    resp = http.get("/v2/channels", token=http.token(ACME))
    assert resp.status == 403
    assert resp.json["message"] == "forbidden"
    assert http.get("/v2/channels").status == 401


def test_system_wide_listing_off_is_403_even_for_admin(simulator, keys):
    from conftest import HttpClient

    config = demo_config(
        [("fs1", simulator.host, simulator.port, "ClueCon")], keys, listen="127.0.0.1:0", system_wide=False
    )
    daemon = Daemon(config)
    daemon.start()
    try:
        client = HttpClient(*daemon.http_address, keys)
        resp = client.get("/v2/channels", token=client.token(ADMIN))
        assert resp.status == 403
        assert resp.json["status"] == "error"
        assert client.get(f"/v2/accounts/{ACME}/channels", token=client.token(ADMIN)).status == 200
    finally:
        daemon.stop(drain_seconds=0.5)


def test_details(simulator, daemon, http):
    call = place(simulator, daemon, ALICE)
    resp = http.get(f"/v2/accounts/{ACME}/channels/{call.a_uuid}", token=http.token(ACME))
    assert resp.status == 200
    detail = resp.json["data"]
    assert detail["uuid"] == detail["call_id"] == call.a_uuid
    assert detail["other_leg_call_id"] == call.b_uuid
    assert detail["answered"] is True
    assert detail["state"]
    assert detail["custom_channel_vars"]["account_id"] == ACME
    assert detail["stale"] is False


def test_csv_listing(simulator, daemon, http):
    call = place(simulator, daemon, ALICE)
    resp = http.get(
        f"/v2/accounts/{ACME}/users/{ALICE.user_id}/channels",
        token=http.token(ACME),
        headers={"Accept": "text/csv"},
    )
    assert resp.status == 200
    assert resp.headers["content-type"].startswith("text/csv")
    lines = resp.body.decode().strip().split("\r\n")
    assert lines[0].startswith("uuid,answered,")
    assert len(lines) == 2
    assert lines[1].startswith(call.a_uuid + ",true,")


def test_not_modified(simulator, daemon, http):
    place(simulator, daemon, ALICE)
    acme = http.token(ACME)
    path = f"/v2/accounts/{ACME}/devices/{ALICE.device_id}/channels"
    # elapsed_s is part of the data, so the revision moves each second: ask while it holds still
    for _ in range(5):
        first = http.get(path, token=acme)
        again = http.get(path, token=acme, headers={"If-None-Match": first.headers["etag"]})
        if again.status == 304:
            break
        assert again.status == 200
    assert again.status == 304
    assert again.body == b""
    assert again.headers["x-request-id"]


# --- errors --------------------------------------------------------------------------------


def test_401_403_404_405(simulator, daemon, http):
    call = place(simulator, daemon, ALICE)
    path = f"/v2/accounts/{ACME}/channels/{call.a_uuid}"
    assert http.get(path).status == 401
    assert http.get(path, token="forged.token.value").json["message"] == "invalid_credentials"
    assert http.get(path, token=http.token(GLOBEX)).status == 403
    resp = http.get("/v2/accounts/nope/nothing", token=http.token(ACME))
    assert resp.status == 404
    assert resp.json["message"] == "faulty request"
    resp = http.request("DELETE", path, token=http.token(ACME))
    assert resp.status == 405
    assert set(resp.headers["allow"].replace(" ", "").split(",")) >= {"GET", "POST", "PUT"}


def test_400_bad_input_reaches_nothing(simulator, daemon, http):
    call = place(simulator, daemon, ALICE)
    acme = http.token(ACME)
    path = f"/v2/accounts/{ACME}/channels/{call.a_uuid}"
    before = sent_to_freeswitch(simulator)
    resp = http.request(
        "POST", path, raw=b'{"data": ', token=acme, headers={"Content-Type": "application/json"}
    )
    assert resp.status == 400
    assert "invalid" in resp.json["data"]["json"]
    resp = http.request("POST", path, raw=b"[]", token=acme)
    assert resp.status == 400
    resp = http.request("POST", path, {"data": {"action": "dance"}}, token=acme)
    assert resp.status == 400
    assert resp.json["message"] == "validation error"
    resp = http.request("POST", path, {"data": {"action": "transfer", "target": 2600}}, token=acme)
    assert resp.status == 400
    assert any("target" in key for key in resp.json["data"])
    resp = http.request(
        "POST", path, {"data": {"action": "transfer", "target": "2600\napi system reboot"}}, token=acme
    )
    assert resp.status == 400
    resp = http.request("PUT", path, {"action": "metaflow", "data": {"module": "no_such_module"}}, token=acme)
    assert resp.status == 400
    resp = http.get(f"/v2/accounts/{ACME}/channels/{call.a_uuid[:-1]}", token=acme)
    assert resp.status == 400
    assert "uuid" in resp.json["data"]
    assert sent_to_freeswitch(simulator) == before


def test_hostile_json_is_400_invalid_json_not_a_crash(simulator, daemon, http):
    call = place(simulator, daemon, ALICE)
    acme = http.token(ACME)
    path = f"/v2/accounts/{ACME}/channels/{call.a_uuid}"
    before = sent_to_freeswitch(simulator)
    json_headers = {"Content-Type": "application/json"}
    deep = 500
    hostile = [
        ("POST", path, b'{"data": {"action": "\\ud800"}}'),
        ("POST", path, b'{"data": {"action": "hangup", "\\udfff": "x"}}'),
        ("PUT", path, b'{"data": {"module": "\\ud800"}}'),
        ("PUT", "/v2/api_auth", b'{"data": {"api_key": "\\ud800"}}'),
        ("PUT", path, b'{"data": ' + b'{"a": ' * deep + b"1" + b"}" * deep + b"}"),
        ("POST", path, b'{"data": {"action": "play", "media": ' + b"[" * deep + b"]" * deep + b"}}"),
    ]
    for method, where, raw in hostile:
        resp = http.request(method, where, raw=raw, token=acme, headers=json_headers)
        assert resp.status == 400, (raw[:60], resp.body[:300])
        assert resp.json["message"] == "invalid json"
        assert resp.json["data"]["json"]["invalid"]["message"]
    # a valid surrogate pair is ordinary text, and modest nesting is left to the validators
    resp = http.request(
        "POST", path, raw=b'{"data": {"action": "\\ud83d\\ude00"}}', token=acme, headers=json_headers
    )
    assert resp.status == 400
    assert resp.json["message"] == "validation error"
    assert sent_to_freeswitch(simulator) == before


def test_400_action_the_channel_state_does_not_allow(simulator, daemon, http):
    call = place(simulator, daemon, ALICE, bridged=False)
    resp = http.request(
        "POST",
        f"/v2/accounts/{ACME}/channels/{call.a_uuid}",
        {"data": {"action": "transfer", "target": "2600", "takeback_dtmf": "*1"}},
        token=http.token(ACME),
    )
    assert resp.status == 400, resp.json
    assert resp.json["message"] == "validation error"
    assert resp.json["data"]


def test_413_body_too_large(simulator, daemon, http):
    call = place(simulator, daemon, ALICE)
    pad = "x" * (daemon.config.http.max_body_bytes + 1)
    resp = http.request(
        "POST",
        f"/v2/accounts/{ACME}/channels/{call.a_uuid}",
        {"data": {"action": "hangup", "pad": pad}},
        token=http.token(ACME),
    )
    assert resp.status == 413
    assert resp.json["error"] == "413"
    assert simulator.channel(call.a_uuid) is not None


def test_502_when_freeswitch_refuses(simulator, daemon, http):
    call = place(simulator, daemon, ALICE)
    simulator.fail_next("-ERR simulated failure")
    resp = http.request(
        "POST",
        f"/v2/accounts/{ACME}/channels/{call.a_uuid}",
        {"data": {"action": "hangup"}},
        token=http.token(ACME),
    )
    assert resp.status == 502, resp.json
    assert resp.json["message"] == "freeswitch error"
    assert "-ERR simulated failure" in json.dumps(resp.json["data"])


def test_504_when_freeswitch_does_not_answer(simulator, daemon, http):
    call = place(simulator, daemon, ALICE)
    acme = http.token(ACME)
    simulator.stall(3.0)
    resp = http.request(
        "POST", f"/v2/accounts/{ACME}/channels/{call.a_uuid}", {"data": {"action": "hangup"}}, token=acme
    )
    assert resp.status == 504, resp.json
    assert resp.json["error"] == "504"


def test_503_when_the_node_is_down(simulator, daemon, http):
    call = place(simulator, daemon, ALICE)
    acme = http.token(ACME)
    assert http.get("/health").status == 200
    simulator.stop()
    eventually(lambda: not daemon.links["fs1"].is_up)
    resp = http.request(
        "POST", f"/v2/accounts/{ACME}/channels/{call.a_uuid}", {"data": {"action": "hangup"}}, token=acme
    )
    assert resp.status == 503, resp.json
    assert resp.json["message"] == "node unavailable"
    health = http.get("/health")
    assert health.status == 503
    assert health.json["data"]["nodes"]["fs1"] == {"state": "down"}


# --- tenancy -------------------------------------------------------------------------------


def test_tenant_isolation_both_ways(simulator, daemon, http):
    alice = place(simulator, daemon, ALICE)
    dave = place(simulator, daemon, DAVE)
    before = sent_to_freeswitch(simulator)
    for token, account, foreign in (
        (http.token(ACME), ACME, dave.a_uuid),
        (http.token(GLOBEX), GLOBEX, alice.a_uuid),
    ):
        path = f"/v2/accounts/{account}/channels/{foreign}"
        for method, body in (
            ("GET", None),
            ("POST", {"data": {"action": "hangup"}}),
            ("PUT", {"action": "metaflow", "data": {"data": {"module": "hangup"}}}),
        ):
            resp = http.request(method, path, body, token=token)
            assert resp.status == 404, (method, resp.json)
            assert resp.json["message"] == "bad identifier"
            assert resp.json["data"] == [foreign]
    assert sent_to_freeswitch(simulator) == before
    assert simulator.channel(alice.a_uuid) is not None
    assert simulator.channel(dave.a_uuid) is not None


def test_descendant_access_and_not_upwards(simulator, daemon, http):
    carol = place(simulator, daemon, CAROL)
    alice = place(simulator, daemon, ALICE)
    acme, sales = http.token(ACME), http.token(ACME_SALES)
    assert uuids(http.get(f"/v2/accounts/{ACME_SALES}/channels", token=acme)) == set(carol.uuids)
    resp = http.get(f"/v2/accounts/{ACME_SALES}/channels/{carol.a_uuid}", token=acme)
    assert resp.status == 200
    assert http.get(f"/v2/accounts/{ACME}/channels", token=sales).status == 403
    assert http.get(f"/v2/accounts/{ACME}/channels/{alice.a_uuid}", token=sales).status == 403
    # a parent's own listing is its own channels: the child's live under the child's path
    assert carol.a_uuid not in uuids(http.get(f"/v2/accounts/{ACME}/channels", token=acme))


# --- actions and metaflows -----------------------------------------------------------------


def test_post_hangup_hangs_up(simulator, daemon, http):
    call = place(simulator, daemon, ALICE)
    resp = http.request(
        "POST",
        f"/v2/accounts/{ACME}/channels/{call.a_uuid}",
        {"data": {"action": "hangup"}},
        token=http.token(ACME),
    )
    assert resp.status == 200, resp.json
    assert resp.json["status"] == "success"
    eventually(lambda: simulator.channel(call.a_uuid) is None)


def test_top_level_action_is_accepted(simulator, daemon, http):
    call = place(simulator, daemon, ALICE)
    resp = http.request(
        "POST", f"/v2/accounts/{ACME}/channels/{call.a_uuid}", {"action": "hangup"}, token=http.token(ACME)
    )
    assert resp.status == 200, resp.json
    eventually(lambda: simulator.channel(call.a_uuid) is None)


def test_put_metaflow_runs_are_listed_and_stoppable(simulator, daemon, http):
    call = place(simulator, daemon, ALICE)
    acme = http.token(ACME)
    base = f"/v2/accounts/{ACME}/channels/{call.a_uuid}"
    tree = {"module": "sleep", "data": {"duration": 60}, "children": {"_": {"module": "hangup"}}}
    resp = http.request("PUT", base, {"action": "metaflow", "data": tree}, token=acme)
    assert resp.status == 202, resp.json
    run = resp.json["data"]
    assert run["id"]
    assert resp.headers["location"].endswith(f"{base}/metaflows")
    listed = http.get(f"{base}/metaflows", token=acme)
    assert listed.status == 200
    assert run["id"] in {r["id"] for r in listed.json["data"]}
    # another tenant cannot see or stop it
    globex = http.token(GLOBEX)
    assert http.get(f"/v2/accounts/{GLOBEX}/channels/{call.a_uuid}/metaflows", token=globex).status == 404
    resp = http.request(
        "DELETE", f"/v2/accounts/{GLOBEX}/channels/{call.a_uuid}/metaflows/{run['id']}", token=globex
    )
    assert resp.status == 404
    resp = http.request("DELETE", f"{base}/metaflows/{'0' * 32}", token=acme)
    assert resp.status == 404
    # what cannot be a run id is refused as such, on both routes, and echoed only in part
    for bad in ("no-such-run", "A" * 32, "0" * 33, "0" * 31 + "g", "x" * 300):
        for method, path in (("DELETE", f"{base}/metaflows/{bad}"),
                             ("GET", f"/v2/accounts/{ACME}/metaflows/{bad}")):
            resp = http.request(method, path, token=acme)
            assert resp.status == 400, (bad, resp.status)
            assert len(resp.json["data"]["run_id"]["pattern"]["value"]) <= 64
    # nor through a channel of its own, nor through another channel of the same account
    other_globex = place(simulator, daemon, DAVE)
    resp = http.request(
        "DELETE", f"/v2/accounts/{GLOBEX}/channels/{other_globex.a_uuid}/metaflows/{run['id']}", token=globex
    )
    assert resp.status == 404
    assert resp.json["data"] == [run["id"]]
    bob = place(simulator, daemon, BOB)
    resp = http.request(
        "DELETE", f"/v2/accounts/{ACME}/channels/{bob.a_uuid}/metaflows/{run['id']}", token=acme
    )
    assert resp.status == 404
    resp = http.request("DELETE", f"{base}/metaflows/{run['id']}", token=acme)
    assert resp.status == 200, resp.json
    eventually(
        lambda: (
            run["id"] not in {r["id"] for r in http.get(f"{base}/metaflows", token=acme).json["data"]}
            or all(r["state"] != "running" for r in http.get(f"{base}/metaflows", token=acme).json["data"])
        )
    )
    gevent.sleep(0.2)
    assert simulator.channel(call.a_uuid) is not None  # stopped before it reached the hangup


# --- system --------------------------------------------------------------------------------


def test_health_and_metrics(simulator, daemon, http):
    call = place(simulator, daemon, ALICE)
    health = http.get("/health", token=http.token(ADMIN))  # details are for a superduper admin
    assert health.status == 200
    node = health.json["data"]["nodes"]["fs1"]
    assert node["up"] is True and node["state"] == "up"
    assert node["events_received"] > 0
    http.request(
        "POST",
        f"/v2/accounts/{ACME}/channels/{call.a_uuid}",
        {"data": {"action": "hangup"}},
        token=http.token(ACME),
    )
    text = http.get("/metrics").body.decode()
    assert 'eslchan_link_up{node="fs1"} 1.0' in text
    assert re.search(r'eslchan_events_received_total\{node="fs1"\} [1-9]', text)
    assert 'eslchan_events_dropped_total{node="fs1"} 0.0' in text
    assert re.search(r'eslchan_channels\{node="fs1"\} \d', text)
    assert 'route="/v2/accounts/<account_id>/channels/<channel_uuid>",status="200"' in text
    assert re.search(
        r'eslchan_esl_command_seconds_count\{command="[^"]+",node="fs1",outcome="ok"\} [1-9]', text
    )
    assert re.search(r'eslchan_registry_checks_total\{node="fs1"\} [1-9]', text)  # the resync
    for kind in ("added", "removed"):  # nothing drifted
        assert f'eslchan_registry_repairs_total{{kind="{kind}",node="fs1"}} 0.0' in text


# --- the Kazoo documentation's curl examples, verbatim -------------------------------------


def kazoo_curls() -> list[str]:
    """Every curl command of the Kazoo channels document, backslash continuations joined."""
    if not KAZOO_DOC.exists():
        pytest.skip(f"Kazoo document not found at {KAZOO_DOC}")
    text = KAZOO_DOC.read_text()
    commands = re.findall(r"^curl .*?(?:\\\n.*?)*$", text, flags=re.M)
    return [c.replace("\\\n", " ") for c in commands]


def run_curl(command: str, host: str, port: int) -> tuple[int, dict]:
    """Run the documented command as is; only curl is told where {SERVER}:8000 really listens."""
    args = shlex.split(command)
    assert args[0] == "curl"
    args += ["--silent", "--show-error", "--connect-to", f"{host}:8000:{host}:{port}"]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    status = int(re.search(r"^< HTTP/[\d.]+ (\d{3})", proc.stderr, flags=re.M).group(1))
    return status, json.loads(proc.stdout)


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_kazoo_curl_examples_work_verbatim(simulator, daemon, http):
    curls = kazoo_curls()
    assert len(curls) == 7
    host, port = daemon.http_address
    alice = place(simulator, daemon, ALICE)
    bob = place(simulator, daemon, BOB)
    targets = iter([alice.a_uuid, alice.a_uuid, bob.a_uuid])  # GET, POST transfer, PUT hangup
    seen = []
    for command in curls:
        admin = "/v2/channels" in command and "accounts" not in command
        uuid = next(targets) if "{UUID}" in command else None
        filled = (
            command.replace("{AUTH_TOKEN}", http.token(ADMIN if admin else ACME))
            .replace("{SERVER}", host)
            .replace("{ACCOUNT_ID}", ACME)
            .replace("{USER_ID}", ALICE.user_id)
            .replace("{DEVICE_ID}", ALICE.device_id)
        )
        if uuid:
            filled = filled.replace("{UUID}", uuid)
        assert "{" not in re.sub(r"-d '[^']*'", "", filled), filled
        status, body = run_curl(filled, host, port)
        assert 200 <= status < 300, (command, status, body)
        assert body["status"] == "success"
        seen.append((command.split()[3], body))
    # the listings found the calls, and the metaflow hung Bob's call up
    assert {alice.a_uuid, alice.b_uuid} <= {r["uuid"] for r in seen[1][1]["data"]}
    assert [r["uuid"] for r in seen[2][1]["data"]] == [alice.a_uuid]
    eventually(lambda: simulator.channel(bob.a_uuid) is None)


def post_chunked(daemon, http, channel_uuid, chunks):
    """POST an action with a chunked body (no Content-Length), as streaming clients do."""
    import http.client as http_client

    conn = http_client.HTTPConnection(*daemon.http_address, timeout=30)
    try:
        conn.request(
            "POST",
            f"/v2/accounts/{ACME}/channels/{channel_uuid}",
            body=chunks,
            encode_chunked=True,
            headers={"X-Auth-Token": http.token(ACME), "Content-Type": "application/json"},
        )
        resp = conn.getresponse()
        return resp, json.loads(resp.read())
    finally:
        conn.close()


def test_413_for_a_chunked_body_without_content_length(simulator, daemon, http):
    """A body streamed in chunks is cut off at the limit too, not read to the end."""
    call = place(simulator, daemon, ALICE)
    limit = daemon.config.http.max_body_bytes

    def chunks():
        yield b'{"data": {"action": "hangup", "pad": "'
        for _ in range(limit // 4096 + 2):
            yield b"x" * 4096
        yield b'"}}'

    resp, body = post_chunked(daemon, http, call.a_uuid, chunks())
    assert resp.status == 413, body
    assert body["message"] == "payload too large"
    assert simulator.channel(call.a_uuid) is not None


def test_a_chunked_body_within_the_limit_is_read_whole(simulator, daemon, http):
    call = place(simulator, daemon, ALICE)

    def chunks():
        yield b'{"data": {"action": '
        yield b'"hangup"}}'

    resp, body = post_chunked(daemon, http, call.a_uuid, chunks())
    assert resp.status == 200, body
    eventually(lambda: simulator.channel(call.a_uuid) is None)


def test_answers_over_http_match_the_openapi_document(simulator, daemon, http):
    """What the interpreter-backed endpoints really answer is what /v2/openapi.json says."""
    from test_api_openapi import response_schema, validator

    doc = http.get("/v2/openapi.json").json
    acme = http.token(ACME)
    alice = place(simulator, daemon, ALICE)
    bob = place(simulator, daemon, BOB)
    one = "/v2/accounts/{account_id}/channels/{channel_uuid}"
    runs = one + "/metaflows"
    base = f"/v2/accounts/{ACME}/channels/{alice.a_uuid}"
    answers = []
    tree = {"module": "sleep", "data": {"duration": 60}}
    started = http.request("PUT", base, {"action": "metaflow", "data": tree}, token=acme)
    answers.append((one, "put", started))
    answers.append((runs, "get", http.get(f"{base}/metaflows", token=acme)))
    answers.append(
        (
            runs + "/{run_id}",
            "delete",
            http.request("DELETE", f"{base}/metaflows/{started.json['data']['id']}", token=acme),
        )
    )
    answers.append((one, "post", http.request("POST", base, {"data": {"action": "dance"}}, token=acme)))
    simulator.fail_next("-ERR no reason")
    answers.append((one, "post", http.request("POST", base, {"data": {"action": "hangup"}}, token=acme)))
    answers.append((one, "post", http.request("POST", base, {"data": {"action": "hangup"}}, token=acme)))
    answers.append(("/health", "get", http.get("/health")))
    simulator.stop()
    eventually(lambda: not daemon.links["fs1"].is_up)
    answers.append(
        (
            one,
            "post",
            http.request(
                "POST",
                f"/v2/accounts/{ACME}/channels/{bob.a_uuid}",
                {"data": {"action": "hangup"}},
                token=acme,
            ),
        )
    )
    answers.append(("/health", "get", http.get("/health")))
    assert [a[2].status for a in answers] == [202, 200, 200, 400, 502, 200, 200, 503, 503]
    for path, method, resp in answers:
        pointer = response_schema(doc, path, method, resp.status)
        errors = [e.message for e in validator(doc, pointer).iter_errors(resp.json)]
        assert not errors, (path, method, resp.status, errors)


def test_concurrent_requests_keep_their_own_identity(simulator, daemon, http):
    """Requests served at once by different greenlets never see each other's token or request id."""
    place(simulator, daemon, ALICE)
    place(simulator, daemon, DAVE)
    who = [(ACME, http.token(ACME)), (GLOBEX, http.token(GLOBEX))]

    def one(i: int):
        account, token = who[i % 2]
        resp = http.get(f"/v2/accounts/{account}/channels", token=token, headers={"X-Request-ID": f"req-{i}"})
        return i, account, token, resp

    jobs = [gevent.spawn(one, i) for i in range(60)]
    gevent.joinall(jobs, timeout=30, raise_error=True)
    for job in jobs:
        i, account, token, resp = job.value
        assert resp.status == 200
        assert resp.json["request_id"] == f"req-{i}" == resp.headers["x-request-id"]
        assert resp.json["auth_token"] == token
        owners = {row["owner_id"] for row in resp.json["data"]}
        assert owners <= {ALICE.user_id, DAVE.user_id, None}
        assert (ALICE.user_id in owners) == (account == ACME)


def test_429_after_repeated_failed_logins(daemon, http):
    limit = daemon.config.auth.failed_auth_per_minute
    for _ in range(limit):
        resp = http.request("PUT", "/v2/api_auth", {"data": {"api_key": "guessing-0123456789abcdef"}})
        assert resp.status == 401
    resp = http.request("PUT", "/v2/api_auth", {"data": {"api_key": "guessing-0123456789abcdeg"}})
    assert resp.status == 429
    assert int(resp.headers["retry-after"]) > 0
    assert resp.json["error"] == "429"
    # the right key is never locked out by the guesses of others at the same address
    assert http.request("PUT", "/v2/api_auth", {"data": {"api_key": http.keys[ACME]}}).status == 201
