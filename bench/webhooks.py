"""Webhooks: delivery throughput, and what a hundred hooks on a slow receiver cost the ingest.

Events are the recorded two-leg loopback call of capture 04a (json), the daemon's own
subscription (config.DEFAULT_EVENTS, 63 events per call), replayed with fresh UUIDs per call and
the tenancy variable added, fed to ``ChannelRegistry.apply`` the way a link's dispatcher does
(a yield every 256 events). The registry feeds the webhook service, whose writer persists to a
real SQLite file and whose workers deliver to a real HTTP receiver process on loopback.

1. **Deliveries/s** to a fast receiver (answers 200 at once): one hook (one ordered queue), and
   ten hooks (ten queues in parallel). Baseline, same run: the same signed POSTs sent one after
   the other with http.client to the same receiver, nothing else (the HTTP exchange alone).
2. **Ingest** (events applied per second) with 100 hooks (``all`` events, one account) whose
   receiver never answers, against no hooks at all, same run; and how long after the last event
   every accepted event was persisted. A third run puts the store's SQLite calls on the event
   loop instead of their own thread (the design not taken), to show what the thread buys.

    python bench/webhooks.py [--quick] [--profile] [--calls N] [--deliveries N] [--repeat N]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import REPO, Profiler, cpu, emit, machine, median, now, run_child, summary  # noqa: E402

ACCOUNT = "acc00000000000000000000000000001"
SLOW_HOOKS = 100


# --- the receiver (a process of its own) ------------------------------------------------------


def receiver(mode: str) -> None:
    from gevent import monkey

    monkey.patch_all()
    import json

    import gevent
    from gevent.pywsgi import WSGIServer

    arrivals: list[tuple[float, str, str, str]] = []

    def app(environ, start_response):
        if mode == "log" and environ["REQUEST_METHOD"] == "GET":  # how many arrived, or which from the n-th
            if environ["PATH_INFO"] == "/count":
                body = str(len(arrivals)).encode()
            else:
                body = json.dumps(arrivals[int(environ.get("QUERY_STRING") or 0):]).encode()
            start_response("200 OK", [("Content-Type", "application/json"),
                                      ("Content-Length", str(len(body)))])
            return [body]
        length = int(environ.get("CONTENT_LENGTH") or 0)
        data = environ["wsgi.input"].read(length) if length else b""
        if mode == "log":  # when (CLOCK_MONOTONIC, shared by the machine's processes) and what
            payload = json.loads(data)
            arrivals.append((time.monotonic(), payload["call_id"], payload["hook_event"],
                             environ.get("HTTP_WEBHOOK_ID", "")))
        if mode == "slow":
            gevent.sleep(3600)  # holds every request: the hook's worker waits for its timeout
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
        return [b"ok"]

    server = WSGIServer(("127.0.0.1", 0), app, log=None, error_log=None)
    server.start()
    print(f"PORT {server.server_port}", flush=True)
    gevent.wait()


def start_receiver(mode: str):
    import subprocess

    proc = subprocess.Popen(
        [sys.executable, str(REPO / "bench" / "webhooks.py"), "--receiver", mode],
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    line = proc.stdout.readline()
    if not line.startswith("PORT "):
        proc.kill()
        raise RuntimeError(f"receiver did not start: {line!r}")
    return proc, int(line.split()[1])


# --- events -----------------------------------------------------------------------------------


def call_events(calls: int) -> list[dict[str, str]]:
    """``calls`` replays of the recorded call (DEFAULT_EVENTS), fresh UUIDs, account set."""
    import re
    import uuid as uuidlib

    from bench._channels import _capture_events
    from eslchan.config import DEFAULT_EVENTS

    wanted = set(DEFAULT_EVENTS)
    template = [e for e in _capture_events() if e.get("Event-Name") in wanted]
    pattern = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
    uuids = sorted({u for e in template for v in e.values() for u in pattern.findall(v)})
    out: list[dict[str, str]] = []
    seq = 1
    for _ in range(calls):
        fresh = {u: str(uuidlib.uuid4()) for u in uuids}

        def renew(match: re.Match, fresh: dict[str, str] = fresh) -> str:
            return fresh.get(match.group(0), match.group(0))

        for event in template:
            ev = {k: pattern.sub(renew, v) for k, v in event.items()}
            if any(k.startswith("variable_") for k in ev):
                ev["variable_eslchan_account_id"] = ACCOUNT
            ev["Event-Sequence"] = str(seq)
            seq += 1
            out.append(ev)
    return out


def hook_events_in(events: list[dict[str, str]]) -> int:
    from eslchan.webhooks import HOOK_EVENTS

    return sum(1 for e in events if e.get("Event-Name") in HOOK_EVENTS)


def service_for(data_dir: Path, registry, **config):
    from ipaddress import ip_network

    from eslchan.config import Account, WebhooksConfig
    from eslchan.webhooks import WebhookService

    settings = {"allowed_networks": (ip_network("127.0.0.0/8"),), "max_hooks_per_account": 1000, **config}
    service = WebhookService(
        WebhooksConfig(data_dir=data_dir, **settings),
        registry,
        [Account(id=ACCOUNT, name="bench", api_key_hash="")],
    )
    service.start()
    return service


def feed(registry, events: list[dict[str, str]]) -> None:
    import gevent

    apply = registry.apply
    for i, event in enumerate(events, 1):
        apply("fs1", event)
        if i % 256 == 0:  # as NodeLink's dispatcher yields
            gevent.sleep(0)


# --- children ---------------------------------------------------------------------------------


def child_deliver(port: int, hooks: int, deliveries: int) -> dict:
    import gevent

    from eslchan.registry import ChannelRegistry

    events = call_events(deliveries // 7 + 2)
    registry = ChannelRegistry()
    with tempfile.TemporaryDirectory() as tmp:
        service = service_for(Path(tmp), registry, timeout=30.0)
        for i in range(hooks):
            service.create(ACCOUNT, {"name": f"h{i}", "uri": f"http://127.0.0.1:{port}/in", "hook": "all"})
        per_hook = hook_events_in(events)
        expect = per_hook * hooks
        t0, c0 = now(), cpu()
        feed(registry, events)
        while service.stats["delivered"] < expect:
            gevent.sleep(0.002)
        elapsed, cpu_s = now() - t0, cpu() - c0
        stats = dict(service.stats)
        service.stop()
    return {"elapsed": elapsed, "cpu": cpu_s, "deliveries": expect, **stats}


def child_direct(port: int, deliveries: int) -> dict:
    """The baseline: signed POSTs one after the other, a new connection each, as a worker sends."""
    import http.client
    import json

    from eslchan.webhooks.delivery import new_secret, sign

    secret = new_secret()
    body = json.dumps({"hook_event": "channel_create", "call_id": "x" * 36, "pad": "p" * 600}).encode()
    t0, c0 = now(), cpu()
    for i in range(deliveries):
        stamp = int(time.time())
        headers = {
            "Content-Type": "application/json",
            "webhook-id": f"d-{i}",
            "webhook-timestamp": str(stamp),
            "webhook-signature": sign(secret, f"d-{i}", stamp, body),
        }
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request("POST", "/in", body=body, headers=headers)
        resp = conn.getresponse()
        resp.read()
        conn.close()
        assert resp.status == 200
    return {"elapsed": now() - t0, "cpu": cpu() - c0, "deliveries": deliveries}


class _OnTheLoop:
    """Stands in for the store's thread pool: runs each call at once, on the event loop."""

    def apply(self, fn, args=()):
        return fn(*args)

    def kill(self) -> None:
        pass


