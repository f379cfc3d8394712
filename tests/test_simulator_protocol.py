"""The simulator's event socket over real TCP: authentication, subscriptions and formats,
bgapi, sendmsg/sendevent, myevents and linger, logging, HEARTBEAT, fault injection and the
``eslchan simulate`` entry point."""

from __future__ import annotations

import json
import socket

import gevent
import pytest
from simulator_client import EslClient

from eslchan.esl.parser import FrameParser
from eslchan.simulator import Simulator
from eslchan.simulator.cli import main as simulate_main
from eslchan.simulator.wire import url_encode

pytestmark = pytest.mark.timeout(60)

U1 = "22222222-aaaa-4bbb-8ccc-000000000001"
JOB = "11111111-2222-3333-4444-555555555555"


@pytest.fixture
def sim(quiet_simulator):
    return quiet_simulator


def test_auth_wrong_password_is_refused_and_closed(sim):
    c = EslClient(sim.port, password=None)
    f = c.cmd("auth nope")
    assert f.reply_text == "-ERR invalid"
    notice = c.next_frame()
    assert notice.content_type == "text/disconnect-notice"
    assert notice.body.startswith("Disconnected, goodbye.")
    assert c.wait_eof()


def test_commands_before_auth_are_refused_but_auth_still_works(sim):
    c = EslClient(sim.port, password=None)
    assert c.cmd("api status").reply_text == "-ERR command not found"
    assert c.cmd("auth ClueCon").reply_text == "+OK accepted"
    assert c.cmd("exit").reply_text == "+OK bye"
    assert c.next_frame().headers == {"Content-Type": "text/disconnect-notice",
                                      "Content-Length": "67"}
    assert c.wait_eof()
    assert "auth ***" in sim.commands  # recorded without the password


def test_api_errors_and_system_commands(sim):
    c = EslClient(sim.port)
    assert c.api("no_such_command") == "-ERR no_such_command Command not found!\n"
    assert c.api("version") == "FreeSWITCH Version 1.10.12-release~64bit ( 64bit)\n"
    assert c.api("status").startswith("UP 0 years, 0 days")
    assert c.api("show channels as json") == '{"row_count": 0}\n'
    assert c.api("show calls as json") == '{"row_count": 0}\n'
    assert c.api("uuid_kill 00000000-0000-0000-0000-000000000000") == "-ERR No such channel!\n"
    assert c.cmd("bogus").reply_text == "-ERR command not found"
    assert "api uuid_kill 00000000-0000-0000-0000-000000000000" in sim.commands


def test_bgapi_job_uuid_and_background_job_in_every_format(sim):
    for fmt in ("plain", "json", "xml"):
        c = EslClient(sim.port)
        assert c.cmd(f"event {fmt} BACKGROUND_JOB").reply_text == \
            f"+OK event listener enabled {fmt}"
        f = c.cmd("bgapi status")
        job = f.headers["Job-UUID"]
        assert f.reply_text == f"+OK Job-UUID: {job}"
        ev = c.wait_event("BACKGROUND_JOB")
        assert ev["Job-UUID"] == job and ev["Job-Command"] == "status"
        assert ev["_body"].startswith("UP ")
        assert ev["Content-Length"] == str(len(ev["_body"].rstrip(" ").encode()))
        f = c.cmd("bgapi no_such_command x y", {"Job-UUID": JOB})
        assert f.reply_text == f"+OK Job-UUID: {JOB}"
        ev = c.wait_event(lambda e, j=JOB: e.get("Job-UUID") == j)
        assert ev["Job-Command-Arg"] == "x y"
        # (xml bodies keep FreeSWITCH's indentation before </body>)
        assert ev["_body"].rstrip(" ") == "-ERR no_such_command Command not found!\n"
        assert all(isinstance(v, str) for v in ev.values())
        c.close()


def test_plain_encoding_follows_freeswitch_rules():
    assert url_encode("100% off %41%42 %zz") == "100%25%20off%20%41%42%20%25zz"
    assert url_encode("a+b=c?d#e") == "a%2Bb%3Dc%3Fd%23e"
    assert url_encode("Zoë 東京") == "Zo%C3%AB%20%E6%9D%B1%E4%BA%AC"
    assert url_encode("/,()'!~*$.-_") == "/,()'!~*$.-_"
    assert url_encode("line1\nFake: x") == "line1%0AFake%3A%20x"


