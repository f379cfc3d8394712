"""GET /v2/accounts/{A}/callflows: the flows stored in ``metaflow.callflows_dir``, by name.

These are the flows the ``callflow`` module can continue a call in; listing them lets a client
offer a choice instead of asking for a name. Only names the module accepts are listed, and the
directory is read with bounds (files listed, bytes read per file).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from flask import Blueprint, Response, current_app

from eslchan.api.channels import checked_account
from eslchan.api.envelope import respond

#: The ``id`` grammar of schemas/metaflows.callflow.json: what the module can be asked to run.
CALLFLOW_ID = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")
MAX_LISTED = 500
MAX_FILE_BYTES = 256 * 1024
#: Modules named per flow in the listing, enough to tell flows apart.
MAX_MODULES = 16

bp = Blueprint("callflows", __name__)


def _modules(node: Any) -> list[str]:
    """Module names of a flow in depth-first order, each once."""
    names: list[str] = []
    pending = [node]
    while pending and len(names) < MAX_MODULES:
        node = pending.pop()
        if not isinstance(node, dict):
            continue
        module = node.get("module")
        if isinstance(module, str) and module not in names:
            names.append(module)
        children = node.get("children")
        if isinstance(children, dict):
            pending.extend(reversed(list(children.values())))
    return names


def describe(path: Path) -> dict[str, Any]:
    """One stored flow's listing entry; a flow that cannot be read says why instead of failing
    the whole listing (the module would refuse it the same way when run)."""
    entry: dict[str, Any] = {"id": path.stem, "name": path.stem}
    try:
        with path.open("rb") as fh:
            raw = fh.read(MAX_FILE_BYTES + 1)
        if len(raw) > MAX_FILE_BYTES:
            raise ValueError(f"larger than {MAX_FILE_BYTES} bytes")
        doc = json.loads(raw)
    except (OSError, ValueError) as exc:
        return {**entry, "modules": [], "error": f"cannot be read: {exc}"}
    if isinstance(doc, dict) and isinstance(doc.get("name"), str):
        entry["name"] = doc["name"][:128]  # a Kazoo callflow document names itself
    flow = doc.get("flow", doc) if isinstance(doc, dict) else doc
    return {**entry, "modules": _modules(flow)}


def stored_callflows(directory: Path | None) -> list[dict[str, Any]]:
    if directory is None or not directory.is_dir():
        return []
    found = sorted(p for p in directory.glob("*.json") if CALLFLOW_ID.fullmatch(p.stem) and p.is_file())
    return [describe(p) for p in found[:MAX_LISTED]]


@bp.route("/v2/accounts/<account_id>/callflows", methods=["GET"])
def account_callflows(account_id: str) -> Response:
    checked_account(account_id)
    directory = current_app.extensions["eslchan"].config.metaflow.callflows_dir
    return respond(stored_callflows(Path(directory) if directory is not None else None))
