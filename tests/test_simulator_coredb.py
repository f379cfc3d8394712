"""The simulator is as inconvenient as FreeSWITCH: `show channels` and `show calls` read a
core database that lags the events (SPEC §8, esl-captures 13), while uuid_exists and
uuid_dump are exact; the originate's own loopback leg flips its caller id once answered
(captures 03–18)."""

from __future__ import annotations

import json
import time

import pytest
from simulator_client import EslClient

from eslchan.simulator import Simulator
from eslchan.simulator.cli import db_lag, parse_args
from eslchan.simulator.coredb import DbLag

pytestmark = pytest.mark.timeout(60)

U1 = "22222222-aaaa-4bbb-8ccc-000000000001"
U2 = "22222222-aaaa-4bbb-8ccc-000000000002"
# a lag long enough that "not listed yet" is no race on a loaded machine: 2 s simulated at
# speed 4 is half a second
SLOW = DbLag(insert=(2.0, 2.0), delete=(2.0, 2.0))


@pytest.fixture
def slow_sim():
    sim = Simulator(speed=4.0, heartbeat_interval=3600, db_lag=SLOW)
    sim.start()
    yield sim
    sim.stop()


@pytest.fixture
def esl(slow_sim):
    c = EslClient(slow_sim.port)
    c.cmd("event plain ALL")
    yield c
    c.close()


def listed(esl: EslClient, what: str = "channels") -> set[str]:
    return {r["uuid"] for r in esl.rows(what)}


def test_new_channels_reach_show_channels_only_after_the_lag(slow_sim, esl):
    assert esl.api(f"originate {{origination_uuid={U1}}}loopback/esl_answer/default &park") \
        == f"+OK {U1}\n"
    b_uuid = esl.wait_event("CHANNEL_CREATE", uuid=U1)["variable_other_loopback_leg_uuid"]
    # the events and the live session know the call; the table does not, yet
    assert esl.api(f"uuid_exists {U1}") == "true"
    assert listed(esl) == set() and listed(esl, "calls") == set()
    assert {r["uuid"] for r in esl.wait_rows(bool)} == {U1, b_uuid}  # both legs at once
    assert listed(esl, "calls") == {U1, b_uuid}  # unbridged legs are calls of their own


def test_destroyed_channels_stay_listed_for_a_while(slow_sim, esl):
    esl.api(f"originate {{origination_uuid={U1}}}loopback/esl_answer/default &park")
    rows = esl.wait_rows(lambda rows: len(rows) == 2)
    assert esl.api(f"uuid_kill {U1}") == "+OK\n"
    esl.wait_event("CHANNEL_DESTROY", uuid=U1)
    assert esl.api(f"uuid_exists {U1}") == "false"
    assert esl.api(f"uuid_dump {U1} json") == "-ERR No such channel!\n"
    assert listed(esl) == {r["uuid"] for r in rows}  # FreeSWITCH still lists the dead call
    esl.wait_rows(lambda rows: not rows)
    assert esl.api("show channels as json") == '{"row_count": 0}\n'


def test_a_call_shorter_than_the_lag_is_listed_after_it_ended():
    """The SQL thread runs its statements in order: the insert of a call that lasted less
    than the lag is committed after the call ended, and the row stays until the delete is:
    a snapshot can list a call that has already gone (the ghost a resync must not trust)."""
    lag = DbLag(insert=(4.0, 4.0), delete=(4.0, 4.0))  # 1 s at speed 4
    with Simulator(speed=4.0, heartbeat_interval=3600, db_lag=lag) as sim:
        c = EslClient(sim.port)
        try:
            c.cmd("event plain CHANNEL_DESTROY")
            c.api(f"originate {{origination_uuid={U1}}}loopback/esl_answer/default &park")
            time.sleep(0.5)
            c.api(f"uuid_kill {U1}")
            c.wait_event("CHANNEL_DESTROY", uuid=U1)
            assert listed(c) == set()  # not inserted yet
            ghost = c.wait_rows(bool)
            assert U1 in {r["uuid"] for r in ghost} and c.api(f"uuid_exists {U1}") == "false"
            c.wait_rows(lambda rows: not rows)
        finally:
            c.close()


