"""The send-time guard: every command a metaflow run sends passes the account's policy.

Validation already refused trees outside the policy; this is the second line, in one place
that no module can go around (built-in, entry point or declared by a schema alone): a run's
:class:`~metaflow.base.Context` hands every command to :meth:`Guard.check` before it reaches
the link. The guard reads the command's structure (:class:`~eslchan.esl.commands.Command`
keeps its api arguments or its executed application; composite arguments keep their parts),
never its bytes, and judges each argument by its *position*: the first argument of
``uuid_kill`` is a channel whatever validator minted it.

- a channel argument must be the run's channel, a channel of the account or of one of its
  sub-accounts, a leg the run originated itself, or the unowned peer of the run's channel;
- a variable name passes the account's variable rule, unless eslchan minted it as one of its
  own (``system_var``; ``tenancy_var`` only with the run's own account as the value);
- a transfer's dialplan and context pass the routing rule (eslchan's own ``park`` through the
  inline dialplan is the one inline use allowed without ``allow_inline``);
- an endpoint passes the endpoint rule, a recording path the recordings rule, media the
  rule that keeps other accounts' recordings out;
- anything without a rule here — api commands that are not about a channel (``show``,
  ``status``, ``global_getvar``…), applications such as ``deflect``, ``redirect``, ``socket``
  — is refused; a digit binding may only run an application that needs no check.

A refused command raises :class:`~eslchan.policy.model.PolicyError`; nothing is written.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

from eslchan.esl.commands import AppRef, Arg, Assignment, Command, DialString
from eslchan.esl.inline import parse_inline
from eslchan.policy.model import AccountPolicy, PolicyError, PolicyViolation

_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_PEER_FLAGS = frozenset({"-bleg", "-both"})
#: what eslchan itself sends through the inline dialplan (park both legs of a call)
_INLINE_ALWAYS = frozenset({"park"})

Violations = list[PolicyViolation]


class Guard:
    """The policy of one run, applied to each command it sends."""

    def __init__(self, policy: AccountPolicy, registry: Any, node: str, channel_uuid: str):
        self.policy = policy
        self.registry = registry
        self.node = node
        self.channel_uuid = channel_uuid.lower()
        self.originated: set[str] = set()  # legs this run created (origination_uuid)
        self._api: dict[str, Callable[[Sequence[Arg]], Violations]] = {
            "uuid_setvar": self._setvar,
            "uuid_setvar_multi": self._setvar_multi,
            "uuid_transfer": self._transfer,
            "uuid_dual_transfer": self._dual_transfer,
            "uuid_bridge": self._bridge,
            "uuid_broadcast": self._broadcast,
            "uuid_record": self._record,
            "uuid_displace": self._displace,
            "uuid_hold": self._hold,
            "originate": self._originate,
        }
        for name in ("uuid_kill", "uuid_break", "uuid_park", "uuid_answer", "uuid_pre_answer",
                     "uuid_ring_ready", "uuid_audio", "uuid_send_dtmf", "uuid_recv_dtmf",
                     "uuid_flush_dtmf", "uuid_exists", "uuid_dump", "uuid_getvar", "uuid_simplify"):
            self._api[name] = self._channel_first
        self._apps: dict[str, Callable[[str, Arg | None], Violations]] = {
            "playback": self._app_media,
            "endless_playback": self._app_media,
            "displace_session": self._app_media,
            "set": self._app_set,
            "export": self._app_set,
            "unset": self._app_unset,
            "multiset": self._app_multiset,
            "record_session": self._app_record,
            "stop_record_session": self._app_record,
            "record": self._app_record,
            "bridge": self._app_dial,
            "att_xfer": self._app_dial,
            "transfer": self._app_transfer,
            "sched_transfer": self._app_sched_transfer,
            "intercept": self._app_intercept,
            "eavesdrop": self._app_eavesdrop,
            "bind_digit_action": self._app_digit_binding,
        }
        for name in ("answer", "pre_answer", "ring_ready", "park", "hangup", "sleep", "send_dtmf",
                     "start_dtmf", "stop_dtmf", "flush_dtmf", "hold", "unhold", "break", "echo",
                     "gentones", "set_audio_level", "soundtouch", "speak", "say", "sched_hangup",
                     "sched_cancel", "stop_tone_detect", "stop_displace_session", "clear_digit_action",
                     "digit_action_set_realm"):
            self._apps[name] = _nothing_to_check

    # -- entry point -----------------------------------------------------------------------

    def check(self, cmd: Command) -> None:
        """Raise PolicyError unless ``cmd`` is within the run's policy."""
        found = self.violations(cmd)
        if found:
            raise PolicyError(found)

    def require_reach(self, uuid: str, where: str = "uuid") -> None:
        """Raise PolicyError unless the run may act on channel ``uuid`` (before sending
        anything about it: an action on two legs must not do half its work)."""
        found = self._reach(uuid, where)
        if found:
            raise PolicyError(found)

    def violations(self, cmd: Command) -> Violations:
        if cmd.kind in ("api", "bgapi"):
            rule = self._api.get(cmd.name)
            if rule is None:
                return [_refused("commands", cmd.name, f"'{cmd.name}' is not a command a metaflow may send")]
            return rule(cmd.args)
        if cmd.kind == "sendmsg" and cmd.uuid is not None:
            found = self._reach(cmd.uuid, cmd.uuid.field)
            if cmd.app is None:  # sendmsg hangup
                return found
            return found + self._execute(cmd.app, cmd.app_arg, cmd.uuid)
        return [_refused("commands", cmd.name, f"'{cmd.name}' is not a command a metaflow may send")]

    # -- channels --------------------------------------------------------------------------

    def _channel(self, uuid: str) -> Any:
        return self.registry.get(self.node, uuid)

    def _reach(self, value: str, where: str) -> Violations:
        """A channel the run may act on (see the module docstring)."""
        uuid = value.lower()
        if not _UUID.fullmatch(uuid):
            return [_refused("channels", where, f"'{value}' is not a channel uuid")]
        if uuid == self.channel_uuid or uuid in self.originated:
            return []
        ch = self._channel(uuid)
        if ch is not None:
            if ch.account_id is not None:
                if ch.account_id in self.policy.accounts:
                    return []
            else:
                own = self._channel(self.channel_uuid)
                if own is not None and (own.other_leg == uuid or ch.other_leg == self.channel_uuid):
                    return []  # the unowned far end of the run's own call
        return [_refused("channels", where, "the channel is not one of this account's calls")]

    def _current_context(self, uuid: str) -> str:
        ch = self._channel(str(uuid).lower())
        return getattr(ch, "context", None) or "default"

    def _peer(self, uuid: str, where: str) -> Violations:
        """``-bleg``/``-both``/``bleg``: the channel's bridged peer is acted on too."""
        ch = self._channel(uuid.lower())
        if ch is None or not ch.other_leg:
            return [_refused("channels", where, "the channel has no bridged peer this run may act on")]
        return self._reach(ch.other_leg, where)

    def _channel_first(self, args: Sequence[Arg]) -> Violations:
        if not args:
            return [_refused("commands", "command", "a channel command without its channel")]
        return self._reach(args[0], args[0].field)

    # -- variables -------------------------------------------------------------------------

    def _variable(self, name: str, value: str | None, arg: Arg | None, where: str) -> Violations:
        """A variable a command sets, by the minting validator's kind and the policy."""
        kind = arg.kind if arg is not None else "var_name"
        if kind == "system_var":
            if name == "hold_music" and value:
                found = self.policy.media(value, where)
                return [found] if found else []
            if name == "origination_uuid" and value is not None:
                if not _UUID.fullmatch(value.lower()):
                    return [_refused("channels", where, "origination_uuid must be a uuid")]
            return []
        if kind == "tenancy_var" and self.policy.is_tenancy_variable(name):
            if name.lower() == self.policy.account_variable.lower() and value != self.policy.account_id:
                return [_refused("tenancy", where, "a leg can only belong to the run's own account")]
            return []
        found = self.policy.variable(name, where)
        return [found] if found else []

    def _setvar(self, args: Sequence[Arg]) -> Violations:
        found = self._channel_first(args)
        if len(args) < 2:
            return found + [_refused("commands", "uuid_setvar", "uuid_setvar without a variable")]
        value = str(args[2]) if len(args) > 2 else None
        return found + self._variable(args[1], value, args[1], args[1].field)

    def _setvar_multi(self, args: Sequence[Arg]) -> Violations:
        found = self._channel_first(args)
        for arg in args[1:]:
            for part in str(arg).split(";"):
                name, _, value = part.partition("=")
                found += self._variable(name.strip(), value, None, arg.field)
        return found

    # -- routing ---------------------------------------------------------------------------

    def _route(self, dest: str, dialplan: str, context: str, where: str, uuid: str) -> Violations:
        if dialplan.lower() == "inline":
            return self._inline(dest, where, uuid)
        return self.policy.route(dialplan, context, where, where)

    def _inline(self, dest: str, where: str, uuid: str) -> Violations:
        """An inline dialplan runs its applications: each is checked like an execute; without
        ``allow_inline`` only eslchan's own park passes."""
        apps = parse_inline(dest)
        if not self.policy.allow_inline and not all(app in _INLINE_ALWAYS and not arg for app, arg in apps):
            found = self.policy.dialplan("inline", where)
            return [found] if found else []
        out: Violations = []
        for app, arg in apps:
            out += self._execute(app, _Text(arg, where), _Text(uuid, where))
        return out

    def _transfer(self, args: Sequence[Arg]) -> Violations:
        found = self._channel_first(args)
        rest = list(args[1:])
        if rest and rest[0] in _PEER_FLAGS:
            found += self._peer(args[0], rest.pop(0).field)
        if not rest:
            return found + [_refused("commands", "uuid_transfer", "uuid_transfer without a destination")]
        dest = rest[0]
        # not told, FreeSWITCH keeps the channel's dialplan (XML here) and its current context
        dialplan = rest[1] if len(rest) > 1 else "XML"
        context = rest[2] if len(rest) > 2 else self._current_context(args[0])
        return found + self._route(dest, dialplan, context, dest.field, args[0])

    def _dual_transfer(self, args: Sequence[Arg]) -> Violations:
        found = self._channel_first(args)
        if len(args) < 3:
            return found + [_refused("commands", "uuid_dual_transfer", "two destinations needed")]
        found += self._peer(args[0], args[0].field)
        for spec in args[1:3]:
            dest, dialplan, context = (str(spec).split("/") + ["XML", "default"])[:3]
            found += self._route(dest, dialplan, context, spec.field, args[0])
        return found

    def _bridge(self, args: Sequence[Arg]) -> Violations:
        if len(args) < 2:
            return [_refused("commands", "uuid_bridge", "uuid_bridge needs two channels")]
        return self._reach(args[0], args[0].field) + self._reach(args[1], args[1].field)

    def _hold(self, args: Sequence[Arg]) -> Violations:
        rest = list(args)
        if rest and rest[0] in ("off", "toggle"):
            rest.pop(0)
        return self._channel_first(rest)

    # -- files -----------------------------------------------------------------------------

    def _broadcast(self, args: Sequence[Arg]) -> Violations:
        found = self._channel_first(args)
        if len(args) > 1:
            found += self._media(args[1], args[1].field)
        if len(args) > 2 and args[2] in ("bleg", "both"):
            found += self._peer(args[0], args[2].field)
        return found

    def _media(self, ref: str, where: str) -> Violations:
        if "::" in ref:  # path::app(arg) runs an application
            return [_refused("commands", where, "media that runs an application")]
        found = self.policy.media(ref, where)
        return [found] if found else []

    def _record(self, args: Sequence[Arg]) -> Violations:
        found = self._channel_first(args)
        if len(args) > 2 and not (args[1] == "stop" and args[2] == "all"):
            bad = self.policy.recording(args[2], args[2].field)
            found += [bad] if bad else []
        return found

    def _displace(self, args: Sequence[Arg]) -> Violations:
        found = self._channel_first(args)
        if len(args) > 2:
            found += self._media(args[2], args[2].field)
        return found

    # -- originate -------------------------------------------------------------------------

    def _dial(self, dial: Arg) -> Violations:
        """A dial string: its endpoint and its variables."""
        if isinstance(dial, DialString):
            endpoint, variables = dial.endpoint, dial.variables
        elif any(c in dial for c in "{[<,|"):
            return [_refused("endpoints", dial.field, "a dial string must be built by eslchan")]
        else:
            endpoint, variables = dial, ()
        found = []
        bad = self.policy.endpoint(endpoint, dial.field)
        if bad:
            found.append(bad)
        for name, value in variables:
            found += self._variable(name, value, name, name.field)
        return found

    def _originate(self, args: Sequence[Arg]) -> Violations:
        if len(args) < 2:
            return [_refused("commands", "originate", "originate needs a dial string and what to run")]
        dial, then = args[0], args[1]
        found = self._dial(dial)
        legs = [str(v).lower() for n, v in getattr(dial, "variables", ()) if n == "origination_uuid"]
        if isinstance(then, AppRef):  # what the new leg runs, judged as an execute on it
            leg = legs[0] if legs else ""
            found += self._execute(then.app, then.app_arg, _Text(leg, then.field))
        elif then.startswith("&"):
            found.append(_refused("commands", then.field, "an originate's application must be eslchan's"))
        else:
            dialplan = args[2] if len(args) > 2 else "XML"
            context = args[3] if len(args) > 3 else "default"
            found += self._route(then, dialplan, context, then.field, self.channel_uuid)
        if not found:
            self.originated.update(legs)  # the run may act on the legs it creates
        return found

    # -- applications ----------------------------------------------------------------------

    def _execute(self, app: str, arg: Arg | None, uuid: Arg) -> Violations:
        rule = self._apps.get(app)
        if rule is None:
            return [_refused("commands", app, f"the application '{app}' is not one a metaflow may run")]
        return rule(uuid, arg)

    def _app_media(self, uuid: str, arg: Arg | None) -> Violations:
        return self._media(str(arg).split(" ", 1)[0], arg.field) if arg else []

    def _app_set(self, uuid: str, arg: Arg | None) -> Violations:
        if not arg:
            return []
        if isinstance(arg, Assignment):
            return self._variable(arg.name, str(arg.value), arg.name, arg.name.field)
        name, _, value = str(arg).partition("=")
        return self._variable(name, value, None, arg.field)

    def _app_unset(self, uuid: str, arg: Arg | None) -> Violations:
        return self._variable(str(arg or "").strip(), None, None, arg.field if arg else "name")

    def _app_multiset(self, uuid: str, arg: Arg | None) -> Violations:
        text = str(arg or "")
        sep = " "
        if text.startswith("^^") and len(text) > 2:
            sep, text = text[2], text[3:]
        found: Violations = []
        for part in text.split(sep):
            if part:
                name, _, value = part.partition("=")
                found += self._variable(name, value, None, arg.field if arg else "name")
        return found

    def _app_record(self, uuid: str, arg: Arg | None) -> Violations:
        path = str(arg or "").split(" ", 1)[0]
        if not path or path == "all":
            return []
        bad = self.policy.recording(path, arg.field if arg else "path")
        return [bad] if bad else []

    def _app_dial(self, uuid: str, arg: Arg | None) -> Violations:
        if not arg:
            return [_refused("endpoints", "bridge", "nothing to dial")]
        return self._dial(arg)

    def _app_transfer(self, uuid: str, arg: Arg | None) -> Violations:
        words = str(arg or "").split()
        found: Violations = []
        where = arg.field if arg else "transfer"
        if words and words[0] in _PEER_FLAGS:
            found += self._peer(uuid, where)
            words = words[1:]
        if not words:
            return found + [_refused("commands", where, "transfer without a destination")]
        context = words[2] if len(words) > 2 else self._current_context(uuid)
        return found + self._route(words[0], words[1] if len(words) > 1 else "XML", context, where, uuid)

    def _app_sched_transfer(self, uuid: str, arg: Arg | None) -> Violations:
        words = str(arg or "").split()
        if len(words) < 2:
            return [_refused("commands", "sched_transfer", "sched_transfer without a destination")]
        where = arg.field if arg else "sched_transfer"
        return self._app_transfer(uuid, _Text(" ".join(words[1:]), where))

    def _app_intercept(self, uuid: str, arg: Arg | None) -> Violations:
        words = str(arg or "").split()
        where = arg.field if arg else "intercept"
        if not words:
            return [_refused("channels", where, "intercept of nothing")]
        found = self._reach(words[-1], where)
        if words[0] == "-bleg":
            found += self._peer(words[-1], where)
        return found

    def _app_digit_binding(self, uuid: str, arg: Arg | None) -> Violations:
        """``realm,digits,exec[H]:app``: the digits may only run an application that takes no
        argument and needs no check (eslchan binds ``unhold`` to a hold's key)."""
        where = arg.field if arg else "bind_digit_action"
        _realm, _, rest = str(arg or "").partition(",")
        _digits, _, action = rest.partition(",")
        method, _, app = action.partition(":")
        if method not in ("exec", "exec[H]") or " " in app or self._apps.get(app) is not _nothing_to_check:
            return [_refused("commands", where, f"a digit binding may not run '{action}'")]
        return []

    def _app_eavesdrop(self, uuid: str, arg: Arg | None) -> Violations:
        return self._reach(str(arg or "").strip(), arg.field if arg else "eavesdrop")


def _nothing_to_check(uuid: str, arg: Arg | None) -> Violations:
    return []


def _refused(rule: str, where: str, message: str) -> PolicyViolation:
    return PolicyViolation(rule, where, message)


class _Text(str):
    """A piece of a checked argument (an inline app's argument), with the field it came from."""

    field: str
    kind = "text"

    def __new__(cls, value: str, field: str) -> _Text:
        self = super().__new__(cls, value)
        self.field = field
        return self
