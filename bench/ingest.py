"""Ingest: socket → framing → parse → registry, against a raw reader and greenswitch.

A blaster process (bench/_blaster.py, on its own core) replays a recorded two-leg loopback
call with fresh UUIDs per call, as fast as the socket allows, filtered by each client's
subscription. Each client runs in its own fresh process:

- ``raw``: a minimal socket reader that frames and ``json.loads`` (plain: splits lines and
  URL-decodes each value) and counts: the pure-Python ceiling;
- ``greenswitch``: greenswitch 0.0.19 ``InboundESL`` with a counting ``'*'`` handler (plain
  only: it cannot parse json);
- ``eslchan``: the daemon's path, ``NodeLink`` (event + command connections) with
  ``on_event`` = ``ChannelRegistry.apply`` and a resync on link up,
  wired as eslchan/daemon.py does.

Scenarios: json ALL, plain ALL, and the daemon's own subscription (config.DEFAULT_EVENTS)
in json. Figures: events/s, MB/s of event frames, CPU seconds per 100k events.

    python bench/ingest.py [--quick] [--profile] [--repeat N] [--calls N]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import REPO, Profiler, cpu, emit, machine, median, now, run_child, summary  # noqa: E402

SCENARIOS = [
    # (label, format, subscription, clients)
    ("json ALL", "json", "ALL", ["raw", "eslchan"]),
    ("plain ALL", "plain", "ALL", ["raw", "greenswitch", "eslchan"]),
    ("json DEFAULT_EVENTS", "json", "DEFAULT", ["raw", "eslchan"]),
]


def subscription(which: str) -> list[str]:
    if which == "ALL":
        return ["ALL"]
    from eslchan.config import DEFAULT_EVENTS

    return list(DEFAULT_EVENTS)


# --- clients (each runs in a child process) ------------------------------------------------------


def client_raw(port: int, fmt: str, names: list[str], expect: int) -> tuple[float, float]:
    """Frame, decode each event (json.loads, or split + unquote for plain), count."""
    import json
    import socket
    from urllib.parse import unquote

    sock = socket.create_connection(("127.0.0.1", port))
    buf = b""

    def frame() -> tuple[bytes, bytes]:
        nonlocal buf
        while b"\n\n" not in buf:
            buf += sock.recv(262144)
        head, buf = buf.split(b"\n\n", 1)
        return head, b""

    frame()  # auth/request
    sock.sendall(b"auth ClueCon\n\n")
    frame()
    t0, c0 = now(), cpu()
    sock.sendall(f"event {fmt} {' '.join(names)}\n\n".encode())
    frame()  # +OK event listener enabled
    count = 0
    loads = json.loads
    data = buf
    pos = 0
    while True:
        while True:
            cut = data.find(b"\n\n", pos)
            if cut < 0:
                break
            i = data.find(b"Content-Length: ", pos, cut)
            if i < 0:
                pos = cut + 2
                continue
            eol = data.find(b"\n", i)
            size = int(data[i + 16 : eol])
            if len(data) < cut + 2 + size:
                break
            body = data[cut + 2 : cut + 2 + size]
            pos = cut + 2 + size
            if fmt == "json":
                loads(body)
            else:
                event = {}
                for line in body.decode().split("\n"):
                    name, _, value = line.partition(": ")
                    if name:
                        event[name] = unquote(value) if "%" in value else value
            count += 1
        if count >= expect:
            break
        chunk = sock.recv(262144)
        if not chunk:
            raise SystemExit("blaster closed early")
        data = data[pos:] + chunk
        pos = 0
    elapsed, cpu_s = now() - t0, cpu() - c0
    sock.close()
    return elapsed, cpu_s


def client_greenswitch(port: int, fmt: str, names: list[str], expect: int) -> tuple[float, float]:
    import gevent
    from gevent.event import Event as GEvent
    from greenswitch import InboundESL

    done = GEvent()
    count = 0

    def handler(event: object) -> None:
        nonlocal count
        count += 1
        if count >= expect:
            done.set()

    esl = InboundESL("127.0.0.1", port, "ClueCon")
    esl.connect()
    esl.register_handle("*", handler)
    t0, c0 = now(), cpu()
    esl.send(f"event {fmt} {' '.join(names)}")
    while not done.wait(0.01):
        gevent.sleep(0)
    elapsed, cpu_s = now() - t0, cpu() - c0
    return elapsed, cpu_s


def client_eslchan(port: int, fmt: str, names: list[str], expect: int, extra: dict) -> tuple[float, float]:
    import gevent

    from eslchan.config import LinkOptions, NodeConfig
    from eslchan.esl.link import NodeLink
    from eslchan.registry import ChannelRegistry, NodeSync

    registry = ChannelRegistry()
    sync = NodeSync(registry, grace_seconds=30.0)
    link: NodeLink | None = None

    started: list[tuple[float, float]] = []

    def on_up(node: str) -> None:  # as Daemon._on_up
        assert link is not None
        # The clock starts here, as the raw reader's starts once it is authenticated: the
        # link calls on_up after auth and subscription, before the connection's first event.
        started.append((now(), cpu()))
        sync.resync(link)

    link = NodeLink(
        NodeConfig("bench", "127.0.0.1", port, "ClueCon"),
        LinkOptions(event_format=fmt, events=tuple(names)),
        on_event=registry.apply,
        on_up=on_up,
        on_down=sync.on_down,
        on_lost_events=lambda node: sync.resync(link),
    )
    stats = registry.stats
    link.start()
    # the dispatcher counts into registry.stats["events"]; look every 2 ms (negligible)
    while stats["events"] + link.stats["events_dropped"] < expect:
        gevent.sleep(0.002)
    t0, c0 = started[0]
    elapsed, cpu_s = now() - t0, cpu() - c0
    gevent.sleep(0.05)
    extra.update(
        created=stats["created"],
        destroyed=stats["destroyed"],
        live=len(registry),
        dropped=link.stats["events_dropped"],
        resync_ok=sync.is_synced("bench"),
    )
    link.stop()
    return elapsed, cpu_s


def child(args: argparse.Namespace) -> None:
    if args.child in ("greenswitch", "eslchan"):
        from gevent import monkey

        monkey.patch_all()  # as the CLI entry does
    names = subscription(args.sub)
    extra: dict = {}
    with Profiler(args.profile) as prof:
        if args.child == "raw":
            elapsed, cpu_s = client_raw(args.port, args.fmt, names, args.expect)
        elif args.child == "greenswitch":
            elapsed, cpu_s = client_greenswitch(args.port, args.fmt, names, args.expect)
        else:
            elapsed, cpu_s = client_eslchan(args.port, args.fmt, names, args.expect, extra)
    emit({"elapsed": elapsed, "cpu": cpu_s, "profile": prof.top(10), **extra})


# --- orchestration ---------------------------------------------------------------------------------


def start_blaster(calls: int) -> tuple[subprocess.Popen, int]:
    proc = subprocess.Popen(
        [sys.executable, str(REPO / "bench" / "_blaster.py"), "--calls", str(calls)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("PORT "):
        proc.kill()
        raise RuntimeError(f"blaster did not start: {line!r}")
    return proc, int(line.split()[1])


def run_one(client: str, fmt: str, sub: str, calls: int, expect: int, profile: bool) -> dict:
    proc, port = start_blaster(calls)
    try:
        args = [str(REPO / "bench" / "ingest.py"), "--child", client, "--fmt", fmt, "--sub", sub,
                "--port", str(port), "--expect", str(expect)]  # fmt: skip
        if profile:
            args.append("--profile")
        return run_child(args, timeout=240)
    finally:
        proc.kill()
        proc.wait()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="~15 s: fewer calls, one repeat")
    ap.add_argument("--calls", type=int, help="calls replayed per run (default 600, quick 250)")
    ap.add_argument("--repeat", type=int, help="runs per client, median kept (default 3, quick 1)")
    ap.add_argument("--profile", action="store_true", help="print the top functions of each client")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--fmt", help=argparse.SUPPRESS)
    ap.add_argument("--sub", help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--expect", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args)
        return

    from bench._blaster import load_call

    calls = args.calls or (250 if args.quick else 600)
    repeat = args.repeat or (1 if args.quick else 3)
    print(f"machine: {machine()}")
    print(f"calls per run: {calls}, runs per client: {repeat} (median kept)")
    templates = {fmt: load_call(fmt) for fmt in ("json", "plain")}
    for fmt, t in templates.items():
        for sub in ("ALL", "DEFAULT"):
            sel = t.select(subscription(sub))
            print(f"  mix {fmt:5} {sub:7}: {sel.events} events, {sel.size / 1024:.0f} KB per call "
                  f"({sel.size / sel.events:.0f} B/event)")  # fmt: skip
    results: dict[tuple[str, str], dict] = {}
    for label, fmt, sub, clients in SCENARIOS:
        sel = templates[fmt].select(subscription(sub))
        expect = sel.events * calls
        nbytes = sel.size * calls
        print(f"\n== {label}: {expect} events, {nbytes / 1e6:.1f} MB per run")
        for client in clients:
            runs = [run_one(client, fmt, sub, calls, expect, False) for _ in range(repeat)]
            elapsed = median([r["elapsed"] for r in runs])
            cpu_s = median([r["cpu"] for r in runs])
            res = {
                "eps": expect / elapsed,
                "mbps": nbytes / elapsed / 1e6,
                "cpu100k": cpu_s / expect * 1e5,
                "runs": runs,
            }
            results[(label, client)] = res
            note = ""
            last = runs[-1]
            if client == "eslchan":
                note = (f"  created={last['created']} destroyed={last['destroyed']} live={last['live']} "
                        f"dropped={last['dropped']} resynced={last['resync_ok']}")  # fmt: skip
            print(f"  {client:12} {res['eps']:>9,.0f} events/s {res['mbps']:7.1f} MB/s "
                  f"{res['cpu100k']:6.2f} CPU s/100k events{note}")  # fmt: skip
        base = results[(label, "raw")]["eps"]
        for client in clients:
            if client != "raw":
                r = results[(label, client)]["eps"]
                print(f"  {client} / raw: {r / base:.2f}")
        if "greenswitch" in clients:
            g = results[(label, "greenswitch")]["eps"]
            print(f"  eslchan / greenswitch: {results[(label, 'eslchan')]['eps'] / g:.2f}")
    if args.profile:
        for label, fmt, sub, clients in SCENARIOS:
            for client in clients:
                expect = templates[fmt].select(subscription(sub)).events * calls
                run = run_one(client, fmt, sub, calls, expect, True)
                print(f"\n-- profile: {client}, {label} (tottime) --\n{run['profile']}")

    js = results[("json ALL", "eslchan")]["eps"] / results[("json ALL", "raw")]["eps"]
    dflt = results[("json DEFAULT_EVENTS", "eslchan")]["eps"] / results[("json DEFAULT_EVENTS", "raw")]["eps"]
    gs_plain = results[("plain ALL", "eslchan")]["eps"] / results[("plain ALL", "greenswitch")]["eps"]
    # greenswitch cannot parse json, so it is measured in plain mode; eslchan runs in json.
    # Same recorded events (ALL) on both sides, each in the format the client can read.
    gs = results[("json ALL", "eslchan")]["eps"] / results[("plain ALL", "greenswitch")]["eps"]
    dj = results[("json DEFAULT_EVENTS", "eslchan")]["eps"] / results[("plain ALL", "greenswitch")]["eps"]
    rg = results[("plain ALL", "raw")]["eps"] / results[("plain ALL", "greenswitch")]["eps"]
    print(f"\neslchan plain ALL / greenswitch plain ALL: {gs_plain:.2f} (raw plain reader, the pure-Python "
          f"plain ceiling, / greenswitch: {rg:.2f}); eslchan json DEFAULT_EVENTS / greenswitch: {dj:.2f}")
    print(f"targets: eslchan json >= 0.70x raw json reader: ALL {js:.2f} {'OK' if js >= 0.7 else 'MISS'}, "
          f"DEFAULT_EVENTS {dflt:.2f} {'OK' if dflt >= 0.7 else 'MISS'}; "
          f"eslchan (json ALL) >= 2.5x greenswitch (plain ALL): {gs:.2f} "
          f"{'OK' if gs >= 2.5 else 'MISS'}")  # fmt: skip
    summary(
        "ingest_eslchan_json_all_events_per_s",
        f"{results[('json ALL', 'eslchan')]['eps']:,.0f}",
        js,
        "raw json reader",
    )


if __name__ == "__main__":
    main()
