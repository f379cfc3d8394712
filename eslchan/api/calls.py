"""Starting calls: ``PUT /v2/accounts/{A}/channels`` and Kazoo's quickcall
(``GET|POST …/devices/{D}/quickcall/{NUMBER}``, ``…/users/{U}/quickcall/{NUMBER}``).

Everything is judged before anything is dialled: the request's grammar (400), the account's
policy — its endpoint globs, the variables it may set, its routes (403) — the metaflow to run
once answered, the node (404 for a channel that is not the account's, 503 for a node that is
down) and the limits (429). Then the call is a run of the interpreter (kind ``originate``),
and the answer comes as soon as FreeSWITCH has created the channel (``201``, or ``202`` for
quickcall as in Kazoo): FreeSWITCH's refusal before that is a 502 with its text, nothing
within the command timeout a 504 (the call goes on; its run says how it ended).
"""

from __future__ import annotations

import time
import uuid as _uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from flask import Blueprint, Response, current_app, request, url_for
from gevent.timeout import Timeout

import schemas
from eslchan.api.auth import authenticate, authorize
from eslchan.api.channels import checked_account, find_channel, interpreter_errors, metaflow_node
from eslchan.api.envelope import ApiError, field_error, json_body, respond, typed_field, validation_error
from eslchan.config import ACCOUNT_ID
from eslchan.config.quickcall import ENTITY_ID
from eslchan.policy import AccountPolicy, PolicyError
from metaflow import ValidationFailed
from metaflow.originate import NewLeg, Started, prepare_call, prepare_quickcall
from metaflow.validation import FillingValidator, kazoo_errors

bp = Blueprint("calls", __name__)

_CREATE = FillingValidator(schemas.load("channels.create"))
_QUICKCALL = FillingValidator(schemas.load("quickcall"))
_QUICKCALL_OPTIONS = frozenset(schemas.load("quickcall")["properties"])
#: query parameters that are no quickcall option nor a variable
_NOT_OPTIONS = frozenset({"auth_token"})
#: Kazoo's number_filter: what it removes from NUMBER
_NUMBER_NOISE = str.maketrans("", "", " ,.-()")
_BOOLEANS = {"true": True, "false": False}


def _ext() -> Any:
    return current_app.extensions["eslchan"]


# --- what every start shares --------------------------------------------------------------------


@contextmanager
def refusals_counted() -> Iterator[None]:
    """Count a start refused before anything was dialled (``/metrics``: outcome refused, by
    the rule or reason)."""
    try:
        yield
    except ApiError as exc:
        _ext().metrics.count_originate("refused", _reason(exc))
        raise


def _reason(exc: ApiError) -> str:
    data = exc.data if isinstance(exc.data, dict) else {}
    if exc.status in (403, 429):
        rules = [d.get("policy", {}).get("rule") for d in data.values() if isinstance(d, dict)]
        rule = data.get("rule") or next((r for r in rules if r), None)
        return str(rule or "forbidden")
    reasons = {400: "invalid", 404: "not_found", 502: "unsupported", 503: "node_unavailable"}
    return reasons.get(exc.status, "other")


def _validated(validator: Any, data: dict[str, Any], prefix: str) -> dict[str, Any]:
    """``data`` with its defaults, or 400 keyed by the field's path."""
    found: dict[str, Any] = {}
    for error in validator.iter_errors(data):
        found.update(kazoo_errors(error, prefix))
    if found:
        raise validation_error(found)
    return data


def _pick_node(account_id: str, named: str | None, near: str | None) -> str:
    """The node a call starts on: the node of ``near`` (a channel of the account), the one
    named, or the connected node with the fewest channels."""
    links = _ext().links
    registry = _ext().registry
    if near is not None:
        node = find_channel(account_id, near).node
        if named is not None and named != node:
            raise field_error("data.node", "not_allowed", f"near_channel is on node {node}, not {named}")
        named = node
    if named is not None:
        link = links.get(named)
        if link is None:
            raise field_error("data.node", "enum", "not a node of this eslchan", target=sorted(links))
        if not link.is_up:
            raise ApiError(503, "node unavailable", {"node": named, "reason": "its link is down"})
        return named
    up = [name for name, link in sorted(links.items()) if link.is_up]
    if not up:
        raise ApiError(503, "node unavailable", {"reason": "no FreeSWITCH node is connected"})
    return min(up, key=registry.count)


def _policy(account_id: str) -> AccountPolicy:
    return _ext().policies.for_account(account_id)


def _start(call: Any, account_id: str, policy: AccountPolicy) -> Started:
    with interpreter_errors(call.leg):
        return _ext().interpreter.originate(call, account_id, policy)


def _wait(started: Started, which: str, leg: NewLeg) -> None:
    """Until ``which`` (``created``, ``accepted``) of ``started``: what went wrong before it
    is the HTTP error; nothing within the command timeout, a 504 that names the run."""
    timeout = _ext().config.link.command_timeout
    result = getattr(started, which)
    with interpreter_errors(leg):
        try:
            result.get(timeout=timeout)
        except Timeout:
            raise ApiError(504, "freeswitch timeout", {
                "node": leg.node, "uuid": leg.uuid, "run": started.run.id,
                "reason": f"FreeSWITCH created no channel within {timeout:g} s; the call goes on, "
                          "its run tells how it ends"}) from None


