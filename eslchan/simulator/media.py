"""How long a piece of media plays: tone_stream specs, silence, say:/speak: text, files."""

from __future__ import annotations

import os
import re
import wave

_TONE_SEG = re.compile(r"%\(([^)]*)\)")
_LOOPS = re.compile(r"(?:^|;)\s*loops=(-?\d+)")


def tone_duration(spec: str) -> float | None:
    """Seconds of a ``tone_stream://`` spec; None when it loops forever."""
    body = spec[len("tone_stream://"):] if spec.startswith("tone_stream://") else spec
    total_ms = 0.0
    for seg in _TONE_SEG.findall(body):
        parts = [p.strip() for p in seg.split(",")]
        try:
            on = float(parts[0]) if parts and parts[0] else 0.0
            off = float(parts[1]) if len(parts) > 1 and parts[1] else 0.0
        except ValueError:
            continue
        total_ms += on + off
    m = _LOOPS.search(body)
    loops = int(m.group(1)) if m else 1
    if loops < 0:
        return None
    return total_ms * max(loops, 1) / 1000.0


def media_type(path: str) -> str:
    """Playback-File-Type as FreeSWITCH reports it."""
    if "://" in path:
        return path.split("://", 1)[0]
    if ":" in path.split("/", 1)[0]:
        return path.split(":", 1)[0]
    return os.path.splitext(path)[1].lstrip(".") or "native"


def media_duration(path: str, overrides: dict[str, float], default: float) -> float | None:
    """Seconds the media plays (None: forever, until broken)."""
    if path in overrides:
        return overrides[path]
    if path.startswith("tone_stream://"):
        return tone_duration(path)
    if path.startswith("silence_stream://"):
        ms = path[len("silence_stream://"):].split(",", 1)[0]
        try:
            v = int(ms)
        except ValueError:
            return default
        return None if v < 0 else v / 1000.0
    if path.startswith("say:"):
        # say:<text> or say:<lang> <type> <method> <text>: about 0.4 s per spoken item.
        words = path[4:].split()
        text = words[-1] if len(words) >= 4 else " ".join(words)
        return max(0.4, 0.4 * len(text.replace(" ", "")))
    if path.startswith("speak:"):
        text = path[6:].split("|")[-1]
        return max(0.5, 0.06 * len(text))
    if path.startswith("/") and path.lower().endswith(".wav") and os.path.isfile(path):
        try:
            with wave.open(path, "rb") as w:
                return w.getnframes() / float(w.getframerate() or 8000)
        except (wave.Error, OSError, EOFError):
            return default
    return default
