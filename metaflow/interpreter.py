"""The tree-walking interpreter: one greenlet per run, modules dispatched by name."""

from __future__ import annotations

import logging
import time
import uuid as _uuid
from collections.abc import Callable, Mapping
from typing import Any

import gevent
from gevent import GreenletExit
from gevent.event import AsyncResult

from eslchan.config import PolicyConfig, VariableMapping
from eslchan.esl.message import Event
from eslchan.policy import AccountPolicy, LimitExceeded, PolicyBook
from eslchan.registry.waiting import ChannelGone
from metaflow.base import Context, EventStream, Outcome, StateError
from metaflow.registry import ModuleRegistry
from metaflow.validation import MISSING, TreeValidator, ValidationFailed

log = logging.getLogger("eslchan.metaflow")

Step = tuple[dict | None, str]


def _child(node: dict, path: str, key: str | None) -> Step:
    """Child ``key``, else child ``_``, else the end of the flow."""
    children = node.get("children") or {}
    key = key if key in children else "_"
    return (children[key], f"{path}children.{key}.") if key in children else (None, path)


#: outcome kind → the next node (and its path); the whole of the interpreter's branching.
NEXT: dict[str, Callable[[dict, str, Outcome], Step]] = {
    "continue": lambda node, path, o: _child(node, path, "_"),
    "branch": lambda node, path, o: _child(node, path, o.key),
    "stop": lambda node, path, o: (None, path),
    "goto": lambda node, path, o: (o.node, f"{o.label}:"),
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
        self.result: str | None = None
        self.notes: dict[str, Any] = {}
        self.first = AsyncResult()  # first command accepted (or the run waits, or ends)
        self.greenlet: gevent.Greenlet | None = None

    def accepted(self, reply: str | None) -> None:
        if not self.first.ready():
            self.result = reply
            self.first.set(reply)

    def finish(self, state: str, exc: BaseException | None = None) -> None:
        self.state, self.ended = state, time.time()
        if exc is not None:
            self.error = str(exc)
        if not self.first.ready():
            if state == "channel_gone":
                exc = StateError("the channel hung up before the action ran")
            self.first.set_exception(exc) if exc is not None else self.first.set(None)

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, "module": self.tree["module"], "tree": self.tree,
                "channel": self.channel_uuid, "node": self.node,
                "current": {"path": self.current.rstrip(".") or "", "module": self.current_module},
                "state": self.state, "waiting": self.waiting, "notes": self.notes,
                "started": self.started, "ended": self.ended, "error": self.error}


class Interpreter:
    """Runs metaflows. Every run is bounded by its account's policy (``policies``; without one,
    the default policy of every account under ``config``): its tree is judged before it
    starts, its commands by the guard, its number by the run limits."""

    def __init__(self, registry: Any, links: Mapping[str, Any], config: Any, *,
                 modules: ModuleRegistry | None = None, policies: PolicyBook | None = None):
        self.registry = registry
        self.links = links
        self.modules = modules if modules is not None else ModuleRegistry()
        self._default_policies = policies is None
        self.policies = policies
        self.config = config
        self._runs: dict[str, Run] = {}
        self._state: dict[tuple[str, str], dict[str, Any]] = {}
        self._streams: dict[tuple[str, str], set[EventStream]] = {}
        registry.listen(self._on_event)

    @property
    def config(self) -> Any:
        return self._config

    @config.setter
    def config(self, config: Any) -> None:
        """A new MetaflowConfig (e.g. on reload) applies to the next validation and node."""
        self._config = config
        self.validator = TreeValidator(self.modules, config)
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

    def start(self, channel: Any, tree: dict, account_id: str | None = None, *,
              kind: str = "metaflow") -> Run:
        """Start a run in its own greenlet and return at once. The run limits come first (so a
        flood of refused trees costs no validation), then the tree is validated against the
        schemas and the account's policy (again, if it was before: it is idempotent), so an
        unvalidated tree can never run."""
        policy = self.policy_for(channel, account_id)
        self._check_limits(channel, account_id, policy)
        run = Run(channel, self.validate(tree, policy), account_id, policy, kind)
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

    def runs(self, channel_uuid: str) -> list[Run]:
        return [r for r in self._runs.values() if r.channel_uuid == channel_uuid]

    def get(self, run_id: str) -> Run | None:
        return self._runs.get(run_id)

    def stop(self, run_id: str) -> bool:
        run = self._runs.get(run_id)
        if run is None or run.greenlet is None:
            return False
        run.greenlet.kill(block=True, timeout=5)
        if run.state == "running":  # killed before it ever ran
            run.finish("stopped")
            self._runs.pop(run.id, None)
        return True

    def drain(self, timeout: float = 10.0) -> None:
        """Let runs end on their own for up to ``timeout`` seconds, then stop the rest."""
        greenlets = [r.greenlet for r in self._runs.values() if r.greenlet is not None]
        gevent.joinall(greenlets, timeout=timeout)
        gevent.killall([g for g in greenlets if not g.dead], block=True, timeout=5)

    def channel_state(self, node: str, uuid: str) -> dict[str, Any]:
        """Memory shared by the runs on a live channel; ChannelGone once it is gone (the
        destroy that frees it has already passed, so an entry made now would stay forever)."""
        if self.registry.get(node, uuid) is None:
            raise ChannelGone(node, uuid, "destroyed")
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

    # -- running -----------------------------------------------------------------------------

    def _walk(self, run: Run, ctx: Context) -> None:
        node, path = run.tree, ""
        while node is not None:
            run.current, run.current_module = path, node["module"]
            spec = self.modules.get(node["module"])
            if spec is None:
                raise StateError(f"module {node['module']} is no longer registered")
            outcome = spec.handler(ctx, node.get("data") or {})
            node, path = NEXT[outcome.kind](node, path, outcome)

    def _execute(self, run: Run) -> None:
        ctx = Context(self, run)
        try:
            self._walk(run, ctx)
            run.finish("finished")
        except ChannelGone:
            run.finish("channel_gone")  # the call ended: a normal end for a metaflow
        except GreenletExit:
            run.finish("stopped")
        except Exception as exc:
            log.warning("metaflow run %s on %s failed at %s: %s", run.id, run.channel_uuid,
                        run.current_module, exc)
            run.finish("failed", exc)
        finally:
            ctx.close()
            self._runs.pop(run.id, None)

    def _on_event(self, node: str, channel: Any, event: Event) -> None:
        """Per-channel memory follows the channel: forgotten when it is destroyed, and a
        recording FreeSWITCH stopped on its own (time limit) is no longer 'on'."""
        for stream in self._streams.get((node, event.get("Unique-ID", "")), ()):
            stream.put(event)
        name = event.get("Event-Name")
        if name == "CHANNEL_DESTROY":
            self._state.pop((node, event.get("Unique-ID", "")), None)
        elif name == "RECORD_STOP":
            state = self._state.get((node, event.get("Unique-ID", "")))
            if state and state.get("recording") == event.get("Record-File-Path"):
                state.pop("recording", None)
                state.pop("masked", None)
