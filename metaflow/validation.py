"""Whole-tree validation before anything runs, with Kazoo-shaped errors.

Errors are ``{dotted path: {keyword: {"message": ..., ...}}}`` where the path is relative to
the root node, e.g. ``children._.data.target``. Each node's ``data`` is validated by its
module's schema with defaults filled in; the tree's depth and node count are bounded.

Given the account's policy, a tree whose schema is fine is then judged by it, node by node:
each module's ``policy`` hook, and for every module (built in, entry point or declared) the
fields its schema marks with ``x-esl`` (a ``var_name`` by the variable rule, a ``context`` or
``dialplan`` by the routing rule, a ``dial_target`` by the realm rule, an ``endpoint`` by the
endpoint rule, media by the recordings rule). A tree outside the policy anywhere raises
:class:`~eslchan.policy.PolicyError` (HTTP 403) before any run exists.
"""

from __future__ import annotations

import copy
import functools
import re
from collections.abc import Iterator
from typing import Any

from jsonschema import Draft7Validator, FormatChecker
from jsonschema.exceptions import ValidationError, best_match
from jsonschema.validators import extend

import schemas
from eslchan.policy import AccountPolicy, PolicyError, PolicyViolation
from metaflow.media import MediaError, check, resolve
from metaflow.registry import ModuleRegistry

MISSING = "Field is required but missing"


class ValidationFailed(Exception):
    """The tree (or action) is invalid; ``errors`` is in Kazoo's validation-error shape."""

    def __init__(self, errors: dict[str, dict[str, dict[str, Any]]]):
        self.errors = errors
        first = next(iter(errors.items()), ("?", {"?": {"message": "invalid"}}))
        kw, detail = next(iter(first[1].items()))
        super().__init__(f"{first[0]}: {detail.get('message', kw)}")


def _with_defaults(cls: Any) -> Any:
    validate_properties = cls.VALIDATORS["properties"]

    def properties(validator: Any, props: dict, instance: Any, schema: dict) -> Iterator[Any]:
        if isinstance(instance, dict):
            for key, sub in props.items():
                if isinstance(sub, dict) and "default" in sub and key not in instance:
                    instance[key] = copy.deepcopy(sub["default"])
        yield from validate_properties(validator, props, instance, schema)

    return extend(cls, {"properties": properties})


@functools.cache
def _whole_string(pattern: str) -> re.Pattern[str]:
    """``pattern`` with each unescaped ``$`` outside a character class as ``\\Z``: in JSON
    Schema (ECMA-262) ``$`` ends the string, while Python's ``$`` also matches before a final
    newline, so ``^[0-9]+$`` would let ``"2600\\n"`` through."""
    out, escaped, in_class = [], False, False
    for ch in pattern:
        if escaped:
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == "[":
            in_class = True
        elif ch == "]":
            in_class = False
        elif ch == "$" and not in_class:
            out.append(r"\Z")
            continue
        out.append(ch)
    return re.compile("".join(out))


def _strict_patterns(cls: Any) -> Any:
    def pattern(validator: Any, patrn: str, instance: Any, schema: dict) -> Iterator[Any]:
        if validator.is_type(instance, "string") and not _whole_string(patrn).search(instance):
            yield ValidationError(f"{instance!r} does not match {patrn!r}")

    return extend(cls, {"pattern": pattern})


#: Draft 7 with ``pattern`` read as JSON Schema means it (``$`` is the end of the string).
StrictValidator = _strict_patterns(Draft7Validator)
FillingValidator = _with_defaults(StrictValidator)


def _json_type(value: Any) -> str:
    return {bool: "boolean", int: "integer", float: "number", str: "string", list: "array",
            dict: "object", type(None): "null"}.get(type(value), type(value).__name__)


