"""Starting a call: PUT /v2/accounts/{A}/channels until its 201, vs a bare ``bgapi originate``.

The server process runs the whole daemon (eslchan.daemon.Daemon: links, registry,
interpreter, Flask on gevent's WSGIServer) against the embedded simulator
(eslchan.simulator.Simulator, speed 20), with Acme allowed to dial ``user/*@sim.local`` and
a registered phone that rings and answers. A separate client process (keep-alive HTTP/1.1)
times

- ``PUT /v2/accounts/{A}/channels`` ``{"endpoint": "user/1001@sim.local"}`` until its 201,
  which comes once the registry has the new channel, with its account;
- ``GET /bench/trivial``: the HTTP floor of the same server.

The baseline, in the same run and the same process as the daemon: the very originate the API
sent (read back from the simulator's command log, with a fresh origination_uuid), sent with
``NodeLink.bgapi`` on the daemon's own link, timed until the registry has applied the new
channel's first event that carries the account: the bare round trip to the same moment. Also
timed in-process: ``Interpreter.originate`` until ``created`` (no HTTP, no request parsing).
Overhead = PUT p50 - bare p50. Each call is hung up after it is timed (untimed).

    python bench/originate.py [--quick] [--profile] [--calls N]
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
ENDPOINT = "user/1001@sim.local"


def server(args: argparse.Namespace) -> None:
    from gevent import monkey

    monkey.patch_all()
    import re
    import uuid as uuidlib
    from dataclasses import replace

    import gevent
    from flask import jsonify

    from eslchan.daemon import Daemon
    from eslchan.demo import ACME, ACME_SALES, ADMIN, GLOBEX, demo_config
    from eslchan.esl import commands
    from eslchan.esl.commands import Command
    from eslchan.simulator import Simulator
    from metaflow.originate import NewLeg, prepare_call

    sim = Simulator(speed=20.0)
    sim.start()
    sim.register("1001")
    keys = {ADMIN: "k0" * 12, ACME: ACME_KEY, ACME_SALES: "k2" * 12, GLOBEX: "k3" * 12}
    config = demo_config([("fs1", sim.host, sim.port, "ClueCon")], keys, listen="127.0.0.1:0")
    accounts = tuple(replace(a, endpoints=("user/*@sim.local",)) if a.id == ACME else a
                     for a in config.accounts)
    daemon = Daemon(replace(config, accounts=accounts))
    registry = daemon.registry

    def hang_up(uuid: str) -> None:
        try:
            link.api(commands.api("uuid_kill", commands.uuid(uuid)))
        except Exception:  # noqa: BLE001 - already gone: nothing to clean
            pass
        deadline = time.monotonic() + 5
        while registry.find(uuid) is not None and time.monotonic() < deadline:
            gevent.sleep(0.005)

    daemon.app.add_url_rule("/bench/trivial", "bench_trivial", lambda: "ok")

    def hangup_route(uuid: str):
        hang_up(uuid)
        return jsonify(ok=True)

    daemon.app.add_url_rule("/bench/hangup/<uuid>", "bench_hangup", hangup_route, methods=["POST"])

    def sent_route(uuid: str):
        return jsonify([c for c in sim.commands if uuid in c and "originate" in c])

    daemon.app.add_url_rule("/bench/sent/<uuid>", "bench_sent", sent_route)
    client = serve_and_run_client(daemon, "originate.py", args.calls, timeout=900)
    link = daemon.links["fs1"]

    def seen(uuid: str) -> tuple[gevent.event.Event, object]:
        """An event set once the registry applied the channel's first event carrying the
        account, and the unsubscribe of its listener."""
        flag = gevent.event.Event()

        def listener(node: str, channel: object, event: dict) -> None:
            if event.get("Unique-ID") == uuid and getattr(channel, "account_id", None) is not None:
                flag.set()

        return flag, registry.listen(listener)

    # the baseline: the very originate the API sent, with a fresh uuid, straight through the link
    template = client["sent"]
    old = re.search(r"origination_uuid=([0-9a-f-]{36})", template).group(1)

    def bare() -> list[float]:
        times = []
        for _ in range(args.calls):
            uuid = str(uuidlib.uuid4())
            text = template.replace(old, uuid)
            # the exact line the API sent, from our own log (not user input)
            job = str(uuidlib.uuid4())
            command = Command(wire=f"{text}\nJob-UUID: {job}\n\n".encode(), kind="bgapi", name="originate",
                              text=text, job_uuid=job)  # fmt: skip
            flag, unlisten = seen(uuid)
            t = time.perf_counter()
            running = gevent.spawn(link.bgapi, command, 30.0)
            flag.wait(10)
            times.append(time.perf_counter() - t)
            unlisten()
            running.join(10)
            hang_up(uuid)
        return times

    def direct() -> list[float]:
        """The interpreter alone (no HTTP, no Flask, no JSON): where the start's own time goes."""
        policy = daemon.app.extensions["eslchan"].policies.for_account(ACME)
        times = []
        for _ in range(args.calls):
            leg = NewLeg("fs1", str(uuidlib.uuid4()))
            t = time.perf_counter()
            call = prepare_call({"endpoint": ENDPOINT, "timeout": 30}, policy, registry.mapping, leg)
            started = daemon.interpreter.originate(call, ACME, policy)
            started.created.get(timeout=10)
            times.append(time.perf_counter() - t)
            hang_up(leg.uuid)
        return times

    prof = Profiler(args.profile)
    if args.profile:
        web = daemon.app.test_client()
        token = web.put("/v2/api_auth", json={"data": {"api_key": ACME_KEY}}).get_json()["auth_token"]
        for _ in range(args.calls):
            with prof:
                resp = web.put(f"/v2/accounts/{ACME}/channels", json={"data": {"endpoint": ENDPOINT}},
                               headers={"X-Auth-Token": token})  # fmt: skip
            assert resp.status_code == 201, resp.get_json()
            hang_up(resp.get_json()["data"]["uuid"])

    result = {"client": client, "bare": stats(bare()), "direct": stats(direct()), "profile": prof.top(12)}
    daemon.stop(drain_seconds=0.5)
    sim.stop()
    emit(result)


