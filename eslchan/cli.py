"""The `eslchan` command: serve, demo, simulate, decode, check-config, cluster status."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import Any


def _patch() -> None:
    # Before anything imports socket or ssl: every blocking call must yield to other greenlets.
    from gevent import monkey

    if not monkey.is_module_patched("socket"):
        monkey.patch_all()


def _configured(args: argparse.Namespace, command: str) -> tuple[str, Any] | None:
    """The path and configuration of ``--config`` or ``$ESLCHAN_CONFIG``; None, said on
    stderr, when there is none or it is not valid."""
    from eslchan.config import ConfigError, load_config

    path = args.config or os.environ.get("ESLCHAN_CONFIG")
    if not path:
        print(f"eslchan {command}: give --config FILE or set ESLCHAN_CONFIG", file=sys.stderr)
        return None
    try:
        return path, load_config(path)
    except ConfigError as exc:
        _print_problems(path, exc)
        return None


def cmd_serve(args: argparse.Namespace) -> int:
    from eslchan.logs import setup_logging

    configured = _configured(args, "serve")
    if configured is None:
        return 2
    _, config = configured
    setup_logging(config.logging.level, config.logging.json)
    from eslchan.daemon import Daemon
    from eslchan.webhooks import StoreError

    try:
        daemon = Daemon(config)
    except StoreError as exc:
        print(f"eslchan serve: webhooks: {exc}", file=sys.stderr)
        return 1
    try:
        daemon.serve_forever()
    except OSError as exc:  # the HTTP port is bound first, so nothing else has started yet
        print(f"eslchan serve: cannot listen on {config.http.listen}: {exc.strerror}", file=sys.stderr)
        return 1
    return 0


def cmd_check_config(args: argparse.Namespace) -> int:
    from eslchan.config import ConfigError, load_config

    try:
        config = load_config(args.file)
    except ConfigError as exc:
        _print_problems(args.file, exc)
        return 1
    webhooks = f", webhooks in {config.webhooks.data_dir}" if config.webhooks is not None else ""
    if config.cluster is not None:
        webhooks += f", cluster instance {config.cluster.instance}"
    print(
        f"{args.file}: OK ({len(config.nodes)} node(s), {len(config.accounts)} account(s), "
        f"http {config.http.listen}{webhooks})"
    )
    return 0


def cmd_cluster(args: argparse.Namespace) -> int:
    import json

    configured = _configured(args, "cluster status")
    if configured is None:
        return 2
    path, config = configured
    if config.cluster is None:
        print(f"{path}: no [cluster] table: this is a single eslchan, not a cluster", file=sys.stderr)
        return 2
    from eslchan.cluster.status import cluster_status, format_status
    from eslchan.cluster.store import Store

    store = Store(config.cluster)
    try:
        status = cluster_status(config, store=store)
    except store.errors as exc:
        print(f"eslchan cluster status: Redis cannot be reached: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(status, indent=2) if args.json else format_status(status))
    return 0


def _print_problems(path: str, exc: Exception) -> None:
    for key, message in getattr(exc, "problems", [("(file)", str(exc))]):
        print(f"{path}: {key}: {message}", file=sys.stderr)


def cmd_demo(args: argparse.Namespace) -> int:
    from eslchan import demo
    from eslchan.logs import setup_logging
    from eslchan.simulator import Simulator

    setup_logging(args.log_level)
    sim = Simulator(port=args.esl_port, password="ClueCon", hostname="demo-fs1")
    try:
        sim.start()
    except OSError as exc:  # e.g. a real FreeSWITCH already listens on 8021
        print(f"ESL port {args.esl_port} is not free ({exc.strerror}); the simulator takes any free port",
              file=sys.stderr)
        sim = Simulator(port=0, password="ClueCon", hostname="demo-fs1")
        sim.start()
    keys = demo.demo_keys()
    data_dir = tempfile.TemporaryDirectory(prefix="eslchan-demo-")
    config = demo.demo_config(
        [("fs1", sim.host, sim.port, "ClueCon")],
        keys,
        listen=args.listen,
        webhooks=demo.demo_webhooks(Path(data_dir.name)),
    )
    from eslchan.daemon import Daemon

    try:
        daemon = Daemon(config)
        daemon.start()
    except OSError as exc:
        print(f"eslchan demo: cannot listen on {args.listen}: {exc.strerror}; "
              "give another address with --listen HOST:PORT", file=sys.stderr)
        sim.stop()
        data_dir.cleanup()
        return 1
    traffic = demo.demo_traffic(sim, calls=args.calls)
    traffic.start()
    for party in demo.PARTIES:  # their phones are registered: a call started to one rings, then answers
        for phone in (party.number, party.device_id, party.user_id):  # user/{id} dial templates too
            sim.register(phone)
    sim.switch.ring_seconds = 3.0
    url = daemon.url
    token = demo.fetch_token(url, keys[demo.ACME])
    acme_user = demo.PARTIES[0].user_id
    acme_device = demo.PARTIES[1].device_id
    print(
        f"""
eslchan demo is running at {url}
  simulated FreeSWITCH (ESL) on {sim.host}:{sim.port}, password ClueCon

Open the live call board:  {url}/console/
  and sign in with the key {keys[demo.ADMIN]}
  (Admin sees every account; any key below works and sees its own calls)

