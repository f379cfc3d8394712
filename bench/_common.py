"""Helpers shared by the benchmarks: captures, child processes, statistics, profiles.

Every benchmark runs its candidates and its baseline in the same invocation (the machines
are shared and noisy) and prints one closing line ``NAME: VALUE (RATIO vs BASELINE)``.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import platform
import pstats
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
CAPTURES = REPO.parent / "shared" / "esl-captures"


def captures_dir() -> Path:
    if not (CAPTURES / "README.md").exists():
        sys.exit(f"ESL captures not found at {CAPTURES}")
    return CAPTURES


def machine() -> str:
    """One line naming the machine the figures come from."""
    model = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} cpu(s), {model}, Python {platform.python_version()}, {platform.system()}"


def percentile(values: Sequence[float], p: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    k = min(len(s) - 1, max(0, int(round(p / 100.0 * (len(s) - 1)))))
    return s[k]


def median(values: Sequence[float]) -> float:
    return percentile(values, 50)


def stats(values: Sequence[float]) -> dict:
    """How many, the median and the 99th percentile."""
    return {"n": len(values), "p50": percentile(values, 50), "p99": percentile(values, 99)}


def run_child(args: list[str], timeout: float = 300.0, env: dict | None = None) -> dict:
    """Run ``python <args>`` and return the JSON object on its last stdout line."""
    proc = subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        env={**os.environ, **(env or {})},
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-4000:])
        raise RuntimeError(f"child {args} failed (rc={proc.returncode})")
    return json.loads(lines[-1])


def emit(result: dict) -> None:
    """A child's result: one JSON line on stdout."""
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()


class Profiler:
    """cProfile around a block; ``top(n)`` is the tottime-sorted table as text."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.prof = cProfile.Profile() if enabled else None

    def __enter__(self) -> Profiler:
        if self.prof is not None:
            self.prof.enable()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.prof is not None:
            self.prof.disable()

    def top(self, n: int = 8) -> str:
        if self.prof is None:
            return ""
        out = io.StringIO()
        stats = pstats.Stats(self.prof, stream=out)
        stats.sort_stats("tottime").print_stats(n)
        text = out.getvalue()
        # keep the table only (from the column header on), with shortened paths
        start = text.find("   ncalls")
        text = text[start:] if start >= 0 else text
        return text.replace(str(REPO) + "/", "").replace(sys.prefix + "/lib/python3.11/site-packages/", "")


def cpu() -> float:
    """CPU seconds (user + system) of this process."""
    t = os.times()
    return t.user + t.system


def now() -> float:
    return time.perf_counter()


def summary(name: str, value: str, ratio: float, baseline: str) -> None:
    print(f"{name}: {value} ({ratio:.2f}x vs {baseline})")


# --- benchmarks whose server and HTTP client run as child processes ------------------------


def add_roles(ap: argparse.ArgumentParser) -> None:
    """The hidden flags a benchmark gives the children it starts: ``--server``, ``--client``
    and the server's ``--port``."""
    ap.add_argument("--server", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--client", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)


def run_role(args: argparse.Namespace, server: Callable[[argparse.Namespace], None],
             client: Callable[[argparse.Namespace], None]) -> bool:
    """In a child: run its role and say so (True); in the parent: False."""
    if args.server:
        server(args)
    elif args.client:
        client(args)
    return bool(args.server or args.client)


def json_caller(port: int) -> Callable[..., tuple[int, dict]]:
    """``call(method, path, body=None, token=None) -> (status, json)`` over one keep-alive
    connection to the daemon on loopback, as a dashboard's HTTP client would hold."""
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def call(method: str, path: str, body: dict | None = None, token: str | None = None) -> tuple[int, dict]:
        headers = {"Content-Type": "application/json"}
        if token:
            headers["X-Auth-Token"] = token
        conn.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers)
        r = conn.getresponse()
        data = r.read()
        return r.status, (json.loads(data) if data.startswith((b"{", b"[")) else {})

    return call


def serve_and_run_client(daemon: Any, script: str, calls: int, timeout: float) -> dict:
    """Start ``daemon`` (in a gevent-patched server child), wait until every node is up and
    resynced, then run ``bench/<script> --client`` against its HTTP port and return what the
    client emitted (its last line, JSON)."""
    import gevent
    import gevent.subprocess

    daemon.start()
    while not all(link.is_up for link in daemon.links.values()) or not all(
        daemon.sync.is_synced(name) for name in daemon.links
    ):
        gevent.sleep(0.01)
    cmd = [sys.executable, str(REPO / "bench" / script), "--client", "--port", str(daemon.http.server_port),
           "--calls", str(calls)]  # fmt: skip
    out = gevent.subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if out.returncode != 0:
        sys.stderr.write(out.stdout[-3000:] + out.stderr[-3000:])
        raise SystemExit("client failed")
    return json.loads(out.stdout.strip().splitlines()[-1])
