"""Every frame of every real FreeSWITCH capture parses, with the counts and values the
captures' README states; `eslchan decode` works on each."""

from __future__ import annotations

import io
import json
import random
import re
from collections import Counter
from pathlib import Path

import pytest

from eslchan.esl.decode import iter_frames, run
from eslchan.esl.parser import FrameParser, ProtocolError, decode_event

pytestmark = pytest.mark.timeout(60)

CAPTURES = Path(__file__).resolve().parents[2] / "shared" / "esl-captures"
RECV_FILES = sorted(p.name for p in CAPTURES.glob("*.recv")) if CAPTURES.is_dir() else []
FORGED = "line1\nFake-Header: injected\n\nEvent-Name: FORGED"
PCT_RAW = "100% off %41%42 %zz a+b=c?d#e \"q\" 'x' <t> [y] {z} |p| ~t^` back\\slash tab\tend café"


def decode_file(path: Path) -> list[dict]:
    out = io.StringIO()
    err = io.StringIO()
    assert run(str(path), out=out, err=err) == 0, err.getvalue()
    return [json.loads(line) for line in out.getvalue().splitlines()]


def readme_counts(captures: Path) -> dict[str, tuple[Counter, Counter]]:
    """{"01_auth.c1-wrongpw": (frames by content type, events by name)} from the README."""
    expected: dict[str, tuple[Counter, Counter]] = {}
    scenario = None
    last = None
    for line in (captures / "README.md").read_text().splitlines():
        if m := re.match(r"### (\d\d\w*)$", line):
            scenario = m.group(1)
        elif scenario and (m := re.match(r"- `([\w-]+)`: (.*×.*)$", line)):
            last = f"{scenario}.{m.group(1)}"
            expected[last] = (Counter(_pairs(m.group(2))), Counter())
        elif last and (m := re.match(r"\s+- events: (.*)$", line)):
            expected[last][1].update(_pairs(m.group(1)))
    return expected


def _pairs(text: str) -> dict[str, int]:
    return {name: int(n) for name, n in re.findall(r"([\w/.:-]+) ×(\d+)", text)}


@pytest.fixture(scope="module")
def decoded(captures_dir) -> dict[str, list[dict]]:
    return {name: decode_file(captures_dir / name) for name in RECV_FILES}


def events_of(records: list[dict]) -> list[dict]:
    return [r["event"] for r in records if "event" in r]


@pytest.mark.parametrize("name", RECV_FILES)
def test_decode_prints_one_json_object_per_frame(decoded, name):
    records = decoded[name]
    assert records
    for rec in records:
        assert set(rec) >= {"content_type", "headers", "body"}
        assert rec["content_type"] == rec["headers"]["Content-Type"]
        assert "event_error" not in rec
        if rec["content_type"].startswith("text/event-"):
            event = rec["event"]
            for header in ("Event-Name", "Core-UUID", "FreeSWITCH-Hostname", "Event-Sequence"):
                assert header in event, (name, header)
            assert event["FreeSWITCH-Hostname"] == "vm"
            assert event["FreeSWITCH-IPv6"] == "fd00::2"


def test_every_connection_matches_the_readme_counts(captures_dir, decoded):
    expected = readme_counts(captures_dir)
    # the README counts frames for the 18 connections of scenarios 01-12 (the later scenarios
    # describe their traffic in prose); the parse of the README itself is complete
    assert len(expected) == 18 and set(f"{c}.recv" for c in expected) <= set(RECV_FILES)
    for conn, (frames, events) in expected.items():
        records = decoded[f"{conn}.recv"]
        got_frames = Counter(r["content_type"] for r in records)
        got_events = Counter(e["Event-Name"] for e in events_of(records))
        assert got_frames == frames, conn
        assert got_events == events, conn