def test_row_changes_lag_like_inserts(slow_sim, esl):
    """A bridge shows in `show calls` (and a changed state in `show channels`) only once
    the table caught up."""
    esl.api(f"originate {{origination_uuid={U1}}}loopback/esl_answer/default &park")
    esl.api(f"originate {{origination_uuid={U2}}}loopback/esl_answer_2/default &park")
    esl.wait_rows(lambda rows: len(rows) == 4)
    assert esl.api(f"uuid_bridge {U1} {U2}") == f"+OK {U2}\n"
    esl.wait_event("CHANNEL_BRIDGE", uuid=U1)
    assert not any(r["b_uuid"] == U2 for r in esl.rows("calls"))
    calls = esl.wait_rows(lambda rows: any(r["b_uuid"] == U2 for r in rows), "calls")
    assert {r["uuid"] for r in calls if r["b_uuid"] == U2} == {U1}
    assert len(calls) == 3  # the bridge once, each -b leg on its own


def test_without_the_lag_show_is_exact_at_once():
    with Simulator(speed=20.0, heartbeat_interval=3600, db_lag=DbLag.off()) as sim:
        c = EslClient(sim.port)
        try:
            c.api(f"originate {{origination_uuid={U1}}}loopback/esl_answer/default &park")
            assert U1 in listed(c)
            c.api(f"uuid_kill {U1}")
            assert sim.wait_until(lambda: not sim.channels())
            assert listed(c) == set()
        finally:
            c.close()


def test_a_crashed_freeswitch_comes_back_with_an_empty_table(slow_sim, esl):
    esl.api(f"originate {{origination_uuid={U1}}}loopback/esl_answer/default &park")
    esl.wait_rows(lambda rows: len(rows) == 2)
    slow_sim.restart()
    c = EslClient(slow_sim.port)
    try:
        assert c.api("show channels as json") == '{"row_count": 0}\n'
    finally:
        c.close()


def test_the_lag_is_in_simulated_time_and_seeded():
    """At `speed` 50 the switch's 20–180 ms are 0.4–3.6 ms; the same seed draws the same
    delays, so a failing chaos seed replays the same way."""
    def first_listing_delays(seed: int) -> list[float]:
        with Simulator(speed=50.0, heartbeat_interval=3600, seed=seed) as sim:
            created: dict[str, float] = {}
            sim.switch.listeners.append(
                lambda ev: ev.name == "CHANNEL_CREATE" and created.setdefault(
                    ev.unique_id, time.monotonic()))
            delays = []
            for _ in range(3):
                sim.create_call(bridged=False)
                uuid = list(created)[-1]
                assert sim.wait_until(lambda u=uuid: any(r["uuid"] == u for r in
                                                         sim.switch.coredb.channel_rows()), 2.0)
                delays.append(time.monotonic() - created[uuid])
            draws = [sim.switch.coredb.rng.random() for _ in range(3)]
        assert all(0.02 / 50 <= d for d in delays)
        return draws

    assert first_listing_delays(7) == first_listing_delays(7)
    assert first_listing_delays(7) != first_listing_delays(8)


def test_eslchan_simulate_options_set_the_lag():
    assert db_lag(parse_args([])) == DbLag()
    assert db_lag(parse_args(["--no-db-lag"])) == DbLag.off()
    lag = db_lag(parse_args(["--db-lag-insert", "5-10", "--db-lag-delete", "300"]))
    assert lag == DbLag(insert=(0.005, 0.010), delete=(0.3, 0.3))
    with pytest.raises(SystemExit):
        parse_args(["--db-lag-insert", "10-5"])
    assert parse_args(["--seed", "12"]).seed == 12


# --- the caller id flip ---------------------------------------------------------------------


@pytest.fixture
def sim(quiet_simulator):
    return quiet_simulator


@pytest.fixture
def esl_fast(sim):
    c = EslClient(sim.port)
    c.cmd("event json ALL")
    yield c
    c.close()


def test_the_originates_own_loopback_leg_flips_its_caller_id_once_answered(sim, esl_fast):
    esl = esl_fast
    esl.api(f"originate {{origination_uuid={U1},origination_caller_id_name=Alice,"
            f"origination_caller_id_number=5550100}}loopback/esl_answer/default &park")
    create = esl.wait_event("CHANNEL_CREATE", uuid=U1)
    assert (create["Caller-Caller-ID-Name"], create["Caller-Caller-ID-Number"]) == ("Alice", "5550100")
    assert (create["Caller-Callee-ID-Name"], create["Caller-Callee-ID-Number"]) \
        == ("Outbound Call", "default")
    update = esl.wait_event("CALL_UPDATE", uuid=U1)
    assert update["Direction"] == "RECV"
    assert (update["Caller-Caller-ID-Name"], update["Caller-Caller-ID-Number"]) \
        == ("Outbound Call", "default")
    assert (update["Caller-Callee-ID-Name"], update["Caller-Callee-ID-Number"]) == ("Alice", "5550100")
    assert update["Caller-Orig-Caller-ID-Name"] == "Alice"  # the original stays on record
    assert update["variable_pre_transfer_caller_id_name"] == "Alice"
    assert update["variable_pre_transfer_caller_id_number"] == "5550100"
    assert update["variable_channel_cid_flipped"] == "yes"
    # after the answer, before the -a leg runs its application (capture 14)
    names = esl.names(U1)
    assert names.index("CHANNEL_ANSWER") < names.index("CALL_UPDATE") < names.index("CHANNEL_PARK")
    b_uuid = create["variable_other_loopback_leg_uuid"]
    park_b = esl.wait_event("CHANNEL_PARK", uuid=b_uuid)  # the -b leg keeps the origination id
    assert (park_b["Caller-Caller-ID-Name"], park_b["Caller-Caller-ID-Number"]) == ("Alice", "5550100")
    assert "CALL_UPDATE" not in esl.names(b_uuid)
    rows = {r["uuid"]: r for r in esl.wait_rows(
        lambda rows: any(r["uuid"] == U1 and r["cid_name"] == "Outbound Call" for r in rows))}
    assert (rows[U1]["callee_name"], rows[U1]["callee_num"]) == ("Alice", "5550100")
    assert dumped(esl, U1)["Caller-Caller-ID-Number"] == "default"