def client(args: argparse.Namespace) -> None:
    call = json_caller(args.port)

    from eslchan.demo import ACME

    _, auth = call("PUT", "/v2/api_auth", {"data": {"api_key": ACME_KEY}})
    token = auth["auth_token"]
    times: dict[str, list[float]] = {"create": [], "trivial": []}
    sent = ""
    for i in range(args.calls):
        t = time.perf_counter()
        status, resp = call("PUT", f"/v2/accounts/{ACME}/channels", {"data": {"endpoint": ENDPOINT}}, token)
        times["create"].append(time.perf_counter() - t)
        if status != 201:
            raise SystemExit(f"create: HTTP {status} {resp}")
        uuid = resp["data"]["uuid"]
        if i == 0:
            _, log = call("GET", f"/bench/sent/{uuid}")
            sent = log[-1]
        call("POST", f"/bench/hangup/{uuid}")
        t = time.perf_counter()
        call("GET", "/bench/trivial")
        times["trivial"].append(time.perf_counter() - t)
    emit({"http": {k: stats(v) for k, v in times.items()}, "sent": sent})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="~15 s")
    ap.add_argument("--calls", type=int, help="timed starts of each kind (default 150, quick 40)")
    ap.add_argument("--profile", action="store_true", help="cProfile the app handling PUT .../channels")
    add_roles(ap)
    args = ap.parse_args()
    args.calls = args.calls or (40 if args.quick else 150)
    if run_role(args, server, client):
        return
    print(f"machine: {machine()}")
    cmd = [str(REPO / "bench" / "originate.py"), "--server", "--calls", str(args.calls)]
    cmd += ["--profile"] if args.profile else []
    res = run_child(cmd, timeout=900)
    http, bare, direct = res["client"]["http"], res["bare"], res["direct"]
    print(f"{args.calls} timed starts of each kind, a registered phone that rings then answers "
          "(simulator speed 20)")
    print(f"  PUT .../channels until 201 over HTTP:       p50 {http['create']['p50'] * 1e3:6.2f} ms  "
          f"p99 {http['create']['p99'] * 1e3:6.2f} ms")
    print(f"  Interpreter.originate until created:         p50 {direct['p50'] * 1e3:6.2f} ms  "
          f"p99 {direct['p99'] * 1e3:6.2f} ms")
    print(f"  bare bgapi originate until the registry has it: p50 {bare['p50'] * 1e3:6.2f} ms  "
          f"p99 {bare['p99'] * 1e3:6.2f} ms")
    print(f"    ({res['client']['sent']})")
    t = http["trivial"]
    print(f"  trivial Flask route on the daemon's server:  p50 {t['p50'] * 1e3:6.2f} ms  "
          f"p99 {t['p99'] * 1e3:6.2f} ms")
    if args.profile:
        print("\n-- profile: the app handling PUT .../channels (Flask test client, tottime) --")
        print(res["profile"])
    overhead = http["create"]["p50"] - bare["p50"]
    print(f"\noverhead of a start over the bare originate, p50: {overhead * 1e3:.2f} ms "
          f"(of which in-process {max(0.0, direct['p50'] - bare['p50']) * 1e3:.2f} ms)")
    summary("originate_to_201_p50", f"{http['create']['p50'] * 1e3:.2f} ms",
            http["create"]["p50"] / bare["p50"], "bare bgapi originate until the registry has the channel")


if __name__ == "__main__":
    main()
