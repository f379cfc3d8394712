"""The tree-walking interpreter: one greenlet per run, modules dispatched by name.

A run keeps a trail (each node it ran, the branch it took) and, once over, stays readable
for a bounded time and count. A run that does not finish on its own (stopped, its channel
gone, failed) stops the media it started on every leg that is still up. A call eslchan
starts is a run too (kind ``originate``, see :mod:`metaflow.originate`): its first step
dials the leg, and the metaflow given with it runs once the leg answered.
"""

from __future__ import annotations

import logging
import time
import uuid as _uuid
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import gevent
from gevent import GreenletExit
from gevent.event import AsyncResult

from eslchan.config import PolicyConfig, VariableMapping
from eslchan.esl import commands as esl
from eslchan.esl.errors import EslError
from eslchan.esl.message import Event
from eslchan.policy import AccountPolicy, LimitExceeded, PolicyBook
from eslchan.registry.waiting import ChannelGone
from metaflow import originate
from metaflow.base import Context, EventStream, Outcome, StateError
from metaflow.capabilities import Capabilities
from metaflow.registry import ModuleRegistry
from metaflow.validation import MISSING, TreeValidator, ValidationFailed

log = logging.getLogger("eslchan.metaflow")

Step = tuple[dict | None, str, str | None]

#: a run remembers at most this many nodes it ran (a callflow loop repeats them): the latest
MAX_TRAIL = 1000


def _child(node: dict, path: str, key: str | None) -> Step:
    """Child ``key``, else child ``_``, else the end of the flow; and the key taken."""
    children = node.get("children") or {}
    key = key if key in children else "_"
    if key in children:
        return children[key], f"{path}children.{key}.", key
    return None, path, None


#: outcome kind → the next node, its path and the child key taken; the interpreter's branching.
NEXT: dict[str, Callable[[dict, str, Outcome], Step]] = {
    "continue": lambda node, path, o: _child(node, path, "_"),
    "branch": lambda node, path, o: _child(node, path, o.key),
    "stop": lambda node, path, o: (None, path, None),
    "goto": lambda node, path, o: (o.node, f"{o.label}:", o.label),
}


class Run:
    """One metaflow running on one channel."""

    def __init__(self, channel: Any, tree: dict, account_id: str | None, policy: AccountPolicy,
                 kind: str = "metaflow"):
        self.id = _uuid.uuid4().hex
        self.policy = policy  # what its commands may do (the guard of its Context applies it)
        self.node: str = channel.node
        self.channel_uuid: str = channel.uuid
        self.account_id = account_id
        self.tree = tree
        self.kind = kind
        self.current = ""
        self.current_module: str = tree["module"]
        self.state = "running"
        self.waiting = False  # blocked on the call's events (e.g. digits, an answer)
        self.started = time.time()
        self.ended: float | None = None
        self.error: str | None = None
        self.error_details: dict[str, Any] | None = None
        self.result: str | None = None
        self.notes: dict[str, Any] = {}
        self.trail: deque[dict[str, Any]] = deque(maxlen=MAX_TRAIL)
        self.trail_dropped = 0
        self.instance: str | None = None  # in a cluster: the instance executing it
        self.first = AsyncResult()  # first command accepted (or the run waits, or ends)
        self.greenlet: gevent.Greenlet | None = None

    def accepted(self, reply: str | None) -> None:
        if not self.first.ready():
            self.result = reply
            self.first.set(reply)

    def enter(self, path: str, module: str) -> dict[str, Any]:
        """A node starts: its step in the trail, completed by :meth:`leave`."""
        if len(self.trail) == self.trail.maxlen:
            self.trail_dropped += 1
        step: dict[str, Any] = {"path": path.rstrip("."), "module": module, "started": time.time(),
                                "ended": None, "outcome": None, "branch": None, "next": None}
        self.trail.append(step)
        return step

    @staticmethod
    def leave(step: dict[str, Any], outcome: Outcome, taken: str | None) -> None:
        step["ended"] = time.time()
        step["outcome"] = outcome.kind
        step["branch"] = {"continue": "_", "branch": outcome.key, "goto": outcome.label}.get(outcome.kind)
        step["next"] = taken

    def finish(self, state: str, exc: BaseException | None = None) -> None:
        self.state, self.ended = state, time.time()
        if exc is not None:
            self.error = str(exc)
            self.error_details = getattr(exc, "details", None)
        if self.trail and self.trail[-1]["outcome"] is None:  # the node it ended in
            self.trail[-1]["outcome"] = state
            self.trail[-1]["ended"] = self.ended
        if not self.first.ready():
            if state == "channel_gone":
                exc = StateError("the channel hung up before the action ran")
            self.first.set_exception(exc) if exc is not None else self.first.set(None)

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, "module": self.tree["module"], "tree": self.tree,
                "channel": self.channel_uuid, "node": self.node,
                "current": {"path": self.current.rstrip(".") or "", "module": self.current_module},
                "state": self.state, "waiting": self.waiting, "notes": self.notes,
                "started": self.started, "ended": self.ended, "error": self.error,
                "error_details": self.error_details,
                "trail": [dict(step) for step in self.trail], "trail_dropped": self.trail_dropped,
                **({"instance": self.instance} if self.instance else {})}


