"""Replays the client side of every recorded FreeSWITCH conversation against the simulator
and checks, frame by frame, that the simulator answers the way FreeSWITCH did: reply types,
header names and order, reply texts and api bodies (UUIDs, times and counters aside), and
the header layout of the events it sends."""

from __future__ import annotations

import json
import re
import socket
import time
from pathlib import Path

import gevent
import pytest

from eslchan.esl.parser import FrameParser, decode_event
from eslchan.simulator import Simulator

pytestmark = pytest.mark.timeout(60)

SPEED = 20.0
UUID_RE = re.compile(rb"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
REPLY_TYPES = ("command/reply", "api/response")
# Events FreeSWITCH sends that the simulator does not model (sofia/presence/module internals).
UNMODELLED = {"MODULE_UNLOAD", "UNPUBLISH", "CUSTOM"}
COMMON = ["Event-Name", "Core-UUID", "FreeSWITCH-Hostname", "FreeSWITCH-Switchname",
          "FreeSWITCH-IPv4", "FreeSWITCH-IPv6", "Event-Date-Local", "Event-Date-GMT",
          "Event-Date-Timestamp", "Event-Calling-File", "Event-Calling-Function",
          "Event-Calling-Line-Number", "Event-Sequence"]
CHANNEL_CORE = ["Channel-State", "Channel-Call-State", "Channel-State-Number", "Channel-Name",
                "Unique-ID", "Call-Direction", "Presence-Call-Direction", "Channel-HIT-Dialplan",
                "Channel-Call-UUID", "Answer-State"]


def norm(text: str) -> str:
    text = UUID_RE.sub(b"<uuid>", text.encode()).decode()
    return re.sub(r"\d+", "<n>", text)


class Conn:
    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.parser = FrameParser()
        self.frames: list = []
        self.eof = False
        self.client_closed = False  # the recording client hung up first (no EOF to expect)
        self.reader = gevent.spawn(self._read)

    def _read(self) -> None:
        try:
            while True:
                data = self.sock.recv(65536)
                if not data:
                    break
                self.frames.extend(self.parser.feed(data))
        except OSError:
            pass
        self.eof = True

    def replies(self) -> list:
        return [f for f in self.frames if f.content_type in REPLY_TYPES]

    def events(self) -> list[dict]:
        return [decode_event(f) for f in self.frames if f.is_event]

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


def capture_frames(path: Path) -> list:
    return FrameParser().feed(path.read_bytes())


def split_commands(data: bytes) -> list[bytes]:
    """The client's writes as whole commands (header block plus any Content-Length body)."""
    out = []
    pos = 0
    while pos < len(data):
        end = data.find(b"\n\n", pos)
        if end < 0:
            break
        head = data[pos:end]
        m = re.search(rb"(?im)^content-length:\s*(\d+)", head)
        stop = end + 2 + (int(m.group(1)) if m else 0)
        out.append(data[pos:stop])
        pos = stop
    return out


def replay(captures: Path, scenario: str, only: set[str] | None = None,
           sim_kwargs: dict | None = None) -> tuple[dict[str, Conn], dict[str, list]]:
    """Replay a scenario's client writes, pacing by the recorded timeline (``SPEED`` times
    faster) and waiting for each command's reply, as the recording client did."""
    timeline = [json.loads(x) for x in (captures / f"{scenario}.timeline.jsonl")
                .read_text().splitlines() if x.strip()]
    conns_names = sorted({e["conn"] for e in timeline if only is None or e["conn"] in only})
    sent = {c: split_commands((captures / f"{scenario}.{c}.sent").read_bytes())
            for c in conns_names}
    recorded = {c: capture_frames(captures / f"{scenario}.{c}.recv") for c in conns_names}
    # capture UUID -> channel name, to find the simulator's UUID for the same channel
    cap_names: dict[str, str] = {}
    for frames in recorded.values():
        for f in frames:
            if f.is_event:
                e = decode_event(f)
                if e.get("Event-Name") == "CHANNEL_CREATE":
                    cap_names[e["Unique-ID"]] = e["Channel-Name"]
    # replayed SPEED times faster, so the channel thread's pickup of a queued execute is too
    # heartbeats often enough that one falls within the replay, as one did in most recordings
    sim = Simulator(speed=SPEED, heartbeat_interval=2.0, execute_pickup=0.01 / SPEED,
                    **(sim_kwargs or {}))
    if scenario >= "14":
        # recorded later, on a dialplan whose extensions run nothing before their own actions,
        # ending in vanilla's catch-all (ring, early media of the hold music, then hang up)
        sim.switch.dialplan_prelude = []
        sim.switch.dialplan["default"].append(
            (r"^.*$", [("acknowledge_call", ""), ("ring_ready", ""), ("playback", "local_stream://moh")]))
    sim.start()
    conns: dict[str, Conn] = {}
    next_cmd = {c: 0 for c in conns_names}
    last_t = 0.0
    try:
        for entry in timeline:
            c = entry["conn"]
            if c not in conns_names:
                continue
            gap = entry["t"] - last_t
            last_t = entry["t"]
            if gap > 0:
                gevent.sleep(min(gap / SPEED, 2.0))
            if entry["dir"] == "open":
                conns[c] = Conn(sim.port)
                continue
            if entry["dir"] == "close" and not conns[c].eof:
                gevent.sleep(0.1)  # what the switch still had to send before the client left
                conns[c].client_closed = True
                conns[c].close()
                continue
            if entry["dir"] != "send":
                continue
            cmd = sent[c][next_cmd[c]]
            next_cmd[c] += 1
            conn = conns[c]
            cmd = _map_uuids(cmd, cap_names, conns)
            expected = len(conn.replies()) + 1
            conn.sock.sendall(cmd)
            deadline = time.monotonic() + 10
            while len(conn.replies()) < expected and not conn.eof \
                    and time.monotonic() < deadline:
                gevent.sleep(0.005)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not all(c.eof or c.client_closed
                                                      for c in conns.values()):
            gevent.sleep(0.02)
    finally:
        for conn in conns.values():
            conn.close()
        sim.stop()
    return conns, recorded


def _map_uuids(cmd: bytes, cap_names: dict[str, str], conns: dict[str, Conn]) -> bytes:
    def sub(m: re.Match) -> bytes:
        u = m.group(0).decode()
        name = cap_names.get(u)
        if name is None or m.string[:m.start()].endswith(b"origination_uuid="):
            return m.group(0)  # unknown, or the uuid this very command gives its channel
        if any(e.get("Unique-ID") == u for conn in conns.values() for e in conn.events()):
            return m.group(0)  # a channel an earlier command named (origination_uuid)
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            for conn in conns.values():
                for e in conn.events():
                    if e.get("Event-Name") == "CHANNEL_CREATE" and e.get("Channel-Name") == name:
                        return e["Unique-ID"].encode()
            gevent.sleep(0.01)
        return m.group(0)
    return UUID_RE.sub(sub, cmd)


def compare_body(want: str, got: str, where: str) -> None:
    if want.startswith("{") and got.startswith("{"):
        w, g = json.loads(want), json.loads(got)
        assert list(w)[:2] == list(g)[:2] or set(w) <= set(g), where
        if "rows" in w:
            assert w["row_count"] == g["row_count"], where
            for rw, rg in zip(w["rows"], g["rows"], strict=True):
                assert list(rw) == list(rg), where
            return
        if "Event-Name" in w:
            check_event_headers(w, g, where)
            return
        return
    if want.startswith("Event-Name: "):
        check_event_headers(_plain_keys(want), _plain_keys(got), where)
        return
    if want.startswith("uuid,"):
        assert want.split("\n", 1)[0] == got.split("\n", 1)[0], where
        assert want.rsplit("\n\n", 1)[-1] == got.rsplit("\n\n", 1)[-1], where
        return
    assert norm(got) == norm(want), f"{where}: {got!r} != {want!r}"


def _plain_keys(text: str) -> dict[str, str]:
    return {ln.split(": ", 1)[0]: "" for ln in text.split("\n\n", 1)[0].split("\n") if ln}


def check_event_headers(want: dict, got: dict, where: str) -> None:
    """Same common block in the same order; channel events keep FreeSWITCH's core order."""
    assert list(got)[:13] == COMMON, where
    if "Unique-ID" in want:
        wk = [k for k in want if k in CHANNEL_CORE]
        gk = [k for k in got if k in CHANNEL_CORE]
        assert gk == wk, f"{where}: {gk} != {wk}"
        wc = [k for k in want if k.startswith("Caller-")]
        gc = [k for k in got if k.startswith("Caller-")]
        missing = [k for k in wc if k not in gc]
        assert not missing, f"{where}: missing {missing}"
        assert [k for k in gc if k in wc] == wc, where
        # variables come after the fixed part
        if any(k.startswith("variable_") for k in got):
            first_var = next(i for i, k in enumerate(got) if k.startswith("variable_"))
            assert all(not k.startswith("Caller-") for k in list(got)[first_var:]), where


def _pairing(e: dict) -> tuple:
    return e["Event-Name"], e.get("Channel-Name"), e.get("Caller-Orig-Caller-ID-Number")


def check_scenario(conns: dict[str, Conn], recorded: dict[str, list]) -> None:
    for name, conn in conns.items():
        want = recorded[name]
        got = conn.frames
        # 1. the replies, one per command, in order
        wr = [f for f in want if f.content_type in REPLY_TYPES]
        gr = [f for f in got if f.content_type in REPLY_TYPES]
        assert len(gr) == len(wr), f"{name}: {len(gr)} replies, capture has {len(wr)}"
        for i, (w, g) in enumerate(zip(wr, gr, strict=True)):
            where = f"{name} reply {i}"
            assert list(g.headers) == list(w.headers), where
            assert g.content_type == w.content_type, where
            if w.content_type == "command/reply":
                assert norm(g.reply_text) == norm(w.reply_text), \
                    f"{where}: {g.reply_text!r} != {w.reply_text!r}"
            else:
                compare_body(w.body, g.body, where)
        # 2. the first frame and every notice, in order, exactly (UUIDs aside)
        assert got and got[0].headers == {"Content-Type": "auth/request"}
        wn = [(list(f.headers), norm(f.body)) for f in want
              if f.content_type == "text/disconnect-notice"]
        gn = [(list(f.headers), norm(f.body)) for f in got
              if f.content_type == "text/disconnect-notice"]
        assert gn == wn, name
        assert conn.eof or conn.client_closed, f"{name}: the simulator should have closed the connection"
        # 3. events: every modelled kind the capture has, with FreeSWITCH's header layout
        wevents = [decode_event(f) for f in want if f.is_event]
        gevents = [decode_event(f) for f in got if f.is_event]
        fmts = {f.content_type for f in want if f.is_event}
        assert fmts == {f.content_type for f in got if f.is_event} or not wevents, name
        # pair the k-th event of a kind on a channel with the simulator's k-th one (calls
        # that reuse a channel name are told apart by their original caller id)
        by_key: dict[tuple, list[dict]] = {}
        by_name: dict[str, dict] = {}
        for e in gevents:
            by_key.setdefault(_pairing(e), []).append(e)
            by_name.setdefault(e["Event-Name"], e)
        seen: dict[tuple, int] = {}
        for e in wevents:
            ev_name = e["Event-Name"]
            if ev_name in UNMODELLED:
                continue
            assert ev_name in by_name, f"{name}: no {ev_name} event from the simulator"
            key = _pairing(e)
            k = seen[key] = seen.get(key, -1) + 1
            candidates = by_key.get(key, [])
            # fewer of them from the simulator: its last one of that channel, else any
            other = candidates[min(k, len(candidates) - 1)] if candidates else by_name[ev_name]
            check_event_headers(e, other, f"{name} {ev_name} #{k} {key[1]}")
        # 4. log lines keep their frame layout
        wl = [list(f.headers) for f in want if f.content_type == "log/data"]
        gl = [list(f.headers) for f in got if f.content_type == "log/data"]
        if wl:
            assert gl and gl[0] == wl[0], name


@pytest.mark.parametrize("scenario", [
    "01_auth", "02_api_bgapi", "03_events_plain", "04a_events_json", "04b_events_xml",
    "05_bridge", "06_sendmsg_myevents_filter", "07_shutdown", "10_log", "12_urlencoding",
    "14_originate_outcomes", "15_bridge_eavesdrop", "16_missing_modules", "17_hold_dtmf",
    "18_queued_app_in_bridge",
])
def test_replay_matches_capture(captures_dir: Path, scenario: str) -> None:
    conns, recorded = replay(captures_dir, scenario)
    check_scenario(conns, recorded)


def test_replay_outbound_scenario_inbound_side(captures_dir: Path) -> None:
    # Outbound mode (FreeSWITCH dialling out to a socket app) is not simulated; the inbound
    # control connection of that scenario is.
    conns, recorded = replay(captures_dir, "09_outbound_socket", only={"c1-inbound-control"})
    check_scenario(conns, recorded)


def _raw_var_line(frames: list, var: str, content_type: str) -> bytes:
    for f in frames:
        if f.content_type == content_type and var.encode() in f.raw_body:
            raw = f.raw_body
            i = raw.find(var.encode())
            end = raw.find(b"\n" if content_type.endswith("plain") else b'","', i)
            return raw[i:end]
    raise AssertionError(f"{var} not found")


def test_url_encoding_is_byte_identical(captures_dir: Path) -> None:
    conns, recorded = replay(captures_dir, "12_urlencoding")
    for conn_name, ctype in (("c1-plain", "text/event-plain"), ("c2-json", "text/event-json")):
        want = _raw_var_line(recorded[conn_name], "variable_esl_pct", ctype)
        got = _raw_var_line(conns[conn_name].frames, "variable_esl_pct", ctype)
        assert got == want


#: What a call went through, per channel: the events that tell what ran and what happened.
OUTCOME_EVENTS = {"CHANNEL_EXECUTE", "CHANNEL_EXECUTE_COMPLETE", "PLAYBACK_START", "CHANNEL_HOLD",
                  "CHANNEL_UNHOLD", "DTMF", "CHANNEL_HANGUP", "CHANNEL_BRIDGE", "CHANNEL_UNBRIDGE"}


def outcomes(events: list[dict]) -> dict[str, tuple[list[tuple], set[str]]]:
    """Per channel: the events up to the scenario's first hangup, in order, and the hangup
    causes (how the legs of a call tear down interleaves differently from run to run)."""
    story: dict[str, tuple[list[tuple], set[str]]] = {}
    ending = False
    for e in events:
        name, channel = e["Event-Name"], e.get("Channel-Name")
        if name not in OUTCOME_EVENTS or not channel:
            continue
        steps, causes = story.setdefault(channel, ([], set()))
        if name == "CHANNEL_HANGUP":
            ending = True
            causes.add(e.get("Hangup-Cause", ""))
        elif not ending:
            steps.append((name, e.get("Application"), e.get("Application-Response"),
                          e.get("DTMF-Digit")))
    return story


@pytest.mark.parametrize("scenario", ["14_originate_outcomes", "15_bridge_eavesdrop", "16_missing_modules",
                                      "17_hold_dtmf", "18_queued_app_in_bridge"])
def test_replay_has_the_capture_outcomes(captures_dir: Path, scenario: str) -> None:
    """Not only the layout: each channel runs the same applications with the same responses,
    plays, holds, reads digits and hangs up as on the real switch. 14: a loopback leg that
    rings and gets early media before it hangs up. 15: uuid_bridge runs on both legs before
    the one CHANNEL_BRIDGE, and eavesdrop runs on the supervisor's leg. 16: ``speak`` with no TTS
    engine completes as ``_none_`` with nothing played, and ``soundtouch`` (no module) hangs
    both legs up DESTINATION_OUT_OF_ORDER with no CHANNEL_EXECUTE. 17: the held leg reads no
    DTMF, ``toggle`` holds again, the peer plays the hold music. 18: the bridge ends the
    ringback (PLAYBACK ERROR) and the digits are read on the transferor and passed on."""
    conns, recorded = replay(captures_dir, scenario)
    want = outcomes([decode_event(f) for f in recorded["c1-events"] if f.is_event])
    got = outcomes(conns["c1-events"].events())
    assert got == want


def originate_story(events: list[dict]) -> list[tuple]:
    """Per ``bgapi originate`` with an origination_uuid, in order: the job's answer, and where
    the job's result falls among its channel's CHANNEL_CREATE, CHANNEL_HANGUP (with the
    cause) and CHANNEL_DESTROY — none of them when FreeSWITCH created no channel at all."""
    story = []
    for i, e in enumerate(events):
        if e["Event-Name"] != "BACKGROUND_JOB":
            continue
        m = re.search(r"origination_uuid=([0-9a-f-]{36})", e.get("Job-Command-Arg", ""))
        if m is None:
            continue
        uuid = m.group(1)
        mine = [(j, x["Event-Name"], x.get("Hangup-Cause")) for j, x in enumerate(events)
                if x.get("Unique-ID") == uuid and x["Event-Name"] in
                ("CHANNEL_CREATE", "CHANNEL_HANGUP", "CHANNEL_DESTROY")]
        steps = [(name, cause, "before the job's result" if j < i else "after it") for j, name, cause in mine]
        story.append((norm(e["_body"]), steps))
    return story


def test_originate_outcomes_match_capture_14(captures_dir: Path) -> None:
    """Which failures create no channel at all (an unregistered user, error/user_busy: just
    -ERR), which create the legs and destroy them (NO_ANSWER after originate_timeout,
    NORMAL_CLEARING from a loopback extension that hangs up), and where the job's result
    falls: after the answer on success, between the hangup and the destroy on failure."""
    conns, recorded = replay(captures_dir, "14_originate_outcomes")
    want = originate_story([decode_event(f) for f in recorded["c1-events"] if f.is_event])
    got = originate_story(conns["c1-events"].events())
    assert [body for body, _ in want] == ["+OK <uuid>\n", "-ERR USER_NOT_REGISTERED\n", "-ERR USER_BUSY\n",
                                          "-ERR NO_ANSWER\n", "-ERR NORMAL_CLEARING\n"]
    assert got == want


def bug_story(events: list[dict]) -> list[tuple]:
    """The bridge and eavesdrop events of capture 15, by channel name."""
    kept = ("CHANNEL_BRIDGE", "CHANNEL_UNBRIDGE", "MEDIA_BUG_START", "MEDIA_BUG_STOP")
    out = []
    for e in events:
        name = e["Event-Name"]
        executes = name == "CHANNEL_EXECUTE" and e.get("Application") in ("uuid_bridge", "eavesdrop")
        if name in kept or executes:
            out.append((name, e.get("Channel-Name"), e.get("Application"), e.get("Media-Bug-Function"),
                        e.get("Media-Bug-Target") == e.get("Unique-ID") if "Media-Bug-Target" in e else None))
    return out


def test_bridge_and_eavesdrop_match_capture_15(captures_dir: Path) -> None:
    """uuid_bridge: an execute of uuid_bridge on both legs, then one CHANNEL_BRIDGE (the
    first uuid's); eavesdrop: its execute on the supervisor's leg, a media bug on the target
    (MEDIA_BUG_START, MEDIA_BUG_STOP when the supervisor goes); CHANNEL_UNBRIDGE at the end."""
    conns, recorded = replay(captures_dir, "15_bridge_eavesdrop")
    want = bug_story([decode_event(f) for f in recorded["c1-events"] if f.is_event])
    got = bug_story(conns["c1-events"].events())
    assert ("MEDIA_BUG_START", "loopback/esl_answer-a", None, "eavesdrop", True) in want
    assert got == want
