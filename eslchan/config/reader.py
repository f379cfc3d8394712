"""The walker every table parser shares: it collects each problem with its dotted key."""

from __future__ import annotations

from typing import Any


class ConfigError(Exception):
    """A configuration that cannot be used; ``problems`` lists (key, message) pairs."""

    def __init__(self, problems: list[tuple[str, str]]):
        self.problems = problems
        super().__init__("; ".join(f"{k}: {m}" for k, m in problems))


#: What a secret reads as when its environment variable is unset (already reported).
MISSING_SECRET = "\0missing"


class Reader:
    """Walks a TOML table, collecting every problem instead of stopping at the first."""

    def __init__(self, problems: list[tuple[str, str]], env: dict[str, str]):
        self.problems = problems
        self.env = env

    def table(self, data: Any, key: str, allowed: set[str]) -> dict[str, Any]:
        if data is None:
            return {}
        if not isinstance(data, dict):
            self.problems.append((key, "must be a table"))
            return {}
        for name in data:
            if name not in allowed:
                full = f"{key}.{name}" if key else name
                self.problems.append((full, f"unknown key (known: {', '.join(sorted(allowed))})"))
        return data

    def get(self, data: dict, key: str, name: str, kind: type | tuple, default: Any) -> Any:
        if name not in data:
            return default
        value = data[name]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if kind is float:
            kinds = (int, float)
        # bool is an int in Python; a boolean where a number is expected is still wrong
        if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
            names = " or ".join(k.__name__ for k in kinds)
            self.problems.append((f"{key}.{name}", f"must be {names}, not {type(value).__name__}"))
            return default
        return float(value) if kind is float else value

    def secret(self, data: dict, key: str, name: str, default: str | None) -> str | None:
        direct = self.get(data, key, name, str, None)
        env_name = self.get(data, key, f"{name}_env", str, None)
        if direct is not None and env_name is not None:
            self.problems.append((f"{key}.{name}", f"give {name} or {name}_env, not both"))
        if env_name is not None:
            if env_name not in self.env:
                self.problems.append((f"{key}.{name}_env", f"environment variable {env_name} is not set"))
                return MISSING_SECRET
            return self.env[env_name]
        return direct if direct is not None else default

    def positive(self, data: dict, key: str, name: str, default: Any, kind: type = float) -> Any:
        value = self.get(data, key, name, kind, default)
        if value <= 0:
            self.problems.append((f"{key}.{name}", "must be greater than 0"))
            return default
        return value