def dumped(esl: EslClient, uuid: str) -> dict:
    return json.loads(esl.api(f"uuid_dump {uuid} json"))


def test_without_an_origination_caller_id_the_name_is_empty(sim, esl_fast):
    """FreeSWITCH's default caller id name is empty (the header is left out) and its number
    0000000000 (captures 07, 14–18)."""
    esl = esl_fast
    esl.api(f"originate {{origination_uuid={U1}}}loopback/esl_answer &park")
    create = esl.wait_event("CHANNEL_CREATE", uuid=U1)
    assert "Caller-Caller-ID-Name" not in create and "Caller-Orig-Caller-ID-Name" not in create
    assert create["Caller-Caller-ID-Number"] == "0000000000"
    assert create["Caller-Callee-ID-Number"] == "esl_answer"  # no context: the extension
    update = esl.wait_event("CALL_UPDATE", uuid=U1)
    assert (update["Caller-Caller-ID-Name"], update["Caller-Caller-ID-Number"]) \
        == ("Outbound Call", "esl_answer")
    assert "Caller-Callee-ID-Name" not in update
    assert update["Caller-Callee-ID-Number"] == "0000000000"
    assert "variable_pre_transfer_caller_id_name" not in update


def test_a_bridged_originatee_keeps_its_caller_id(sim, esl_fast):
    """The leg the bridge application dials runs no application of its own: no flip
    (capture 05 has one CALL_UPDATE, the originate's leg's). It is dialled with the
    originator's caller id as it is by then: already flipped."""
    esl = esl_fast
    esl.api(f"originate {{origination_uuid={U1},origination_caller_id_number=1001}}"
            f"loopback/esl_answer/default &bridge({{origination_uuid={U2}}}loopback/esl_answer_2/default)")
    esl.wait_event("CHANNEL_BRIDGE", uuid=U1)
    assert "CALL_UPDATE" in esl.names(U1)
    assert "CALL_UPDATE" not in esl.names(U2)
    dump = dumped(esl, U2)
    assert (dump["Caller-Caller-ID-Name"], dump["Caller-Caller-ID-Number"]) \
        == ("Outbound Call", "default")


def test_an_outbound_leg_transferred_into_the_dialplan_flips_once(sim, esl_fast):
    """A dialled leg (outbound, never routed) that is transferred runs a dialplan for the
    first time: it becomes the caller, once (switch_channel_sort_cid)."""
    esl = esl_fast
    call = sim.create_call(caller_id_name="Alice", caller_id_number="1001", destination="2000")
    esl.wait_event("CHANNEL_BRIDGE", uuid=call.a_uuid)
    assert esl.api(f"uuid_transfer {call.b_uuid} 3000 XML default") == "+OK\n"
    update = esl.wait_event("CALL_UPDATE", uuid=call.b_uuid)
    assert (update["Caller-Caller-ID-Number"], update["Caller-Callee-ID-Number"]) == ("2000", "1001")
    esl.wait_event("CHANNEL_PARK", uuid=call.b_uuid)
    assert esl.api(f"uuid_transfer {call.b_uuid} 3001 XML default") == "+OK\n"
    esl.wait_event(lambda e: e["Event-Name"] == "CHANNEL_PARK"
                   and e["Caller-Destination-Number"] == "3001", uuid=call.b_uuid)
    assert esl.names(call.b_uuid).count("CALL_UPDATE") == 1
    assert "CALL_UPDATE" not in esl.names(call.a_uuid)  # the inbound caller never flips