class RunHistory:
    """Finished runs, oldest first, bounded by age, by count and by count per account (so
    one tenant's runs cannot push another's out)."""

    def __init__(self, max_runs: int, per_account: int, seconds: float,
                 clock: Callable[[], float] = time.time):
        self.max_runs, self.per_account, self.seconds, self.clock = max_runs, per_account, seconds, clock
        self._runs: OrderedDict[str, Run] = OrderedDict()
        self._by_account: dict[str | None, deque[str]] = {}

    def add(self, run: Run) -> None:
        self._runs[run.id] = run
        mine = self._by_account.setdefault(run.account_id, deque())
        mine.append(run.id)
        while len(mine) > self.per_account:
            self._runs.pop(mine.popleft(), None)
        self.prune()

    def prune(self) -> None:
        horizon = self.clock() - self.seconds
        while self._runs:
            oldest = next(iter(self._runs.values()))
            if len(self._runs) <= self.max_runs and (oldest.ended or 0) >= horizon:
                break
            self._drop(oldest)

    def _drop(self, run: Run) -> None:
        self._runs.pop(run.id, None)
        mine = self._by_account.get(run.account_id)
        if mine is not None:
            try:
                mine.remove(run.id)
            except ValueError:
                pass
            if not mine:
                del self._by_account[run.account_id]

    def get(self, run_id: str) -> Run | None:
        self.prune()
        return self._runs.get(run_id)

    def __iter__(self) -> Iterator[Run]:
        self.prune()
        return iter(list(self._runs.values()))

    def __len__(self) -> int:
        return len(self._runs)


class RunAborted(Exception):
    """Ends a run as failed, for a reason outside it (its instance lost the cluster)."""


