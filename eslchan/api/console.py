"""The operations console: a static single-page app served by the daemon at ``/console/``.

The page is a client of the public API only (it logs in with an API key, lists channels and
follows the event stream like any other caller), so it needs no server-side state: this
blueprint just serves the packaged files in ``static/``, with a strict Content-Security-Policy
(scripts and connections to this origin only, no inline script or style) and ETags so a browser
revalidates cheaply instead of running a stale copy after an upgrade.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from flask import Blueprint, Response, redirect, request

from eslchan.api.envelope import ApiError, not_modified

#: The page itself: packaged data beside the Python packages (setup.cfg package_data).
STATIC = Path(__file__).resolve().parents[1] / "console" / "static"

#: The console's own pages may load and call nothing but this origin; no inline code at all.
CSP = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "manifest-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    )
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    # revalidate every time: an upgraded daemon must never run against cached old modules
    "Cache-Control": "no-cache",
}
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".json": "application/json",
}


@dataclass(frozen=True)
class StaticFile:
    body: bytes
    content_type: str
    etag: str


def load_files(root: Path = STATIC) -> dict[str, StaticFile]:
    """Every servable file under ``root`` by its relative path. Served from memory: a request
    names a key of this dict, never a filesystem path, so no path can climb out of ``root``."""
    files: dict[str, StaticFile] = {}
    for path in sorted(root.rglob("*")):
        content_type = CONTENT_TYPES.get(path.suffix)
        if not path.is_file() or content_type is None:
            continue
        body = path.read_bytes()
        files[path.relative_to(root).as_posix()] = StaticFile(
            body, content_type, hashlib.sha256(body).hexdigest()[:32]
        )
    return files


FILES = load_files()

bp = Blueprint("console", __name__)


def _serve(name: str) -> Response:
    found = FILES.get(name)
    if found is None:
        raise ApiError(404, "faulty request", {"path": request.path})
    headers = {**SECURITY_HEADERS, "ETag": f'"{found.etag}"'}
    if not_modified(found.etag):
        return Response(status=304, headers=headers)
    return Response(found.body, status=200, content_type=found.content_type, headers=headers)


@bp.route("/", methods=["GET"])
def root() -> Response:
    return redirect("/console/", code=302)


@bp.route("/console/", methods=["GET"])
def index() -> Response:
    if not request.path.endswith("/"):  # the page's relative URLs need the trailing slash
        return redirect("/console/", code=302)
    return _serve("index.html")


@bp.route("/console/<path:filename>", methods=["GET"])
def static_file(filename: str) -> Response:
    return _serve(filename)
