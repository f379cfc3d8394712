"""Memory: what 10,000 live channels with ~60 variables each cost in the registry.

Each figure comes from a fresh child process that applies 10,000 synthesized CHANNEL_CREATE
events (bench/_channels.py: headers of a recorded CHANNEL_CREATE, 60 recorded variables
including the tenancy ones; every string freshly decoded from JSON, as off the wire):

- ``registry``: ``ChannelRegistry.apply`` of each event (the event is dropped afterwards);
- ``baseline``: a plain dict uuid → the whole event, kept.

Retained memory is measured with tracemalloc (Python allocations still alive) and as the
RSS delta (/proc/self/statm), both after a full gc.

    python bench/memory.py [--quick] [--profile] [--channels N] [--variables N]
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import tracemalloc
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import REPO, emit, machine, run_child, summary  # noqa: E402


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def child(kind: str, channels: int, variables: int, top: bool) -> None:
    from bench import _channels
    from eslchan.registry import ChannelRegistry

    counts = _channels.layout(total=channels, big=channels // 2, mid=max(1, channels // 100))
    stream = _channels.events(counts, variables)
    first = next(stream)  # warm imports, interning, template before measuring
    registry = ChannelRegistry()
    keep: dict[str, dict] = {}
    if kind == "registry":
        registry.apply("fs1", first)
    else:
        keep[first["Unique-ID"]] = first
    nvars = sum(k.startswith("variable_") for k in first)
    del first
    gc.collect()
    tracemalloc.start(10 if top else 1)
    gc.collect()
    r0 = rss()
    t0 = tracemalloc.get_traced_memory()[0]
    snap0 = tracemalloc.take_snapshot() if top else None
    if kind == "registry":
        apply = registry.apply
        for ev in stream:
            apply("fs1", ev)
        n = len(registry)
    else:
        for ev in stream:
            keep[ev["Unique-ID"]] = ev
        n = len(keep)
    del stream
    gc.collect()
    t1 = tracemalloc.get_traced_memory()[0]
    r1 = rss()
    tops = ""
    if snap0 is not None:
        snap1 = tracemalloc.take_snapshot()
        lines = []
        for st in snap1.compare_to(snap0, "lineno")[:8]:
            frame = st.traceback[0]
            lines.append(f"  {st.size_diff / (n - 1):8.0f} B/channel  {st.count_diff:8d} blocks  "
                         f"{frame.filename.replace(str(REPO) + '/', '')}:{frame.lineno}")  # fmt: skip
        tops = "\n".join(lines)
    emit({"n": n - 1, "traced": t1 - t0, "rss": r1 - r0, "vars": nvars, "top": tops})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="one run each (default: best of 3)")
    ap.add_argument("--channels", type=int, default=10_000)
    ap.add_argument("--variables", type=int, default=60)
    ap.add_argument("--profile", action="store_true", help="print the top allocation sites")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child, args.channels, args.variables, args.profile)
        return
    repeat = 1 if args.quick else 3
    print(f"machine: {machine()}")
    res = {}
    for kind in ("baseline", "registry"):
        runs = [
            run_child([str(REPO / "bench" / "memory.py"), "--child", kind, "--channels", str(args.channels),
                       "--variables", str(args.variables)])  # fmt: skip
            for _ in range(repeat)
        ]
        best = min(runs, key=lambda r: r["traced"])
        res[kind] = best
        n = best["n"]
        per, rss_per = best["traced"] / n, best["rss"] / n
        print(f"  {kind:9} {n} channels, {best['vars']} variables each: "
              f"tracemalloc {per:7.0f} B/channel, RSS delta {rss_per:7.0f} B/channel")  # fmt: skip
    if args.profile:
        for kind in ("baseline", "registry"):
            r = run_child([str(REPO / "bench" / "memory.py"), "--child", kind, "--profile",
                           "--channels", str(args.channels), "--variables", str(args.variables)])  # fmt: skip
            print(f"\n-- top allocation sites, {kind} (tracemalloc, retained) --\n{r['top']}")
    reg = res["registry"]["traced"] / res["registry"]["n"]
    base = res["baseline"]["traced"] / res["baseline"]["n"]
    print(f"\ntarget: < 2048 B/channel: {reg:.0f} B {'OK' if reg < 2048 else 'MISS'}")
    summary("memory_registry_bytes_per_channel", f"{reg:.0f} B", reg / base, "whole events in a dict")


if __name__ == "__main__":
    main()