def test_event_values_survive_each_format(sim):
    value = "line1\nFake-Header: injected\n\nEvent-Name: FORGED café"
    for fmt in ("plain", "json", "xml"):
        c = EslClient(sim.port)
        c.cmd(f"event {fmt} CHANNEL_HANGUP")
        call = sim.create_call(variables={"tricky": value})
        sim.hangup(call.a_uuid)
        ev = c.wait_event("CHANNEL_HANGUP", uuid=call.a_uuid)
        assert ev["variable_tricky"] == value
        assert "FORGED" not in ev.get("Event-Name", "")
        c.close()


def test_subscriptions_nixevent_noevents_and_custom(sim):
    c = EslClient(sim.port)
    c.cmd("event plain CHANNEL_CREATE CUSTOM esl::test")
    ctl = EslClient(sim.port)
    reply = ctl.cmd("sendevent CUSTOM", {"Event-Subclass": "esl::test", "Esl-Test-Header": "hi"})
    assert reply.reply_text.startswith("+OK ")
    ev = c.wait_event("CUSTOM")
    assert ev["Event-Subclass"] == "esl::test" and ev["Esl-Test-Header"] == "hi"
    assert list(ev)[0] == "Event-Subclass"
    call = sim.create_call()
    c.wait_event("CHANNEL_CREATE", uuid=call.a_uuid)
    assert set(c.names()) == {"CUSTOM", "CHANNEL_CREATE"}
    assert c.cmd("nixevent CHANNEL_CREATE").reply_text == "+OK events nixed"
    assert c.cmd("noevents").reply_text == "+OK no longer listening for events"
    before = len(c.events)
    sim.create_call()
    ctl.api("status")
    assert len(c.events) == before


def test_filter_and_filter_delete(sim):
    c = EslClient(sim.port)
    c.cmd("event plain CHANNEL_CREATE CHANNEL_HANGUP")
    a = sim.create_call()
    assert c.cmd(f"filter Unique-ID {a.a_uuid}").reply_text == \
        f"+OK filter added. [Unique-ID]=[{a.a_uuid}]"
    b = sim.create_call()
    sim.hangup(b.a_uuid)
    sim.hangup(a.a_uuid)
    c.wait_event("CHANNEL_HANGUP", uuid=a.a_uuid)
    assert all(e.get("Unique-ID") == a.a_uuid for e in c.events[2:])
    assert c.cmd(f"filter delete Unique-ID {a.a_uuid}").reply_text == \
        f"+OK filter deleted. [Unique-ID][{a.a_uuid}]"
    d = sim.create_call()
    c.wait_event("CHANNEL_CREATE", uuid=d.a_uuid)


def test_myevents_linger_and_the_bound_disconnect(sim):
    ctl = EslClient(sim.port)
    assert ctl.cmd("linger").reply_text == "-ERR not controlling a session"
    ctl.api(f"originate {{origination_uuid={U1}}}loopback/esl_answer/default &park")
    c = EslClient(sim.port)
    assert c.cmd(f"myevents {U1}").reply_text == "+OK Events Enabled"
    assert c.cmd("event plain PLAYBACK_START PLAYBACK_STOP").reply_text == \
        "+OK event listener enabled plain"
    assert c.cmd("linger").reply_text == "+OK will linger"
    assert c.cmd("nolinger").reply_text == "+OK will not linger"
    assert c.cmd("linger 10").reply_text == "+OK will linger 10 seconds"
    assert ctl.cmd(f"sendmsg {U1}", {"call-command": "execute", "execute-app-name": "playback",
                                     "execute-app-arg": "tone_stream://%(300,200,500);loops=2",
                                     "event-lock": "true"}).reply_text == "+OK"
    c.wait_event("PLAYBACK_STOP")
    sim.create_call()  # someone else's events never reach a bound connection
    assert ctl.cmd(f"sendmsg {U1}", {"call-command": "hangup",
                                     "hangup-cause": "NORMAL_CLEARING"}).reply_text == "+OK"
    linger = c.next_frame()
    assert linger.content_type == "text/disconnect-notice"
    assert list(linger.headers) == ["Content-Type", "Controlled-Session-UUID",
                                    "Content-Disposition", "Channel-Name", "Linger-Time",
                                    "Content-Length"]
    assert linger.headers["Content-Disposition"] == "linger"
    assert {e.get("Unique-ID") for e in c.events} == {U1}
    assert "CHANNEL_CALLSTATE" not in c.names()
    assert c.cmd("exit").reply_text == "+OK bye"
    final = c.next_frame()
    assert final.headers["Content-Disposition"] == "disconnect"
    assert final.headers["Controlled-Session-UUID"] == U1
    assert c.wait_eof()


