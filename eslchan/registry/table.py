"""What the channel registry and a cluster instance's mirror of it share: the channels of
every node with their tenancy indexes, the queries the API serves from them, waiting on a
channel's next event, and the listeners told of every change.

Subclasses change the channels (the registry from FreeSWITCH's events, the mirror from the
shared stream) and keep the indexes with ``_index``/``_unindex``; the table does no I/O.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Iterable

from eslchan.esl.message import Event
from eslchan.registry.channel import Channel
from eslchan.registry.waiting import ChannelGone, Waiter

log = logging.getLogger("eslchan.registry")

Listener = Callable[[str, Channel | None, Event], None]


class ChannelTable:
    """Channels keyed by (node, uuid), indexed by account, owner and device."""

    def __init__(self) -> None:
        self._nodes: dict[str, dict[str, Channel]] = {}
        self._by_account: dict[str, set[Channel]] = {}
        self._by_owner: dict[tuple[str, str], set[Channel]] = {}
        self._by_device: dict[tuple[str, str], set[Channel]] = {}
        self._waiters: dict[tuple[str, str], list[Waiter]] = {}
        self._listeners: list[Listener] = []

    # -- queries ---------------------------------------------------------------------------

    def __len__(self) -> int:
        return sum(map(len, self._nodes.values()))

    def get(self, node: str, uuid: str) -> Channel | None:
        nodemap = self._nodes.get(node)
        return None if nodemap is None else nodemap.get(uuid)

    def find(self, uuid: str) -> Channel | None:
        """The channel with that uuid on any node (uuids are globally unique in practice)."""
        for nodemap in self._nodes.values():
            ch = nodemap.get(uuid)
            if ch is not None:
                return ch
        return None

    def all(self) -> list[Channel]:
        return _sorted(ch for nodemap in self._nodes.values() for ch in nodemap.values())

    def count(self, node: str) -> int:
        """How many channels the node has (without listing them)."""
        return len(self._nodes.get(node, ()))

    def for_node(self, node: str) -> list[Channel]:
        return _sorted(self._nodes.get(node, {}).values())

    def for_account(self, account_id: str) -> list[Channel]:
        return _sorted(self._by_account.get(account_id, ()))

    def for_owner(self, account_id: str, owner_id: str) -> list[Channel]:
        return _sorted(self._by_owner.get((account_id, owner_id), ()))

    def for_device(self, account_id: str, device_id: str) -> list[Channel]:
        """Channels whose authorizing_id is the device."""
        return _sorted(self._by_device.get((account_id, device_id), ()))

    def nodes(self) -> list[str]:
        return list(self._nodes)

    def _unknown_reason(self, node: str, uuid: str) -> str:
        """Why a channel the table lacks cannot be waited on (ChannelGone's reason)."""
        return "unknown"

    # -- subscriptions ---------------------------------------------------------------------

    def expect(
        self,
        node: str,
        uuid: str,
        names: Collection[str],
        predicate: Callable[[Event], bool] | None = None,
    ) -> Waiter:
        """Register now for the channel's next matching event; ``.wait(timeout)`` later.

        Use it around a command so the event cannot slip by while the command is in flight::

            with registry.expect(node, uuid, {"CHANNEL_EXECUTE_COMPLETE"}) as w:
                link.send(cmd)
                event = w.wait(10)

        Raises ChannelGone at once if the channel is not (or no longer) known.
        """
        if self.get(node, uuid) is None:
            raise ChannelGone(node, uuid, self._unknown_reason(node, uuid))
        waiter = Waiter(node, uuid, names, predicate, self._cancel_waiter)
        self._waiters.setdefault((node, uuid), []).append(waiter)
        return waiter

    def wait_for(
        self,
        node: str,
        uuid: str,
        names: Collection[str],
        timeout: float | None,
        predicate: Callable[[Event], bool] | None = None,
    ) -> Event | None:
        """The channel's next event named in ``names`` (None on timeout); raises ChannelGone
        when the channel is destroyed or removed first. Waiting for CHANNEL_DESTROY itself
        returns that event."""
        return self.expect(node, uuid, names, predicate).wait(timeout)

    def listen(self, callback: Listener) -> Callable[[], None]:
        """Call ``callback(node, channel, event)`` after every applied channel event, and
        with a synthetic CHANNEL_DESTROY (``Eslchan-Removed``: reason) when a snapshot
        comparison ("gone") or an expired node ("node down") removes a channel. The channel
        passed with a destroy is the removed one (its account still tells whose it was).
        Runs inside apply(): must not block."""
        self._listeners.append(callback)

        def unsubscribe() -> None:
            try:
                self._listeners.remove(callback)
            except ValueError:
                pass

        return unsubscribe

    def _cancel_waiter(self, waiter: Waiter) -> None:
        key = (waiter.node, waiter.uuid)
        lst = self._waiters.get(key)
        if lst is None:
            return
        try:
            lst.remove(waiter)
        except ValueError:
            return
        if not lst:
            del self._waiters[key]

    def _wake(self, node: str, uuid: str, event: Event) -> None:
        lst = self._waiters.get((node, uuid))
        if not lst:
            return
        keep = [w for w in lst if not w.offer(event)]
        if keep:
            self._waiters[(node, uuid)] = keep
        else:
            del self._waiters[(node, uuid)]

    def _gone(self, node: str, uuid: str, reason: str) -> None:
        for w in self._waiters.pop((node, uuid), ()):
            w.gone(reason)

    def _notify(self, node: str, ch: Channel | None, event: Event) -> None:
        for cb in list(self._listeners):
            try:
                cb(node, ch, event)
            except Exception:  # one broken subscriber must not stop the registry
                log.exception("channel listener failed")

    # -- indexes ---------------------------------------------------------------------------

    def _index(self, ch: Channel) -> None:
        account = ch.account_id
        if account is None:
            return
        self._by_account.setdefault(account, set()).add(ch)
        if ch.owner_id is not None:
            self._by_owner.setdefault((account, ch.owner_id), set()).add(ch)
        if ch.authorizing_id is not None:
            self._by_device.setdefault((account, ch.authorizing_id), set()).add(ch)

    def _unindex(self, ch: Channel) -> None:
        account = ch.account_id
        if account is None:
            return
        _discard(self._by_account, account, ch)
        if ch.owner_id is not None:
            _discard(self._by_owner, (account, ch.owner_id), ch)
        if ch.authorizing_id is not None:
            _discard(self._by_device, (account, ch.authorizing_id), ch)


def _discard(index: dict, key: object, ch: Channel) -> None:
    bucket = index.get(key)
    if bucket is not None:
        bucket.discard(ch)
        if not bucket:
            del index[key]


def _sorted(channels: Iterable[Channel]) -> list[Channel]:
    return sorted(channels, key=lambda c: (c.created, c.uuid))
