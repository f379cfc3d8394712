"""The demo's calls end like real ones: when a flow hangs one side up while the other plays
media, the other side goes too, so the demo never piles up legs (the registry lists exactly
the legs of the calls still up)."""

from __future__ import annotations

import pytest
from conftest import eventually

from eslchan.demo import ACME, PARTIES

pytestmark = pytest.mark.timeout(60)

ALICE = PARTIES[0]
ENDLESS = "tone_stream://%(1000,4000,440);loops=-1"  # the demo's hold music loops forever


def demo_call(simulator, daemon):
    """A call as the demo places it: the caller's leg has hangup_after_bridge (as Kazoo sets)."""
    call = simulator.create_call(account_id=ACME, user_id=ALICE.user_id, device_id=ALICE.device_id,
                                 caller_id_name=ALICE.name, caller_id_number=ALICE.number,
                                 destination="1002", variables={"hangup_after_bridge": "true"})
    eventually(lambda: (ch := daemon.registry.find(call.a_uuid)) is not None and ch.other_leg)
    return call


def put(http, uuid, tree):
    resp = http.request("PUT", f"/v2/accounts/{ACME}/channels/{uuid}",
                        {"action": "metaflow", "data": tree}, token=http.token(ACME))
    assert resp.status == 202, resp.body


@pytest.mark.parametrize("flow_on", ["caller", "callee"])
def test_a_flow_hanging_up_one_side_while_the_other_plays_leaves_no_leg(simulator, daemon, http,
                                                                          flow_on):
    call = demo_call(simulator, daemon)
    keep = demo_call(simulator, daemon)  # another call, untouched, stays up
    uuid = call.a_uuid if flow_on == "caller" else call.b_uuid
    # hold music on both legs (not waited for), then this side hangs up
    put(http, uuid, {"module": "play", "data": {"id": ENDLESS, "leg": "both", "wait": False},
                     "children": {"_": {"module": "hangup", "data": {}}}})
    eventually(lambda: all(simulator.channel(u) is None for u in call.uuids), timeout=10)
    eventually(lambda: {ch.uuid for ch in daemon.registry.all()} == set(keep.uuids), timeout=10)


def test_the_readme_ivr_hangs_up_the_whole_call(simulator, daemon, http):
    """The README's IVR: the prompt plays on both legs, the caller presses 2, the flow hangs
    the caller up, and the callee's leg goes with it."""
    call = demo_call(simulator, daemon)
    put(http, call.a_uuid, {
        "module": "play", "data": {"id": "welcome"},
        "children": {"_": {
            "module": "collect_dtmf", "data": {"max_digits": 1, "timeout": 5000},
            "children": {
                "1": {"module": "transfer", "data": {"target": "2600"}},
                "2": {"module": "hangup", "data": {}},
                "_": {"module": "play", "data": {"id": "welcome"},
                      "children": {"_": {"module": "hangup", "data": {}}}}}}}})
    eventually(lambda: any(c.startswith(f"sendmsg {call.b_uuid}") for c in simulator.commands))
    simulator.press_dtmf(call.a_uuid, "2")
    eventually(lambda: not simulator.channels(), timeout=10)
    eventually(lambda: len(daemon.registry) == 0, timeout=10)


def test_a_line_whose_call_a_flow_ended_places_the_next_one_soon(simulator):
    """The demo keeps its calls up: a call a flow (or a tenant's hangup) ended early is replaced
    within a few seconds, not once its planned talk time (here ten minutes) is over."""
    from eslchan.simulator.cli import DemoCalls

    line = DemoCalls(simulator, 1, 600.0 * simulator.speed, PARTIES)
    line.start()
    try:
        eventually(lambda: len(simulator.channels()) == 2 and all(c.answered for c in simulator.channels()),
                   timeout=10)
        first = [c.uuid for c in simulator.channels()]
        for uuid in first:
            simulator.hangup(uuid)
        nxt = eventually(lambda: [c.uuid for c in simulator.channels() if c.uuid not in first], timeout=5)
        assert nxt and not set(nxt) & set(first)
    finally:
        line.stop()
