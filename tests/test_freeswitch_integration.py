"""eslchan against a real FreeSWITCH: real calls, real ESL, real HTTP.

Run with a FreeSWITCH that has conf/freeswitch/ loaded (conf/README.md, `docker compose up`):

    ESLCHAN_TEST_FREESWITCH=127.0.0.1:8021:ClueCon pytest -m freeswitch

Without ESLCHAN_TEST_FREESWITCH every test here is skipped, with the reason shown.

Calls are made with a plain ESL socket (not eslchan's code), the same way the recorded captures
were: `originate {…}loopback/esl_answer/default &park` makes an answered, parked call of two
legs; the originate's leg (…-a) has the uuid we choose. FreeSWITCH itself is the witness of
what really happened to a call: `uuid_exists`, which asks the live session. Its `show channels`
lags its events (a new call shows some 20–180 ms late, a dead one stays ~200 ms: SPEC §8), so
a test that reads it waits for it, as any client of the switch must.

These tests also run against the simulator, which lags and flips caller ids the same way:
`eslchan simulate --listen 127.0.0.1:8022 --password ClueCon` in one shell and
`ESLCHAN_TEST_FREESWITCH=127.0.0.1:8022:ClueCon pytest -m freeswitch` in another (the
directory-user dialplan test needs conf/freeswitch/ and is FreeSWITCH-only).
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import uuid as uuidlib
from collections.abc import Iterator

import pytest
from conftest import TEST_KEYS, HttpClient, eventually

ENV = "ESLCHAN_TEST_FREESWITCH"
TARGET = os.environ.get(ENV, "").strip()

pytestmark = [
    pytest.mark.freeswitch,
    pytest.mark.timeout(90),
    pytest.mark.skipif(
        not TARGET,
        reason=f"needs a real FreeSWITCH: set {ENV}=host:port:password (see conf/README.md)",
    ),
]

# the demo tenancy (eslchan/demo.py); conf/freeswitch/directory/default/eslchan.xml uses the same ids
ACME = "acc00000000000000000000000000001"
GLOBEX = "acc00000000000000000000000000003"
ALICE_USER = "5e000000000000000000000000000a01"
ALICE_DEVICE = "de000000000000000000000000000a01"
NODE = "fs1"


def _target() -> tuple[str, int, str]:
    host, sep, rest = TARGET.partition(":")
    port, sep2, password = rest.partition(":")
    if not (host and sep and sep2 and port.isdigit() and password):
        pytest.fail(f"{ENV} must be host:port:password, not {TARGET!r}", pytrace=False)
    return host, int(port), password


# --- a minimal ESL client, independent of eslchan's --------------------------------------------


class PlainEsl:
    """Inbound ESL over one socket, no event subscription: every frame is a reply to us."""

    def __init__(self, host: str, port: int, password: str, timeout: float = 20.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.buf = b""
        headers, _ = self._frame()
        assert headers.get("Content-Type") == "auth/request", headers
        self.sock.sendall(f"auth {password}\n\n".encode())
        headers, _ = self._frame()
        reply = headers.get("Reply-Text", "")
        if not reply.startswith("+OK"):
            pytest.fail(f"FreeSWITCH at {host}:{port} refused the ESL password: {reply}", pytrace=False)

    def _frame(self) -> tuple[dict[str, str], str]:
        while b"\n\n" not in self.buf:
            self._fill()
        head, self.buf = self.buf.split(b"\n\n", 1)
        headers = dict(line.split(": ", 1) for line in head.decode().splitlines() if ": " in line)
        length = int(headers.get("Content-Length", "0"))
        while len(self.buf) < length:
            self._fill()
        body, self.buf = self.buf[:length], self.buf[length:]
        return headers, body.decode("utf-8", "replace")

    def _fill(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("FreeSWITCH closed the ESL connection")
        self.buf += chunk

    def api(self, command: str) -> str:
        assert "\n" not in command
        self.sock.sendall(f"api {command}\n\n".encode())
        while True:
            headers, body = self._frame()
            if headers.get("Content-Type") == "api/response":
                return body

    def channel_rows(self) -> dict[str, dict]:
        """FreeSWITCH's `show channels` (its core database: it lags the events)."""
        data = json.loads(self.api("show channels as json"))
        return {row["uuid"]: row for row in data.get("rows", [])}

    def exists(self, uuid: str) -> bool:
        """Whether the live session exists: exact, unlike `show channels`."""
        return self.api(f"uuid_exists {uuid}").strip() == "true"

    def close(self) -> None:
        try:
            self.sock.sendall(b"exit\n\n")
        except OSError:
            pass
        self.sock.close()


