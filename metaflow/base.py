"""What a module handler sees: the run context, and the outcome it returns."""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import gevent
from gevent.queue import Empty, Queue

from eslchan.esl import commands as esl
from eslchan.esl.errors import CommandRejected, LinkDown
from eslchan.esl.message import Event
from eslchan.policy import AccountPolicy, Guard
from eslchan.registry.waiting import ChannelGone
from metaflow import capabilities
from metaflow.capabilities import Need
from metaflow.media import media_arg

if TYPE_CHECKING:  # pragma: no cover
    from metaflow.interpreter import Interpreter, Run


class StateError(Exception):
    """The action is not allowed in the channel's current state (HTTP 400 naming why)."""

    def __init__(self, message: str, field: str = "state"):
        self.errors = {field: {"not_allowed": {"message": message}}}
        super().__init__(message)


class NotFound(Exception):
    """A channel the request names is unknown, or not one of the account's (HTTP 404, the
    same for both, as the channels API answers)."""

    def __init__(self, identifier: str):
        self.identifier = identifier
        super().__init__(f"no such channel: {identifier}")


@dataclass(frozen=True)
class Outcome:
    """What comes after a node: ``continue`` (child ``_``), ``branch`` (child ``key``, else
    ``_``), ``stop``, or ``goto`` (run another validated tree in place of the children)."""

    kind: str
    key: str | None = None
    node: dict | None = None
    label: str | None = None


CONTINUE = Outcome("continue")
STOP = Outcome("stop")


def branch(key: str) -> Outcome:
    return Outcome("branch", key=key)


def goto(node: dict, label: str) -> Outcome:
    return Outcome("goto", node=node, label=label)


Handler = Callable[["Context", dict], Outcome]

#: Applications that play media: a run that is stopped breaks the legs it started them on.
MEDIA_APPLICATIONS = frozenset({"playback", "endless_playback", "speak", "say", "gentones",
                                "play_and_get_digits", "read"})


@dataclass(frozen=True)
class Completion:
    """How an application run by :meth:`Context.execute_and_wait` ended: its
    CHANNEL_EXECUTE_COMPLETE (or the leg's CHANNEL_DESTROY), and whether any media played on
    that leg while it ran (a PLAYBACK_START)."""

    event: Event
    played: bool


