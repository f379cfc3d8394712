"""`eslchan serve` as a process with webhooks: SIGTERM writes out what is still in memory, and the
next process delivers every event that was accepted, whatever the receiver did meanwhile."""

from __future__ import annotations

import signal
import sqlite3

import pytest
from test_cli import ACCOUNT, call, free_port, spawn, until, write_config
from webhook_receiver import Receiver

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def simulate():
    esl_port = free_port()
    proc = spawn("simulate", "--listen", f"127.0.0.1:{esl_port}", "--password", "pw",
                 "--calls", "4", "--speed", "20")  # fmt: skip
    yield esl_port
    proc.terminate()
    proc.wait(10)


def persisted(data_dir) -> set[str]:
    """The webhook-ids of the deliveries the database holds (hook id - event id)."""
    with sqlite3.connect(data_dir / "webhooks.sqlite3") as db:
        rows = db.execute(
            "SELECT h.id, d.event_id FROM deliveries d JOIN hooks h ON h.num = d.hook"
        ).fetchall()
    return {f"{hook}-{event}" for hook, event in rows}


def test_sigterm_keeps_every_accepted_event_for_the_next_process(simulate, tmp_path):
    receiver = Receiver().start()
    receiver.status = 503  # down while the first process runs
    http_port = free_port()
    data_dir = tmp_path / "hooks"
    config = tmp_path / "eslchan.toml"
    write_config(config, simulate, http_port, "first-key-0123456789")
    config.write_text(
        config.read_text()
        + f'\n[webhooks]\ndata_dir = "{data_dir}"\nbackoff_initial = 0.05\nbackoff_max = 0.2\n'
        'allowed_networks = ["127.0.0.0/8"]\n'
    )
    base = f"http://127.0.0.1:{http_port}"
    env = {"TEST_ESL_PASSWORD": "pw"}
    first = spawn("serve", "--config", str(config), env=env)
    try:
        until(lambda: call(base + "/health")[0] == 200)
        token = call(base + "/v2/api_auth", "PUT", {"data": {"api_key": "first-key-0123456789"}})[1][
            "auth_token"
        ]
        hook_fields = {"data": {"name": "crm", "uri": receiver.url(), "hook": "all"}}
        status, answer = call(base + f"/v2/accounts/{ACCOUNT}/webhooks", "PUT", hook_fields, token)
        assert status == 201, answer
        hook = answer["data"]["id"]
        hook_path = base + f"/v2/accounts/{ACCOUNT}/webhooks/{hook}"
        until(lambda: call(hook_path, token=token)[1]["data"]["pending"] >= 10)
    finally:
        first.send_signal(signal.SIGTERM)
        assert first.wait(20) == 0
    kept = persisted(data_dir)
    assert len(kept) >= 10 and receiver.accepted == []

    receiver.status = 200
    second = spawn("serve", "--config", str(config), env=env)
    try:
        until(lambda: kept <= {r.headers["webhook-id"] for r in receiver.accepted}, timeout=30)
    finally:
        second.send_signal(signal.SIGTERM)
        assert second.wait(20) == 0
        receiver.stop()
    ids = [r.headers["webhook-id"] for r in receiver.accepted]
    assert ids == sorted(ids, key=lambda i: int(i.rsplit("-", 1)[1]))  # in the order they happened
    assert "first-key" not in second.stderr.read()