@pytest.mark.parametrize("name", RECV_FILES)
def test_real_recv_boundaries_and_random_splits_give_the_same_frames(captures_dir, name):
    raw = (captures_dir / name).read_bytes()
    whole = FrameParser().feed(raw)
    # the real recv() chunk boundaries from the timeline
    scenario, conn = name[: -len(".recv")].split(".", 1)
    timeline = captures_dir / f"{scenario}.timeline.jsonl"
    chunks = [json.loads(line) for line in timeline.read_text().splitlines() if '"recv"' in line]
    parser = FrameParser()
    frames = []
    for ch in chunks:
        if ch["conn"] == conn:
            frames += parser.feed(raw[ch["off"] : ch["off"] + ch["len"]])
    assert not parser.incomplete
    assert [(f.headers, f.body) for f in frames] == [(f.headers, f.body) for f in whole]
    # random boundaries, including single bytes and cuts inside multi-byte UTF-8
    rng = random.Random(name)
    parser = FrameParser()
    frames = []
    pos = 0
    while pos < len(raw):
        step = rng.choice((1, 2, 3, 7, 64, 1000, 9000))
        frames += parser.feed(raw[pos : pos + step])
        pos += step
    assert [(f.headers, f.body) for f in frames] == [(f.headers, f.body) for f in whole]


@pytest.mark.parametrize(
    "name", ["03_events_plain.c1.recv", "04a_events_json.c1.recv", "04b_events_xml.c1.recv"]
)
def test_encoded_newline_cannot_forge_headers(decoded, name):
    events = events_of(decoded[name])
    carrying = [e for e in events if "variable_esl_multiline" in e]
    assert carrying
    for event in carrying:
        assert event["variable_esl_multiline"] == FORGED  # one header, newlines inside
    assert not any("Fake-Header" in e for e in events)
    assert not any(e["Event-Name"] == "FORGED" for e in events)
    unicode = [e["variable_esl_unicode"] for e in events if "variable_esl_unicode" in e]
    assert unicode and set(unicode) == {"Zoë 東京"}
    notes = {e["variable_esl_note"] for e in events if "variable_esl_note" in e}
    assert notes == {"hello world/a=b&c"}


def test_percent_pass_through_is_lossy_in_plain_and_exact_in_json(decoded):
    plain = events_of(decoded["12_urlencoding.c1-plain.recv"])
    js = events_of(decoded["12_urlencoding.c2-json.recv"])
    plain_values = {e["variable_esl_pct"] for e in plain if "variable_esl_pct" in e}
    json_values = {e["variable_esl_pct"] for e in js if "variable_esl_pct" in e}
    assert json_values == {PCT_RAW}
    # FreeSWITCH sends "%41%42" unencoded, so decoding the plain value yields "AB"
    assert plain_values == {PCT_RAW.replace("%41%42", "AB")}


def test_api_bodies_and_background_jobs(decoded):
    records = decoded["02_api_bgapi.c1.recv"]
    bodies = [r["body"] for r in records if r["content_type"] == "api/response"]
    assert "-ERR No such channel!\n" in bodies
    assert "-ERR no_such_command Command not found!\n" in bodies
    assert any(b.startswith("-USAGE: ") for b in bodies)
    assert "_undef_" in bodies and "true" in bodies  # bodies without a final newline
    assert '{"row_count": 0}\n' in bodies
    jobs = {e["Job-UUID"]: e for e in events_of(records) if e["Event-Name"] == "BACKGROUND_JOB"}
    chosen = jobs["11111111-2222-3333-4444-555555555555"]
    assert chosen["Job-Command"] == "show"
    assert json.loads(chosen["_body"])["row_count"] >= 0
    assert chosen["Content-Length"] == str(len(chosen["_body"].encode()))
    assert "-ERR no_such_command Command not found!\n" in {e["_body"] for e in jobs.values()}
    replies = [r["headers"].get("Reply-Text", "") for r in records]
    assert "+OK Job-UUID: 11111111-2222-3333-4444-555555555555" in replies


def test_body_stays_apart_from_headers_in_every_format(decoded):
    for name in ("03_events_plain.c1.recv", "04a_events_json.c1.recv", "04b_events_xml.c1.recv"):
        jobs = [e for e in events_of(decoded[name]) if e["Event-Name"] == "BACKGROUND_JOB"]
        assert len(jobs) == 1, name
        job = jobs[0]
        assert job["_body"].startswith("+OK "), name
        last_header = [k for k in job if k != "_body"][-1]
        assert "\n" not in job[last_header], name