def test_bound_connection_without_linger_closes_on_hangup(sim):
    ctl = EslClient(sim.port)
    ctl.api(f"originate {{origination_uuid={U1}}}loopback/esl_answer/default &park")
    c = EslClient(sim.port)
    c.cmd(f"myevents {U1} json")
    sim.hangup(U1)
    notice = c.next_frame()
    assert notice.headers["Content-Disposition"] == "disconnect"
    assert c.wait_eof()
    assert EslClient(sim.port).cmd("myevents " + U1).reply_text == "-ERR invalid uuid"


def test_sendmsg_execute_with_body_and_errors(sim):
    c = EslClient(sim.port)
    c.cmd("event json CHANNEL_EXECUTE_COMPLETE PRIVATE_COMMAND")
    call = sim.create_call()
    reply = c.cmd(f"sendmsg {call.a_uuid}", {"call-command": "execute",
                                             "execute-app-name": "set"},
                  body="esl_body_var=value with spaces")
    assert reply.reply_text == "+OK"
    c.wait_event(lambda e: e["Event-Name"] == "CHANNEL_EXECUTE_COMPLETE"
                 and e.get("Application") == "set", uuid=call.a_uuid)
    assert c.api(f"uuid_getvar {call.a_uuid} esl_body_var") == "value with spaces"
    bad = "00000000-0000-0000-0000-000000000000"
    assert c.cmd(f"sendmsg {bad}", {"call-command": "hangup"}).reply_text == \
        f"-ERR invalid session id [{bad}]"
    assert f"sendmsg {call.a_uuid}\nesl_body_var=value with spaces" in sim.commands
    first, headers, body = sim.received[-1]
    assert first == f"sendmsg {bad}" and headers["call-command"] == "hangup"


def test_log_and_nolog(sim):
    c = EslClient(sim.port)
    assert c.cmd("log info").reply_text == "+OK log level info [6]"
    call = sim.create_call()
    sim.wait_until(lambda: any(f.content_type == "log/data" for f in c.frames))
    log = next(f for f in c.frames if f.content_type == "log/data")
    assert list(log.headers) == ["Content-Type", "Content-Length", "Log-Level", "Text-Channel",
                                 "Log-File", "Log-Func", "Log-Line", "User-Data"]
    assert call.a_uuid in log.body or call.b_uuid in log.body
    assert c.cmd("nolog").reply_text == "+OK no longer logging"


def test_heartbeat_and_reschedule():
    s = Simulator(speed=1.0, heartbeat_interval=0.1)
    s.start()
    try:
        c = EslClient(s.port)
        c.cmd("event json HEARTBEAT RE_SCHEDULE")
        hb = c.wait_event("HEARTBEAT")
        assert hb["Event-Info"] == "System Ready" and "Session-Count" in hb
        assert c.wait_event("RE_SCHEDULE")["Task-Desc"] == "heartbeat"
    finally:
        s.stop()


def test_fail_next_stall_and_split_writes(sim):
    c = EslClient(sim.port)
    sim.fail_next("-ERR simulated failure")
    assert c.api("status") == "-ERR simulated failure\n"
    assert c.api("version").startswith("FreeSWITCH Version")
    sim.stall(0.3)
    c.send("api version")
    gevent.sleep(0.1)
    assert c.replies.qsize() == 0          # stalled: not answered yet
    assert c.next_frame().body.startswith("FreeSWITCH Version")
    sim.split_writes(True)
    c.cmd("event plain ALL")
    before = c.chunks
    for _ in range(3):
        sim.create_call()
    c.wait_rows(lambda rows: len(rows) == 6)
    assert c.chunks - before > 20          # delivered in many small pieces, parsed whole


