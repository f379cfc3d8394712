"""The errors every layer above the ESL link catches (and maps to HTTP statuses)."""

from __future__ import annotations


class EslError(Exception):
    """Base of every ESL link error."""


class CommandRejected(EslError):
    """FreeSWITCH answered ``-ERR``/``-USAGE`` (api body or Reply-Text). HTTP 502."""

    def __init__(self, text: str, command: str | None = None):
        self.text = text
        self.command = command
        super().__init__(text if command is None else f"{command}: {text}")


class CommandTimeout(EslError):
    """FreeSWITCH did not answer within the timeout. HTTP 504."""


class LinkDown(EslError):
    """The node is not connected, or the connection was lost mid-call. HTTP 503."""
