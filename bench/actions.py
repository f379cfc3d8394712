"""Action overhead: POST hangup / blind transfer through the API vs a bare ``api`` round trip.

The server process runs the whole daemon (eslchan.daemon.Daemon: links, registry,
interpreter, Flask on gevent's WSGIServer) against the embedded simulator
(eslchan.simulator.Simulator, speed 20), as the test fixtures do. A separate client process
(keep-alive HTTP/1.1) asks a bench-only route for a fresh bridged call (untimed), then times

- ``POST /v2/accounts/{A}/channels/{a-leg}`` ``{"action": "hangup"}``;
- the same with ``{"action": "transfer", "target": "2600"}`` (blind: no takeback_dtmf);
- ``GET /bench/trivial``: the HTTP floor of the same server.

The baseline, in the same run: the same ESL commands the actions send (read back from the
simulator's command log), sent with ``NodeLink.api`` directly on fresh calls: the bare
round trip to the simulator's reply. Overhead = action p50 - bare p50.

    python bench/actions.py [--quick] [--profile] [--calls N]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import (  # noqa: E402
    REPO,
    Profiler,
    add_roles,
    emit,
    json_caller,
    machine,
    run_child,
    run_role,
    serve_and_run_client,
    stats,
    summary,
)

ACME_KEY = "bench-acme-key-0123456789abcdef"


def server(args: argparse.Namespace) -> None:
    from gevent import monkey

    monkey.patch_all()
    import gevent
    from flask import jsonify, request

    from eslchan.daemon import Daemon
    from eslchan.demo import ACME, ACME_SALES, ADMIN, GLOBEX, PARTIES, demo_config
    from eslchan.esl import commands
    from eslchan.esl.commands import Command
    from eslchan.simulator import Simulator

    sim = Simulator(speed=20.0)
    sim.start()
    keys = {ADMIN: "k0" * 12, ACME: ACME_KEY, ACME_SALES: "k2" * 12, GLOBEX: "k3" * 12}
    daemon = Daemon(demo_config([("fs1", sim.host, sim.port, "ClueCon")], keys, listen="127.0.0.1:0"))
    alice = next(p for p in PARTIES if p.account_id == ACME)
    registry = daemon.registry

    def new_call() -> tuple[str, str]:
        call = sim.create_call(account_id=ACME, user_id=alice.user_id, device_id=alice.device_id,
                               caller_id_name=alice.name, caller_id_number=alice.number, destination="2000",
                               username=alice.name.lower())  # fmt: skip
        a, b = call.a_uuid, call.b_uuid
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # bridged and known to the registry, as a caller sees it
            ch = registry.find(a)
            if ch is not None and ch.other_leg == b and ch.answered and ch.account_id == ACME:
                return a, b
            gevent.sleep(0.005)
        raise RuntimeError("call never showed up in the registry")

    daemon.app.add_url_rule("/bench/trivial", "bench_trivial", lambda: "ok")

    def newcall_route():
        a, b = new_call()
        return jsonify(a=a, b=b)

    daemon.app.add_url_rule("/bench/newcall", "bench_newcall", newcall_route, methods=["POST"])

    def commands_route():
        uuid = request.args["uuid"]
        return jsonify([c for c in sim.commands if uuid in c])

    daemon.app.add_url_rule("/bench/commands", "bench_commands", commands_route)
    client = serve_and_run_client(daemon, "actions.py", args.calls, timeout=600)
    link = daemon.links["fs1"]

    # the baseline: the very commands the actions sent, straight through the link
    def bare(kind: str) -> list[float]:
        template = client["sent"][kind]
        times = []
        for _ in range(args.calls):
            a, _b = new_call()
            text = template.replace("{A}", a)
            words = text.split(" ")
            assert words[0] == "api", template
            # the exact line the action sent, from our own log (not user input)
            command = Command(wire=text.encode() + b"\n\n", kind="api", name=words[1], text=text)
            t = time.perf_counter()
            link.api(command)
            times.append(time.perf_counter() - t)
            if kind == "transfer":
                link.api(commands.api("uuid_kill", commands.uuid(a)))
        return times

    def direct(kind: str) -> list[float]:
        """The interpreter alone (no HTTP, no Flask): where the action's own time goes."""
        action = {"action": "hangup"} if kind == "hangup" else {"action": "transfer", "target": "2600"}
        times = []
        for _ in range(args.calls):
            a, _b = new_call()
            t = time.perf_counter()
            daemon.interpreter.run_action(registry.find(a), dict(action))
            times.append(time.perf_counter() - t)
            if kind == "transfer":
                link.api(commands.api("uuid_kill", commands.uuid(a)))
        return times

    # the profile: only the app's handling of POST hangup (Flask test client, no socket),
    # the fresh call set-up and the simulator's work kept out of it as far as possible
    prof = Profiler(args.profile)
    if args.profile:
        web = daemon.app.test_client()
        token = web.put("/v2/api_auth", json={"data": {"api_key": ACME_KEY}}).get_json()["auth_token"]
        for _ in range(args.calls):
            a, _b = new_call()
            with prof:
                resp = web.post(f"/v2/accounts/{ACME}/channels/{a}", json={"data": {"action": "hangup"}},
                                headers={"X-Auth-Token": token})  # fmt: skip
            assert resp.status_code == 200, resp.get_json()

    result = {
        "client": client,
        "direct": {kind: stats(direct(kind)) for kind in ("hangup", "transfer")},
        "bare": {kind: stats(bare(kind)) for kind in ("hangup", "transfer")},
        "profile": prof.top(12),
    }
    daemon.stop(drain_seconds=0.5)
    sim.stop()
    emit(result)