def test_disconnect_notices_and_log_frames(decoded):
    shutdown = decoded["07_shutdown.c2-shutdown.recv"][-1]
    assert shutdown["body"] == "The system is being shut down.\n"
    linger = [
        r for r in decoded["06_sendmsg_myevents_filter.c2-myevents.recv"]
        if r["headers"].get("Content-Disposition") == "linger"
    ]  # fmt: skip
    assert linger and linger[0]["headers"]["Linger-Time"] == "10"
    logs = [r for r in decoded["10_log.c1.recv"] if r["content_type"] == "log/data"]
    assert len(logs) == 17 and all(r["headers"]["Log-Level"] for r in logs)
    connect = decoded["09_outbound_socket.c2-outbound.recv"][0]
    assert connect["content_type"] == "command/reply"
    assert connect["headers"]["Channel-Name"].startswith("loopback/")


def test_decode_reports_truncated_and_garbage_streams(tmp_path, captures_dir):
    raw = (captures_dir / "02_api_bgapi.c1.recv").read_bytes()
    cut = tmp_path / "cut.recv"
    cut.write_bytes(raw[:-10])
    out, err = io.StringIO(), io.StringIO()
    assert run(str(cut), out=out, err=err) == 1
    assert "ends inside a frame" in err.getvalue()
    assert out.getvalue().count("\n") > 10  # the complete frames were still printed
    bad = tmp_path / "bad.recv"
    bad.write_bytes(b"Content-Length: nope\n\n")
    assert run(str(bad), out=io.StringIO(), err=(err := io.StringIO())) == 1
    assert "Content-Length" in err.getvalue()
    assert run(str(tmp_path / "missing"), out=io.StringIO(), err=io.StringIO()) == 1
    with pytest.raises(ProtocolError):
        list(iter_frames(io.BytesIO(b"Content-Type: x\n")))


def test_decode_event_of_each_format_is_a_flat_string_dict(decoded):
    for name in RECV_FILES:
        for event in events_of(decoded[name]):
            assert all(isinstance(k, str) and isinstance(v, str) for k, v in event.items())


def test_multi_valued_variables_are_flattened_as_in_plain_events(decoded):
    """A json event carries a multi-valued variable as an array; it reads as FreeSWITCH's plain
    form, so every consumer sees strings (18: transfer_history after two transfers)."""
    events = events_of(decoded["18_queued_app_in_bridge.c1-events.recv"])
    values = [e["variable_transfer_history"] for e in events if "variable_transfer_history" in e]
    multi = [v for v in values if v.startswith("ARRAY::")]
    assert multi, "the capture holds a channel transferred twice"
    first, second = multi[0][len("ARRAY::"):].split("|:")
    assert ":uuid_br:" in first and second.endswith(":bl_xfer:park/default/inline")


def test_decode_event_rejects_non_events():
    frame = FrameParser().feed(b"Content-Type: command/reply\nReply-Text: +OK\n\n")[0]
    with pytest.raises(ProtocolError):
        decode_event(frame)


def test_eslchan_decode_command_line(captures_dir, capsys):
    from eslchan.cli import main

    assert main(["decode", str(captures_dir / "01_auth.c3-goodpw.recv")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [json.loads(line)["content_type"] for line in lines] == [
        "auth/request",
        "command/reply",
        "command/reply",
        "text/disconnect-notice",
    ]


def test_json_event_with_a_broken_utf8_byte_still_decodes():
    raw = b'{"Event-Name":"CUSTOM","v":"a\xffb"}'
    frame = FrameParser().feed(b"Content-Length: %d\nContent-Type: text/event-json\n\n" % len(raw) + raw)[0]
    assert decode_event(frame) == {"Event-Name": "CUSTOM", "v": "a\ufffdb"}
    assert frame.raw_body == raw and frame.body == '{"Event-Name":"CUSTOM","v":"a\ufffdb"}'
