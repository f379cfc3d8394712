"""Kazoo-compatible webhooks for channel events: durable per-hook queues, signed deliveries,
retries and auto-disable, and a destination policy against server-side request forgery.

``store`` keeps hooks, queues and the attempts log (SQLite by default); ``payload`` builds
Kazoo's channel-hook payload, and ``samples`` shows it built from a made-up call; ``destinations``
decides where a hook may point; ``delivery`` runs one ordered worker per hook; ``service`` ties
them to the channel registry.
"""

from eslchan.webhooks.destinations import DestinationError, Destinations, Target, parse_uri
from eslchan.webhooks.payload import HOOK_DESCRIPTIONS, HOOK_EVENTS, HOOK_NAMES, channel_payload
from eslchan.webhooks.service import TooManyHooks, WebhookService
from eslchan.webhooks.store import Attempt, Delivery, Hook, SQLiteStore, StoreError, WebhookStore

__all__ = [
    "HOOK_DESCRIPTIONS",
    "HOOK_EVENTS",
    "HOOK_NAMES",
    "Attempt",
    "Delivery",
    "DestinationError",
    "Destinations",
    "Hook",
    "SQLiteStore",
    "StoreError",
    "Target",
    "TooManyHooks",
    "WebhookService",
    "WebhookStore",
    "channel_payload",
    "parse_uri",
]