Accounts (id, API key):
  Admin       {demo.ADMIN}  {keys[demo.ADMIN]}   (superduper admin)
  Acme        {demo.ACME}  {keys[demo.ACME]}
  Acme Sales  {demo.ACME_SALES}  {keys[demo.ACME_SALES]}   (child of Acme)
  Globex      {demo.GLOBEX}  {keys[demo.GLOBEX]}

Webhooks (/v2/accounts/<id>/webhooks) are on, kept in {data_dir.name} until the demo stops;
receivers on this machine (127.0.0.1) are allowed.

Try (a token for Acme, valid one hour, is already in these commands):
  curl -s -X PUT -H "Content-Type: application/json" \\
      -d '{{"data": {{"api_key": "{keys[demo.ACME]}"}}}}' {url}/v2/api_auth
  curl -s -H "X-Auth-Token: {token}" {url}/v2/accounts/{demo.ACME}/channels
  curl -s -H "X-Auth-Token: {token}" {url}/v2/accounts/{demo.ACME}/users/{acme_user}/channels
  curl -s -H "X-Auth-Token: {token}" -H "Accept: text/csv" {url}/v2/accounts/{demo.ACME}/channels
  # click-to-call: ring Alice's phone (1001); 201 while it rings, then it answers
  curl -s -X PUT -H "X-Auth-Token: {token}" -H "Content-Type: application/json" \\
      -d '{{"data": {{"endpoint": "user/1001@{demo.DOMAIN}", \
"caller_id_name": "CRM", "caller_id_number": "5550100"}}}}' \\
      {url}/v2/accounts/{demo.ACME}/channels
  # Kazoo's quickcall: ring Bob's device, then it calls 2600
  curl -s -X POST -H "X-Auth-Token: {token}" \\
      {url}/v2/accounts/{demo.ACME}/devices/{acme_device}/quickcall/2600
  curl -s {url}/health
  curl -s {url}/v2/openapi.json

Stop with Ctrl-C.
""",
        flush=True,
    )
    try:
        daemon.serve_forever()
    finally:
        traffic.stop()
        sim.stop()
        data_dir.cleanup()
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    from eslchan.simulator.cli import main as simulate_main

    return simulate_main(args.rest)


def cmd_decode(args: argparse.Namespace) -> int:
    from eslchan.esl.decode import run

    return run(args.file)


def build_parser() -> argparse.ArgumentParser:
    from eslchan import __version__

    parser = argparse.ArgumentParser(
        prog="eslchan", description="Channel-control daemon for FreeSWITCH (ESL + Kazoo-compatible REST)."
    )
    parser.add_argument("--version", action="version", version=f"eslchan {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("serve", help="run the daemon")
    p.add_argument("--config", help="TOML configuration file (default: $ESLCHAN_CONFIG)")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser(
        "demo",
        help="run the daemon on the embedded FreeSWITCH simulator",
        description="Run eslchan against its embedded FreeSWITCH simulator, with four demo accounts "
        "(an admin, Acme and its sub-account Acme Sales, Globex) and live demo calls. It prints the "
        "URL, each account's API key and curl commands that work as printed; webhooks are on, kept "
        "in a temporary directory, and may target receivers on this machine. Stop with Ctrl-C.",
    )
    p.add_argument("--listen", default="127.0.0.1:8000", help="HTTP address (default 127.0.0.1:8000)")
    p.add_argument("--esl-port", type=int, default=8021, help="simulator ESL port (default 8021, 0=any)")
    p.add_argument("--calls", type=int, default=6, help="live demo calls kept going (default 6)")
    p.add_argument(
        "--log-level",
        default="WARNING",
        type=str.upper,
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="least severe log messages shown on stderr (default WARNING)",
    )
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("simulate", help="run the FreeSWITCH simulator alone", add_help=False)
    p.add_argument("rest", nargs=argparse.REMAINDER)
    p.set_defaults(func=cmd_simulate)

    p = sub.add_parser(
        "decode",
        help="print the frames of a raw ESL byte stream as JSON lines",
        description="Print each frame of a raw Event Socket byte stream (what FreeSWITCH sent on the "
        "socket: a tcpdump payload, a capture) as one JSON object per line.",
    )
    p.add_argument(
        "file", help="a file holding the raw bytes FreeSWITCH sent on an ESL connection ('-' for stdin)"
    )
    p.set_defaults(func=cmd_decode)

    p = sub.add_parser("cluster", help="the cluster's view: instances, node owners, lag")
    cluster_sub = p.add_subparsers(dest="cluster_command", required=True)
    q = cluster_sub.add_parser(
        "status",
        help="print the live instances, who owns which node, each mirror's lag and the stream",
        description="Read the cluster's state from its Redis (the [cluster] table of the configuration): "
        "the live instances with the nodes each owns and how far its mirror is behind, each node's owner "
        "and lease, and the shared stream's length.",
    )
    q.add_argument("--config", help="TOML configuration file (default: $ESLCHAN_CONFIG)")
    q.add_argument("--json", action="store_true", help="print JSON instead of text")
    q.set_defaults(func=cmd_cluster)

    p = sub.add_parser("check-config", help="validate a configuration file and name every problem")
    p.add_argument("file")
    p.set_defaults(func=cmd_check_config)
    return parser


def main(argv: list[str] | None = None) -> int:
    _patch()
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["simulate"]:
        # argparse.REMAINDER drops a leading "--option", so hand the rest over untouched
        return cmd_simulate(argparse.Namespace(rest=list(argv[1:])))
    args = build_parser().parse_args(argv)
    return args.func(args)
