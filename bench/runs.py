"""Runs: what a finished metaflow run costs while it stays readable, and what checking a
tree's FreeSWITCH needs costs before it starts.

1. Memory. A child process runs N copies of the README's IVR menu (collect_dtmf → transfer,
   the caller pressing 1: a trail of two steps) through the real Interpreter, with a
   ChannelRegistry fed by hand and modules that send nothing, until each is over and kept in
   the history. Retained memory per kept run (tracemalloc, after a full gc) is compared with
   the baseline: the same tree kept as the JSON text a client sent.
2. Time. ``Interpreter.check_requirements`` of a tree of ``--nodes`` nodes (the node's
   capabilities already known, as after the link came up) against ``Interpreter.validate``
   of the same tree, which every run already pays.

    python bench/runs.py [--quick] [--runs N] [--nodes N]
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
import tracemalloc
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import REPO, emit, machine, median, run_child, summary  # noqa: E402

ACCOUNT = "a" * 32
MENU = {"module": "play", "data": {"id": "tone_stream://%(500,500,440)"},
        "children": {"_": {
            "module": "collect_dtmf", "data": {"max_digits": 1, "timeout": 5000},
            "children": {
                "1": {"module": "transfer", "data": {"target": "2600"}},
                "2": {"module": "hangup", "data": {}},
                "_": {"module": "play", "data": {"id": "tone_stream://%(500,500,440)"},
                      "children": {"_": {"module": "hangup", "data": {}}}}}}}}
#: every FreeSWITCH need of the modules, known present (as after the link came up)
EVERYTHING = {"application": frozenset({"playback", "speak", "say", "soundtouch", "bind_digit_action",
                                        "clear_digit_action", "unhold"}),
              "speech": frozenset({"flite"}), "say": frozenset({"en"})}


def _world(history: int):  # type: ignore[no-untyped-def]
    from gevent import monkey

    monkey.patch_all()
    from eslchan.config import MetaflowConfig, VariableMapping
    from eslchan.registry import ChannelRegistry
    from metaflow import CONTINUE, Interpreter, ModuleRegistry, branch
    from metaflow.capabilities import NodeCapabilities

    registry = ChannelRegistry(VariableMapping())
    modules = ModuleRegistry(load_entry_points=False)
    # the real schemas (validation, defaults, requirements), handlers that send nothing
    for name in modules.names():
        spec = modules.get(name)
        assert spec is not None
        spec.handler = (lambda ctx, data: branch("1")) if name == "collect_dtmf" \
            else (lambda ctx, data: CONTINUE)
    config = MetaflowConfig(finished_runs_max=history, finished_runs_per_account=history)
    interp = Interpreter(registry, {"fs1": object()}, config, modules=modules)
    interp.capabilities._cache["fs1"] = _ready(NodeCapabilities(EVERYTHING))
    return registry, interp


def _ready(value):  # type: ignore[no-untyped-def]
    from gevent.event import AsyncResult

    result = AsyncResult()
    result.set(value)
    return result


def child_memory(kind: str, runs: int) -> None:
    registry, interp = _world(runs)
    text = json.dumps(MENU)
    kept: list = []
    gc.collect()
    tracemalloc.start()
    t0 = tracemalloc.get_traced_memory()[0]
    for i in range(runs):
        uuid = f"11111111-2222-3333-4444-{i:012d}"
        if kind == "runs":
            registry.apply("fs1", {"Event-Name": "CHANNEL_CREATE", "Unique-ID": uuid,
                                   "variable_eslchan_account_id": ACCOUNT})
            run = interp.start(registry.get("fs1", uuid), json.loads(text), ACCOUNT)
            run.greenlet.join()
            registry.apply("fs1", {"Event-Name": "CHANNEL_DESTROY", "Unique-ID": uuid})
        else:
            kept.append((text + " ")[:-1])  # the body, as received
    gc.collect()
    t1 = tracemalloc.get_traced_memory()[0]
    assert kind != "runs" or len(interp.history) == runs
    trail = len(next(iter(interp.history)).trail) if kind == "runs" else 0
    emit({"n": runs, "traced": t1 - t0, "trail": trail, "body": len(text)})


def _tree(nodes: int) -> dict:
    """A tree of ``nodes`` nodes: a chain of small menus, every module kind on the way."""
    kinds = [("play", {"id": "tone_stream://%(500,500,440)"}), ("tts", {"text": "hello"}),
             ("say", {"text": "42"}), ("hold", {}), ("sound_touch", {}),
             ("set_variable", {"name": "x", "value": "y"})]
    root: dict = {"module": "sleep", "data": {"duration": 0}}
    node, made = root, 1
    while made < nodes:
        module, data = kinds[made % len(kinds)]
        child: dict = {"module": module, "data": dict(data)}
        node["children"] = {"_": child}
        node, made = child, made + 1
    return root


def child_time(nodes: int, repeat: int) -> None:
    _, interp = _world(10)
    interp.config = type(interp.config)(max_depth=nodes + 1, max_nodes=nodes)
    tree = interp.validate(_tree(nodes))
    out = {}
    for name, fn in (("validate", lambda: interp.validate(_tree(nodes))),
                     ("requirements", lambda: interp.check_requirements("fs1", tree))):
        times = []
        for _ in range(repeat):
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
        out[name] = median(times)
    emit(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer runs and repeats")
    ap.add_argument("--runs", type=int, default=500, help="finished runs kept (finished_runs_max)")
    ap.add_argument("--nodes", type=int, default=30, help="nodes of the tree whose needs are checked")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--repeat", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    script = str(REPO / "bench" / "runs.py")
    if args.child == "time":
        child_time(args.nodes, args.repeat)
        return
    if args.child:
        child_memory(args.child, args.runs)
        return
    runs = 100 if args.quick else args.runs
    repeat = 50 if args.quick else 500
    print(f"machine: {machine()}")
    res = {kind: run_child([script, "--child", kind, "--runs", str(runs)]) for kind in ("body", "runs")}
    per_run = res["runs"]["traced"] / runs
    per_body = res["body"]["traced"] / runs
    print(f"  {runs} finished IVR runs kept (trail of {res['runs']['trail']} steps, request body "
          f"{res['runs']['body']} B): {per_run:,.0f} B per run; the request bodies alone "
          f"{per_body:,.0f} B per run")
    print(f"  at the defaults (finished_runs_max = 500): about {per_run * 500 / 1e6:.1f} MB")
    t = run_child([script, "--child", "time", "--nodes", str(args.nodes), "--repeat", str(repeat)])
    print(f"  a {args.nodes}-node tree: validate {t['validate'] * 1e6:,.0f} µs, "
          f"check_requirements {t['requirements'] * 1e6:,.0f} µs "
          f"({t['requirements'] / t['validate']:.2f}x of validation)")
    summary("runs_finished_bytes_per_run", f"{per_run:,.0f} B", per_run / per_body, "the request body kept")


if __name__ == "__main__":
    main()