def _answer(account_id: str, started: Started, leg: NewLeg, status: int) -> Response:
    channel = _ext().registry.get(leg.node, leg.uuid)
    if channel is not None:
        data = channel.detail(time.time())
    else:  # accepted, not created yet (GET quickcall), or already gone
        data = {"uuid": leg.uuid, "call_id": leg.uuid, "node": leg.node, "answer_state": None}
    data["run_id"] = started.run.id
    location = url_for("channels.channel_detail", account_id=account_id, channel_uuid=leg.uuid)
    return respond(data, status=status, headers={"Location": location})


# --- PUT /v2/accounts/{A}/channels ---------------------------------------------------------------


@bp.route("/v2/accounts/<account_id>/channels", methods=["PUT"])
def create_call(account_id: str) -> Response:
    """Start a call to one of the account's endpoints; 201 once FreeSWITCH created it."""
    checked_account(account_id)
    body = json_body()
    data = dict(typed_field(body.get("data"), "data", "object"))
    with refusals_counted():
        _validated(_CREATE, data, "data.")
        policy = _policy(account_id)
        flow = None
        if "metaflow" in data:
            flow = _flow(data["metaflow"], policy)
        node = _pick_node(account_id, data.get("node"), data.get("near_channel"))
        leg = NewLeg(node, str(_uuid.uuid4()))
        with interpreter_errors(leg):
            call = prepare_call(data, policy, _ext().registry.mapping, leg, flow)
        started = _start(call, account_id, policy)
    _wait(started, "created", leg)
    return _answer(account_id, started, leg, 201)


def _flow(tree: Any, policy: AccountPolicy) -> dict[str, Any]:
    """The metaflow to run once answered, validated now (schemas, then policy), its errors
    keyed under ``data.metaflow``."""
    node = metaflow_node({"action": "metaflow", "data": tree})
    try:
        return _ext().interpreter.validate(node, policy)
    except ValidationFailed as exc:
        raise validation_error({_under("data.metaflow", k): v for k, v in exc.errors.items()}) from None
    except PolicyError as exc:
        errors = {_under("data.metaflow", k): v for k, v in exc.errors.items()}
        raise ApiError(403, "forbidden", errors) from None


def _under(prefix: str, path: str) -> str:
    return prefix if path in ("", "metaflow") else f"{prefix}.{path}"


# --- quickcall ------------------------------------------------------------------------------------


@bp.route("/v2/accounts/<account_id>/devices/<device_id>/quickcall/<number>", methods=["GET", "POST"])
def device_quickcall(account_id: str, device_id: str, number: str) -> Response:
    return _quickcall(account_id, "device", device_id, number)


@bp.route("/v2/accounts/<account_id>/users/<user_id>/quickcall/<number>", methods=["GET", "POST"])
def user_quickcall(account_id: str, user_id: str, number: str) -> Response:
    return _quickcall(account_id, "user", user_id, number)


def _quickcall(account_id: str, kind: str, entity_id: str, number: str) -> Response:
    """Kazoo's quickcall: ring the device (or user), then call NUMBER through the account's
    context. A GET answers 202 once FreeSWITCH took the job (Kazoo's non-blocking form); a
    POST once the device's channel exists, or FreeSWITCH's refusal."""
    authenticate(request.args.get("auth_token") if request.method == "GET" else None)
    if not ACCOUNT_ID.fullmatch(account_id):
        raise field_error("account_id", "pattern", "an account id is 32 lowercase hexadecimal characters",
                          value=account_id)
    authorize(account_id)
    with refusals_counted():
        if not ENTITY_ID.fullmatch(entity_id):
            raise field_error(f"{kind}_id", "pattern", "ids are 1-64 letters, digits or _ . + -",
                              value=entity_id)
        options = _validated(_QUICKCALL, _options(), "")
        if options.get("number_filter", True):
            number = number.translate(_NUMBER_NOISE)
        account = _ext().config.account(account_id)
        quick = account.quickcall if account is not None else None
        endpoint = quick.endpoint(kind, entity_id) if quick is not None else None
        if endpoint is None:  # no such device or user this eslchan knows how to ring
            raise ApiError(404, "bad identifier", [entity_id])
        policy = _policy(account_id)
        node = _pick_node(account_id, None, options.get("target_call_id"))
        leg = NewLeg(node, str(_uuid.uuid4()))
        dialplan = _ext().config.metaflow.default_dialplan
        with interpreter_errors(leg):
            call = prepare_quickcall(kind, entity_id, number, options, endpoint, policy,
                                     _ext().registry.mapping, leg, dialplan)
        started = _start(call, account_id, policy)
    _wait(started, "accepted" if request.method == "GET" else "created", leg)
    return _answer(account_id, started, leg, 202)


def _options() -> dict[str, Any]:
    """The options from the query string (strings made booleans and integers where the option
    is one) and, for a POST, the body's ``data`` over them; any other query parameter is a
    custom application variable, as in Kazoo."""
    options: dict[str, Any] = {}
    variables: dict[str, Any] = {}
    for name, value in request.args.items():
        if name in _NOT_OPTIONS:
            continue
        if name not in _QUICKCALL_OPTIONS:
            variables[name] = value
        elif name in ("auto_answer", "number_filter", "ignore-early-media"):
            options[name] = _BOOLEANS.get(value.lower(), value)
        elif name == "timeout":
            options[name] = int(value) if value.isascii() and value.isdigit() and len(value) < 7 else value
        else:
            options[name] = value
    if request.method == "POST" and request.content_length:
        body = typed_field(json_body().get("data", {}), "data", "object")
        options.update(body)
    if variables:
        given = options.get("custom_application_vars")
        options["custom_application_vars"] = {**variables, **(given if isinstance(given, Mapping) else {})}
    return options
