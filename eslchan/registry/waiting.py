"""Waiting for a channel's next event: one-shot waiters the registry wakes from apply()."""

from __future__ import annotations

from collections.abc import Callable, Collection

from gevent.event import AsyncResult
from gevent.timeout import Timeout

from eslchan.esl.message import Event


class ChannelGone(Exception):
    """The channel was destroyed or removed (resync, dead node) while someone waited on it."""

    def __init__(self, node: str, uuid: str, reason: str = "destroyed"):
        self.node = node
        self.uuid = uuid
        self.reason = reason
        super().__init__(f"channel {uuid} on {node} is gone ({reason})")


class Waiter:
    """A registration for the next event of one channel whose name is in ``names``.

    Register it *before* sending the command whose event you expect (see
    :meth:`ChannelRegistry.expect`), so an event that arrives while the command is in flight
    is not missed. Empty ``names`` means any event of the channel.
    """

    __slots__ = ("node", "uuid", "names", "predicate", "_result", "_cancel")

    def __init__(
        self,
        node: str,
        uuid: str,
        names: Collection[str],
        predicate: Callable[[Event], bool] | None,
        cancel: Callable[[Waiter], None],
    ) -> None:
        self.node = node
        self.uuid = uuid
        self.names = frozenset(names)
        self.predicate = predicate
        self._result: AsyncResult = AsyncResult()
        self._cancel = cancel

    @property
    def done(self) -> bool:
        return self._result.ready()

    def offer(self, event: Event) -> bool:
        """Called by the registry for each event of the channel; True once satisfied."""
        if self._result.ready():
            return True
        if self.names and event.get("Event-Name") not in self.names:
            return False
        if self.predicate is not None:
            try:
                if not self.predicate(event):
                    return False
            except Exception as exc:  # a broken predicate fails its own waiter, not apply()
                self._result.set_exception(exc)
                return True
        self._result.set(event)
        return True

    def gone(self, reason: str) -> None:
        if not self._result.ready():
            self._result.set_exception(ChannelGone(self.node, self.uuid, reason))

    def wait(self, timeout: float | None) -> Event | None:
        """The matching event, None on timeout; raises ChannelGone if the channel went away."""
        try:
            return self._result.get(timeout=timeout)
        except Timeout:
            return None
        finally:
            self.cancel()

    def cancel(self) -> None:
        self._cancel(self)

    def __enter__(self) -> Waiter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.cancel()
