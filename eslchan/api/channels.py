"""The Kazoo channels endpoints: listings from memory, details, POST actions, PUT metaflows."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from flask import Blueprint, Response, current_app, url_for

from eslchan.api.auth import authenticate, authorize
from eslchan.api.envelope import (
    ApiError,
    field_error,
    json_body,
    listing_rows,
    paginate,
    respond,
    respond_listing,
    typed_field,
)
from eslchan.config import ACCOUNT_ID
from eslchan.esl import commands
from eslchan.esl.commands import CommandError
from eslchan.esl.errors import CommandRejected, CommandTimeout, LinkDown
from eslchan.policy import LimitExceeded, PolicyError
from metaflow import NotFound, StateError, Unsupported, ValidationFailed

#: Owner and device ids are whatever the channel variables say; keep them to plain tokens.
OWNER_ID = re.compile(r"^[A-Za-z0-9_.@+-]{1,128}$")

bp = Blueprint("channels", __name__)


def _ext() -> Any:
    return current_app.extensions["eslchan"]


def checked_account(account_id: str) -> str:
    authenticate()
    if not ACCOUNT_ID.fullmatch(account_id):
        raise field_error(
            "account_id", "pattern", "an account id is 32 lowercase hexadecimal characters", value=account_id
        )
    authorize(account_id)
    return account_id


def _checked_id(value: str, name: str) -> str:
    if not OWNER_ID.fullmatch(value):
        raise field_error(name, "pattern", f"{name} must be 1-128 letters, digits or _ . @ + -", value=value)
    return value


def find_channel(account_id: str, channel_uuid: str) -> Any:
    """The account's channel, or 404 ``bad identifier`` — the same for unknown and foreign ones."""
    try:
        wanted = str(commands.uuid(channel_uuid, "uuid"))
    except CommandError as exc:
        raise field_error("uuid", "pattern", str(exc), value=channel_uuid) from None
    channel = _ext().registry.find(wanted)
    if channel is None or channel.account_id != account_id:
        raise ApiError(404, "bad identifier", [wanted])
    return channel


@contextmanager
def interpreter_errors(channel: Any) -> Iterator[None]:
    """Map what the interpreter and the ESL link raise to the HTTP answers of SPEC §5
    (``channel``: what the request is about, for its node)."""
    try:
        yield
    except NotFound as exc:  # a channel the request names: unknown and foreign alike
        raise ApiError(404, "bad identifier", [exc.identifier]) from None
    except ValidationFailed as exc:
        raise ApiError(400, "validation error", exc.errors) from None
    except PolicyError as exc:  # outside the account's policy: nothing was sent
        raise ApiError(403, "forbidden", exc.errors) from None
    except LimitExceeded as exc:
        raise limit_error(exc) from None
    except StateError as exc:
        errors = getattr(exc, "errors", None) or {"state": {"not_allowed": {"message": str(exc)}}}
        raise ApiError(400, "validation error", errors) from None
    except CommandError as exc:
        raise ApiError(400, "validation error", {exc.field: {"invalid": {"message": exc.reason}}}) from None
    except CommandRejected as exc:
        raise ApiError(502, "freeswitch error", {"text": exc.text, "node": channel.node}) from None
    except Unsupported as exc:
        # the switch lacks what the action needs: nothing was sent; retrying will not help
        # until the operator loads the module, a gateway-side failure like -ERR
        raise ApiError(502, "freeswitch cannot", {"text": str(exc), **exc.details}) from None
    except CommandTimeout as exc:
        raise ApiError(504, "freeswitch timeout", {"node": channel.node, "reason": str(exc)}) from None
    except LinkDown as exc:
        raise ApiError(503, "node unavailable", {"node": channel.node, "reason": str(exc)}) from None


def limit_error(exc: LimitExceeded) -> ApiError:
    """429 naming the limit (the policy key) and when to try again."""
    data = {"rule": exc.rule, "limit": exc.limit, "reason": str(exc), "retry_after": exc.retry_after}
    return ApiError(429, "too many requests", data, headers={"Retry-After": str(exc.retry_after)})


