"""GET /v2/accounts/{A}/descendants: the sub-accounts an account may act on (Kazoo's name).

The account tree lives in the configuration and there is no other way for a client (the
console's account picker, a reseller's dashboard) to learn which sub-account ids it may use.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import Blueprint, Response, current_app

from eslchan.api.channels import checked_account
from eslchan.api.envelope import respond
from eslchan.config import Account

bp = Blueprint("accounts", __name__)


def descendants(accounts: Mapping[str, Account], root: str) -> list[dict[str, Any]]:
    """Every account below ``root``, depth first and by name within a level. ``tree`` is the
    path from ``root`` down to the account's parent: it never names an account above ``root``."""
    children: dict[str, list[Account]] = {}
    for acc in accounts.values():
        if acc.parent is not None:
            children.setdefault(acc.parent, []).append(acc)
    out: list[dict[str, Any]] = []
    seen = {root}  # a parent cycle in the configuration must not loop
    pending: list[tuple[Account, list[str]]] = [
        (acc, [root]) for acc in sorted(children.get(root, []), key=_order, reverse=True)
    ]
    while pending:
        acc, tree = pending.pop()
        if acc.id in seen:
            continue
        seen.add(acc.id)
        out.append({"id": acc.id, "name": acc.name, "parent": acc.parent, "tree": tree})
        below = sorted(children.get(acc.id, []), key=_order, reverse=True)
        pending.extend((child, [*tree, acc.id]) for child in below)
    return out


def _order(acc: Account) -> tuple[str, str]:
    return (acc.name.casefold(), acc.id)


@bp.route("/v2/accounts/<account_id>/descendants", methods=["GET"])
def account_descendants(account_id: str) -> Response:
    checked_account(account_id)
    return respond(descendants(current_app.extensions["eslchan"].tenancy.accounts, account_id))