# --- fixtures -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fs() -> Iterator[PlainEsl]:
    host, port, password = _target()
    esl = PlainEsl(host, port, password)
    version = esl.api("version")
    assert "FreeSWITCH" in version, version
    yield esl
    esl.close()


@pytest.fixture(scope="module")
def daemon(fs):
    """The whole eslchan daemon against the real FreeSWITCH, its link up and resynced."""
    from eslchan.daemon import Daemon
    from eslchan.demo import demo_config

    host, port, password = _target()
    d = Daemon(demo_config([(NODE, host, port, password)], dict(TEST_KEYS), listen="127.0.0.1:0"))
    d.start()
    eventually(lambda: all(link.is_up for link in d.links.values()), timeout=20)
    yield d
    d.stop(drain_seconds=1.0)


@pytest.fixture(scope="module")
def api(daemon) -> HttpClient:
    host, port = daemon.http_address
    return HttpClient(host, port, dict(TEST_KEYS))


class Call:
    """One real loopback call: `uuid` is the originate's leg, `number` its unique caller id."""

    def __init__(self, fs: PlainEsl):
        self.fs = fs
        self.uuid = str(uuidlib.uuid4())
        self.number = "77" + "".join(secrets.choice("0123456789") for _ in range(8))
        self.marker = secrets.token_hex(8)

    def originate(self, target: str, **variables: str) -> None:
        base = {
            "origination_uuid": self.uuid,
            "origination_caller_id_name": "Alice",
            "origination_caller_id_number": self.number,
            "eslchan_test_marker": self.marker,
        }
        pairs = ",".join(f"{k}={v}" for k, v in {**base, **variables}.items())
        reply = self.fs.api(f"originate {{{pairs}}}{target} &park").strip()
        assert reply == f"+OK {self.uuid}", reply

    def alive(self) -> bool:
        return self.fs.exists(self.uuid)

    def kill(self) -> None:
        if self.alive():
            self.fs.api(f"uuid_kill {self.uuid}")


@pytest.fixture
def new_call(fs) -> Iterator:
    calls: list[Call] = []

    def make() -> Call:
        calls.append(Call(fs))
        return calls[-1]

    yield make
    for call in calls:  # never leave a parked call behind on the user's FreeSWITCH
        call.kill()


@pytest.fixture
def acme_call(new_call, daemon) -> Call:
    """An answered, parked call tagged like an Acme device call (variables in the originate)."""
    call = new_call()
    call.originate(
        "loopback/esl_answer/default",
        eslchan_account_id=ACME,
        eslchan_owner_id=ALICE_USER,
        eslchan_authorizing_id=ALICE_DEVICE,
        eslchan_authorizing_type="device",
        user_name="alice",
        presence_id="alice@eslchan.test",
    )
    return call


def _rows(api: HttpClient, path: str, account: str = ACME) -> list[dict]:
    resp = api.get(path, token=api.token(account))
    assert resp.status == 200, resp.body
    assert resp.json["status"] == "success"
    return resp.json["data"]


def _row(api: HttpClient, path: str, uuid: str, account: str = ACME) -> dict | None:
    return next((r for r in _rows(api, path, account) if r["uuid"] == uuid), None)