# --- listings ------------------------------------------------------------------------------


def _listing(channels: list[Any]) -> Response:
    page, info = paginate(channels)
    return respond_listing(listing_rows(page, time.time()), "channels", info)


@bp.route("/v2/channels", methods=["GET"])
def system_channels() -> Response:
    actor = authenticate()
    if not actor.superduper_admin:
        raise ApiError(403, "forbidden", {"reason": "the system-wide listing is for superduper admins"})
    if not _ext().config.channels.system_wide_channels_list:
        raise ApiError(403, "forbidden", {"reason": "system_wide_channels_list is disabled"})
    return _listing(_ext().registry.all())


@bp.route("/v2/accounts/<account_id>/channels", methods=["GET"])
def account_channels(account_id: str) -> Response:
    checked_account(account_id)
    return _listing(_ext().registry.for_account(account_id))


@bp.route("/v2/accounts/<account_id>/users/<user_id>/channels", methods=["GET"])
def user_channels(account_id: str, user_id: str) -> Response:
    checked_account(account_id)
    _checked_id(user_id, "user_id")
    return _listing(_ext().registry.for_owner(account_id, user_id))


@bp.route("/v2/accounts/<account_id>/devices/<device_id>/channels", methods=["GET"])
def device_channels(account_id: str, device_id: str) -> Response:
    checked_account(account_id)
    _checked_id(device_id, "device_id")
    return _listing(_ext().registry.for_device(account_id, device_id))


# --- one channel ---------------------------------------------------------------------------


@bp.route("/v2/accounts/<account_id>/channels/<channel_uuid>", methods=["GET"])
def channel_detail(account_id: str, channel_uuid: str) -> Response:
    checked_account(account_id)
    channel = find_channel(account_id, channel_uuid)
    return respond(channel.detail(time.time()))


@bp.route("/v2/accounts/<account_id>/channels/<channel_uuid>", methods=["POST"])
def channel_action(account_id: str, channel_uuid: str) -> Response:
    """Run one action: exactly what PUT with ``{module: action, data: params}`` would run."""
    checked_account(account_id)
    channel = find_channel(account_id, channel_uuid)
    body = json_body()
    top_action = body.get("action")
    data = body.get("data")
    if data is None and top_action is not None:
        data = {}
    action = dict(typed_field(data, "data", "object"))
    if "action" not in action and top_action is not None:
        action["action"] = top_action
    typed_field(action.get("action"), "data.action", "string")
    with interpreter_errors(channel):
        result = _ext().interpreter.run_action(channel, action)
    return respond(result)


def metaflow_node(body: dict[str, Any]) -> dict[str, Any]:
    """The root node of a PUT body, in either accepted shape (SPEC §7)."""
    action = body.get("action", "metaflow")
    if action != "metaflow":
        raise field_error(
            "action", "enum", "Value not found in enumerated list of values", target=["metaflow"]
        )
    data = typed_field(body.get("data"), "data", "object")
    # Kazoo's own example nests the node one level deeper: {"data": {"data": {"module": ...}}}
    if "module" not in data and isinstance(data.get("data"), dict) and set(data) <= {"data"}:
        return data["data"]
    return data


@bp.route("/v2/accounts/<account_id>/channels/<channel_uuid>", methods=["PUT"])
def channel_metaflow(account_id: str, channel_uuid: str) -> Response:
    """Validate a whole metaflow tree, then start it; the run goes on in its own greenlet."""
    checked_account(account_id)
    channel = find_channel(account_id, channel_uuid)
    tree = metaflow_node(json_body())
    with interpreter_errors(channel):
        # start() validates the whole tree (ValidationFailed before any run exists), so
        # validating here first would walk every tree twice
        run = _ext().interpreter.start(channel, tree, account_id)
        # Like a POST action, the answer reflects the outcome of the first node: a state the
        # channel cannot take, -ERR, a timeout or a dead link is an error, not a 202.
        run.first.get()
    info = run.as_dict()
    location = url_for("runs.list_runs", account_id=account_id, channel_uuid=channel.uuid)
    return respond(info, status=202, headers={"Location": location})
