"""The tenancy and safety policy of one account (SPEC §9), and the pure checks it answers.

An :class:`AccountPolicy` is resolved once per account from the configuration: the ``[policy]``
defaults, the account's ``[accounts.policy]`` overrides and the account's identity (its own
context, realm, endpoints, its sub-accounts, the channel-variable mapping). Each check returns
a :class:`PolicyViolation` naming the rule, or None; nothing here does I/O. The metaflow
validator asks these checks before anything runs, and :class:`~eslchan.policy.guard.Guard` asks
them again for every command a run sends.
"""

from __future__ import annotations

import fnmatch
import posixpath
import re
import string
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from fnmatch import fnmatchcase
from typing import Any

from eslchan.config import Account, Config, MetaflowConfig, PolicyConfig, VariableMapping
from eslchan.config.policy import forbidden_variables

#: What one placeholder of a dial template may become: one token, no '@' (a realm is matched
#: apart), no '/' (which would start another part of the endpoint), nothing a dial string
#: gives a meaning to.
_TOKEN = r"[^@/{}\[\],:'\"\s]+"


@dataclass(frozen=True)
class PolicyViolation:
    """Why a request or a command is outside the policy: the rule (a policy key, or
    ``tenancy``/``channels``/``commands``), the request field and a message for the caller."""

    rule: str
    field: str
    message: str


class PolicyError(Exception):
    """A request or command outside the account's policy: HTTP 403, nothing sent."""

    def __init__(self, violations: Iterable[PolicyViolation]):
        self.violations = tuple(violations)
        first = self.violations[0] if self.violations else PolicyViolation("policy", "data", "refused")
        super().__init__(f"{first.field}: {first.message} (rule {first.rule})")

    @property
    def errors(self) -> dict[str, dict[str, dict[str, str]]]:
        """``{field: {"policy": {"message", "rule"}}}``, the API's error data."""
        return {v.field: {"policy": {"message": v.message, "rule": v.rule}} for v in self.violations}


class LimitExceeded(Exception):
    """A per-channel or per-account limit is reached: HTTP 429 with Retry-After."""

    def __init__(self, rule: str, limit: int, message: str, retry_after: int = 5):
        self.rule, self.limit, self.retry_after = rule, limit, retry_after
        super().__init__(message)


def _template_pattern(template: str) -> re.Pattern[str] | None:
    """A configured dial template as a regex: its literal text as is, each placeholder one
    token, optionally ``@realm`` (captured, for the realm rule); ``{domain}`` is a realm,
    ``{context}`` a dialplan context (captured, for the context rule)."""
    out = []
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError:
        return None
    for n, (literal, name, _spec, _conv) in enumerate(parsed):
        out.append(re.escape(literal))
        if name is None:
            continue
        if name == "domain":
            out.append(f"(?P<realm{n}>{_TOKEN})")
        elif name == "context":
            out.append(f"(?P<context{n}>[A-Za-z0-9_.-]{{1,64}})")
        else:
            out.append(f"{_TOKEN}(?:@(?P<realm{n}>{_TOKEN}))?")
    return re.compile("".join(out))


