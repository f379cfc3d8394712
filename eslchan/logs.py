"""Logging set-up: plain text or one JSON object per line, with request ids and node names."""

from __future__ import annotations

import json
import logging
import sys
import time

#: Record attributes that are copied into JSON lines when a log call passes them in ``extra``.
CONTEXT_FIELDS = (
    "node", "request_id", "account_id", "channel", "run_id", "command", "status", "duration_ms",
)  # fmt: skip


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for name in CONTEXT_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                line[name] = value
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


class RequestIdFilter(logging.Filter):
    """Adds the current HTTP request id (if any) to every record logged while serving it."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            try:
                from flask import g, has_request_context

                if has_request_context():
                    record.request_id = g.get("request_id")
            except ImportError:  # pragma: no cover - flask is a hard dependency
                pass
        return True


class TextFormatter(logging.Formatter):
    """One record, one line: control characters in the message (a decoded %0A in a request
    path, say) are escaped so nobody can forge log lines. Tracebacks keep their newlines."""

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 - logging's name
        line = super().formatMessage(record)
        if any(ch < " " for ch in line):
            line = "".join(ch if ch >= " " else repr(ch)[1:-1] for ch in line)
        return line


def setup_logging(level: str = "INFO", json_lines: bool = False) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RequestIdFilter())
    if json_lines:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(
            TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%Y-%m-%d %H:%M:%S")
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
