"""The module registry: name → (schema, handler).

Three sources, none needing a change to the interpreter:

* built-ins: ``schemas/metaflows.<name>.json`` + ``metaflow/modules/<name>.py`` (``run``);
* declared modules: a schema alone, whose ``x-eslchan-command`` template is one ESL command
  with placeholders typed by the schema and filled through the command builder;
* third-party packages: entry points in the group ``eslchan.metaflow_modules``. An entry
  point loads either a Python module/object with ``run(ctx, data)`` and ``SCHEMA`` (a dict),
  or a dict that is a declared module's schema.
"""

from __future__ import annotations

import importlib
import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

import schemas
from eslchan.esl import commands as esl
from eslchan.policy import AccountPolicy, PolicyViolation
from metaflow.base import CONTINUE, Context, Handler, Outcome, StateError
from metaflow.capabilities import Need, application

log = logging.getLogger("eslchan.metaflow")

ENTRY_POINT_GROUP = "eslchan.metaflow_modules"
NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_PLACEHOLDER = re.compile(r"^\{([A-Za-z_][A-Za-z0-9_]*)\}$")
_LITERAL = re.compile(r"^-?[A-Za-z0-9_]{1,32}$")


PolicyHook = Callable[[dict, AccountPolicy], "list[PolicyViolation] | None"]


class ModuleError(ValueError):
    """A module that cannot be registered (bad name, schema or template)."""


@dataclass
class ModuleSpec:
    name: str
    schema: dict[str, Any]
    handler: Handler
    source: str
    #: optional ``check(data, config) -> {field: {keyword: {...}}}``: what a schema cannot say
    #: (e.g. that a stored callflow exists), run at validation time
    check: Callable[[dict, Any], dict | None] | None = None
    #: optional ``requires(data) -> [Need]``: what the node's FreeSWITCH must have (an
    #: application, a TTS engine, a say language), checked before the run starts
    requires: Callable[[dict], list[Need]] | None = None
    #: optional ``policy(data, account_policy) -> [PolicyViolation]`` (fields relative to the
    #: node's data): what the account's policy says of this node, at validation time. Fields
    #: the schema marks with ``x-esl`` are checked for every module without it.
    policy: PolicyHook | None = None


class ModuleRegistry:
    def __init__(self, *, builtins: bool = True, load_entry_points: bool = True):
        self._modules: dict[str, ModuleSpec] = {}
        if builtins:
            self._load_builtins()
        if load_entry_points:
            self.load_entry_points()

    def __contains__(self, name: object) -> bool:
        return name in self._modules

    def get(self, name: str) -> ModuleSpec | None:
        return self._modules.get(name)

    def names(self) -> list[str]:
        return sorted(self._modules)

    def register(self, name: str, schema: dict[str, Any], handler: Handler | None = None,
                 *, source: str = "runtime", replace: bool = False,
                 check: Callable[[dict, Any], dict | None] | None = None,
                 requires: Callable[[dict], list[Need]] | None = None,
                 policy: PolicyHook | None = None) -> ModuleSpec:
        """Add a module; without a handler the schema must declare its command (and what it
        requires follows from it)."""
        if not isinstance(name, str) or not NAME.match(name):
            raise ModuleError(f"bad module name {name!r}")
        if name in self._modules and not replace:
            raise ModuleError(f"module {name!r} already registered ({self._modules[name].source})")
        if not isinstance(schema, dict) or schema.get("type", "object") != "object":
            raise ModuleError(f"module {name!r}: schema must be a JSON Schema of an object")
        if handler is None:
            handler = declared_handler(name, schema)
            requires = requires or declared_requires(schema)
        if not callable(handler):
            raise ModuleError(f"module {name!r}: handler is not callable")
        spec = ModuleSpec(name, schema, handler, source, check, requires, policy)
        self._modules[name] = spec
        return spec

    def _load_builtins(self) -> None:
        for schema_name in schemas.names():
            if not schema_name.startswith("metaflows."):
                continue
            name = schema_name[len("metaflows."):]
            schema = schemas.load(schema_name)
            handler = check = requires = policy = None
            if "x-eslchan-command" not in schema:
                module = importlib.import_module(f"metaflow.modules.{name}")
                handler, check = module.run, getattr(module, "check", None)
                requires = getattr(module, "requires", None)
                policy = getattr(module, "policy", None)
            self.register(name, schema, handler, source="builtin", check=check, requires=requires,
                          policy=policy)

    def load_entry_points(self, group: str = ENTRY_POINT_GROUP) -> list[str]:
        """Register third-party modules; a broken one is logged and skipped."""
        added = []
        for ep in entry_points(group=group):
            try:
                obj = ep.load()
                if isinstance(obj, dict):
                    self.register(ep.name, obj, None, source=f"entry_point:{ep.value}")
                else:
                    schema = getattr(obj, "SCHEMA", None)
                    if schema is None and callable(getattr(obj, "schema", None)):
                        schema = obj.schema()
                    self.register(ep.name, schema, getattr(obj, "run", None),
                                  source=f"entry_point:{ep.value}", check=getattr(obj, "check", None),
                                  requires=getattr(obj, "requires", None),
                                  policy=getattr(obj, "policy", None))
                added.append(ep.name)
            except Exception as exc:  # a third-party module must not stop the daemon
                log.error("metaflow module %s (%s) not loaded: %s", ep.name, ep.value, exc)
        return added