def test_drop_connections_and_restart(sim):
    c = EslClient(sim.port)
    call = sim.create_call()
    core = sim.switch.core_uuid
    sim.drop_connections()
    assert c.wait_eof()
    sim.restart(keep_channels=True)
    c2 = EslClient(sim.port)
    assert {r["uuid"] for r in c2.wait_rows(lambda rows: len(rows) == 2)} == set(call.uuids)
    assert sim.switch.core_uuid == core
    g = gevent.spawn(sim.restart, down_for=0.3)
    assert c2.wait_eof()
    with pytest.raises(ConnectionRefusedError):      # FreeSWITCH is down for a moment
        socket.create_connection(("127.0.0.1", sim.port), timeout=1)
    g.join()
    c3 = EslClient(sim.port)
    assert c3.api("show channels as json") == '{"row_count": 0}\n'
    assert sim.channel(call.a_uuid) is None and sim.switch.core_uuid != core


def test_a_listener_that_falls_behind_is_killed():
    s = Simulator(speed=50.0, heartbeat_interval=3600, event_queue_max=50, max_missed=20)
    s.start()
    try:
        slow = socket.create_connection(("127.0.0.1", s.port))
        slow.sendall(b"auth ClueCon\n\nevent plain ALL\n\n")
        gevent.sleep(0.1)
        fast = EslClient(s.port)
        fast.cmd("event plain CHANNEL_CREATE")
        for _ in range(400):   # far more than the socket buffers hold; `slow` never reads
            s.create_call()
            if s.stats["killed_listeners"]:
                break
        assert s.wait_until(lambda: s.stats["killed_listeners"] == 1)
        # the slow reader finds its stream cut short, no notice; others carry on
        slow.settimeout(5)
        data = b""
        while True:
            chunk = slow.recv(1 << 16)
            if not chunk:
                break
            data += chunk
        assert b"disconnect-notice" not in data
        assert len(FrameParser().feed(data)) < s.stats["events"]
        assert fast.api("version").startswith("FreeSWITCH")
        assert s.stats["lost_events"] > 20
    finally:
        s.stop()


def test_shutdown_notifies_every_client(sim):
    a = EslClient(sim.port)
    a.cmd("event plain ALL")
    sim.create_call()
    b = EslClient(sim.port)
    assert b.api("shutdown") == "+OK\n"
    for c in (a, b):
        notice = [f for f in (c.next_frame() for _ in range(1))][0]
        assert notice.body == "The system is being shut down.\n"
        assert c.wait_eof()
    assert "SHUTDOWN" in a.names()
    assert a.names().index("CHANNEL_HANGUP") < a.names().index("SHUTDOWN")


def test_simulate_entry_point_serves_demo_calls():
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    g = gevent.spawn(simulate_main, ["--listen", f"127.0.0.1:{port}", "--password", "pw",
                                     "--calls", "2", "--speed", "50", "--call-seconds", "5"])
    try:
        for _ in range(100):
            gevent.sleep(0.05)
            try:
                c = EslClient(port, password="pw")
                break
            except OSError:
                continue
        assert c.cmd("event plain CHANNEL_CREATE CHANNEL_DESTROY").reply_text.startswith("+OK")
        c.wait_event("CHANNEL_CREATE")
        c.wait_event("CHANNEL_DESTROY")      # calls come and go
        rows = json.loads(c.api("show channels as json"))
        assert rows["row_count"] >= 0
    finally:
        g.kill()
    with pytest.raises(SystemExit):
        simulate_main(["--listen", "nonsense"])


def test_overlapping_outages_end_with_the_last(sim):
    first = gevent.spawn(sim.restart, keep_channels=True, down_for=0.2)
    gevent.sleep(0.05)
    second = gevent.spawn(sim.restart, keep_channels=True, down_for=0.4)
    first.join()
    with pytest.raises(ConnectionRefusedError):  # the second outage still goes on
        socket.create_connection(("127.0.0.1", sim.port), timeout=1)
    second.join()
    c = EslClient(sim.port)
    assert c.api("version").startswith("FreeSWITCH Version")
    c.close()