def kazoo_errors(error: ValidationError, prefix: str) -> dict[str, dict[str, dict[str, Any]]]:
    """One jsonschema error as Kazoo error entries (a ``required`` may name several fields)."""
    if error.validator in ("anyOf", "oneOf") and error.context:
        return kazoo_errors(best_match(error.context), prefix)
    path = ".".join([prefix.rstrip(".")] * bool(prefix) + [str(p) for p in error.absolute_path])
    kw, value, inst = error.validator, error.validator_value, error.instance

    def at(p: str) -> str:
        return f"{path}.{p}" if path else p

    if kw == "required":
        return {at(f): {"required": {"message": MISSING}} for f in value if f not in inst}
    if kw == "additionalProperties" and isinstance(inst, dict):
        known = set(error.schema.get("properties", {}))
        return {at(f): {"additionalProperties": {"message": "Field is not allowed here"}}
                for f in inst if f not in known}
    messages = {
        "type": lambda: (f"Value is not of type '{value}' but {_json_type(inst)}", value),
        "enum": lambda: ("Value not found in enumerated list of values", value),
        "pattern": lambda: (f"Failed to match pattern '{value}'", value),
        "minLength": lambda: (f"String must be at least {value} characters", value),
        "maxLength": lambda: (f"String must not be more than {value} characters", value),
        "minimum": lambda: (f"Value must be at least {value}", value),
        "maximum": lambda: (f"Value must be at most {value}", value),
        "minItems": lambda: (f"The list must have at least {value} items", value),
        "maxItems": lambda: (f"The list must not have more than {value} items", value),
        "uniqueItems": lambda: ("The list must not contain duplicate items", value),
        "format": lambda: (f"Not a media reference this server allows: {error.cause}"
                           if value == "eslchan-media" else error.message, value),
        "propertyNames": lambda: ("Name not allowed", None),
    }
    message, target = messages.get(kw, lambda: (error.message, None))()
    detail: dict[str, Any] = {"message": message}
    if target is not None and kw != "format":
        detail["target"] = target
    if isinstance(inst, (str, int, float, bool)) and kw not in ("required",):
        detail["value"] = inst
    return {path or "data": {kw: detail}}


