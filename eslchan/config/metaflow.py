"""``[metaflow]``: media, dial templates, callflow files and the limits of a metaflow."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eslchan.config.reader import Reader

MEDIA_ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


@dataclass(frozen=True)
class MetaflowConfig:
    media: dict[str, str] = field(default_factory=dict)
    allowed_media_schemes: tuple[str, ...] = ("tone_stream", "file", "http", "https")
    media_path_prefixes: tuple[str, ...] = ("/usr/share/freeswitch/sounds/",)
    dial_templates: dict[str, str] = field(
        default_factory=lambda: {
            "device": "user/{id}",
            "user": "user/{id}",
            "number": "loopback/{number}/{context}",
        }
    )
    callflows_dir: Path | None = None
    recordings_dir: str = "/var/lib/freeswitch/recordings"  # on the FreeSWITCH host
    max_depth: int = 32
    max_nodes: int = 256
    default_context: str = "default"
    default_dialplan: str = "XML"
    moh: str = "local_stream://moh"
    # finished runs stay readable (GET …/metaflows) this long, this many in all, and this many
    # per account, so one tenant's runs cannot push another's out
    finished_runs_seconds: float = 3600.0
    finished_runs_max: int = 500
    finished_runs_per_account: int = 100


def parse_metaflow(r: Reader, data: Any, source: Path | None) -> MetaflowConfig:
    d = MetaflowConfig()
    t = r.table(
        data,
        "metaflow",
        {
            "media",
            "allowed_media_schemes",
            "media_path_prefixes",
            "dial_templates",
            "callflows_dir",
            "recordings_dir",
            "max_depth",
            "max_nodes",
            "default_context",
            "default_dialplan",
            "moh",
            "finished_runs_seconds",
            "finished_runs_max",
            "finished_runs_per_account",
        },
    )
    media = r.get(t, "metaflow", "media", dict, {})
    for mid, target in media.items():
        if not MEDIA_ID.match(mid) or not isinstance(target, str):
            r.problems.append((f"metaflow.media.{mid}", "media ids map to a file path or URL string"))
    templates = {**d.dial_templates, **r.get(t, "metaflow", "dial_templates", dict, {})}
    for kind, tpl in templates.items():
        if kind not in d.dial_templates:
            r.problems.append((f"metaflow.dial_templates.{kind}", "known kinds: device, user, number"))
        elif not isinstance(tpl, str):
            r.problems.append((f"metaflow.dial_templates.{kind}", "must be a string"))
    callflows = r.get(t, "metaflow", "callflows_dir", str, None)
    callflows_dir = None
    if callflows is not None:
        callflows_dir = Path(callflows)
        if not callflows_dir.is_absolute() and source is not None:
            callflows_dir = source.parent / callflows_dir
    recordings_dir = r.get(t, "metaflow", "recordings_dir", str, d.recordings_dir)
    if not re.fullmatch(r"/[A-Za-z0-9_./-]*", recordings_dir) or ".." in recordings_dir.split("/"):
        r.problems.append(("metaflow.recordings_dir", "must be an absolute path of letters, digits, _ . - /"))
    schemes = r.get(t, "metaflow", "allowed_media_schemes", list, list(d.allowed_media_schemes))
    prefixes = r.get(t, "metaflow", "media_path_prefixes", list, list(d.media_path_prefixes))
    for name, values in (("allowed_media_schemes", schemes), ("media_path_prefixes", prefixes)):
        if not all(isinstance(x, str) for x in values):
            r.problems.append((f"metaflow.{name}", "must be a list of strings"))
    return MetaflowConfig(
        media=dict(media),
        allowed_media_schemes=tuple(schemes),
        media_path_prefixes=tuple(prefixes),
        dial_templates=templates,
        callflows_dir=callflows_dir,
        recordings_dir=recordings_dir,
        max_depth=r.positive(t, "metaflow", "max_depth", d.max_depth, int),
        max_nodes=r.positive(t, "metaflow", "max_nodes", d.max_nodes, int),
        default_context=r.get(t, "metaflow", "default_context", str, d.default_context),
        default_dialplan=r.get(t, "metaflow", "default_dialplan", str, d.default_dialplan),
        moh=r.get(t, "metaflow", "moh", str, d.moh),
        finished_runs_seconds=r.positive(t, "metaflow", "finished_runs_seconds", d.finished_runs_seconds),
        finished_runs_max=r.positive(t, "metaflow", "finished_runs_max", d.finished_runs_max, int),
        finished_runs_per_account=r.positive(t, "metaflow", "finished_runs_per_account",
                                             d.finished_runs_per_account, int),
    )
