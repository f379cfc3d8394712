"""The interpreter loop on its own: branching, stop, goto, run life and ends — with a real
channel registry fed events by hand and test modules that send nothing."""

import pytest
from conftest import eventually

from eslchan.config import MetaflowConfig, VariableMapping
from eslchan.registry import ChannelRegistry
from metaflow import CONTINUE, STOP, Interpreter, ModuleRegistry, StateError, ValidationFailed, branch, goto

pytestmark = pytest.mark.timeout(30)

UUID = "11111111-2222-3333-4444-555555555555"
ACCOUNT = "a" * 32
STEP = {"type": "object", "additionalProperties": False,
        "properties": {"say": {"type": "string", "pattern": "^[a-z0-9]{1,16}$"},
                       "then": {"type": "string", "enum": ["continue", "stop", "wait", "fail", "goto"]},
                       "key": {"type": "string", "default": "x"}}}


@pytest.fixture
def world():
    registry = ChannelRegistry(VariableMapping())
    registry.apply("fs1", {"Event-Name": "CHANNEL_CREATE", "Unique-ID": UUID,
                           "variable_eslchan_account_id": ACCOUNT})
    trail: list[str] = []

    def step(ctx, data):
        trail.append(data.get("say", "?"))
        then = data.get("then", "branch")
        if then == "wait":
            ctx.wait_for({"DTMF"}, None)
        if then == "fail":
            raise StateError("this step always fails")
        if then == "goto":
            return goto(ctx.interpreter.validate({"module": "step", "data": {"say": "jumped"}}), "sub")
        return {"continue": CONTINUE, "stop": STOP}.get(then) or branch(data["key"])

    modules = ModuleRegistry(builtins=False, load_entry_points=False)
    modules.register("step", STEP, step)
    interp = Interpreter(registry, {}, MetaflowConfig(max_depth=4, max_nodes=8), modules=modules)
    return registry, interp, trail


def run_to_end(interp, registry, tree):
    run = interp.start(registry.get("fs1", UUID), tree, ACCOUNT)
    run.greenlet.join(timeout=5)
    return run


def s(say, then=None, key=None, **children):
    data = {"say": say} | ({"then": then} if then else {}) | ({"key": key} if key else {})
    return {"module": "step", "data": data, "children": children}


def test_branch_continue_stop_and_fallback(world):
    registry, interp, trail = world
    tree = s("a", "continue", _=s("b", key="2", **{"1": s("no"), "2": s("c", "stop", _=s("never"))}))
    assert run_to_end(interp, registry, tree).state == "finished"
    assert trail == ["a", "b", "c"]
    trail.clear()
    # a key with no child takes `_`; no `_` ends the flow
    tree = s("a", key="9", **{"1": s("no"), "_": s("fallback", key="zz")})
    run_to_end(interp, registry, tree)
    assert trail == ["a", "fallback"]


def test_goto_runs_another_tree_in_place_of_the_children(world):
    registry, interp, trail = world
    run_to_end(interp, registry, s("a", "goto", _=s("skipped")))
    assert trail == ["a", "jumped"]


def test_failure_and_bounds(world):
    registry, interp, trail = world
    run = run_to_end(interp, registry, s("a", "fail"))
    assert run.state == "failed" and "always fails" in run.error
    deep = s("e")
    for name in "dcba":
        deep = s(name, "continue", _=deep)
    with pytest.raises(ValidationFailed) as info:
        interp.start(registry.get("fs1", UUID), deep, ACCOUNT)
    assert "maxDepth" in next(iter(info.value.errors.values()))


def test_a_destroyed_channel_ends_the_run_cleanly(world):
    registry, interp, trail = world
    run = interp.start(registry.get("fs1", UUID), s("a", "wait", _=s("never")), ACCOUNT)
    eventually(lambda: run.waiting)
    assert run.state == "running" and interp.runs(UUID) == [run]
    assert run.as_dict()["current"] == {"path": "", "module": "step"}
    registry.apply("fs1", {"Event-Name": "CHANNEL_DESTROY", "Unique-ID": UUID})
    run.greenlet.join(timeout=5)
    assert run.state == "channel_gone" and run.error is None
    assert interp.runs(UUID) == [run] and trail == ["a"]  # over, and remembered
    assert run.as_dict()["trail"][0] | {"started": 0, "ended": 0} == {
        "path": "", "module": "step", "outcome": "channel_gone", "branch": None, "next": None,
        "started": 0, "ended": 0}