class TreeValidator:
    def __init__(self, modules: ModuleRegistry, config: Any):
        self.modules = modules
        self.config = config
        self.max_depth = int(getattr(config, "max_depth", 32))
        self.max_nodes = int(getattr(config, "max_nodes", 256))
        self._formats = FormatChecker()

        @self._formats.checks("eslchan-media", raises=MediaError)
        def _media(value: object) -> bool:
            return not isinstance(value, str) or check(value, config)

        node_schema = copy.deepcopy(schemas.load("metaflow"))
        node_schema["properties"]["children"]["additionalProperties"] = {}  # walked below
        self._node = FillingValidator(node_schema, format_checker=self._formats)
        self._data: dict[str, Any] = {}

    def _data_validator(self, module: str) -> Any:
        spec = self.modules.get(module)
        cached = self._data.get(module)
        if cached is None or cached[0] is not spec:
            cached = (spec, FillingValidator(spec.schema, format_checker=self._formats))
            self._data[module] = cached
        return cached[1]

    @staticmethod
    def unwrap(body: Any) -> Any:
        """The root node from any accepted shape: a node, ``{"action": "metaflow", "data":
        node}``, or Kazoo's example ``{"data": {"data": node}}``."""
        while isinstance(body, dict) and "module" not in body and isinstance(body.get("data"), dict) \
                and set(body) <= {"data", "action"}:
            body = body["data"]
        return body

    def validate(self, body: Any, policy: AccountPolicy | None = None) -> dict[str, Any]:
        """The validated tree with defaults filled in (a copy); raises ValidationFailed, then
        (with an account's ``policy``) PolicyError. Without a policy only the schemas apply."""
        if isinstance(body, dict) and body.get("action", "metaflow") != "metaflow" and "module" not in body:
            raise ValidationFailed({"action": {"enum": {
                "message": "Value not found in enumerated list of values", "target": ["metaflow"]}}})
        root = copy.deepcopy(self.unwrap(body))
        errors: dict[str, dict[str, dict[str, Any]]] = {}
        refused: list[PolicyViolation] = []
        count = [0]
        self._walk(root, "", 1, count, errors, policy, refused)
        if errors:
            raise ValidationFailed(errors)
        if refused:
            raise PolicyError(refused)
        return root

    def _judge(self, module: str, data: dict, policy: AccountPolicy, prefix: str) -> list[PolicyViolation]:
        """What the account's policy says of one schema-valid node."""
        spec = self.modules.get(module)
        found = schema_policy(spec.schema, data, policy, self.config)
        if spec.policy is not None:
            found += list(spec.policy(data, policy) or ())
        return [PolicyViolation(v.rule, f"{prefix}data.{v.field}", v.message) for v in found]

    def _walk(self, node: Any, prefix: str, depth: int, count: list[int], errors: dict,
              policy: AccountPolicy | None = None, refused: list[PolicyViolation] | None = None) -> None:
        here = prefix.rstrip(".") or "metaflow"
        count[0] += 1
        if count[0] > self.max_nodes:
            if count[0] == self.max_nodes + 1:
                errors[here] = {"maxNodes": {"message": f"A metaflow may have at most {self.max_nodes} nodes",
                                             "target": self.max_nodes}}
            return
        if depth > self.max_depth:
            errors[here] = {"maxDepth": {"message": f"A metaflow may be at most {self.max_depth} levels deep",
                                         "target": self.max_depth}}
            return
        if not isinstance(node, dict):
            errors[here] = {"type": {"message": f"Value is not of type 'object' but {_json_type(node)}",
                                     "target": "object"}}
            return
        node_errors = list(self._node.iter_errors(node))
        for err in node_errors:
            errors.update(kazoo_errors(err, prefix))
        module = node.get("module")
        if isinstance(module, str) and "module" not in _paths(node_errors):
            if module not in self.modules:
                errors[f"{prefix}module"] = {"enum": {
                    "message": f"Unknown metaflow module '{module}'", "value": module,
                    "target": self.modules.names()}}
            elif isinstance(node.get("data"), dict):
                data_errors = [kazoo_errors(e, f"{prefix}data.")
                               for e in self._data_validator(module).iter_errors(node["data"])]
                for found in data_errors:
                    errors.update(found)
                check = self.modules.get(module).check
                if check is not None and not data_errors:
                    for key, detail in (check(node["data"], self.config) or {}).items():
                        errors[f"{prefix}data.{key}"] = detail
                if policy is not None and refused is not None and not data_errors:
                    refused.extend(self._judge(module, node["data"], policy, prefix))
        children = node.get("children")
        if isinstance(children, dict):
            for key, child in children.items():
                self._walk(child, f"{prefix}children.{key}.", depth + 1, count, errors, policy, refused)


def schema_policy(schema: dict, data: dict, policy: AccountPolicy, config: Any) -> list[PolicyViolation]:
    """The policy rules a module's schema asks for through ``x-esl`` (and media formats)."""
    found: list[PolicyViolation | None] = []
    for name, prop in (schema.get("properties") or {}).items():
        value = data.get(name)
        if not isinstance(value, str) or not isinstance(prop, dict):
            continue
        kind = prop.get("x-esl")
        if kind == "var_name":
            found.append(policy.variable(value, name))
        elif kind == "context":
            found.append(policy.context_rule(value, name))
        elif kind == "dialplan":
            found.append(policy.dialplan(value, name))
        elif kind == "dial_target":
            found.append(policy.realm_rule(value, name))
        elif kind == "endpoint":
            found.append(policy.endpoint(value, name))
        elif kind == "media" or prop.get("format") == "eslchan-media":
            try:
                found.append(policy.media(resolve(value, config), name))
            except MediaError:
                pass  # the schema's format check has said so already
    return [v for v in found if v is not None]


def _paths(errs: list[ValidationError]) -> set[str]:
    return {str(e.absolute_path[0]) for e in errs if e.absolute_path}
