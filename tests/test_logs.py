"""Operators' logs: one JSON object per line, with request ids and node names, never secrets."""

import json
import logging

import pytest

from eslchan.demo import ACME
from eslchan.logs import JsonFormatter, RequestIdFilter


@pytest.fixture
def json_lines(caplog):
    caplog.set_level(logging.INFO)
    formatter, request_ids = JsonFormatter(), RequestIdFilter()

    def lines():
        out = []
        for record in caplog.records:
            request_ids.filter(record)
            out.append(json.loads(formatter.format(record)))
        return out

    return lines


def test_each_request_is_logged_with_its_request_id(daemon, http, json_lines):
    token = http.token(ACME)
    http.get(f"/v2/accounts/{ACME}/channels", token=token, headers={"X-Request-ID": "crm-4711"})
    access = [line for line in json_lines() if line["logger"] == "eslchan.access"]
    mine = [line for line in access if line.get("request_id") == "crm-4711"]
    assert len(mine) == 1
    assert mine[0]["status"] == 200 and mine[0]["msg"].startswith(f"GET /v2/accounts/{ACME}/channels 200")
    assert all("request_id" in line for line in access)


def test_no_secret_reaches_the_logs(daemon, http, keys, json_lines):
    token = http.token(ACME)
    http.request("PUT", "/v2/api_auth", {"data": {"api_key": "wrong-key-0123456789abc"}})
    http.get(f"/v2/accounts/{ACME}/events?auth_token={token}&events=BAD%20VALUE")
    text = "\n".join(json.dumps(line) for line in json_lines())
    for secret in (keys[ACME], "wrong-key-0123456789abc", token, "ClueCon", daemon.config.auth.signing_key):
        assert secret not in text


def test_link_events_are_logged_with_the_node_name(simulator, daemon, json_lines):
    simulator.drop_connections()
    from conftest import eventually

    eventually(lambda: daemon.links["fs1"].is_up and daemon.links["fs1"].stats["reconnects"] >= 1)
    nodes = {line.get("node") for line in json_lines() if line["logger"].startswith("eslchan.esl")}
    assert "fs1" in nodes


def test_a_newline_in_a_request_path_cannot_forge_a_text_log_line(daemon, http, caplog):
    from eslchan.logs import TextFormatter

    caplog.set_level(logging.INFO)
    http.get("/v2/nothing%0A2026-01-01%2000:00:00%20ERROR%20eslchan:%20forged")
    formatter = TextFormatter("%(levelname)s %(name)s: %(message)s")
    lines = [formatter.format(r) for r in caplog.records if r.name == "eslchan.access"]
    forged = [line for line in lines if "forged" in line]
    assert forged and all("\n" not in line for line in forged)
    assert "\\n2026-01-01" in forged[0]
