"""collect_dtmf: collect digits from the channel and branch on them ('_' for no match or
timeout). Digits arrive as DTMF events through the registry."""

import time

from eslchan.esl import commands as esl
from eslchan.policy import AccountPolicy, PolicyViolation
from metaflow.base import Context, Outcome, branch


def policy(data: dict, account: AccountPolicy) -> list[PolicyViolation]:
    """The variable the digits go to passes the account's variable rule."""
    name = data.get("collection_name")
    found = account.variable(name, "collection_name") if name else None
    return [found] if found else []


def run(ctx: Context, data: dict) -> Outcome:
    wanted = int(data.get("max_digits", 1))
    first = data.get("timeout", 5000) / 1000.0
    between = data.get("interdigit_timeout", 2000) / 1000.0
    terminators = set(data.get("terminators", ["#"]))
    digits, ended = "", False
    typed, ctx.typeahead = ctx.typeahead, ""  # pressed during the prompt before us
    for digit in typed:
        if digit in terminators:
            ended = True
            break
        digits += digit
        if len(digits) >= wanted:
            break
    with ctx.events() as stream:
        deadline = time.monotonic() + (between if digits else first)
        while len(digits) < wanted and not ended:
            event = stream.get(deadline - time.monotonic())
            if event is None:
                break
            if event.get("Event-Name") != "DTMF":
                continue
            digit = event.get("DTMF-Digit", "")
            if digit in terminators:
                break
            digits += digit
            deadline = time.monotonic() + between
    ctx.note(digits=digits)
    if digits and data.get("collection_name"):
        name = esl.var_name(data["collection_name"], "data.collection_name")
        ctx.set_variable(ctx.uuid, name, esl.digits(digits))
    return branch(digits or "_")
