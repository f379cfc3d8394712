"""Metaflows: JSON trees of actions run against a live channel (SPEC §6, §7)."""

from metaflow.base import CONTINUE, STOP, Context, NotFound, Outcome, StateError, branch, goto
from metaflow.capabilities import Need, Unsupported
from metaflow.interpreter import Interpreter, Run
from metaflow.registry import ENTRY_POINT_GROUP, ModuleRegistry, ModuleSpec
from metaflow.validation import ValidationFailed

__all__ = [
    "CONTINUE",
    "ENTRY_POINT_GROUP",
    "STOP",
    "Context",
    "Interpreter",
    "ModuleRegistry",
    "ModuleSpec",
    "NotFound",
    "Need",
    "Outcome",
    "Run",
    "StateError",
    "Unsupported",
    "ValidationFailed",
    "branch",
    "goto",
]