class Context:
    """One run on one channel: its commands go through the account's policy guard and then
    the node's link, its waits through the registry. Handlers never touch sockets or sleep
    to poll, and have no other way to the switch than :meth:`api`, :meth:`bgapi`, :meth:`send`."""

    def __init__(self, interpreter: Interpreter, run: Run):
        self.interpreter = interpreter
        self.run = run
        self.node: str = run.node
        self.uuid: str = run.channel_uuid
        self.config = interpreter.config
        self.registry = interpreter.registry
        self.policy: AccountPolicy = run.policy
        self._guard = Guard(run.policy, interpreter.registry, run.node, run.channel_uuid)
        self.jumps = 0
        self.typeahead = ""  # digits pressed while media played, for the next collect_dtmf
        self._children: list[gevent.Greenlet] = []
        # media this run started and not yet seen complete: Application-UUID -> leg
        self.started_media: dict[str, str] = {}

    # -- the channel -----------------------------------------------------------------------

    @property
    def channel(self) -> Any:
        ch = self.registry.get(self.node, self.uuid)
        if ch is None:
            raise ChannelGone(self.node, self.uuid, "destroyed")
        return ch

    def arg_uuid(self, uuid: str | None = None) -> esl.Arg:
        return esl.uuid(uuid or self.uuid)

    def peer(self) -> str | None:
        """The bridged peer's uuid right now, if any."""
        return self.channel.other_leg

    def require_peer(self, why: str) -> str:
        """The bridged peer an action is about to act on: StateError without one, PolicyError
        when it is not a call this run's account may act on (before anything is sent)."""
        peer = self.peer()
        if not peer:
            raise StateError(f"the channel is not bridged: {why}")
        return self.act_on(peer)

    def act_on(self, uuid: str) -> str:
        """``uuid``, if the account's policy lets this run act on that channel (PolicyError
        otherwise); for modules that act on several legs, before the first command."""
        self._guard.require_reach(uuid)
        return uuid

    @property
    def state(self) -> dict[str, Any]:
        """Per-channel memory shared by every run on the channel (e.g. the recording)."""
        return self.interpreter.channel_state(self.node, self.uuid)

    def note(self, **facts: Any) -> None:
        """Facts a caller wants back (the recording's path, the new leg's uuid, the digits):
        shown with the run and in an action's result."""
        self.run.notes.update(facts)

    def media(self, ref: str, field: str = "media") -> esl.Arg:
        """A media reference (id, tone_stream://, allowed path/URL) as a command argument."""
        return media_arg(ref, self.config, field)

    # -- commands --------------------------------------------------------------------------

    def _link(self, cmd: esl.Command) -> Any:
        """The node's link, for a command the account's policy allows (PolicyError if not)."""
        self._guard.check(cmd)
        link = self.interpreter.links.get(self.node)
        if link is None:
            raise LinkDown(f"no link to node {self.node}")
        return link

    def api(self, cmd: esl.Command, timeout: float | None = None) -> str:
        return self._accepted(self._link(cmd).api(cmd, timeout=timeout))

    def bgapi(self, cmd: esl.Command, timeout: float | None = None,
              on_accepted: Callable[[str], None] | None = None) -> str:
        """Send a bgapi; the run counts as accepted once FreeSWITCH took the job (within the
        link's command timeout; ``on_accepted`` is told too), then waits up to ``timeout``
        for the job's result."""
        def took(reply: str) -> None:
            self.run.accepted(reply)
            if on_accepted is not None:
                on_accepted(reply)

        return self._accepted(self._link(cmd).bgapi(cmd, timeout=timeout, on_accepted=took))

    def send(self, cmd: esl.Command, timeout: float | None = None) -> str:
        """A sendmsg. An execute of an application the node lacks is refused here, for every
        module: FreeSWITCH would answer it by hanging the call up. Media it starts is
        remembered (before sending: its completion may beat the reply) so that stopping the
        run stops it."""
        link = self._link(cmd)  # the policy first: what it refuses is refused whatever the node has
        if cmd.app is not None:
            self.require(capabilities.application(cmd.app))
        media = cmd.app in MEDIA_APPLICATIONS and cmd.event_uuid is not None and cmd.uuid is not None
        if media:
            # a looped application completes once per loop: only its leg's end tells it is over
            self.interpreter.track_media(self, str(cmd.event_uuid), str(cmd.uuid),
                                         until_destroyed=cmd.loops != 1)
        try:
            return self._accepted(link.send(cmd, timeout=timeout))
        except CommandRejected:
            if media:
                self.interpreter.untrack_media(self, str(cmd.event_uuid))
            raise

    def require(self, *needs: Need) -> None:
        """Refuse (:class:`~metaflow.capabilities.Unsupported`) unless the node has all of
        ``needs``; nothing is sent to the call."""
        self.interpreter.capabilities.require(self.node, needs, self.run.current_module)

    def get_variable(self, uuid: str, name: esl.Arg) -> str | None:
        """uuid_getvar, as a read: it is no step of the action (a POST action still answers
        with its first real command's reply); None for an unset variable."""
        cmd = esl.api("uuid_getvar", esl.uuid(uuid), name)
        value = self._link(cmd).api(cmd).strip()
        return None if value == "_undef_" else value

    def set_variable(self, uuid: str, name: esl.Arg, value: esl.Arg) -> str:
        """uuid_setvar, and the registry shows the value at once (FreeSWITCH fires no event
        for it; the channel's next event would be the first to carry it)."""
        reply = self.api(esl.api("uuid_setvar", esl.uuid(uuid), name, value))
        self.registry.record_variable(self.node, uuid, str(name), str(value))
        return reply

    def _accepted(self, reply: str) -> str:
        self.run.accepted(reply)
        return reply

    # -- waiting ---------------------------------------------------------------------------

    def expect(self, names: Collection[str], predicate: Callable[[Event], bool] | None = None,
               uuid: str | None = None) -> Any:
        """Register for an event before sending the command that causes it."""
        return self.registry.expect(self.node, uuid or self.uuid, names, predicate)

    def wait(self, waiter: Any, timeout: float | None) -> Event | None:
        self.run.accepted(None)  # a waiting run has done what an action must confirm
        self.run.waiting = True
        try:
            return waiter.wait(timeout)
        finally:
            self.run.waiting = False

    def wait_for(self, names: Collection[str], timeout: float | None,
                 predicate: Callable[[Event], bool] | None = None,
                 uuid: str | None = None) -> Event | None:
        """The channel's next matching event; None on timeout; ChannelGone if it went away."""
        return self.wait(self.expect(names, predicate, uuid), timeout)

    @contextmanager
    def events(self, uuids: Collection[str] | None = None, *, gone_on_destroy: bool = True
               ) -> Iterator[EventStream]:
        """Every event of one or several channels (e.g. the legs of an attended transfer), in
        order, with no gap between two reads. By default the run's channel being destroyed
        raises ChannelGone from ``get``."""
        stream = EventStream(self, set(uuids or (self.uuid,)), gone_on_destroy)
        unsubscribe = self.interpreter.subscribe(stream)
        try:
            _ = self.channel  # subscribed first, so a hangup cannot slip between check and wait
            yield stream
        finally:
            unsubscribe()

    def api_and_wait(self, cmd: esl.Command, names: Collection[str], timeout: float | None = 5.0,
                     uuid: str | None = None) -> Event | None:
        """Send an api command and wait for the event that shows it took effect, so the next
        node sees the channel's new state (registered first: the event cannot slip by)."""
        with self.expect(names, uuid=uuid) as waiter:
            self.api(cmd)
            return self.wait(waiter, timeout)

    def execute_and_wait(self, uuid: esl.Arg, app: str, arg: esl.Arg | None,
                         timeout: float | None = None, terminators: str = "") -> Completion | None:
        """Run a dialplan application on a channel and wait until it completed (None when
        ``timeout`` passes first).

        Digits the run's channel presses meanwhile are kept as type-ahead for the next
        collect_dtmf; one of ``terminators`` also cuts the media short (barge-in)."""
        cmd = esl.execute(uuid, app, arg)
        deadline = None if timeout is None else time.monotonic() + timeout
        broken = running = played = False
        with self.events({str(uuid), self.uuid}) as stream:
            self.send(cmd)
            while True:
                event = stream.get(None if deadline is None else deadline - time.monotonic())
                if event is None:
                    return None
                name, who = event.get("Event-Name"), event.get("Unique-ID")
                ours = event.get("Application-UUID") == cmd.event_uuid
                if who == str(uuid):
                    if name == "CHANNEL_DESTROY" or (name == "CHANNEL_EXECUTE_COMPLETE" and ours):
                        return Completion(event, played)
                    if name == "CHANNEL_EXECUTE" and ours:
                        running = True
                    elif name == "PLAYBACK_START" and running:
                        played = True
                if who == self.uuid and name == "DTMF":
                    digit = event.get("DTMF-Digit", "")
                    self.typeahead += digit
                    if digit in terminators and not broken and who == str(uuid):
                        broken = True
                        self.api(esl.api("uuid_break", uuid))

    def spawn(self, fn: Callable[..., Any], *args: Any) -> gevent.Greenlet:
        """A helper greenlet that dies with the run."""
        g = gevent.spawn(fn, *args)
        self._children.append(g)
        return g

    def close(self) -> None:
        gevent.killall([g for g in self._children if not g.dead], block=True, timeout=5)
        self._children.clear()


class EventStream:
    """A queue of events of a set of channels, fed by the interpreter's registry listener."""

    def __init__(self, ctx: Context, uuids: set[str], gone_on_destroy: bool = True):
        self.ctx = ctx
        self.node = ctx.node
        self.uuids = uuids
        self.gone_on_destroy = gone_on_destroy
        self._queue: Queue = Queue()

    def put(self, item: Any) -> None:
        """An event of a watched channel, or another item (e.g. a failed background job)."""
        self._queue.put(item)

    def get(self, timeout: float | None) -> Any:
        """Next item, or None when ``timeout`` seconds pass first."""
        run = self.ctx.run
        run.accepted(None)
        run.waiting = True
        try:
            item = self._queue.get(timeout=None if timeout is None else max(0.0, timeout))
        except Empty:
            return None
        finally:
            run.waiting = False
        if (self.gone_on_destroy and isinstance(item, dict)
                and item.get("Event-Name") == "CHANNEL_DESTROY" and item.get("Unique-ID") == self.ctx.uuid):
            raise ChannelGone(self.node, self.ctx.uuid, "destroyed")
        return item
