"""``[logging]``: the log level and whether lines are JSON."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from eslchan.config.reader import Reader


@dataclass(frozen=True)
class LoggingConfig:
    level: str = "INFO"
    json: bool = False


def parse_logging(r: Reader, data: Any) -> LoggingConfig:
    lg = r.table(data, "logging", {"level", "json"})
    logging_cfg = LoggingConfig(
        level=r.get(lg, "logging", "level", str, "INFO").upper(),
        json=r.get(lg, "logging", "json", bool, False),
    )
    if logging_cfg.level not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
        r.problems.append(("logging.level", "must be DEBUG, INFO, WARNING or ERROR"))
    return logging_cfg