@dataclass(frozen=True)
class AccountPolicy:
    """What runs of one account may do. Built by :class:`PolicyBook`; ``own_realm`` is bound
    per run (the domain of the run's channel counts as the account's)."""

    account_id: str | None
    accounts: frozenset[str]  # the account and its descendants: whose channels a run may touch
    context: str
    realm: str | None = None
    endpoints: tuple[str, ...] = ()
    variable_prefix: str = "eslchan_"
    variables: tuple[str, ...] = ()
    tenancy: tuple[str, ...] = ()  # account, owner, authorizing id/type variable names
    account_variable: str = "eslchan_account_id"
    forbidden: tuple[str, ...] = ()  # globs no tenant may set (tenancy and identity first)
    contexts: tuple[str, ...] = ()
    dialplans: tuple[str, ...] = ("XML",)
    allow_inline: bool = False
    realms: tuple[str, ...] = ()
    callflows: tuple[str, ...] = ("*",)
    recordings_dir: str = "/var/lib/freeswitch/recordings"
    dial_patterns: tuple[re.Pattern[str], ...] = ()
    max_runs_per_channel: int = 4
    max_runs: int = 100
    max_streams: int = 10
    max_originates: int = 10
    own_realm: str | None = None
    _tenancy_lower: frozenset[str] = field(default=frozenset(), repr=False, compare=False)
    _forbidden_re: re.Pattern[str] | None = field(default=None, repr=False, compare=False)
    _variables_re: re.Pattern[str] | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        # every name is compared in lower case (FreeSWITCH ignores case in variable names),
        # each list of globs against one compiled pattern
        object.__setattr__(self, "_tenancy_lower", frozenset(n.lower() for n in self.tenancy))
        object.__setattr__(self, "_forbidden_re", _globs(self.forbidden))
        object.__setattr__(self, "_variables_re", _globs(self.variables))

    def bind(self, own_realm: str | None) -> AccountPolicy:
        """This policy for a run on a channel of domain ``own_realm``."""
        realm = own_realm.lower() if own_realm else None
        return self if realm == self.own_realm else replace(self, own_realm=realm)

    # -- variables -------------------------------------------------------------------------

    def is_tenancy_variable(self, name: str) -> bool:
        return name.lower() in self._tenancy_lower

    def variable(self, name: str, where: str) -> PolicyViolation | None:
        """May a tenant set channel variable ``name``? (FreeSWITCH ignores case in names.)"""
        low = name.lower()
        if low in self._tenancy_lower:
            return PolicyViolation("tenancy", where, f"'{name}' says whose the call is: no tenant may set it")
        if self._forbidden_re is not None and self._forbidden_re.fullmatch(low):
            hit = next(g for g in self.forbidden if fnmatchcase(low, g.lower()))
            return PolicyViolation("variables", where, f"'{name}' is a variable FreeSWITCH runs, routes "
                                   f"or identifies the call by ({hit}): no tenant may set it")
        if low.startswith(self.variable_prefix.lower()):
            return None
        if self._variables_re is not None and self._variables_re.fullmatch(low):
            return None
        return PolicyViolation("variables", where, f"'{name}' may not be set: this account may set "
                               f"variables starting with '{self.variable_prefix}'"
                               + (f" and {', '.join(self.variables)}" if self.variables else ""))

    # -- routing ---------------------------------------------------------------------------

    def dialplan(self, dialplan: str, where: str) -> PolicyViolation | None:
        if dialplan.lower() == "inline":
            if self.allow_inline:
                return None
            return PolicyViolation("allow_inline", where, "this account may not use the inline dialplan")
        if dialplan in self.dialplans:
            return None
        return PolicyViolation("dialplans", where, f"dialplan '{dialplan}' is not allowed for this account "
                               f"(allowed: {', '.join(self.dialplans) or 'none'})")

    def context_rule(self, context: str, where: str) -> PolicyViolation | None:
        if context in self.contexts:
            return None
        return PolicyViolation("contexts", where, f"context '{context}' is not allowed for this account "
                               f"(allowed: {', '.join(self.contexts) or 'none'})")

    def route(self, dialplan: str, context: str, dialplan_field: str, context_field: str
              ) -> list[PolicyViolation]:
        """Where a transfer may send a call: an allowed dialplan, and for dialplans that read a
        context (all but inline), an allowed context."""
        bad = [v for v in (self.dialplan(dialplan, dialplan_field),) if v is not None]
        if dialplan.lower() != "inline":
            found = self.context_rule(context, context_field)
            if found is not None:
                bad.append(found)
        return bad

    def realm_rule(self, target: str, where: str) -> PolicyViolation | None:
        """A target naming a domain (``1001@acme.example``) must name an allowed realm."""
        if "@" not in target:
            return None
        user, _, realm = target.partition("@")
        if not user or "@" in realm:
            return PolicyViolation("realms", where, f"'{target}' is not user@realm")
        return self.realm_allowed(realm, where)

    def realm_allowed(self, realm: str, where: str) -> PolicyViolation | None:
        low = realm.lower()
        if low in self.realms or (self.own_realm is not None and low == self.own_realm):
            return None
        return PolicyViolation("realms", where, f"realm '{realm}' is not allowed for this account")

    def endpoint(self, endpoint: str, where: str) -> PolicyViolation | None:
        """A dial endpoint: one of the account's endpoint globs, or one the operator's dial
        templates make (with any realm in it allowed)."""
        if ":_:" in endpoint:
            return PolicyViolation("endpoints", where, "one endpoint at a time")
        if any(fnmatchcase(endpoint, glob) for glob in self.endpoints):
            return None
        first: PolicyViolation | None = None  # a template it fits, but with a realm or context refused
        for pattern in self.dial_patterns:
            m = pattern.fullmatch(endpoint)
            if m is None:
                continue
            found = None
            for group, value in m.groupdict().items():
                if value:
                    check = self.context_rule if group.startswith("context") else self.realm_allowed
                    found = found or check(value, where)
            if found is None:
                return None
            first = first or found
        return first or PolicyViolation("endpoints", where,
                                        f"endpoint '{endpoint}' is not one this account may dial")

    def originate_endpoint(self, endpoint: str, where: str) -> PolicyViolation | None:
        """An endpoint a call the account starts may dial: one of its ``endpoints`` globs
        only (the operator's dial templates are for intercept, move and eavesdrop); an
        account without any may not start calls."""
        if not self.endpoints:
            return PolicyViolation("endpoints", where, "this account may not start calls "
                                   "(its configuration names no endpoints)")
        if ":_:" not in endpoint and any(fnmatchcase(endpoint, glob) for glob in self.endpoints):
            return None
        return PolicyViolation("endpoints", where, f"endpoint '{endpoint}' is not one this account may dial "
                               f"(allowed: {', '.join(self.endpoints)})")

    def callflow(self, callflow_id: str, where: str) -> PolicyViolation | None:
        if any(fnmatchcase(callflow_id, p) for p in self.callflows):
            return None
        return PolicyViolation("callflows", where, f"this account may not enter callflow '{callflow_id}'")

    # -- files -----------------------------------------------------------------------------

    @property
    def recordings_root(self) -> str:
        return self.recordings_dir.rstrip("/") or "/"

    @property
    def own_recordings(self) -> str | None:
        """The account's own recordings directory (none without an account)."""
        if not self.account_id:
            return None
        return posixpath.join(self.recordings_root, self.account_id)

    def recording_path(self, name: str, where: str) -> str:
        """Where a recording named ``name`` (no directory) of this account goes."""
        own = self.own_recordings
        if own is None or "/" in name or name in (".", ".."):
            raise PolicyError([PolicyViolation("recordings", where,
                                               "recordings are kept per account: this run has none")])
        return posixpath.join(own, name)

    def recording(self, path: str, where: str) -> PolicyViolation | None:
        """A file a recording writes must be in the account's own directory."""
        own = self.own_recordings
        clean = posixpath.normpath(path)
        if own is not None and clean.startswith(own + "/") and ".." not in path.split("/"):
            return None
        return PolicyViolation("recordings", where, "recordings go to the account's own directory only")

    def media(self, ref: str, where: str) -> PolicyViolation | None:
        """Media played to a call must not be another account's recording."""
        for path in _media_paths(ref):
            clean = posixpath.normpath(path)
            root = self.recordings_root
            if clean == root or clean.startswith(root + "/"):
                found = self.recording(clean, where)
                if found is not None:
                    return PolicyViolation("recordings", where, "another account's recordings are not played")
        return None


