"""One live channel as the registry keeps it: only the fields the API serves.

A FreeSWITCH channel event carries 150+ headers; a Channel keeps about twenty values and
the mapped/prefixed custom variables, so thousands of channels stay small (SPEC §4).
"""

from __future__ import annotations

import sys

#: Unix seconds + this = Gregorian seconds (Kazoo's ``timestamp``).
GREGORIAN_OFFSET = 62167219200

_intern = sys.intern


def intern(value: str | None) -> str | None:
    """Share one string object for values repeated across channels (nodes, states, ids)."""
    return None if value is None else _intern(value)


#: The fields of :meth:`Channel.shared_state`, in order (the tenancy fields are set apart: changing
#: them moves the channel between indexes).
STATE_SLOTS = (
    "name", "direction", "destination", "context", "username", "presence_id", "other_leg",
    "authorizing_type", "created", "caller_id_name", "caller_id_number", "callee_id_name",
    "callee_id_number", "is_onhold", "answered", "state", "callstate", "hangup_cause",
    "application", "custom", "stale", "account_id", "owner_id", "authorizing_id",
)
_STATE_LENGTH = len(STATE_SLOTS)


class Channel:
    """A FreeSWITCH session on one node. Mutated only by :class:`ChannelRegistry`."""

    __slots__ = (
        "node",
        "uuid",
        "name",
        "direction",
        "destination",
        "context",
        "username",
        "presence_id",
        "other_leg",
        "account_id",
        "owner_id",
        "authorizing_id",
        "authorizing_type",
        "created",
        "caller_id_name",
        "caller_id_number",
        "callee_id_name",
        "callee_id_number",
        "is_onhold",
        "answered",
        "answer_state",
        "state",
        "callstate",
        "hangup_cause",
        "application",
        "custom",
        # custom variables eslchan set that no event has shown yet: label -> (value, until)
        "var_pending",
        # hashes of the last event's channel headers and of the two headers the tenancy fields
        # fall back to, so an event that repeats them is skipped without a field-by-field look
        "var_extra",
        "headers_seen",
        "stale",
        # ordering keys (generation << 48 | Event-Sequence) of the last applied update, per
        # part of the state, so an older event never overwrites newer state
        "seq",
        "var_seq",
        "app_seq",
        "hold_seq",
        "leg_seq",
    )

    def __init__(self, node: str, uuid: str, created: float) -> None:
        self.node = _intern(node)
        self.uuid = uuid
        self.name: str | None = None
        self.direction: str | None = None
        self.destination: str | None = None
        self.context: str | None = None
        self.username: str | None = None
        self.presence_id: str | None = None
        self.other_leg: str | None = None
        self.account_id: str | None = None
        self.owner_id: str | None = None
        self.authorizing_id: str | None = None
        self.authorizing_type: str | None = None
        self.created = created
        self.var_extra: int | None = None
        self.headers_seen: int | None = None
        self.caller_id_name: str | None = None
        self.caller_id_number: str | None = None
        self.callee_id_name: str | None = None
        self.callee_id_number: str | None = None
        self.is_onhold = False
        self.answered = False
        #: FreeSWITCH's Answer-State: ringing, early (early media), answered, hangup
        self.answer_state: str | None = None
        self.state: str | None = None
        self.callstate: str | None = None
        self.hangup_cause: str | None = None
        self.application: str | None = None
        self.custom: dict[str, str] | None = None
        self.var_pending: dict[str, tuple[str | None, float]] | None = None
        self.stale = False
        self.seq = -1
        self.var_seq = -1
        self.app_seq = -1
        self.hold_seq = -1
        self.leg_seq = -1

    @property
    def timestamp(self) -> int:
        """Creation time in Gregorian seconds."""
        return int(self.created) + GREGORIAN_OFFSET

    @property
    def has_variables(self) -> bool:
        """False while no event with the channel variables was seen (resync dumps those)."""
        return self.var_seq >= 0

    def listing(self, now: float) -> dict:
        """The Kazoo listing fields (SPEC §4), and how far the call got (``answer_state``:
        ringing, early, answered, hangup); the account is for access control, not shown."""
        return {
            "uuid": self.uuid,
            "answered": self.answered,
            "direction": self.direction,
            "destination": self.destination,
            "username": self.username,
            "presence_id": self.presence_id,
            "other_leg": self.other_leg,
            "owner_id": self.owner_id,
            "authorizing_id": self.authorizing_id,
            "authorizing_type": self.authorizing_type,
            "timestamp": self.timestamp,
            "caller_id_name": self.caller_id_name,
            "caller_id_number": self.caller_id_number,
            "callee_id_name": self.callee_id_name,
            "callee_id_number": self.callee_id_number,
            "is_onhold": self.is_onhold,
            "answer_state": self.answer_state,
            "node": self.node,
            "elapsed_s": max(0, int(now - self.created)),
        }

    def detail(self, now: float) -> dict:
        """Listing plus the state a caller needs to act on the channel."""
        out = self.listing(now)
        out.update(
            call_id=self.uuid,
            other_leg_call_id=self.other_leg,
            name=self.name,
            context=self.context,
            state=self.state,
            callstate=self.callstate,
            hangup_cause=self.hangup_cause,
            application=self.application,
            custom_channel_vars=dict(self.custom) if self.custom else {},
            stale=self.stale,
        )
        return out

    # -- variables eslchan set -------------------------------------------------------------

    def record_variable(self, label: str, value: str | None, until: float) -> None:
        """Show a variable eslchan set (``None``: unset) under ``label`` at once, and keep it
        over events that still show the value from before until ``until``."""
        custom = dict(self.custom or {})
        if value is None:
            custom.pop(label, None)
        else:
            custom[label] = value
        self.custom = custom or None
        pending = self.var_pending or {}
        pending[label] = (value, until)
        self.var_pending = pending

    def overlay_recorded(self, custom: dict[str, str], now: float) -> None:
        """Keep what eslchan set over new ``custom`` variables that still show the value
        from before (``custom`` is changed in place)."""
        pending = self.var_pending
        if not pending:
            return
        for label, (value, until) in list(pending.items()):
            if custom.get(label) == value:
                del pending[label]  # the switch's events show it now
            elif now < until:
                if value is None:
                    custom.pop(label, None)
                else:
                    custom[label] = value
            else:
                del pending[label]
        if not pending:
            self.var_pending = None

    # -- the shared state of a cluster -----------------------------------------------------

    def shared_state(self) -> list:
        """What a cluster's mirrors need of the channel (listing, detail, tenancy, staleness),
        as a list in :data:`STATE_SLOTS` order: compact and fast to encode. (Written out: this
        runs for every event an owner publishes.)"""
        return [
            self.name, self.direction, self.destination, self.context, self.username,
            self.presence_id, self.other_leg, self.authorizing_type, self.created,
            self.caller_id_name, self.caller_id_number, self.callee_id_name, self.callee_id_number,
            self.is_onhold, self.answered, self.state, self.callstate, self.hangup_cause,
            self.application, self.custom, self.stale, self.account_id, self.owner_id,
            self.authorizing_id,
        ]

    def take_shared_state(self, state: list) -> None:
        """Set the fields :meth:`shared_state` gave (a mirror's copy of the owner's channel)."""
        (
            self.name, self.direction, self.destination, self.context, self.username,
            self.presence_id, self.other_leg, self.authorizing_type, self.created,
            self.caller_id_name, self.caller_id_number, self.callee_id_name, self.callee_id_number,
            self.is_onhold, self.answered, self.state, self.callstate, self.hangup_cause,
            self.application, self.custom, self.stale, self.account_id, self.owner_id,
            self.authorizing_id,
        ) = state[:_STATE_LENGTH]  # a later eslchan may add fields at the end

    def __repr__(self) -> str:
        return f"<Channel {self.node}/{self.uuid} {self.state} {self.callstate}>"
