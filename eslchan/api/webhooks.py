"""/v2/accounts/{A}/webhooks: Kazoo's webhooks API over eslchan's durable, signed webhooks.

Tenancy is the channels API's: a token reaches its account and the account's descendants, and
a hook belongs to exactly one account, so another account's hook answers 404 like an unknown
one. Every writable field is checked (schemas/webhooks.json, then the configuration's bounds and
the destination policy) before anything is stored; errors are Kazoo's validation errors keyed by
the field's dotted path in the request body (``data.uri``).

The hook's ``secret`` (Standard Webhooks ``whsec_…``) is shown once: in the answer that creates
the hook and in the one that rotates it (``"rotate_secret": true``).

Beside an account's hooks, Kazoo's other webhooks routes: /v2/webhooks (the hooks offered) and
/v2/webhooks/samples (their payloads, from a made-up call) for any valid token, the account's
attempts across its hooks, and the bulk re-enable of hooks eslchan disabled, for an account or
with its descendants. Every route needs the service: an eslchan without ``[webhooks]`` (in a
cluster, every instance but the one that delivers) answers 404 to all of them alike.
"""

from __future__ import annotations

import copy
import json
import re
import unicodedata
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, Flask, Response, current_app, url_for
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

import schemas
from eslchan.api.accounts import descendants
from eslchan.api.auth import authenticate
from eslchan.api.channels import checked_account
from eslchan.api.envelope import ApiError, field_error, json_body, respond, typed_field, validation_error
from eslchan.registry.channel import GREGORIAN_OFFSET
from eslchan.webhooks import (
    HOOK_DESCRIPTIONS,
    HOOK_NAMES,
    DestinationError,
    Hook,
    TooManyHooks,
    WebhookService,
    samples,
)
from eslchan.webhooks.store import Attempt, StoreError
from metaflow.validation import FillingValidator, StrictValidator, kazoo_errors

bp = Blueprint("webhooks", __name__)

HOOK_ID = re.compile(r"^[0-9a-f]{32}$")
CUSTOM_KEY = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
#: what the tenant writes; everything else a hook shows is eslchan's and ignored on write, so a
#: client may send back what it read
WRITABLE = ("name", "uri", "http_verb", "hook", "retries", "custom_data", "enabled", "include_subaccounts")
READ_ONLY = frozenset(
    {"id", "account_id", "secret", "created", "modified", "disable_reason", "failures", "pending", "dropped"}
)
#: Unicode categories a name may not hold: control, format (bidirectional overrides, zero
#: widths), surrogates, private use, unassigned, line and paragraph separators
_NAME_FORBIDDEN = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})

_SCHEMA = schemas.load("webhooks")
_VALIDATOR = FillingValidator(_SCHEMA)
_PATCH_VALIDATOR = StrictValidator({**_SCHEMA, "required": []})
_REENABLE_VALIDATOR = StrictValidator(schemas.load("webhooks.reenable"))


def _service() -> WebhookService:
    service = current_app.extensions["eslchan"].webhooks
    if service is None:
        raise ApiError(404, "faulty request", {"reason": "webhooks are not enabled on this eslchan"})
    try:
        service.refresh()  # a shared store: what another instance changed shows here at once
    except StoreError as exc:
        raise ApiError(503, "webhooks unavailable", {"reason": str(exc)}) from None
    return service


def _gregorian(unix: float) -> int:
    return int(unix) + GREGORIAN_OFFSET