def _globs(patterns: Iterable[str]) -> re.Pattern[str] | None:
    """One pattern matching any of the (lower-cased) globs, or None for none."""
    parts = [fnmatch.translate(p.lower()) for p in patterns]
    return re.compile("|".join(f"(?:{p})" for p in parts)) if parts else None


def _media_paths(ref: str) -> list[str]:
    """The file paths a media reference reads (a plain path, file://, file_string://a!b)."""
    if ref.startswith("file_string://"):
        return [p for p in ref[len("file_string://"):].split("!") if p.startswith("/")]
    if ref.startswith("file://"):
        return [ref[len("file://"):]]
    return [ref] if ref.startswith("/") else []


class PolicyBook:
    """Every account's resolved policy, from one configuration (rebuilt on reload)."""

    def __init__(self, defaults: PolicyConfig, accounts: Iterable[Account], mapping: VariableMapping,
                 metaflow: MetaflowConfig, preset: str = "eslchan"):
        self.defaults = defaults
        self.mapping = mapping
        self.metaflow = metaflow
        self._accounts = {a.id: a for a in accounts}
        self._children: dict[str, list[str]] = {}
        for acc in self._accounts.values():
            if acc.parent is not None:
                self._children.setdefault(acc.parent, []).append(acc.id)
        self._forbidden = forbidden_variables(mapping, preset)
        self._tenancy = (mapping.account, mapping.owner, mapping.authorizing_id, mapping.authorizing_type)
        patterns = (_template_pattern(t) for t in (metaflow.dial_templates or {}).values() if t)
        self._patterns = tuple(p for p in patterns if p is not None)
        self._cache: dict[str | None, AccountPolicy] = {}

    @classmethod
    def from_config(cls, config: Config) -> PolicyBook:
        return cls(config.policy, config.accounts, config.channels.mapping, config.metaflow,
                   config.channels.preset)

    def descendants(self, account_id: str) -> frozenset[str]:
        """The account and every account below it (a parent cycle ends the walk)."""
        seen: set[str] = set()
        pending = [account_id]
        while pending:
            current = pending.pop()
            if current in seen:
                continue
            seen.add(current)
            pending.extend(self._children.get(current, ()))
        return frozenset(seen)

    def for_account(self, account_id: str | None) -> AccountPolicy:
        found = self._cache.get(account_id)
        if found is None:
            found = self._cache[account_id] = self._resolve(account_id)
        return found

    def _resolve(self, account_id: str | None) -> AccountPolicy:
        account = self._accounts.get(account_id) if account_id else None
        patterns = self._patterns
        if account is not None and account.quickcall is not None:
            # the operator's quickcall endpoints are dialled like its dial templates
            quick = account.quickcall
            made = (_template_pattern(t) for t in quick.templates())
            patterns += tuple(p for p in made if p is not None)
            patterns += tuple(re.compile(re.escape(e)) for e in quick.literals())
        overrides: Mapping[str, Any] = dict(account.policy) if account is not None else {}
        p = replace(self.defaults, **overrides)
        context = (account.context if account is not None else None) or self.metaflow.default_context
        realm = account.realm if account is not None else None
        realms = tuple(r.lower() for r in p.realms) or ((realm,) if realm else ())
        return AccountPolicy(
            account_id=account_id,
            accounts=self.descendants(account_id) if account_id else frozenset(),
            context=context,
            realm=realm,
            endpoints=account.endpoints if account is not None else (),
            variable_prefix=p.variable_prefix,
            variables=p.variables,
            tenancy=self._tenancy,
            account_variable=self.mapping.account,
            forbidden=self._forbidden,
            contexts=p.contexts or (context,),
            dialplans=p.dialplans,
            allow_inline=p.allow_inline,
            realms=realms,
            callflows=p.callflows,
            recordings_dir=self.metaflow.recordings_dir,
            dial_patterns=patterns,
            max_runs_per_channel=p.max_runs_per_channel,
            max_runs=p.max_runs,
            max_streams=p.max_streams,
            max_originates=p.max_originates,
        )

    def variable_prefixes(self) -> tuple[str, ...]:
        """Every prefix some account may set variables under (shown in custom_channel_vars)."""
        prefixes = {self.defaults.variable_prefix}
        for acc in self._accounts.values():
            prefixes.update(v for k, v in acc.policy if k == "variable_prefix")
        return tuple(sorted(prefixes))