def test_action_returns_when_the_run_waits_or_ends_and_raises_what_failed(world):
    registry, interp, trail = world
    ch = registry.get("fs1", UUID)
    result = interp.run_action(ch, {"action": "step", "say": "x", "then": "wait"})
    assert result["state"] == "running" and result["data"] == {"say": "x", "then": "wait", "key": "x"}
    assert interp.stop(result["id"]) and [r.state for r in interp.runs(UUID)] == ["stopped"]
    with pytest.raises(StateError):
        interp.run_action(ch, {"action": "step", "then": "fail"})
    with pytest.raises(ValidationFailed) as info:
        interp.run_action(ch, {"action": "step", "say": "Bad Value"})
    assert "data.say" in info.value.errors
    with pytest.raises(ValidationFailed):
        interp.run_action(ch, {"say": "x"})


def test_drain_stops_what_does_not_end(world):
    registry, interp, trail = world
    run = interp.start(registry.get("fs1", UUID), s("a", "wait"), ACCOUNT)
    eventually(lambda: run.waiting)
    interp.drain(timeout=0.05)
    assert run.state == "stopped" and interp.get(run.id) is run and not interp._runs


def test_per_channel_memory_is_not_recreated_for_a_channel_already_gone(world):
    registry, interp, trail = world
    seen = []

    def remember(ctx, data):
        seen.append(ctx.state.setdefault("visits", 0))
        return CONTINUE

    interp.modules.register("remember", {"type": "object"}, remember)
    run = interp.start(registry.get("fs1", UUID), {"module": "remember"}, ACCOUNT)
    registry.apply("fs1", {"Event-Name": "CHANNEL_DESTROY", "Unique-ID": UUID})  # before the run ran
    run.greenlet.join(timeout=5)
    assert run.state == "channel_gone" and seen == []
    assert interp._state == {}  # nothing kept for a channel that will never send a destroy again


def test_the_trail_says_which_node_ran_and_which_branch_it_took(world):
    registry, interp, trail = world
    tree = s("a", "continue", _=s("b", key="2", **{"1": s("no"), "2": s("c", key="9", _=s("d", "stop"))}))
    run = run_to_end(interp, registry, tree)
    steps = [(t["path"], t["outcome"], t["branch"], t["next"]) for t in run.as_dict()["trail"]]
    assert steps == [("", "continue", "_", "_"),
                     ("children._", "branch", "2", "2"),
                     ("children._.children.2", "branch", "9", "_"),  # no child 9: took _
                     ("children._.children.2.children._", "stop", None, None)]
    failed = run_to_end(interp, registry, s("a", "continue", _=s("b", "fail")))
    assert [(t["path"], t["outcome"]) for t in failed.as_dict()["trail"]] == [
        ("", "continue"), ("children._", "failed")]
    assert failed.as_dict()["error"] == "this step always fails"
    jumped = run_to_end(interp, registry, s("a", "goto"))
    assert [(t["path"], t["outcome"], t["branch"], t["next"]) for t in jumped.as_dict()["trail"]] == [
        ("", "goto", "sub", "sub"), ("sub:", "branch", "x", None)]


def test_finished_runs_are_kept_for_a_bounded_time_count_and_count_per_account(world):
    registry, interp, trail = world
    interp.config = MetaflowConfig(max_depth=4, max_nodes=8, finished_runs_max=3,
                                   finished_runs_per_account=2, finished_runs_seconds=3600)
    ch = registry.get("fs1", UUID)
    runs = [run_to_end(interp, registry, s("a", "stop")) for _ in range(3)]
    assert [interp.get(r.id) for r in runs] == [None, runs[1], runs[2]]  # 2 per account
    other = interp.start(ch, s("b", "stop"), "b" * 32)
    other.greenlet.join(timeout=5)
    assert interp.get(other.id) is other and interp.get(runs[1].id) is runs[1]
    assert [r.id for r in interp.account_runs(ACCOUNT)] == [runs[2].id, runs[1].id]
    third = interp.start(ch, s("c", "stop"), "c" * 32)
    third.greenlet.join(timeout=5)
    assert interp.get(runs[1].id) is None  # 3 in all: the oldest goes
    assert len(interp.history) == 3
    interp.history.clock = lambda: third.ended + 3601  # an hour later
    assert interp.get(third.id) is None and len(interp.history) == 0