def child_ingest(port: int, hooks: int, calls: int, inline: bool) -> dict:
    import gevent

    from eslchan.registry import ChannelRegistry

    events = call_events(calls)
    registry = ChannelRegistry()
    with tempfile.TemporaryDirectory() as tmp:
        service = None
        if hooks:
            service = service_for(Path(tmp), registry, timeout=120.0, max_pending_per_hook=100_000,
                                  handoff_max=1_000_000)  # fmt: skip
            if inline:
                service.store._pool = _OnTheLoop()
            for i in range(hooks):
                service.create(
                    ACCOUNT, {"name": f"h{i}", "uri": f"http://127.0.0.1:{port}/in", "hook": "all"}
                )
            gevent.sleep(0.5)  # every worker holds its (empty) queue; none is busy yet
        t0, c0 = now(), cpu()
        feed(registry, events)
        elapsed, cpu_s = now() - t0, cpu() - c0
        persisted = 0.0
        accepted = 0
        if service is not None:
            expect = hook_events_in(events) * hooks
            while service.stats["accepted"] + service.stats["dropped_handoff"] < expect:
                gevent.sleep(0.002)
            persisted = now() - t0 - elapsed
            accepted = service.stats["accepted"]
            service.stop()
    return {
        "elapsed": elapsed,
        "cpu": cpu_s,
        "events": len(events),
        "accepted": accepted,
        "persisted_after": persisted,
    }


def child(args: argparse.Namespace) -> None:
    from gevent import monkey

    monkey.patch_all()  # as the CLI entry does
    with Profiler(args.profile) as prof:
        if args.child == "deliver":
            result = child_deliver(args.port, args.hooks, args.deliveries)
        elif args.child == "direct":
            result = child_direct(args.port, args.deliveries)
        else:
            result = child_ingest(args.port, args.hooks, args.calls, args.inline)
    emit({**result, "profile": prof.top(10)})


# --- orchestration ----------------------------------------------------------------------------


