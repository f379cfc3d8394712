"""move: move the call to another device (or the user's devices): the new leg picks up the
peer, and this leg is released."""

from eslchan.policy import AccountPolicy, PolicyViolation
from metaflow.base import CONTINUE, Context, Outcome
from metaflow.dial import originate_intercept, refuse_own_device


def policy(data: dict, account: AccountPolicy) -> list[PolicyViolation]:
    """A device or user naming a domain must name one of the account's."""
    found = [account.realm_rule(data[key], key) for key in ("device_id", "owner_id") if data.get(key)]
    return [v for v in found if v is not None]


def run(ctx: Context, data: dict) -> Outcome:
    peer = ctx.require_peer("there is no call to move")
    if data.get("device_id"):
        kind, target, field = "device", data["device_id"], "data.device_id"
        refuse_own_device(ctx, data, target, field)
    else:
        kind, target, field = "user", data["owner_id"], "data.owner_id"
    originate_intercept(ctx, kind, target, field, data, peer)
    return CONTINUE
