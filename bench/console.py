"""The console's browser cost with a big board: does an event cost the same with 2,000 rows?

Each scenario runs in its own process: the whole daemon on the embedded simulator (speed 1), N
live channels of one account (N/2 bridged calls), and Debian's headless chromium (through its
chromedriver, as the browser tests) signed in to the console. It measures, on the page's main
thread (Chrome's own TaskDuration, read over the DevTools protocol):

- ``load``: from pressing Sign in until every row is on the board (wall time);
- ``idle``: main-thread milliseconds per second with nothing happening but the durations ticking;
- ``event``: main-thread milliseconds per stream event during bursts of hold/unhold on 50 calls,
  until the board shows the last state.

The baseline, in the same run: the same page with 20 channels. With keyed, incremental updates
an event costs about the same on both boards; a page that re-rendered the table per event
would cost ~100x more at 2,000 rows.

    python bench/console.py [--quick] [--rows N]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import emit, machine, median, run_child, summary  # noqa: E402

ACME_KEY = "bench-acme-key-0123456789abcdef"
CHROMIUM = os.environ.get("ESLCHAN_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("ESLCHAN_CHROMEDRIVER", "/usr/bin/chromedriver")
FLAGS = (
    "--headless=new --no-sandbox --disable-gpu --disable-dev-shm-usage --disable-background-networking "
    "--disable-component-update --disable-sync --no-first-run --window-size=1440,900"
).split()
HELD = 50  # calls put on hold and back per burst
#: Chrome's main-thread time, in total and the parts of it shown
PARTS = ("TaskDuration", "ScriptDuration", "LayoutDuration", "RecalcStyleDuration")


def scenario(args: argparse.Namespace) -> None:
    from gevent import monkey

    monkey.patch_all()
    import gevent
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    from eslchan.daemon import Daemon
    from eslchan.demo import ACME, PARTIES, demo_config, demo_keys
    from eslchan.simulator import Simulator

    sim = Simulator(speed=1.0, heartbeat_interval=3600)
    sim.start()
    keys = {**demo_keys(), ACME: ACME_KEY}
    daemon = Daemon(demo_config([("fs1", sim.host, sim.port, "ClueCon")], keys, listen="127.0.0.1:0"))
    daemon.start()
    while not all(link.is_up for link in daemon.links.values()):
        gevent.sleep(0.05)
    alice = PARTIES[0]
    calls = []
    for i in range(args.rows // 2):
        calls.append(
            sim.create_call(
                account_id=ACME, user_id=alice.user_id, device_id=alice.device_id, username="alice",
                caller_id_name=f"Caller {i}", caller_id_number=str(10000 + i), destination=str(20000 + i),
            )
        )  # fmt: skip
        if i % 50 == 49:
            gevent.sleep(0.05)
    while len(daemon.registry.for_account(ACME)) < args.rows or any(
        daemon.registry.find(c.a_uuid) is None or daemon.registry.find(c.a_uuid).other_leg is None
        for c in calls
    ):
        gevent.sleep(0.1)
    events = [0]
    daemon.registry.listen(lambda node, ch, event: events.__setitem__(0, events[0] + 1))

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    profile = tempfile.TemporaryDirectory()
    options.add_argument(f"--user-data-dir={profile.name}")
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        driver.execute_cdp_cmd("Performance.enable", {})

        def metrics() -> dict[str, float]:
            answer = driver.execute_cdp_cmd("Performance.getMetrics", {})
            return {m["name"]: m["value"] for m in answer["metrics"]}

        def rows() -> int:
            return driver.execute_script("return document.querySelectorAll('tr[data-uuid]').length")

        driver.get(daemon.url + "/console/")
        driver.find_element(By.CSS_SELECTOR, 'input[name="api_key"]').send_keys(ACME_KEY)
        started = time.perf_counter()
        driver.find_element(By.CSS_SELECTOR, "#login-submit").click()
        while rows() < args.rows:
            gevent.sleep(0.02)
        load_ms = (time.perf_counter() - started) * 1000
        gevent.sleep(2.0)

        before = metrics()
        gevent.sleep(5.0)
        after = metrics()
        idle = {k: (after[k] - before[k]) * 1000 / 5.0 for k in PARTS}
        idle_ms_per_s = idle.pop("TaskDuration")

        held = calls[:HELD]
        per_event = []
        for burst in range(args.bursts):
            mode = "" if burst % 2 == 0 else "off "
            want = "held" if burst % 2 == 0 else "talking"
            first, before = events[0], metrics()
            for call in held:
                sim.api(f"uuid_hold {mode}{call.a_uuid}")
            script = (
                'return arguments[0].every(u => document.querySelector(`tr[data-uuid="${u}"]`)'
                "?.dataset.state === arguments[1])"
            )
            while not driver.execute_script(script, [c.a_uuid for c in held], want):
                gevent.sleep(0.02)
            gevent.sleep(0.3)  # the last frames of the burst
            delivered = events[0] - first
            after = metrics()
            per_event.append({k: (after[k] - before[k]) * 1000 / max(1, delivered) for k in PARTS})
        emit(
            {
                "rows": rows(),
                "load_ms": load_ms,
                "idle_ms_per_s": idle_ms_per_s,
                "idle_parts": idle,
                "event_ms": median([p["TaskDuration"] for p in per_event]),
                "event_parts": {k: median([p[k] for p in per_event]) for k in PARTS[1:]},
                "events_per_burst": delivered,
            }
        )
    finally:
        driver.quit()
        profile.cleanup()
        daemon.stop(drain_seconds=0.5)
        sim.stop()


def parts(values: dict[str, float], digits: int) -> str:
    """'script 0.9, layout 1.0, recalcstyle 0.3' from Chrome's *Duration metrics."""
    return ", ".join(f"{k.removesuffix('Duration').lower()} {v:.{digits}f}" for k, v in values.items())


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="500 rows, fewer bursts")
    parser.add_argument("--rows", type=int, default=2000, help="channels on the big board (default 2000)")
    parser.add_argument("--bursts", type=int, default=6)
    parser.add_argument("--scenario", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.scenario:
        scenario(args)
        return
    if not (os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)):
        sys.exit(f"needs {CHROMIUM} and {CHROMEDRIVER} (apt-get install chromium chromium-driver)")
    rows, bursts = (500, 4) if args.quick else (args.rows, args.bursts)
    print(f"machine: {machine()}")
    results = {}
    for n in (20, rows):
        result = run_child([__file__, "--scenario", "--rows", str(n), "--bursts", str(bursts)], timeout=900)
        results[n] = result
        print(
            f"{result['rows']:>5} rows: load {result['load_ms']:7.0f} ms   "
            f"idle {result['idle_ms_per_s']:5.1f} ms/s   "
            f"event {result['event_ms']:.3f} ms ({result['events_per_burst']} events per burst)"
        )
        print(f"       idle main thread, ms/s: {parts(result['idle_parts'], 1)}")
        print(f"       per event, ms: {parts(result['event_parts'], 3)}")
    big, small = results[rows], results[20]
    idle_ratio = big["idle_ms_per_s"] / max(small["idle_ms_per_s"], 1e-9)
    print(f"idle (ticking) at {rows} rows: {idle_ratio:.2f}x vs 20 rows")
    summary(
        f"console event cost at {rows} rows",
        f"{big['event_ms']:.3f} ms main thread per event",
        big["event_ms"] / small["event_ms"],
        "20 rows",
    )


if __name__ == "__main__":
    main()