def _legs(api: HttpClient, call: Call) -> dict[str, dict]:
    """The call's legs eslchan lists: its caller id is the caller's on one leg and, once the
    originate's own leg has flipped its caller id, the callee's on the other."""
    return {
        r["uuid"]: r
        for r in _rows(api, f"/v2/accounts/{ACME}/channels")
        if call.number in (r["caller_id_number"], r["callee_id_number"])
    }


# --- tests --------------------------------------------------------------------------------------


def test_health_reports_the_real_node_connected(api):
    resp = api.get("/health")
    assert resp.status == 200, resp.body
    assert NODE in resp.body.decode()


def test_account_listing_shows_a_real_call(api, fs, acme_call):
    row = eventually(lambda: _row(api, f"/v2/accounts/{ACME}/channels", acme_call.uuid), timeout=10)
    assert row["owner_id"] == ALICE_USER
    assert row["authorizing_id"] == ALICE_DEVICE
    assert row["authorizing_type"] == "device"
    assert row["destination"] == "esl_answer"
    assert row["direction"] == "outbound"  # the originate's own leg
    assert row["username"] == "alice"
    assert row["node"] == NODE
    assert row["timestamp"] > 62167219200  # Gregorian seconds

    # once answered, FreeSWITCH flips the caller id of the originate's own leg (SPEC §8): it
    # becomes the caller of its own dialplan, and the origination caller id its callee
    def flipped():
        row = _row(api, f"/v2/accounts/{ACME}/channels", acme_call.uuid)
        return row if row["answered"] and row["caller_id_name"] == "Outbound Call" else None

    row = eventually(flipped, timeout=10)
    assert row["caller_id_number"] == "default"  # the dialled context
    assert (row["callee_id_name"], row["callee_id_number"]) == ("Alice", acme_call.number)

    # the loopback's other leg carries the same variables, so it is Acme's too, and keeps the
    # origination caller id
    legs = _legs(api, acme_call)
    assert len(legs) == 2, legs
    (b_leg,) = (r for u, r in legs.items() if u != acme_call.uuid)
    assert b_leg["direction"] == "inbound"
    assert (b_leg["caller_id_name"], b_leg["caller_id_number"]) == ("Alice", acme_call.number)

    # FreeSWITCH's own table says the same once it has caught up with its events
    def table_caught_up():
        rows = fs.channel_rows()
        a_row = rows.get(acme_call.uuid, {})
        return rows if b_leg["uuid"] in rows and a_row.get("cid_name") == "Outbound Call" else None

    table = eventually(table_caught_up, timeout=10)
    assert table[acme_call.uuid]["cid_num"] == "default"
    assert table[b_leg["uuid"]]["cid_num"] == acme_call.number

    # the same call through the user's and the device's view, and not through another tenant's
    assert _row(api, f"/v2/accounts/{ACME}/users/{ALICE_USER}/channels", acme_call.uuid)
    assert _row(api, f"/v2/accounts/{ACME}/devices/{ALICE_DEVICE}/channels", acme_call.uuid)
    assert _row(api, f"/v2/accounts/{GLOBEX}/channels", acme_call.uuid, account=GLOBEX) is None


def test_channel_details_of_a_real_call(api, acme_call):
    path = f"/v2/accounts/{ACME}/channels/{acme_call.uuid}"

    def details():
        resp = api.get(path, token=api.token(ACME))
        return resp.json["data"] if resp.status == 200 and resp.json["data"].get("answered") else None

    data = eventually(details, timeout=10)
    assert data["uuid"] == data["call_id"] == acme_call.uuid
    assert data["owner_id"] == ALICE_USER
    assert data["node"] == NODE
    assert data["state"]  # e.g. CS_EXECUTE while parked
    assert acme_call.marker in data["custom_channel_vars"].values()

    # another tenant cannot see it: 404 bad identifier, not 403 (no existence leak)
    resp = api.get(f"/v2/accounts/{GLOBEX}/channels/{acme_call.uuid}", token=api.token(GLOBEX))
    assert resp.status == 404, resp.body
    assert resp.json["data"] == [acme_call.uuid]