def run(kind: str, mode: str, extra: list[str], profile: bool) -> dict:
    proc, port = start_receiver(mode)
    try:
        args = [str(REPO / "bench" / "webhooks.py"), "--child", kind, "--port", str(port), *extra]
        if profile:
            args.append("--profile")
        return run_child(args, timeout=600)
    finally:
        proc.kill()
        proc.wait()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="~15 s: fewer events, one repeat")
    ap.add_argument("--calls", type=int, help="calls replayed for the ingest runs (default 300, quick 60)")
    ap.add_argument("--deliveries", type=int, help="deliveries per hook (default 2000, quick 400)")
    ap.add_argument("--repeat", type=int, help="runs of each, median kept (default 3, quick 1)")
    ap.add_argument("--profile", action="store_true", help="print the top functions of each run")
    ap.add_argument("--receiver", help=argparse.SUPPRESS)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--hooks", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--inline", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.receiver:
        receiver(args.receiver)
        return
    if args.child:
        child(args)
        return

    calls = args.calls or (60 if args.quick else 300)
    deliveries = args.deliveries or (400 if args.quick else 2000)
    repeat = args.repeat or (1 if args.quick else 3)
    print(f"machine: {machine()}")
    print(f"runs of each: {repeat} (median kept)")

    def many(kind: str, mode: str, extra: list[str]) -> dict:
        runs = [run(kind, mode, extra, False) for _ in range(repeat)]
        best = dict(runs[len(runs) // 2])
        for key in ("elapsed", "cpu"):
            best[key] = median([r[key] for r in runs])
        if args.profile:
            profile = run(kind, mode, extra, True)["profile"]
            print(f"\n-- profile: {kind} {' '.join(extra)} (tottime) --\n{profile}")
        return best

    print(f"\n== 1. deliveries to a fast receiver ({deliveries} per hook)")
    direct = many("direct", "fast", ["--deliveries", str(deliveries)])
    direct_rate = direct["deliveries"] / direct["elapsed"]
    print(f"  direct http.client, one after the other: {direct_rate:8,.0f} requests/s "
          f"({direct['cpu'] / direct['deliveries'] * 1e6:5.0f} us CPU each)")  # fmt: skip
    rates = {}
    for hooks in (1, 10):
        r = many("deliver", "fast", ["--hooks", str(hooks), "--deliveries", str(deliveries)])
        rates[hooks] = r["deliveries"] / r["elapsed"]
        print(f"  eslchan, {hooks:2} hook(s): {rates[hooks]:8,.0f} deliveries/s "
              f"({r['cpu'] / r['deliveries'] * 1e6:5.0f} us CPU each, queue + store + signature + HTTP); "
              f"{rates[hooks] / direct_rate:.2f}x direct")  # fmt: skip

    print(f"\n== 2. ingest with {SLOW_HOOKS} hooks on a receiver that never answers, against none "
          f"({calls} calls)")  # fmt: skip
    base = many("ingest", "slow", ["--hooks", "0", "--calls", str(calls)])
    loaded = many("ingest", "slow", ["--hooks", str(SLOW_HOOKS), "--calls", str(calls)])
    inline = many("ingest", "slow", ["--hooks", str(SLOW_HOOKS), "--calls", str(calls), "--inline"])
    runs = (
        ("no hooks", base),
        (f"{SLOW_HOOKS} hooks", loaded),
        (f"{SLOW_HOOKS} hooks, SQLite on the loop", inline),
    )
    for label, r in runs:
        extra = ""
        if r["accepted"]:
            extra = (f"; {r['accepted']:,} deliveries accepted, all persisted "
                     f"{r['persisted_after'] * 1e3:,.0f} ms after the last event")  # fmt: skip
        print(f"  {label:32}: {r['events'] / r['elapsed']:9,.0f} events/s, "
              f"{r['cpu'] / r['events'] * 1e6:5.1f} us CPU/event{extra}")  # fmt: skip
    ratio = (loaded["events"] / loaded["elapsed"]) / (base["events"] / base["elapsed"])
    on_loop = (inline["events"] / inline["elapsed"]) / (base["events"] / base["elapsed"])
    print(f"  ingest with {SLOW_HOOKS} slow hooks / without: {ratio:.2f} "
          f"(with SQLite on the loop: {on_loop:.2f})")  # fmt: skip
    summary(
        "webhooks_deliveries_per_s_one_hook",
        f"{rates[1]:,.0f}",
        rates[1] / direct_rate,
        "direct sequential http.client POSTs",
    )
    summary(
        f"webhooks_ingest_events_per_s_{SLOW_HOOKS}_slow_hooks",
        f"{loaded['events'] / loaded['elapsed']:,.0f}",
        ratio,
        "ingest without hooks",
    )


if __name__ == "__main__":
    main()
