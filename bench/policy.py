"""What the tenancy policy costs: the send-time guard per command, and the policy's part of
validating a tree, each against a baseline measured in the same run.

- guard: ``Guard.check`` on the commands the built-in modules send (uuid_kill, uuid_setvar of
  a tenant's and of eslchan's own variable, a blind transfer, a playback, an intercept's
  originate), over a registry of ``--channels`` live channels of several accounts. Baseline:
  building the same command with the command builder.
- validation: ``TreeValidator.validate`` of a one-node action and of a 256-node tree, with the
  account's policy and without it (the schemas alone, as before the policy existed).

    python bench/policy.py [--quick] [--profile] [--channels N]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import Profiler, machine, median, summary  # noqa: E402


def per_call(fn: Callable[[], object], repeat: int) -> float:
    """Median over 5 rounds of the seconds one call of ``fn`` takes."""
    rounds = []
    for _ in range(5):
        t = time.perf_counter()
        for _ in range(repeat):
            fn()
        rounds.append((time.perf_counter() - t) / repeat)
    return median(rounds)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="~5 s")
    ap.add_argument("--profile", action="store_true", help="cProfile the guard")
    ap.add_argument("--channels", type=int, default=10_000, help="live channels in the registry")
    args = ap.parse_args()
    repeat = 2_000 if args.quick else 20_000

    from eslchan.demo import ACME, ACME_SALES, GLOBEX, demo_config
    from eslchan.esl import commands as esl
    from eslchan.policy import Guard, PolicyBook
    from eslchan.registry import ChannelRegistry
    from metaflow import ModuleRegistry
    from metaflow.validation import TreeValidator

    config = demo_config([], {a: "k" * 16 for a in (ACME, ACME_SALES, GLOBEX, "ad" + "0" * 30)})
    registry = ChannelRegistry(config.channels.mapping)
    accounts = (ACME, ACME_SALES, GLOBEX)
    uuids = [f"{i:08x}-0000-4000-8000-{i:012x}" for i in range(args.channels)]
    for i, uuid in enumerate(uuids):
        registry.apply("fs1", {"Event-Name": "CHANNEL_CREATE", "Unique-ID": uuid,
                               "Event-Sequence": str(i + 1), "Caller-Context": "default",
                               "variable_eslchan_account_id": accounts[i % len(accounts)]})
    own, peer = uuids[0], uuids[3]  # both Acme's
    book = PolicyBook.from_config(config)
    policy = book.for_account(ACME).bind("sim.local")
    guard = Guard(policy, registry, "fs1", own)
    leg = "77777777-7777-4777-8777-777777777777"

    builders: dict[str, Callable[[], esl.Command]] = {
        "uuid_kill": lambda: esl.api("uuid_kill", esl.uuid(own), esl.hangup_cause("NORMAL_CLEARING")),
        "uuid_setvar (tenant's)": lambda: esl.api("uuid_setvar", esl.uuid(own), esl.var_name("eslchan_note"),
                                                  esl.var_value("vip caller")),
        "uuid_setvar (eslchan's)": lambda: esl.api("uuid_setvar", esl.uuid(peer),
                                                   esl.system_var("park_after_bridge"), esl.word("true")),
        "uuid_transfer": lambda: esl.api("uuid_transfer", esl.uuid(own), esl.dial_target("2600"),
                                         esl.dialplan("XML"), esl.context("default")),
        "execute playback": lambda: esl.execute(esl.uuid(own), "playback",
                                                esl.media("tone_stream://%(400,200,523)")),
        "bgapi originate": lambda: esl.bgapi("originate", esl.dial_string(esl.endpoint("user/desk"), {
            esl.system_var("origination_uuid"): esl.uuid(leg),
            esl.tenancy_var("eslchan_account_id"): esl.dial_target(ACME)}),
            esl.app_ref("intercept", esl.uuid(own))),
    }
    print(f"machine: {machine()}")
    print(f"guard: {args.channels} live channels of {len(accounts)} accounts, "
          f"{repeat} calls x 5 rounds, median")
    total_build = total_check = 0.0
    for name, build in builders.items():
        cmd = build()
        guard.check(cmd)  # allowed: what is timed is the check that lets it through
        b = per_call(build, repeat)
        c = per_call(lambda cmd=cmd: guard.check(cmd), repeat)
        total_build += b
        total_check += c
        print(f"  {name:24} build {b * 1e6:6.2f} us | guard.check {c * 1e6:6.2f} us ({c / b:.2f}x)")
    if args.profile:
        cmds = [b() for b in builders.values()]
        with Profiler() as prof:
            for _ in range(repeat):
                for cmd in cmds:
                    guard.check(cmd)
        print(prof.top(15))

    validator = TreeValidator(ModuleRegistry(), config.metaflow)
    action = {"module": "transfer", "data": {"target": "2600", "context": "default"}}
    leaf = {"module": "set_variable", "data": {"name": "eslchan_x", "value": "1"}}
    tree: dict = {"module": "collect_dtmf", "data": {"collection_name": "eslchan_pin"}, "children": {}}
    for i in range(255):
        tree["children"][str(i)] = leaf
    print("validation (median of 5 rounds):")
    vrepeat = max(20, repeat // 100)
    for name, body in (("one-node action", action), ("256-node tree", tree)):
        plain = per_call(lambda body=body: validator.validate(body), vrepeat)
        judged = per_call(lambda body=body: validator.validate(body, policy), vrepeat)
        print(f"  {name:16} schemas only {plain * 1e3:7.3f} ms | with the policy {judged * 1e3:7.3f} ms "
              f"({judged / plain:.2f}x)")
    summary("policy_guard_check", f"{total_check / len(builders) * 1e6:.2f} us per command",
            total_check / total_build, "building the command")


if __name__ == "__main__":
    main()