def test_post_hangup_ends_the_real_call(api, fs, acme_call):
    eventually(lambda: _row(api, f"/v2/accounts/{ACME}/channels", acme_call.uuid), timeout=10)
    assert acme_call.alive()
    legs = eventually(lambda: _legs(api, acme_call) if len(_legs(api, acme_call)) == 2 else None, timeout=10)

    resp = api.request(
        "POST",
        f"/v2/accounts/{ACME}/channels/{acme_call.uuid}",
        {"data": {"action": "hangup"}},
        token=api.token(ACME),
    )
    assert resp.status == 200, resp.body
    assert resp.json["status"] == "success"

    # FreeSWITCH itself no longer has the call (neither leg), and the listing follows
    eventually(lambda: not any(fs.exists(uuid) for uuid in legs), timeout=10)
    eventually(lambda: not _legs(api, acme_call), timeout=10)
    resp = api.get(f"/v2/accounts/{ACME}/channels/{acme_call.uuid}", token=api.token(ACME))
    assert resp.status == 404, resp.body
    # its lagging table forgets them too, a little later
    eventually(lambda: not fs.channel_rows().keys() & set(legs), timeout=10)


def test_put_metaflow_sets_a_variable_on_the_real_call(api, fs, acme_call):
    eventually(lambda: _row(api, f"/v2/accounts/{ACME}/channels", acme_call.uuid), timeout=10)
    value = "from-metaflow-" + acme_call.marker
    resp = api.request(
        "PUT",
        f"/v2/accounts/{ACME}/channels/{acme_call.uuid}",
        {
            "action": "metaflow",
            "data": {"module": "set_variable", "data": {"name": "eslchan_note", "value": value}},
        },
        token=api.token(ACME),
    )
    assert resp.status == 202, resp.body
    # FreeSWITCH is the witness: the variable is really on the channel
    eventually(lambda: fs.api(f"uuid_getvar {acme_call.uuid} eslchan_note").strip() == value, timeout=10)
    assert acme_call.alive()


def test_put_metaflow_plays_a_tone_then_hangs_up_the_real_call(api, fs, acme_call):
    eventually(lambda: _row(api, f"/v2/accounts/{ACME}/channels", acme_call.uuid), timeout=10)
    resp = api.request(
        "PUT",
        f"/v2/accounts/{ACME}/channels/{acme_call.uuid}",
        {
            "action": "metaflow",
            "data": {
                # "welcome" is the demo config's media id: a tone_stream, no sound files needed
                "module": "play",
                "data": {"id": "welcome", "leg": "self"},
                "children": {"_": {"module": "hangup"}},
            },
        },
        token=api.token(ACME),
    )
    assert resp.status == 202, resp.body
    eventually(lambda: not acme_call.alive(), timeout=20)
    eventually(lambda: _row(api, f"/v2/accounts/{ACME}/channels", acme_call.uuid) is None, timeout=10)


def test_dialplan_tags_a_call_from_the_directory_user(api, new_call):
    """conf/freeswitch/dialplan/eslchan.xml: a channel with user_name 7101 gets Alice's ids."""
    call = new_call()
    # only user_name: the ids come from the directory, through the "eslchan" context
    call.originate("loopback/esl_answer/eslchan", user_name="7101")

    def tagged_leg():
        rows = _rows(api, f"/v2/accounts/{ACME}/users/{ALICE_USER}/channels")
        return next((r for r in rows if r["caller_id_number"] == call.number), None)

    row = eventually(tagged_leg, timeout=15)
    assert row["authorizing_id"] == ALICE_DEVICE
    assert row["authorizing_type"] == "device"
    assert row["username"] == "7101"
    assert row["direction"] == "inbound"  # the leg that ran the dialplan
