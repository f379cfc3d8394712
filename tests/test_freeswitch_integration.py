"""eslchan against a real FreeSWITCH: real calls, real ESL, real HTTP.

Run with a FreeSWITCH that has conf/freeswitch/ loaded (conf/README.md, `docker compose up`):

    ESLCHAN_TEST_FREESWITCH=127.0.0.1:8021:ClueCon pytest -m freeswitch

Without ESLCHAN_TEST_FREESWITCH every test here is skipped, with the reason shown.

Calls are made with a plain ESL socket (not eslchan's code), the same way the recorded captures
were: `originate {…}loopback/esl_answer/default &park` makes an answered, parked call of two
legs; the originate's leg (…-a) has the uuid we choose. FreeSWITCH itself is the witness of
what really happened to a call: `uuid_exists`, which asks the live session, `uuid_getvar`,
`uuid_dump`, and the events a second plain socket subscribed to (`event json ALL`) receives. Its
`show channels` lags its events (a new call shows some 20–180 ms late, a dead one stays ~200 ms:
SPEC §8), so a test that reads it waits for it, as any client of the switch must.

Each metaflow module has a test that asserts its effect on the switch. Where the module needs
something a switch may lack (a TTS engine, mod_soundtouch, say's sound files), the test asks
the switch (`module_exists`) and expects either the effect or eslchan's refusal.

These tests also run against the simulator, which lags and flips caller ids the same way:
`eslchan simulate --listen 127.0.0.1:8022 --password ClueCon --calls 0` in one shell and
`ESLCHAN_TEST_FREESWITCH=127.0.0.1:8022:ClueCon pytest -m freeswitch` in another (the
directory-user dialplan test needs conf/freeswitch/ and is FreeSWITCH-only).
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import time
import uuid as uuidlib
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import gevent
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

    def channel_uuids(self) -> set[str]:
        return set(self.channel_rows())

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


class Events:
    """A second plain ESL socket subscribed to every event as JSON: what FreeSWITCH did."""

    def __init__(self, host: str, port: int, password: str):
        self.esl = PlainEsl(host, port, password)
        self.esl.sock.settimeout(None)  # quiet stretches are normal for a listener
        self.esl.sock.sendall(b"event json ALL\n\n")
        self.seen: list[dict] = []
        self.reader = gevent.spawn(self._read)

    def _read(self) -> None:
        try:
            while True:
                headers, body = self.esl._frame()
                if headers.get("Content-Type") == "text/event-json":
                    self.seen.append(json.loads(body))
        except (OSError, ConnectionError, ValueError):
            pass

    def of(self, uuid: str | None, name: str, **match: str) -> list[dict]:
        return [e for e in self.seen if (uuid is None or e.get("Unique-ID") == uuid)
                and e.get("Event-Name") == name and all(e.get(k) == v for k, v in match.items())]

    def wait(self, uuid: str | None, name: str, timeout: float = 10.0, **match: str) -> dict:
        found = eventually(lambda: self.of(uuid, name, **match), timeout=timeout)
        return found[-1]

    def close(self) -> None:
        self.reader.kill(block=False)
        self.esl.close()


@pytest.fixture(scope="module")
def events(fs) -> Iterator[Events]:
    watcher = Events(*_target())
    yield watcher
    watcher.close()


@pytest.fixture(scope="module")
def flows(tmp_path_factory) -> Path:
    """callflows_dir with one stored flow, "vip"."""
    directory = tmp_path_factory.mktemp("callflows")
    (directory / "vip.json").write_text(json.dumps(
        {"module": "set_variable", "data": {"name": "eslchan_vip", "value": "gold"}}))
    return directory


@pytest.fixture(scope="module")
def daemon(fs, flows):
    """The whole eslchan daemon against the real FreeSWITCH, its link up and resynced."""
    from eslchan.config import MetaflowConfig
    from eslchan.daemon import Daemon
    from eslchan.demo import demo_config

    host, port, password = _target()
    metaflow = MetaflowConfig(
        media={"welcome": "tone_stream://%(400,200,523);loops=2",
               "long": "tone_stream://%(1000,1000,440);loops=-1"},
        # loopback endpoints answer from the test extensions, so no phone is needed
        dial_templates={"device": "loopback/{id}/default", "user": "loopback/{id}/default",
                        "number": "loopback/{number}/default"},
        callflows_dir=flows,
    )
    config = demo_config([(NODE, host, port, password)], dict(TEST_KEYS), listen="127.0.0.1:0",
                         metaflow=metaflow)
    # Acme may start calls to the test extensions (and to error/: refusals without a channel)
    accounts = tuple(replace(a, endpoints=("loopback/esl_*/default", "error/*")) if a.id == ACME else a
                     for a in config.accounts)
    d = Daemon(replace(config, accounts=accounts))
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


# --- every metaflow module, its effect on the switch ----------------------------------------------


def _api_path(uuid: str) -> str:
    return f"/v2/accounts/{ACME}/channels/{uuid}"


def _put(api: HttpClient, uuid: str, tree: dict):
    return api.request("PUT", _api_path(uuid), {"action": "metaflow", "data": tree}, token=api.token(ACME))


def _post(api: HttpClient, uuid: str, **action):
    return api.request("POST", _api_path(uuid), {"data": action}, token=api.token(ACME))


def _run(api: HttpClient, run_id: str) -> dict:
    resp = api.get(f"/v2/accounts/{ACME}/metaflows/{run_id}", token=api.token(ACME))
    assert resp.status == 200, resp.body
    return resp.json["data"]


def _ended(api: HttpClient, run_id: str, timeout: float = 20.0) -> dict:
    return eventually(lambda: (r := _run(api, run_id))["state"] != "running" and r, timeout=timeout)


def _var(fs: PlainEsl, uuid: str, name: str) -> str:
    return fs.api(f"uuid_getvar {uuid} {name}").strip()


def _has(fs: PlainEsl, module: str) -> bool:
    return fs.api(f"module_exists {module}").strip() == "true"


def _listed(api: HttpClient, *uuids: str) -> None:
    for uuid in uuids:
        eventually(lambda u=uuid: _row(api, f"/v2/accounts/{ACME}/channels", u), timeout=10)


def _acme(new_call: Callable[[], Call], ext: str = "esl_answer") -> Call:
    call = new_call()
    call.originate(f"loopback/{ext}/default", eslchan_account_id=ACME, eslchan_owner_id=ALICE_USER)
    return call


@pytest.fixture
def pair(new_call, fs, api) -> tuple[Call, Call]:
    """Two answered Acme loopback calls, bridged with uuid_bridge (a = the one acted on)."""
    a, b = _acme(new_call), _acme(new_call, "esl_answer_2")
    assert fs.api(f"uuid_bridge {a.uuid} {b.uuid}").startswith("+OK")
    _listed(api, a.uuid, b.uuid)
    eventually(lambda: _row(api, f"/v2/accounts/{ACME}/channels", a.uuid)["other_leg"] == b.uuid,
               timeout=10)
    return a, b


def test_module_break_stops_the_playing_media(api, fs, events, acme_call):
    _listed(api, acme_call.uuid)
    resp = _put(api, acme_call.uuid,
                {"module": "play", "data": {"id": "long", "leg": "self", "wait": False}})
    assert resp.status == 202, resp.body
    events.wait(acme_call.uuid, "PLAYBACK_START")
    assert _post(api, acme_call.uuid, action="break").status == 200
    stop = events.wait(acme_call.uuid, "PLAYBACK_STOP")
    assert stop["Playback-Status"] == "break"
    assert acme_call.alive()


def test_module_play_plays_on_both_legs(api, fs, events, pair):
    a, b = pair
    resp = _put(api, a.uuid, {"module": "play", "data": {"id": "welcome"}})
    assert resp.status == 202, resp.body
    for leg in (a.uuid, b.uuid):
        start = events.wait(leg, "PLAYBACK_START")
        assert start["Playback-File-Path"] == "tone_stream://%(400,200,523);loops=2"
    assert _ended(api, resp.json["data"]["id"])["state"] == "finished"


def test_module_tts_speaks_or_is_refused_naming_the_engine(api, fs, events, acme_call):
    _listed(api, acme_call.uuid)
    resp = _post(api, acme_call.uuid, action="tts", text="Hello from eslchan")
    if _has(fs, "mod_flite"):
        assert resp.status == 200, resp.body
        events.wait(acme_call.uuid, "PLAYBACK_START")
    else:  # FreeSWITCH would say nothing and report the speak as done
        assert resp.status == 502, resp.body
        assert resp.json["data"]["missing"] == "TTS engine flite (mod_flite)"
        gevent.sleep(0.5)
        assert not events.of(acme_call.uuid, "CHANNEL_EXECUTE", Application="speak")
    assert acme_call.alive()


def test_module_say_says_or_reports_that_nothing_was_said(api, fs, events, acme_call):
    _listed(api, acme_call.uuid)
    resp = _put(api, acme_call.uuid, {"module": "say", "data": {"text": "42"}})
    if not _has(fs, "mod_say_en"):
        assert resp.status == 502, resp.body
        return
    assert resp.status == 202, resp.body
    run = _ended(api, resp.json["data"]["id"])
    played = events.of(acme_call.uuid, "PLAYBACK_START")
    if played:  # the switch has its sound files
        assert run["state"] == "finished" and run["notes"]["said"] is True
    else:
        assert run["state"] == "failed" and "said nothing" in run["error"]
    assert acme_call.alive()


def test_module_sound_touch_never_hangs_the_call_up(api, fs, events, acme_call):
    _listed(api, acme_call.uuid)
    resp = _post(api, acme_call.uuid, action="sound_touch", pitch=1.5)
    if _has(fs, "mod_soundtouch"):
        assert resp.status == 200, resp.body
        events.wait(acme_call.uuid, "CHANNEL_EXECUTE", Application="soundtouch")
    else:
        assert resp.status == 502, resp.body
        assert resp.json["data"]["missing"] == "application soundtouch (mod_soundtouch)"
    gevent.sleep(1.0)
    assert acme_call.alive()


def test_module_hold_plays_the_peer_music_and_its_key_is_honoured(api, fs, events, pair):
    a, b = pair
    resp = _put(api, a.uuid, {"module": "hold", "data": {"unhold_key": "1"}})
    assert resp.status == 202, resp.body
    events.wait(a.uuid, "CHANNEL_HOLD")
    events.wait(b.uuid, "PLAYBACK_START")  # the peer hears the hold music
    assert fs.api(f"uuid_recv_dtmf {a.uuid} 1").startswith("+OK")
    run = _ended(api, resp.json["data"]["id"])
    if events.of(a.uuid, "CHANNEL_UNHOLD"):  # a leg FreeSWITCH can unhold (SIP)
        assert run["state"] == "finished" and run["notes"]["unheld_by"] == "unhold_key"
    else:  # loopback: FreeSWITCH cannot take it off hold, and says so through eslchan
        assert run["state"] == "failed" and "callstate never became HELD" in run["error"]
        events.wait(b.uuid, "PLAYBACK_STOP")
    assert a.alive() and b.alive()


def test_module_hold_control_toggles_from_the_known_state(api, fs, events, pair):
    a, _ = pair
    resp = _post(api, a.uuid, action="hold_control")
    assert resp.status == 200, resp.body
    assert resp.json["data"]["result"] == {"hold_action": "hold"}
    events.wait(a.uuid, "CHANNEL_HOLD")
    eventually(lambda: _row(api, f"/v2/accounts/{ACME}/channels", a.uuid)["is_onhold"], timeout=10)
    resp = _post(api, a.uuid, action="hold_control")  # toggles to unhold, never a second hold
    if resp.status == 200:
        events.wait(a.uuid, "CHANNEL_UNHOLD")
    else:  # a loopback leg never reaches callstate HELD
        assert resp.status == 502 and resp.json["data"]["text"] == "-ERR Operation failed", resp.body
    gevent.sleep(0.5)
    assert len(events.of(a.uuid, "CHANNEL_HOLD")) == 1


def test_module_unhold_is_freeswitchs_answer(api, fs, events, pair):
    a, _ = pair
    assert _post(api, a.uuid, action="hold_control").status == 200
    events.wait(a.uuid, "CHANNEL_HOLD")
    resp = _post(api, a.uuid, action="unhold")
    if resp.status == 200:
        events.wait(a.uuid, "CHANNEL_UNHOLD")
    else:
        assert resp.status == 502 and resp.json["data"]["text"] == "-ERR Operation failed", resp.body


def test_modules_park_and_resume_part_and_rejoin_the_legs(api, fs, events, pair):
    a, b = pair
    assert _put(api, a.uuid, {"module": "park"}).status == 202
    events.wait(a.uuid, "CHANNEL_UNBRIDGE")
    eventually(lambda: _var(fs, a.uuid, "current_application") == "park", timeout=10)
    eventually(lambda: _var(fs, b.uuid, "current_application") == "park", timeout=10)
    assert _var(fs, a.uuid, "park_after_bridge") == "true"
    resp = _put(api, a.uuid, {"module": "resume"})
    assert resp.status == 202, resp.body
    bridged = eventually(lambda: [e for e in events.of(a.uuid, "CHANNEL_BRIDGE")
                                  if e.get("Other-Leg-Unique-ID") == b.uuid][1:], timeout=10)
    assert bridged


def test_module_transfer_blind_runs_the_target_extension(api, fs, events, acme_call):
    _listed(api, acme_call.uuid)
    assert _post(api, acme_call.uuid, action="transfer", target="esl_tone").status == 200
    start = events.wait(acme_call.uuid, "PLAYBACK_START")
    assert start["Playback-File-Path"] == "tone_stream://%(200,200,600);loops=2"
    assert start["Caller-Destination-Number"] == "esl_tone"


def test_module_transfer_attended_consults_and_takes_back(api, fs, events, pair):
    """Issue 17.1: the ringback never plays inside the consultation, and *1 takes back."""
    a, b = pair
    resp = _post(api, a.uuid, action="transfer", target="esl_answer_att", takeback_dtmf="*1",
                 moh="welcome")
    assert resp.status == 200, resp.body
    target = resp.json["data"]["result"]["target_leg"]
    bridge = events.wait(a.uuid, "CHANNEL_BRIDGE", **{"Other-Leg-Unique-ID": target})
    gevent.sleep(1.0)
    later = [e for e in events.of(a.uuid, "PLAYBACK_START")
             if int(e["Event-Sequence"]) > int(bridge["Event-Sequence"])]
    assert not later  # nothing plays to the transferor while it consults
    assert fs.api(f"uuid_recv_dtmf {a.uuid} *1").startswith("+OK")
    run = _ended(api, resp.json["data"]["id"])
    assert run["notes"]["transfer_outcome"] == "takeback"
    events.wait(a.uuid, "CHANNEL_BRIDGE", **{"Other-Leg-Unique-ID": b.uuid})
    eventually(lambda: not fs.exists(target), timeout=10)
    assert a.alive() and b.alive()


def test_module_record_call_starts_and_stops_a_recording(api, fs, events, acme_call):
    _listed(api, acme_call.uuid)
    name = f"eslchan-test-{acme_call.marker}"
    resp = _put(api, acme_call.uuid, {
        "module": "record_call", "data": {"action": "start", "media_name": name},
        "children": {"_": {"module": "sleep", "data": {"duration": 1},
                           "children": {"_": {"module": "record_call", "data": {"action": "stop"}}}}}})
    assert resp.status == 202, resp.body
    start = events.wait(acme_call.uuid, "RECORD_START")
    assert start["Record-File-Path"].endswith(f"/{name}.wav")
    stop = events.wait(acme_call.uuid, "RECORD_STOP")
    assert stop["Record-File-Path"] == start["Record-File-Path"]


def test_module_audio_level_adds_the_audio_media_bug(api, fs, events, acme_call):
    _listed(api, acme_call.uuid)
    assert _post(api, acme_call.uuid, action="audio_level", level=2).status == 200
    bug = events.wait(acme_call.uuid, "MEDIA_BUG_START")
    assert bug["Media-Bug-Function"] == "audio"


def test_module_intercept_takes_the_call_over(api, fs, events, new_call):
    call = _acme(new_call)
    _listed(api, call.uuid)
    resp = _post(api, call.uuid, action="intercept", target_type="number", target_id="esl_answer_int")
    assert resp.status == 200, resp.body
    new_leg = resp.json["data"]["result"]["new_leg"]
    # the leg that answered runs intercept: the call is now bridged to it
    eventually(lambda: _var(fs, call.uuid, "bridge_uuid") == new_leg, timeout=15)


def test_module_move_gives_the_peer_to_the_new_leg(api, fs, events, pair):
    a, b = pair
    resp = _post(api, a.uuid, action="move", device_id="esl_answer_mv")
    assert resp.status == 200, resp.body
    eventually(lambda: not a.alive(), timeout=15)  # the mover is released
    assert b.alive()


def test_module_callflow_continues_in_the_stored_flow(api, fs, acme_call):
    _listed(api, acme_call.uuid)
    assert _post(api, acme_call.uuid, action="callflow", id="vip").status == 200
    eventually(lambda: _var(fs, acme_call.uuid, "eslchan_vip") == "gold", timeout=10)


def test_module_collect_dtmf_branches_on_the_digits(api, fs, acme_call):
    _listed(api, acme_call.uuid)
    resp = _put(api, acme_call.uuid, {
        "module": "collect_dtmf", "data": {"max_digits": 2, "timeout": 10000},
        "children": {"42": {"module": "set_variable", "data": {"name": "eslchan_menu", "value": "42"}}}})
    assert resp.status == 202, resp.body
    eventually(lambda: _run(api, resp.json["data"]["id"])["waiting"], timeout=10)
    assert fs.api(f"uuid_recv_dtmf {acme_call.uuid} 42").startswith("+OK")
    assert _ended(api, resp.json["data"]["id"])["state"] == "finished"
    assert _var(fs, acme_call.uuid, "eslchan_menu") == "42"


def test_module_send_dtmf_reaches_the_far_end(api, fs, events, acme_call):
    _listed(api, acme_call.uuid)
    far = _var(fs, acme_call.uuid, "other_loopback_leg_uuid")
    assert _post(api, acme_call.uuid, action="send_dtmf", digits="12").status == 200
    eventually(lambda: [e["DTMF-Digit"] for e in events.of(far, "DTMF")] == ["1", "2"], timeout=10)


def test_module_sleep_waits_before_the_next_node(api, fs, acme_call):
    _listed(api, acme_call.uuid)
    began = time.monotonic()
    resp = _put(api, acme_call.uuid, {
        "module": "sleep", "data": {"duration": 1},
        "children": {"_": {"module": "set_variable", "data": {"name": "eslchan_slept", "value": "yes"}}}})
    assert resp.status == 202
    eventually(lambda: _var(fs, acme_call.uuid, "eslchan_slept") == "yes", timeout=10)
    assert time.monotonic() - began >= 1.0


def test_module_set_variable_shows_in_the_api_at_once(api, fs, acme_call):
    _listed(api, acme_call.uuid)
    value = "at-once-" + acme_call.marker
    assert _post(api, acme_call.uuid, action="set_variable", name="eslchan_now", value=value).status == 200
    detail = api.get(_api_path(acme_call.uuid), token=api.token(ACME)).json["data"]
    assert detail["custom_channel_vars"]["now"] == value
    assert _var(fs, acme_call.uuid, "eslchan_now") == value


def test_a_deleted_run_stops_its_media_on_the_real_switch(api, fs, events, pair):
    a, b = pair
    resp = _put(api, a.uuid, {"module": "play", "data": {"id": "long"}})
    assert resp.status == 202, resp.body
    for leg in (a.uuid, b.uuid):
        events.wait(leg, "PLAYBACK_START")
    run_id = resp.json["data"]["id"]
    gone = api.request("DELETE", f"{_api_path(a.uuid)}/metaflows/{run_id}", token=api.token(ACME))
    assert gone.status == 200, gone.body
    for leg in (a.uuid, b.uuid):
        events.wait(leg, "PLAYBACK_STOP")
    assert a.alive() and b.alive()


# --- starting calls, bridging them, listening in -------------------------------------------------


def _start(api: HttpClient, **data) -> object:
    return api.request("PUT", f"/v2/accounts/{ACME}/channels", {"data": data}, token=api.token(ACME))


def test_a_started_call_is_created_answered_and_runs_its_metaflow(api, fs, events):
    resp = _start(api, endpoint="loopback/esl_answer_new/default", caller_id_name="CRM",
                  caller_id_number="5550100", custom_channel_vars={"eslchan_ticket": "T-1"},
                  metaflow={"module": "set_variable", "data": {"name": "eslchan_greeted", "value": "yes"}})
    assert resp.status == 201, resp.body
    uuid = resp.json["data"]["uuid"]
    try:
        assert resp.headers["location"] == _api_path(uuid)
        assert fs.exists(uuid)  # FreeSWITCH created it before eslchan answered
        create = events.wait(uuid, "CHANNEL_CREATE")
        assert create["variable_eslchan_account_id"] == ACME and create["variable_eslchan_ticket"] == "T-1"
        events.wait(uuid, "CHANNEL_ANSWER")
        # the flow ran once the call was answered
        eventually(lambda: _var(fs, uuid, "eslchan_greeted") == "yes", timeout=10)
        run = _ended(api, resp.json["data"]["run_id"])
        assert (run["kind"], run["state"], run["notes"]["call"]) == ("originate", "finished", "answered")
        assert _row(api, f"/v2/accounts/{ACME}/channels", uuid)["answered"] is True
    finally:
        if fs.exists(uuid):
            fs.api(f"uuid_kill {uuid}")


def test_a_start_freeswitch_refuses_creates_no_channel_and_is_a_502(api, fs, events):
    """FreeSWITCH answers error/user_busy with -ERR USER_BUSY and no channel (esl-captures 14)."""
    resp = _start(api, endpoint="error/user_busy")
    assert resp.status == 502, resp.body
    assert resp.json["data"]["text"] == "-ERR USER_BUSY"
    runs = _rows(api, f"/v2/accounts/{ACME}/metaflows")
    assert runs[0]["notes"] == {"call": "failed", "hangup_cause": "USER_BUSY"}


def test_bridge_two_real_calls_of_the_account(api, fs, events, pair):
    """Two answered calls of Acme (each a loopback pair), bridged by eslchan's bridge module:
    FreeSWITCH's own bridge_uuid says so."""
    first = pair[0]
    resp = _start(api, endpoint="loopback/esl_answer_br/default")
    assert resp.status == 201, resp.body
    second = resp.json["data"]["uuid"]
    try:
        events.wait(second, "CHANNEL_ANSWER")
        eventually(lambda: _var(fs, second, "current_application") == "park", timeout=10)
        assert _post(api, second, action="bridge", other_leg=first.uuid).status == 200
        events.wait(second, "CHANNEL_BRIDGE", **{"Other-Leg-Unique-ID": first.uuid})
        assert _var(fs, second, "bridge_uuid") == first.uuid
        eventually(lambda: _row(api, f"/v2/accounts/{ACME}/channels", second)["other_leg"] == first.uuid,
                   timeout=10)
    finally:
        if fs.exists(second):
            fs.api(f"uuid_kill {second}")


def test_a_supervisor_listens_in_on_a_real_call(api, fs, events, acme_call):
    _listed(api, acme_call.uuid)
    resp = _post(api, acme_call.uuid, action="eavesdrop", supervisor_id="esl_answer_sup", mode="whisper")
    assert resp.status == 200, resp.body
    new_leg = resp.json["data"]["result"]["new_leg"]
    try:
        bug = events.wait(acme_call.uuid, "MEDIA_BUG_START", timeout=15)
        assert bug["Media-Bug-Function"] == "eavesdrop"
        ex = events.wait(new_leg, "CHANNEL_EXECUTE", Application="eavesdrop")
        assert ex["Application-Data"] == acme_call.uuid
        assert _var(fs, new_leg, "eavesdrop_whisper_bleg") == "true"
    finally:
        if fs.exists(new_leg):
            fs.api(f"uuid_kill {new_leg}")
    events.wait(acme_call.uuid, "MEDIA_BUG_STOP")
    assert acme_call.alive()
