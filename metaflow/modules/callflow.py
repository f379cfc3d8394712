"""callflow: continue the call in a named flow the operator stored as
``<callflows_dir>/<id>.json`` (a metaflow node, or a Kazoo callflow doc with ``flow``)."""

import json
from pathlib import Path
from typing import Any

from eslchan.policy import AccountPolicy, PolicyError, PolicyViolation
from metaflow.base import Context, Outcome, StateError, goto
from metaflow.validation import ValidationFailed

MAX_JUMPS = 16


def check(data: dict, config: Any) -> dict | None:
    """At validation time: the named flow must exist (its content is validated when run)."""
    directory = getattr(config, "callflows_dir", None)
    if not directory:
        return {"id": {"not_allowed": {"message": "No callflows_dir is configured on this server"}}}
    if not (Path(directory) / f"{data['id']}.json").is_file():
        return {"id": {"not_found": {"message": f"No callflow named '{data['id']}'", "value": data["id"]}}}
    return None


def policy(data: dict, account: AccountPolicy) -> list[PolicyViolation]:
    """The account may enter only the stored callflows its policy names."""
    found = account.callflow(data["id"], "id")
    return [found] if found else []


def run(ctx: Context, data: dict) -> Outcome:
    directory = getattr(ctx.config, "callflows_dir", None)
    if not directory:
        raise StateError("no callflows_dir is configured", "data.id")
    path = Path(directory) / f"{data['id']}.json"
    try:
        doc = json.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        raise ValidationFailed({"data.id": {"not_found": {
            "message": f"No callflow named '{data['id']}'", "value": data["id"]}}}) from None
    except (OSError, ValueError) as exc:
        raise StateError(f"callflow '{data['id']}' cannot be read: {exc}", "data.id") from None
    node = doc.get("flow", doc) if isinstance(doc, dict) else doc
    try:
        tree = ctx.interpreter.validate(node, ctx.policy)  # a stored flow obeys the same policy
    except ValidationFailed as exc:
        raise ValidationFailed({f"callflow:{data['id']}.{k}": v for k, v in exc.errors.items()}) from None
    except PolicyError as exc:
        raise PolicyError([PolicyViolation(v.rule, f"callflow:{data['id']}.{v.field}", v.message)
                           for v in exc.violations]) from None
    ctx.jumps += 1
    if ctx.jumps > MAX_JUMPS:
        raise StateError(f"more than {MAX_JUMPS} callflows in one run (a loop?)", "data.id")
    return goto(tree, f"callflow:{data['id']}")