# --- declared (schema-only) modules ---------------------------------------------------------

def _typer(name: str, prop: dict[str, Any]) -> Callable[[Any], esl.Arg]:
    """The command-builder validator a schema property asks for (``x-esl``), or its type."""
    kind = prop.get("x-esl")
    if kind is None:
        if prop.get("type") == "integer":
            lo, hi = prop.get("minimum", -(2**31)), prop.get("maximum", 2**31)
            return lambda v: esl.integer(v, name, int(lo), int(hi))
        if "enum" in prop:
            choices = [str(c) for c in prop["enum"]]
            return lambda v: esl.enum(v, choices, name)
        raise ModuleError(f"placeholder {{{name}}}: give the property an x-esl type or an enum")
    simple = {"digits": esl.digits, "var_name": esl.var_name, "var_value": esl.var_value,
              "dial_target": esl.dial_target, "context": esl.context, "dialplan": esl.dialplan,
              "free_text": esl.free_text, "word": esl.word, "uuid": esl.uuid,
              "hangup_cause": esl.hangup_cause, "endpoint": esl.endpoint}
    if kind not in simple:
        raise ModuleError(f"placeholder {{{name}}}: unknown x-esl type {kind!r}")
    fn = simple[kind]
    return lambda v: fn(v, name)


def declared_handler(name: str, schema: dict[str, Any]) -> Handler:
    """A handler sending the one command the schema's ``x-eslchan-command`` describes::

        {"kind": "api", "name": "uuid_send_dtmf", "args": ["{uuid}", "{digits}"]}
        {"kind": "execute", "app": "playback", "arg": "{file}"}

    ``{uuid}``/``{peer}`` are the channel and its bridged peer; ``{field}`` is data[field],
    turned into an argument by the validator its schema property names (``x-esl``); a
    placeholder whose optional field is absent is left out; other words are literal flags.
    """
    template = schema.get("x-eslchan-command")
    if not isinstance(template, dict):
        raise ModuleError(f"module {name!r} has no handler and no x-eslchan-command")
    kind = template.get("kind")
    props = schema.get("properties", {})

    def compile_part(part: Any) -> Callable[[Context, dict], esl.Arg | None]:
        if not isinstance(part, str):
            raise ModuleError(f"module {name!r}: template parts are strings")
        m = _PLACEHOLDER.match(part)
        if m is None:
            if not _LITERAL.match(part):
                raise ModuleError(f"module {name!r}: literal {part!r} is not a plain word")
            lit = (esl.integer(part, "template", -(2**31), 2**31) if part[0].isdigit()
                   else esl.word(part, "template"))
            return lambda ctx, data: lit
        field_name = m.group(1)
        if field_name == "uuid":
            return lambda ctx, data: ctx.arg_uuid()
        if field_name == "peer":
            return lambda ctx, data: ctx.arg_uuid(ctx.require_peer(f"{name} acts on the peer"))
        if field_name not in props:
            raise ModuleError(f"module {name!r}: placeholder {part} is not a schema property")
        media = props[field_name].get("x-esl") == "media"  # an id/path/URL resolved by the config
        typer = None if media else _typer(field_name, props[field_name])

        def fill(ctx: Context, data: dict) -> esl.Arg | None:
            if field_name not in data:
                return None
            value = data[field_name]
            return ctx.media(value, field_name) if typer is None else typer(value)

        return fill

    if kind in ("api", "bgapi"):
        if template.get("name") not in esl.API_COMMANDS:
            raise ModuleError(f"module {name!r}: api command {template.get('name')!r} not allowed")
        parts = [compile_part(p) for p in _list(template.get("args", []))]

        def run_api(ctx: Context, data: dict) -> Outcome:
            args = [a for a in (p(ctx, data) for p in parts) if a is not None]
            build = esl.api if kind == "api" else esl.bgapi
            cmd = build(template["name"], *args)
            (ctx.api if kind == "api" else ctx.bgapi)(cmd)
            return CONTINUE

        return run_api
    if kind == "execute":
        if template.get("app") not in esl.APPLICATIONS:
            raise ModuleError(f"module {name!r}: application {template.get('app')!r} not allowed")
        arg_part = compile_part(template["arg"]) if template.get("arg") is not None else None
        target = compile_part(template.get("target", "{uuid}"))

        def run_execute(ctx: Context, data: dict) -> Outcome:
            uuid = target(ctx, data)
            if uuid is None:
                raise StateError(f"{name}: no channel to act on")
            arg = arg_part(ctx, data) if arg_part else None
            ctx.send(esl.execute(uuid, template["app"], arg))
            return CONTINUE

        return run_execute
    raise ModuleError(f"module {name!r}: x-eslchan-command kind must be api, bgapi or execute")


def declared_requires(schema: dict[str, Any]) -> Callable[[dict], list[Need]] | None:
    """A declared execute module needs its application on the switch."""
    template = schema.get("x-eslchan-command")
    if isinstance(template, dict) and template.get("kind") == "execute":
        need = application(str(template.get("app")))
        return lambda data: [need]
    return None


def _list(value: Any) -> Iterable[Any]:
    if not isinstance(value, list):
        raise ModuleError("x-eslchan-command args must be a list")
    return value