class Interpreter:
    """Runs metaflows. Every run is bounded by its account's policy (``policies``; without one,
    the default policy of every account under ``config``): its tree is judged before it
    starts, its commands by the guard, its number by the run limits.

    ``book`` (a cluster's :class:`~eslchan.cluster.runs.ClusterRuns`) shares the runs with
    the other instances: it counts them against cluster-wide limits, records them where every
    instance lists them, stops them on request from anywhere, and holds what the runs on a
    channel share; without it all of that stays in this process."""

    def __init__(self, registry: Any, links: Mapping[str, Any], config: Any, *,
                 modules: ModuleRegistry | None = None, policies: PolicyBook | None = None,
                 book: Any = None):
        self.registry = registry
        self.book = book
        if book is not None:
            book.stop_local = self.stop
        self.links = links
        self.modules = modules if modules is not None else ModuleRegistry()
        self.capabilities = Capabilities(links)
        self._default_policies = policies is None
        self.policies = policies
        self.config = config
        self._runs: dict[str, Run] = {}
        self._state: dict[tuple[str, str], dict[str, Any]] = {}
        self._streams: dict[tuple[str, str], set[EventStream]] = {}
        # media runs started and not yet seen complete: (node, Application-UUID) -> context,
        # and per leg the Application-UUIDs, to forget them when the leg is destroyed;
        # looped media is forgotten only then (each loop completes)
        self._media: dict[tuple[str, str], Context] = {}
        self._media_legs: dict[tuple[str, str], set[str]] = {}
        self._looped: set[tuple[str, str]] = set()
        # calls started and not yet answered or failed: run id -> account
        self._originating: dict[str, str | None] = {}
        #: told (outcome, cause) of every call started: answered, or failed with the cause
        self.originate_listeners: list[originate.OutcomeListener] = []
        registry.listen(self._on_event)

    @property
    def config(self) -> Any:
        return self._config

    @config.setter
    def config(self, config: Any) -> None:
        """A new MetaflowConfig (e.g. on reload) applies to the next validation and node."""
        self._config = config
        self.validator = TreeValidator(self.modules, config)
        history = RunHistory(int(getattr(config, "finished_runs_max", 500)),
                             int(getattr(config, "finished_runs_per_account", 100)),
                             float(getattr(config, "finished_runs_seconds", 3600.0)))
        for run in getattr(self, "history", ()):
            history.add(run)
        self.history = history
        if self._default_policies:  # the default policy reads the metaflow settings
            mapping = getattr(self.registry, "mapping", None) or VariableMapping()
            self.policies = PolicyBook(PolicyConfig(), (), mapping, config)

    # -- public API --------------------------------------------------------------------------

    def validate(self, tree: dict, policy: AccountPolicy | None = None) -> dict:
        """The whole tree, defaults filled in; raises ValidationFailed, then PolicyError when
        it breaks ``policy`` (without one, only the schemas apply)."""
        return self.validator.validate(tree, policy)

    def policy_for(self, channel: Any, account_id: str | None) -> AccountPolicy:
        """The account's policy for a run on ``channel`` (whose own domain counts as allowed)."""
        presence = getattr(channel, "presence_id", None) or ""
        realm = presence.rsplit("@", 1)[1] if "@" in presence else None
        assert self.policies is not None
        return self.policies.for_account(account_id).bind(realm)

    def _check_limits(self, channel: Any, account_id: str | None, policy: AccountPolicy) -> None:
        on_channel = on_account = 0
        for run in self._runs.values():
            if run.state != "running":
                continue
            if run.channel_uuid == channel.uuid and run.node == channel.node:
                on_channel += 1
            if run.account_id == account_id:
                on_account += 1
        if on_channel >= policy.max_runs_per_channel:
            raise LimitExceeded("max_runs_per_channel", policy.max_runs_per_channel,
                                f"the channel already has {on_channel} metaflow runs")
        if account_id is not None and on_account >= policy.max_runs:
            raise LimitExceeded("max_runs", policy.max_runs,
                                f"the account already has {on_account} metaflow runs")

    def check_requirements(self, node: str, tree: dict) -> None:
        """Every node's FreeSWITCH needs (an application, a TTS engine, a say language) on
        ``node``; raises :class:`~metaflow.capabilities.Unsupported` naming the first missing
        one, before anything is sent."""
        for path, item in _nodes(tree):
            spec = self.modules.get(item["module"])
            if spec is not None and spec.requires is not None:
                needs = spec.requires(item.get("data") or {})
                self.capabilities.require(node, needs, item["module"], path)

    def start(self, channel: Any, tree: dict, account_id: str | None = None, *,
              kind: str = "metaflow") -> Run:
        """Start a run in its own greenlet and return at once. The run limits come first (so a
        flood of refused trees costs no validation), then the tree is validated against the
        schemas and the account's policy (again, if it was before: it is idempotent), so an
        unvalidated tree can never run; what it needs from the switch is checked last, so a run
        that cannot complete never starts."""
        policy = self.policy_for(channel, account_id)
        self._check_limits(channel, account_id, policy)
        tree = self.validate(tree, policy)
        self.check_requirements(channel.node, tree)
        run = Run(channel, tree, account_id, policy, kind)
        if self.book is not None:
            self.book.admit(run)  # the cluster's limits (LimitExceeded), then the run is listed
        self._runs[run.id] = run
        run.greenlet = gevent.spawn(self._execute, run)
        return run

    def run_action(self, channel: Any, action: dict) -> dict:
        """A POST action: a one-node flow through the same code. Returns once FreeSWITCH has
        accepted the first command; raises what went wrong before that."""
        params = dict(action)
        name = params.pop("action", None)
        if not isinstance(name, str):
            raise ValidationFailed({"data.action": {"required": {"message": MISSING}}})
        if name not in self.modules:
            raise ValidationFailed({"data.action": {"enum": {
                "message": f"Unknown action '{name}'", "value": name, "target": self.modules.names()}}})
        run = self.start(channel, {"module": name, "data": params}, channel.account_id, kind="action")
        reply = run.first.get()
        return {"id": run.id, "action": name, "channel": run.channel_uuid, "node": run.node,
                "state": run.state, "reply": (reply or "").strip() or None, "data": run.tree["data"],
                "result": dict(run.notes)}

    def originate(self, call: originate.Call, account_id: str | None, policy: AccountPolicy
                  ) -> originate.Started:
        """Start a call (:func:`metaflow.originate.prepare_call` made ``call``, whose metaflow
        is validated) in its own run and return at once; the caller waits on the answer's
        ``created`` or ``accepted``. The run limits come first, then what the metaflow needs
        from the node, so nothing is dialled that could not go on."""
        self._check_limits(call.leg, account_id, policy)
        ringing = sum(1 for acc in self._originating.values() if acc == account_id)
        if ringing >= policy.max_originates:
            raise LimitExceeded("max_originates", policy.max_originates,
                                f"the account already has {ringing} calls it started ringing")
        tree: dict[str, Any] = {"module": "originate", "data": call.shown}
        if call.flow is not None:
            self.check_requirements(call.leg.node, call.flow)
            tree["children"] = {"_": call.flow}
        run = Run(call.leg, tree, account_id, policy, kind="originate")
        if self.book is not None:
            self.book.admit(run)  # the cluster's limits too, and the run is listed everywhere
        started = originate.Started(run)
        self._runs[run.id] = run
        self._originating[run.id] = account_id

        def dial(ctx: Context) -> Outcome:
            try:
                return originate.follow(ctx, call, started, self._originate_outcome)
            finally:
                self._originating.pop(run.id, None)

        run.greenlet = gevent.spawn(self._execute, run, dial)
        return started

    def _originate_outcome(self, outcome: str, cause: str) -> None:
        for listener in list(self.originate_listeners):
            try:
                listener(outcome, cause)
            except Exception:  # a broken listener must not fail the call
                log.exception("originate listener failed")

    def runs(self, channel_uuid: str) -> list[Any]:
        """The channel's runs: those running, then those over that are still remembered."""
        live = [r for r in self._runs.values() if r.channel_uuid == channel_uuid]
        over = [r for r in self.history if r.channel_uuid == channel_uuid and r not in live]
        if self.book is not None:  # the cluster's, with ours as this process knows them
            ours = {r.id for r in live} | {r.id for r in over}
            others = [r for r in self.book.runs_of_channel(channel_uuid) if r.id not in ours]
            live += [r for r in others if r.state == "running"]
            over += [r for r in others if r.state != "running"]
        return live + over

    def account_runs(self, account_id: str) -> list[Any]:
        """The account's runs, running and remembered, newest first."""
        runs: dict[str, Any] = {}
        if self.book is not None:
            runs.update((r.id, r) for r in self.book.runs_of_account(account_id))
        runs.update((r.id, r) for r in self.history if r.account_id == account_id)
        runs.update((r.id, r) for r in self._runs.values() if r.account_id == account_id)
        return sorted(runs.values(), key=lambda r: r.started, reverse=True)

    def get(self, run_id: str) -> Any:
        run = self._runs.get(run_id) or self.history.get(run_id)
        if run is None and self.book is not None:
            run = self.book.get(run_id)
        return run

    def stop(self, run_id: str, reason: str | None = None) -> bool:
        """Stop a running run (its media stops too); False if it is not running. With a
        ``reason`` the run ends as failed, saying why. In a cluster, a run another instance
        executes is stopped there (this waits until its record shows it over)."""
        run = self._runs.get(run_id)
        if run is None and self.book is not None:
            other = self.book.stop_run(run_id)
            return other is not None and other.state != "running"
        if run is None or run.greenlet is None:
            return False
        if reason is not None:
            run.greenlet.kill(RunAborted(reason), block=True, timeout=5)
        else:
            run.greenlet.kill(block=True, timeout=5)
        if run.state == "running":  # killed before it ever ran
            run.finish("stopped")
            self._end(run)
        return True

    def drain(self, timeout: float = 10.0) -> None:
        """Let runs end on their own for up to ``timeout`` seconds, then stop the rest."""
        greenlets = [r.greenlet for r in self._runs.values() if r.greenlet is not None]
        gevent.joinall(greenlets, timeout=timeout)
        gevent.killall([g for g in greenlets if not g.dead], block=True, timeout=5)

    def node_up(self, node: str) -> None:
        """A node's link is (again) up: what it can do is probed anew, at once (a failure
        waits for the first need)."""
        self.capabilities.forget(node)
        try:
            self.capabilities.of(node)
        except Exception as exc:  # the link fell again, a timeout: the next need probes again
            log.debug("node %s: capability probe failed: %s", node, exc)

    def channel_state(self, node: str, uuid: str) -> dict[str, Any]:
        """Memory shared by the runs on a live channel; ChannelGone once it is gone (the
        destroy that frees it has already passed, so an entry made now would stay forever)."""
        if self.registry.get(node, uuid) is None:
            raise ChannelGone(node, uuid, "destroyed")
        if self.book is not None:  # shared with the runs of the other instances
            return self.book.channel_memory(node, uuid)
        return self._state.setdefault((node, uuid), {})

    def subscribe(self, stream: EventStream) -> Callable[[], None]:
        """Feed ``stream`` every event of its channels (one registry listener for all runs)."""
        keys = [(stream.node, uuid) for uuid in stream.uuids]
        for key in keys:
            self._streams.setdefault(key, set()).add(stream)

        def unsubscribe() -> None:
            for key in keys:
                streams = self._streams.get(key)
                if streams is not None:
                    streams.discard(stream)
                    if not streams:
                        del self._streams[key]

        return unsubscribe

    # -- media a run started -------------------------------------------------------------------

    def track_media(self, ctx: Context, app_uuid: str, leg: str, *, until_destroyed: bool = False) -> None:
        ctx.started_media[app_uuid] = leg
        self._media[(ctx.node, app_uuid)] = ctx
        self._media_legs.setdefault((ctx.node, leg), set()).add(app_uuid)
        if until_destroyed:
            self._looped.add((ctx.node, app_uuid))

    def untrack_media(self, ctx: Context, app_uuid: str) -> None:
        leg = ctx.started_media.pop(app_uuid, None)
        self._media.pop((ctx.node, app_uuid), None)
        self._looped.discard((ctx.node, app_uuid))
        if leg is not None:
            self._forget_leg_media(ctx.node, leg, app_uuid)

    def _forget_leg_media(self, node: str, leg: str, app_uuid: str) -> None:
        uuids = self._media_legs.get((node, leg))
        if uuids is not None:
            uuids.discard(app_uuid)
            if not uuids:
                del self._media_legs[(node, leg)]

    def _stop_media(self, ctx: Context) -> None:
        """``uuid_break <leg> all`` on every live leg where media this run started may still
        play or wait in the queue (a failed break is logged: the leg may be going away)."""
        legs = sorted(set(ctx.started_media.values()))
        for app_uuid in list(ctx.started_media):
            self.untrack_media(ctx, app_uuid)
        for leg in legs:
            if self.registry.get(ctx.node, leg) is None:
                continue
            try:
                ctx.api(esl.api("uuid_break", esl.uuid(leg), esl.word("all")))
            except (EslError, ChannelGone) as exc:
                log.info("run %s: media on %s not stopped: %s", ctx.run.id, leg, exc)

    # -- running -----------------------------------------------------------------------------

    def _walk(self, run: Run, ctx: Context, node: dict | None, path: str) -> None:
        while node is not None:
            run.current, run.current_module = path, node["module"]
            spec = self.modules.get(node["module"])
            if spec is None:
                raise StateError(f"module {node['module']} is no longer registered")
            step = run.enter(path, node["module"])
            self._changed(run)
            outcome = spec.handler(ctx, node.get("data") or {})
            following, following_path, taken = NEXT[outcome.kind](node, path, outcome)
            if outcome.kind == "goto" and following is not None:
                self.check_requirements(run.node, following)  # the stored flow, before it runs
            run.leave(step, outcome, taken)
            self._changed(run)
            node, path = following, following_path

    def _execute(self, run: Run, first: Callable[[Context], Outcome] | None = None) -> None:
        """Run the tree; ``first`` (a started call's originate) runs in place of the root's
        module, and the tree goes on from its child."""
        ctx = Context(self, run)
        try:
            node, path = run.tree, ""
            if first is not None:
                step = run.enter(path, node["module"])
                outcome = first(ctx)
                following, path, taken = NEXT[outcome.kind](node, path, outcome)
                run.leave(step, outcome, taken)
                self._changed(run)
                node = following
            self._walk(run, ctx, node, path)
            run.finish("finished")
        except ChannelGone:
            self._stop_media(ctx)
            run.finish("channel_gone")  # the call ended: a normal end for a metaflow
        except GreenletExit:
            self._stop_media(ctx)
            run.finish("stopped")
        except Exception as exc:
            log.warning("metaflow run %s on %s failed at %s: %s", run.id, run.channel_uuid,
                        run.current_module, exc)
            self._stop_media(ctx)
            run.finish("failed", exc)
        finally:
            for app_uuid in list(ctx.started_media):  # finished: its media plays on, unwatched
                self.untrack_media(ctx, app_uuid)
            ctx.close()
            self._end(run)

    def _changed(self, run: Run) -> None:
        if self.book is not None:
            self.book.changed(run)

    def _end(self, run: Run) -> None:
        if self._runs.pop(run.id, None) is not None:
            run.greenlet = None  # over: nothing left to stop, and the dead greenlet need not stay
            self.history.add(run)
            if self.book is not None:
                self.book.ended(run)

    def _on_event(self, node: str, channel: Any, event: Event) -> None:
        """Per-channel memory follows the channel: forgotten when it is destroyed, and a
        recording FreeSWITCH stopped on its own (time limit) is no longer 'on'. Media a run
        started is forgotten once it completed or its leg is gone."""
        uuid = event.get("Unique-ID", "")
        for stream in self._streams.get((node, uuid), ()):
            stream.put(event)
        name = event.get("Event-Name")
        if name == "CHANNEL_EXECUTE_COMPLETE" and self._media:
            app_uuid = event.get("Application-UUID", "")
            ctx = self._media.get((node, app_uuid))
            if ctx is not None and (node, app_uuid) not in self._looped:
                self.untrack_media(ctx, app_uuid)
        elif name == "CHANNEL_DESTROY":
            self._state.pop((node, uuid), None)
            for app_uuid in list(self._media_legs.get((node, uuid), ())):
                ctx = self._media.get((node, app_uuid))
                if ctx is not None:
                    self.untrack_media(ctx, app_uuid)
        elif name == "RECORD_STOP":
            state = self._state.get((node, uuid))
            if state and state.get("recording") == event.get("Record-File-Path"):
                state.pop("recording", None)
                state.pop("masked", None)


def _nodes(tree: dict, path: str = "") -> Iterator[tuple[str, dict]]:
    """Every node of a validated tree with its path, root first."""
    yield path.rstrip("."), tree
    for key, child in (tree.get("children") or {}).items():
        yield from _nodes(child, f"{path}children.{key}.")
