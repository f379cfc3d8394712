"""Media references: a media id from the configuration, a ``tone_stream://`` spec, or a file
path / URL the configuration allows. Anything else is refused before a command is built."""

from __future__ import annotations

import re
from typing import Any

from eslchan.esl import commands as esl


class MediaError(ValueError):
    """Not a media reference this server accepts."""


_TONE = re.compile(r"[A-Za-z0-9%(),;=.:+#*-]{1,256}")
_PATH = re.compile(r"/[A-Za-z0-9_./+-]{1,511}")
_URL = re.compile(r"(?P<scheme>https?)://[A-Za-z0-9.-]{1,253}(:[0-9]{1,5})?(/[A-Za-z0-9_./%+~-]*)?")
_OTHER = re.compile(r"(?P<scheme>[a-z_]{1,32})://[A-Za-z0-9_./-]{1,256}")


def resolve(ref: object, config: Any) -> str:
    """The media string FreeSWITCH should play for ``ref``; MediaError if not allowed."""
    if not isinstance(ref, str) or not ref:
        raise MediaError("must be a non-empty string")
    configured = getattr(config, "media", {}) or {}
    if ref in configured:
        return configured[ref]
    allowed = set(getattr(config, "allowed_media_schemes", ()) or ())
    if ref.startswith("%(") and "tone_stream" in allowed:  # Kazoo's bare tone spec for ringback
        ref = "tone_stream://" + ref
    if ref.startswith("tone_stream://"):
        if "tone_stream" not in allowed:
            raise MediaError("tone_stream:// is not allowed by the configuration")
        if not _TONE.fullmatch(ref[len("tone_stream://"):]):
            raise MediaError("not a valid tone_stream:// spec")
        return ref
    if ref.startswith("/") or ref.startswith("file://"):
        path = ref[len("file://"):] if ref.startswith("file://") else ref
        if "file" not in allowed:
            raise MediaError("file paths are not allowed by the configuration")
        if not _PATH.fullmatch(path) or ".." in path.split("/"):
            raise MediaError("not a valid file path")
        prefixes = tuple(getattr(config, "media_path_prefixes", ()) or ())
        if not any(path.startswith(p) for p in prefixes):
            raise MediaError("path is outside the configured media directories")
        return path
    m = _URL.fullmatch(ref) or _OTHER.fullmatch(ref)
    if m is not None:
        if m.group("scheme") not in allowed:
            raise MediaError(f"{m.group('scheme')}:// is not allowed by the configuration")
        return ref
    raise MediaError("unknown media id (not configured, not tone_stream://, not an allowed path or URL)")


def media_arg(ref: object, config: Any, field: str = "media") -> esl.Arg:
    """Resolved and turned into a command argument by the command builder."""
    try:
        resolved = resolve(ref, config)
    except MediaError as exc:
        raise esl.CommandError(field, str(exc)) from None
    return esl.media(resolved, field)


def check(ref: object, config: Any) -> bool:
    """For the schema's ``eslchan-media`` format: raises MediaError with the reason."""
    esl_checked = resolve(ref, config)
    try:
        esl.media(esl_checked)
    except esl.CommandError as exc:
        raise MediaError(exc.reason) from None
    return True
