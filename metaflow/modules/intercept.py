"""intercept: ring a device, user or number; whoever answers takes over this channel
(FreeSWITCH's intercept app on the new leg). Returns once the new leg answered."""

from eslchan.policy import AccountPolicy, PolicyViolation
from metaflow.base import CONTINUE, Context, Outcome, StateError
from metaflow.dial import originate_intercept, refuse_own_device


def policy(data: dict, account: AccountPolicy) -> list[PolicyViolation]:
    """A target naming a domain (``1001@acme.example``) must name one of the account's."""
    found = account.realm_rule(data["target_id"], "target_id")
    return [found] if found else []


def run(ctx: Context, data: dict) -> Outcome:
    kind, target = data["target_type"], data["target_id"]
    if data.get("unbridged_only", True) and ctx.channel.other_leg:
        raise StateError("the channel is bridged and unbridged_only is set", "data.unbridged_only")
    if kind == "device":
        refuse_own_device(ctx, data, target, "data.target_id")
    originate_intercept(ctx, kind, target, "data.target_id", data, ctx.uuid)
    return CONTINUE
