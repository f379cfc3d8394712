"""What a new user meets first: the README's configuration step, the CLI's help, the event-stream
filter, CSV pages, blind transfers of a lone channel, and a clean start-up log."""

from __future__ import annotations

import csv
import io
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import eventually
from test_cli import free_port, spawn

from eslchan.demo import ACME, PARTIES

pytestmark = pytest.mark.timeout(90)

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text("utf-8")


def readme_block(containing: str) -> str:
    blocks = re.findall(r"```sh\n(.*?)\n```", README, re.S)
    return next(b for b in blocks if containing in b)


def test_the_readmes_first_configuration_step_works_as_written():
    block = readme_block("check-config conf/eslchan.toml")
    assert "serve" not in block  # the step ends with the check; serving is the next one
    if not (REPO / ".venv" / "bin" / "eslchan").exists():
        pytest.skip("the README's set-up (.venv) has not been run in this clone")
    # a fresh shell: none of the sample's secrets set beforehand
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ESLCHAN_", "FS1_"))}
    proc = subprocess.run(
        ["bash", "-e", "-c", block], cwd=REPO, env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert "conf/eslchan.toml: OK" in proc.stdout


def test_an_unknown_event_name_is_a_400_listing_the_known_ones(daemon, http):
    token = http.token(ACME)
    resp = http.get(f"/v2/accounts/{ACME}/events?events=CHANNEL_CREATE,FOO,channel_bar", token=token)
    assert resp.status == 400
    detail = resp.json["data"]["events"]["enum"]
    assert detail["message"] == "unknown event name(s): CHANNEL_BAR, FOO"
    known = detail["target"]
    assert {"CHANNEL_CREATE", "CHANNEL_ANSWER", "CHANNEL_DESTROY", "DTMF"} <= set(known)
    assert not {"HEARTBEAT", "BACKGROUND_JOB", "ALL"} & set(known)  # they never reach a stream
    assert known == sorted(known)


def test_csv_pages_name_the_next_page(simulator, daemon, http):
    alice = PARTIES[0]
    for _ in range(3):
        simulator.create_call(account_id=ACME, user_id=alice.user_id, device_id=alice.device_id)
    eventually(lambda: len(daemon.registry.for_account(ACME)) == 6)
    token = http.token(ACME)
    csv_headers = {"Accept": "text/csv"}
    whole = list(csv.DictReader(io.StringIO(http.get(f"/v2/accounts/{ACME}/channels", token=token,
                                                     headers=csv_headers).body.decode())))  # fmt: skip
    seen, path, pages = [], f"/v2/accounts/{ACME}/channels?page_size=4", 0
    while path:
        resp = http.get(path, token=token, headers=csv_headers)
        assert resp.status == 200 and resp.headers["content-type"].startswith("text/csv")
        seen += [row["uuid"] for row in csv.DictReader(io.StringIO(resp.body.decode()))]
        pages += 1
        link = resp.headers.get("link")
        if link is None:
            assert "x-next-start-key" not in resp.headers
            break
        match = re.fullmatch(r'<(/v2/[^>]+)>; rel="next"', link)
        assert match and resp.headers["x-next-start-key"] in match.group(1)
        path = match.group(1)
    assert pages == 2 and seen == [row["uuid"] for row in whole]
    # a JSON page names its successor the same way, beside the envelope's next_start_key
    first = http.get(f"/v2/accounts/{ACME}/channels?page_size=4", token=token)
    assert first.headers["x-next-start-key"] == first.json["next_start_key"]


def test_a_lone_channel_can_be_blind_transferred_but_not_what_needs_a_bridge(simulator, daemon, http):
    call = simulator.create_call(account_id=ACME, bridged=False)
    eventually(lambda: (ch := daemon.registry.find(call.a_uuid)) is not None and ch.answered)
    path, token = f"/v2/accounts/{ACME}/channels/{call.a_uuid}", http.token(ACME)
    for action in ({"target": "2600", "leg": "peer"}, {"target": "2600", "leg": "both"},
                   {"target": "2600", "takeback_dtmf": "*1"}):  # fmt: skip
        resp = http.request("POST", path, {"data": {"action": "transfer", **action}}, token=token)
        assert resp.status == 400, action
        assert "bridged" in str(resp.json["data"])
    resp = http.request("POST", path, {"data": {"action": "transfer", "target": "2600"}}, token=token)
    assert resp.status == 200, resp.json
    eventually(lambda: simulator.channel(call.a_uuid).destination == "2600")
    assert "a transfer of an unbridged channel is a 400" not in README  # the README says the same


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "eslchan", *args], capture_output=True, text=True, timeout=30
    )


def test_help_says_what_each_command_and_option_is():
    demo = run_cli("demo", "--help").stdout
    assert "embedded FreeSWITCH simulator" in demo and "curl commands" in demo
    assert "{DEBUG,INFO,WARNING,ERROR}" in demo and "least severe log messages" in demo
    decode = run_cli("decode", "--help").stdout
    assert "raw bytes FreeSWITCH sent" in decode and "'-' for stdin" in decode
    wrong = run_cli("demo", "--log-level", "LOUD")
    assert wrong.returncode == 2 and "invalid choice: 'LOUD'" in wrong.stderr


def test_the_demo_says_it_is_listening_once():
    demo = spawn("demo", "--listen", f"127.0.0.1:{free_port()}", "--esl-port", "0", "--log-level", "info")
    try:
        for line in demo.stdout:
            if "Stop with Ctrl-C" in line:
                break
        time.sleep(0.5)
    finally:
        demo.terminate()
        demo.wait(15)
    log = demo.stderr.read()
    assert log.count("eslchan listening on") == 1, log
    assert "webhooks: 0 hook(s)" in log