def _iso(unix: float) -> str:
    return datetime.fromtimestamp(unix, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")[:-4] + "Z"


def document(service: WebhookService, hook: Hook, *, secret: bool = False) -> dict[str, Any]:
    """A hook as the API shows it: Kazoo's fields, then eslchan's delivery state."""
    doc: dict[str, Any] = {"id": hook.id}
    doc.update({name: getattr(hook, name) for name in WRITABLE})
    doc["custom_data"] = dict(hook.custom_data)
    doc.update(
        disable_reason=hook.disable_reason,
        failures=hook.failures,
        pending=service.pending(hook.id),
        dropped=hook.dropped,
        created=_gregorian(hook.created),
        modified=_gregorian(hook.modified),
    )
    if secret:
        doc["secret"] = hook.secret
    return doc


def attempt_document(attempt: Attempt) -> dict[str, Any]:
    return {
        "hook_id": attempt.hook_id,
        "delivery_id": f"{attempt.hook_id}-{attempt.seq}",
        "timestamp": _gregorian(attempt.at),
        "time": _iso(attempt.at),
        "result": "success" if attempt.ok else "failure",
        "response_code": attempt.status,
        "latency_ms": attempt.latency_ms,
        "reason": attempt.error,
        "retries_left": attempt.retries_left,
        "hook_event": attempt.hook_event,
        "call_id": attempt.call_id,
    }


# --- validation ----------------------------------------------------------------------------


def _request_data() -> tuple[dict[str, Any], bool]:
    """The body's ``data`` without read-only fields, and whether it asks to rotate the secret."""
    data = dict(typed_field(json_body().get("data"), "data", "object"))
    rotate = data.pop("rotate_secret", False)
    if not isinstance(rotate, bool):
        raise field_error("data.rotate_secret", "type", "Value is not of type 'boolean'", target="boolean")
    return {k: v for k, v in data.items() if k not in READ_ONLY}, rotate


def _schema_errors(fields: dict[str, Any], validator: Any) -> dict[str, Any]:
    """What ``validator`` finds wrong in the body's data, keyed as Kazoo does (``data.uri``), each
    field with every keyword it breaks (``"yes"`` for ``true`` is both a type and an enum)."""
    errors: dict[str, Any] = {}
    for error in validator.iter_errors(fields):
        for path, keywords in kazoo_errors(error, "data.").items():
            errors.setdefault(path, {}).update(keywords)
    return errors


def _check(fields: dict[str, Any], validator: Any, service: WebhookService) -> dict[str, Any]:
    """``fields`` validated (defaults filled by a filling validator); raises Kazoo's 400."""
    errors = _schema_errors(fields, validator)
    name = fields.get("name")
    if isinstance(name, str) and "data.name" not in errors:
        bad = next((ch for ch in name if unicodedata.category(ch) in _NAME_FORBIDDEN), None)
        if bad is not None or not name.strip():
            errors["data.name"] = {
                "pattern": {"message": "must be printable text, without control or format characters"}
            }
    custom = fields.get("custom_data")
    if isinstance(custom, dict) and not any(k.startswith("data.custom_data") for k in errors):
        for key in custom:
            if not CUSTOM_KEY.fullmatch(key):
                errors[f"data.custom_data.{key[:64]}"] = {
                    "propertyNames": {"message": "names are 1-64 letters, digits, _ . -"}
                }
        limit = service.config.custom_data_max_bytes
        if len(json.dumps(custom, ensure_ascii=False).encode()) > limit:
            errors["data.custom_data"] = {
                "maxSize": {"message": f"must be at most {limit} bytes as JSON", "target": limit}
            }
    uri = fields.get("uri")
    if isinstance(uri, str) and "data.uri" not in errors:
        try:
            service.destinations.check(uri)
        except DestinationError as exc:
            errors["data.uri"] = {"forbidden": {"message": str(exc), "value": uri[:256]}}
    if errors:
        raise validation_error(errors)
    if isinstance(fields.get("retries"), float):  # JSON Schema counts 2.0 as an integer
        fields["retries"] = int(fields["retries"])
    return fields


def _hook(service: WebhookService, account_id: str, hook_id: str) -> Hook:
    if not HOOK_ID.fullmatch(hook_id):
        raise field_error(
            "webhook_id", "pattern", "a webhook id is 32 lowercase hexadecimal characters", value=hook_id[:64]
        )
    hook = service.get(account_id, hook_id)
    if hook is None:
        raise ApiError(404, "bad identifier", [hook_id])
    return hook


# --- endpoints -----------------------------------------------------------------------------


@bp.route("/v2/accounts/<account_id>/webhooks", methods=["GET"])
def list_hooks(account_id: str) -> Response:
    checked_account(account_id)
    service = _service()
    return respond([document(service, hook) for hook in service.hooks_of(account_id)])


@bp.route("/v2/accounts/<account_id>/webhooks", methods=["PUT"])
def create_hook(account_id: str) -> Response:
    checked_account(account_id)
    service = _service()
    fields, _ = _request_data()
    fields = _check(copy.deepcopy(fields), _VALIDATOR, service)
    try:
        hook = service.create(account_id, fields)
    except TooManyHooks as exc:
        limit = exc.args[0]
        raise validation_error(
            {
                "webhooks": {
                    "maxItems": {"message": f"an account may have at most {limit} webhooks", "target": limit}
                }
            }
        ) from None
    location = url_for("webhooks.hook_detail", account_id=account_id, webhook_id=hook.id)
    return respond(document(service, hook, secret=True), status=201, headers={"Location": location})


@bp.route("/v2/accounts/<account_id>/webhooks/<webhook_id>", methods=["GET"])
def hook_detail(account_id: str, webhook_id: str) -> Response:
    checked_account(account_id)
    service = _service()
    return respond(document(service, _hook(service, account_id, webhook_id)))


@bp.route("/v2/accounts/<account_id>/webhooks/<webhook_id>", methods=["POST"])
def replace_hook(account_id: str, webhook_id: str) -> Response:
    """Kazoo's edit: the whole document; fields left out take their defaults."""
    return _edit(account_id, webhook_id, _VALIDATOR)


@bp.route("/v2/accounts/<account_id>/webhooks/<webhook_id>", methods=["PATCH"])
def patch_hook(account_id: str, webhook_id: str) -> Response:
    """Only the fields given change, e.g. ``{"data": {"enabled": true}}`` to re-enable."""
    return _edit(account_id, webhook_id, _PATCH_VALIDATOR)


def _edit(account_id: str, webhook_id: str, validator: Any) -> Response:
    """Change a hook with the request's fields, as ``validator`` reads them."""
    checked_account(account_id)
    service = _service()
    hook = _hook(service, account_id, webhook_id)
    fields, rotate = _request_data()
    fields = _check(copy.deepcopy(fields), validator, service)
    hook = service.update(hook, fields, rotate_secret=rotate)
    return respond(document(service, hook, secret=rotate))


@bp.route("/v2/accounts/<account_id>/webhooks/<webhook_id>", methods=["DELETE"])
def delete_hook(account_id: str, webhook_id: str) -> Response:
    checked_account(account_id)
    service = _service()
    hook = _hook(service, account_id, webhook_id)
    doc = document(service, hook)
    service.delete(hook)
    return respond(doc)


@bp.route("/v2/accounts/<account_id>/webhooks/<webhook_id>/attempts", methods=["GET"])
def hook_attempts(account_id: str, webhook_id: str) -> Response:
    """The hook's latest delivery attempts, newest first (the last ``attempts_kept``)."""
    checked_account(account_id)
    service = _service()
    hook = _hook(service, account_id, webhook_id)
    return respond([attempt_document(a) for a in service.attempts(hook)])


@bp.route("/v2/accounts/<account_id>/webhooks/attempts", methods=["GET"])
def account_attempts(account_id: str) -> Response:
    """The latest delivery attempts of all the account's hooks, newest first (``attempts_kept``)."""
    checked_account(account_id)
    service = _service()
    return respond([attempt_document(a) for a in service.account_attempts(account_id)])


@bp.route("/v2/accounts/<account_id>/webhooks", methods=["PATCH"])
def re_enable_hooks(account_id: str) -> Response:
    """Kazoo's bulk re-enable of the account's hooks: ``{"data": {"re-enable": true}}``."""
    return _re_enable(account_id, with_descendants=False)


@bp.route("/v2/accounts/<account_id>/descendants/webhooks", methods=["PATCH"])
def re_enable_descendant_hooks(account_id: str) -> Response:
    """The same for the account and every account below it."""
    return _re_enable(account_id, with_descendants=True)


def _re_enable(account_id: str, *, with_descendants: bool) -> Response:
    """Re-enable the hooks eslchan disabled; answers them, as Kazoo answers the list."""
    checked_account(account_id)  # reaching the account is reaching every account below it
    service = _service()
    data = typed_field(json_body().get("data"), "data", "object")
    errors = _schema_errors(data, _REENABLE_VALIDATOR)
    if errors:
        raise validation_error(errors)
    accounts = [account_id]
    if with_descendants:
        below = descendants(current_app.extensions["eslchan"].tenancy.accounts, account_id)
        accounts.extend(acc["id"] for acc in below)
    return respond([document(service, hook) for hook in service.re_enable(accounts)])


# --- what this eslchan offers --------------------------------------------------------------


def _offered() -> WebhookService:
    """The service, for any valid token (these routes name no account)."""
    authenticate()
    return _service()


@bp.route("/v2/webhooks", methods=["GET"])
def available_hooks() -> Response:
    """The hooks a hook's ``hook`` field may name, as Kazoo lists those it has installed."""
    _offered()
    return respond(
        [{"id": name, "name": name, "description": HOOK_DESCRIPTIONS[name]} for name in HOOK_NAMES]
    )


@bp.route("/v2/webhooks/samples", methods=["GET"])
def sample_list() -> Response:
    _offered()
    return respond(samples.sample_ids())


@bp.route("/v2/webhooks/samples/<sample_id>", methods=["GET"])
def sample_detail(sample_id: str) -> Response:
    """One sample payload, in a list as Kazoo answers it."""
    _offered()
    payload = samples.sample(sample_id)
    if payload is None:
        raise ApiError(404, "bad identifier", [sample_id[:64]])
    return respond([payload])


# --- metrics -------------------------------------------------------------------------------


class _Collector(Collector):
    """eslchan_webhook_* metrics, read from the service at scrape time."""

    def __init__(self, service: WebhookService):
        self.service = service

    def collect(self) -> Iterator[Any]:
        stats = self.service.stats
        yield CounterMetricFamily(
            "eslchan_webhook_events_accepted",
            "Events persisted for delivery (one per hook)",
            value=stats["accepted"],
        )
        dropped = CounterMetricFamily(
            "eslchan_webhook_events_dropped",
            "Events not accepted for a hook: handoff (the in-memory queue to the writer was full), "
            "queue (the hook's queue was full), store (the database refused them)",
            labels=["reason"],
        )
        for reason in ("handoff", "queue", "store"):
            dropped.add_metric([reason], stats[f"dropped_{reason}"])
        yield dropped
        attempts = CounterMetricFamily(
            "eslchan_webhook_attempts", "Delivery attempts, by result", labels=["result"]
        )
        attempts.add_metric(["success"], stats["delivered"])
        attempts.add_metric(["failure"], stats["failed_attempts"])
        yield attempts
        yield GaugeMetricFamily(
            "eslchan_webhook_pending", "Deliveries waiting, all hooks", value=self.service.pending_total()
        )
        yield GaugeMetricFamily(
            "eslchan_webhooks_auto_disabled",
            "Hooks disabled by eslchan after repeated failures",
            value=self.service.auto_disabled(),
        )


def install(app: Flask) -> None:
    """Register the webhooks metrics when the app has a webhook service."""
    service = app.extensions["eslchan"].webhooks
    if service is not None:
        app.extensions["eslchan"].metrics.registry.register(_Collector(service))