def client(args: argparse.Namespace) -> None:
    call = json_caller(args.port)

    from eslchan.demo import ACME

    _, auth = call("PUT", "/v2/api_auth", {"data": {"api_key": ACME_KEY}})
    token = auth["auth_token"]
    times: dict[str, list[float]] = {"hangup": [], "transfer": [], "trivial": []}
    sent: dict[str, str] = {}
    bodies = {
        "hangup": {"data": {"action": "hangup"}},
        "transfer": {"data": {"action": "transfer", "target": "2600"}},
    }
    for i in range(args.calls):
        for kind in ("hangup", "transfer"):
            _, legs = call("POST", "/bench/newcall")
            a = legs["a"]
            t = time.perf_counter()
            status, resp = call("POST", f"/v2/accounts/{ACME}/channels/{a}", bodies[kind], token)
            times[kind].append(time.perf_counter() - t)
            if status != 200:
                raise SystemExit(f"{kind}: HTTP {status} {resp}")
            if i == 0:
                _, log = call("GET", f"/bench/commands?uuid={a}")
                sent[kind] = log[-1].replace(a, "{A}")
            if kind == "transfer":
                call("POST", f"/v2/accounts/{ACME}/channels/{a}", bodies["hangup"], token)
        t = time.perf_counter()
        call("GET", "/bench/trivial")
        times["trivial"].append(time.perf_counter() - t)
    emit({"http": {k: stats(v) for k, v in times.items()}, "sent": sent})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="~15 s")
    ap.add_argument("--calls", type=int, help="timed actions of each kind (default 150, quick 40)")
    ap.add_argument("--profile", action="store_true", help="cProfile the app handling POST hangup")
    add_roles(ap)
    args = ap.parse_args()
    args.calls = args.calls or (40 if args.quick else 150)
    if run_role(args, server, client):
        return
    print(f"machine: {machine()}")
    cmd = [str(REPO / "bench" / "actions.py"), "--server", "--calls", str(args.calls)]
    cmd += ["--profile"] if args.profile else []
    res = run_child(cmd, timeout=900)
    http, bare = res["client"]["http"], res["bare"]
    print(f"{args.calls} timed actions of each kind, fresh bridged call each (simulator speed 20)")
    overheads = {}
    for kind in ("hangup", "transfer"):
        h, b = http[kind], bare[kind]
        overheads[kind] = h["p50"] - b["p50"]
        print(f"  {kind:8} POST over HTTP: p50 {h['p50'] * 1e3:6.2f} ms  p99 {h['p99'] * 1e3:6.2f} ms | "
              f"bare api ({res['client']['sent'][kind]}): p50 {b['p50'] * 1e3:6.2f} ms  "
              f"p99 {b['p99'] * 1e3:6.2f} ms | overhead p50 {overheads[kind] * 1e3:6.2f} ms")  # fmt: skip
    for kind in ("hangup", "transfer"):
        d = res["direct"][kind]
        print(f"  {kind:8} Interpreter.run_action in-process (no HTTP): p50 {d['p50'] * 1e3:6.2f} ms  "
              f"p99 {d['p99'] * 1e3:6.2f} ms")  # fmt: skip
    t = http["trivial"]
    print(f"  trivial Flask route on the daemon's server: p50 {t['p50'] * 1e3:.2f} ms  "
          f"p99 {t['p99'] * 1e3:.2f} ms")  # fmt: skip
    if args.profile:
        print(f"\n-- profile: the app handling POST hangup (Flask test client, tottime) --\n{res['profile']}")
    worst = max(overheads.values()) * 1e3
    print(f"\ntarget: overhead < 1 ms at p50: hangup {overheads['hangup'] * 1e3:.2f} ms, "
          f"transfer {overheads['transfer'] * 1e3:.2f} ms {'OK' if worst < 1 else 'MISS'}")  # fmt: skip
    ratio = http["hangup"]["p50"] / bare["hangup"]["p50"]
    summary("actions_hangup_p50", f"{http['hangup']['p50'] * 1e3:.2f} ms", ratio, "bare api round trip")


if __name__ == "__main__":
    main()
