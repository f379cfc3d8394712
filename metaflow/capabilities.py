"""What each FreeSWITCH node can do: its applications, api commands, TTS engines and say
languages, probed once per connection of the node's link and cached.

FreeSWITCH answers a missing dependency in ways a module cannot undo: an execute of an
application no loaded module provides hangs the call up (DESTINATION_OUT_OF_ORDER, both
legs), ``speak`` with no engine and ``say`` with no language module complete as if they had
spoken. So a module states what it needs (:class:`Need`) and is refused with
:class:`Unsupported` before anything is sent.

The probe is ``show interfaces as json`` (one answer: every application, api, speech and say
interface with the module that provides it). A switch that cannot list them (its core
database disabled: ``-ERR SQL disabled``) is asked ``module_exists`` for the module each need
names instead.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from gevent.event import AsyncResult

from eslchan.esl import commands as esl
from eslchan.esl.errors import CommandRejected

log = logging.getLogger("eslchan.metaflow")

#: The module behind the applications eslchan may run that mod_dptools does not provide.
APPLICATION_MODULES = {"soundtouch": "mod_soundtouch", "socket": "mod_event_socket"}


@dataclass(frozen=True)
class Need:
    """One thing a module needs from the switch: an ``application``, an ``api`` command, a
    ``speech`` (TTS) engine or a ``say`` language, and the module that provides it."""

    kind: str
    name: str
    module: str

    def __str__(self) -> str:
        what = {"speech": "TTS engine", "say": "say language"}.get(self.kind, self.kind)
        return f"{what} {self.name} ({self.module})"


def application(name: str) -> Need:
    return Need("application", name, APPLICATION_MODULES.get(name, "mod_dptools"))


def speech(engine: str) -> Need:
    return Need("speech", engine, f"mod_{engine}")


def say(language: str) -> Need:
    return Need("say", language, f"mod_say_{language}")


class Unsupported(Exception):
    """The node lacks what a module needs; nothing was sent (HTTP 502 naming the need)."""

    def __init__(self, node: str, need: Need, module: str | None = None, path: str | None = None):
        self.node, self.need, self.module, self.path = node, need, module, path
        where = f" (at {path or 'the root'})" if path is not None else ""
        who = f"{module}{where}: " if module else ""
        super().__init__(f"{who}FreeSWITCH node {node} has no {need} loaded")

    @property
    def details(self) -> dict[str, Any]:
        return {"node": self.node, "module": self.module, "path": self.path, "missing": str(self.need),
                "kind": self.need.kind, "name": self.need.name, "freeswitch_module": self.need.module}


class NodeCapabilities:
    """One node's interfaces as one probe found them (``None``: it could not list them)."""

    def __init__(self, interfaces: Mapping[str, frozenset[str]] | None):
        self.interfaces = interfaces
        self.modules: dict[str, bool] = {}  # module_exists answers, when interfaces is None

    def known(self, need: Need) -> bool | None:
        """True/False when the listing tells; None when module_exists must be asked."""
        if self.interfaces is not None:
            return need.name in self.interfaces.get(need.kind, frozenset())
        return self.modules.get(need.module)


class Capabilities:
    """Per node, cached for the life of one connection of its link: :meth:`forget` (called
    when the link comes up again: FreeSWITCH may have restarted, modules been loaded or
    unloaded meanwhile) makes the next need probe again."""

    def __init__(self, links: Mapping[str, Any]):
        self.links = links
        self._cache: dict[str, AsyncResult] = {}

    def require(self, node: str, needs: Iterable[Need], module: str | None = None,
                path: str | None = None) -> None:
        """Raise :class:`Unsupported` for the first need the node lacks (``module`` at
        ``path`` in the tree is who needs it)."""
        wanted = list(needs)
        if not wanted:
            return
        link = self.links.get(node)
        if link is None:
            return  # no link: the command itself will say so (503)
        caps = self.of(node)
        for need in wanted:
            present = caps.known(need)
            if present is None:
                present = self._module_exists(link, need.module)
                caps.modules[need.module] = present
            if not present:
                raise Unsupported(node, need, module, path)

    def of(self, node: str) -> NodeCapabilities:
        """The node's capabilities, probing when nothing is known (concurrent callers share
        the probe; a failed probe is not kept)."""
        result = self._cache.get(node)
        if result is None:
            result = self._cache[node] = AsyncResult()
            try:
                result.set(self._probe(self.links[node]))
            except BaseException as exc:
                if self._cache.get(node) is result:
                    del self._cache[node]
                result.set_exception(exc)
                raise
        return result.get()

    def forget(self, node: str) -> None:
        """The node's link is up again: probe anew on the next need (a probe under way
        answers its own callers and is not kept)."""
        self._cache.pop(node, None)

    @staticmethod
    def _probe(link: Any) -> NodeCapabilities:
        try:
            body = link.api(esl.api("show", esl.word("interfaces"), esl.word("as"), esl.word("json")))
        except CommandRejected as exc:  # e.g. "-ERR SQL disabled, no data available!"
            log.warning("node %s cannot list its interfaces (%s): asking module_exists instead",
                        link.name, exc.text)
            return NodeCapabilities(None)
        try:
            rows = json.loads(body).get("rows", [])
        except (ValueError, AttributeError):
            log.warning("node %s: unreadable interface listing; asking module_exists instead", link.name)
            return NodeCapabilities(None)
        found: dict[str, set[str]] = {}
        for row in rows:
            kind, name = (row.get("type"), row.get("name")) if isinstance(row, dict) else (None, None)
            if isinstance(kind, str) and isinstance(name, str):
                found.setdefault(kind, set()).add(name)
        return NodeCapabilities({kind: frozenset(names) for kind, names in found.items()})

    @staticmethod
    def _module_exists(link: Any, module: str) -> bool:
        try:
            name = esl.word(module, "module")
        except esl.CommandError:
            return False  # no module has such a name
        return link.api(esl.api("module_exists", name)).strip() == "true"
