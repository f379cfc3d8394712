"""JSON Schemas shipped with eslchan (metaflow nodes and module data)."""

import json
from importlib.resources import files
from typing import Any


def load(name: str) -> dict[str, Any]:
    """Return the parsed schema ``schemas/<name>.json``."""
    return json.loads(files(__name__).joinpath(f"{name}.json").read_text("utf-8"))


def names() -> list[str]:
    """Names (without ``.json``) of every schema shipped."""
    return sorted(p.name[:-5] for p in files(__name__).iterdir() if p.name.endswith(".json"))
