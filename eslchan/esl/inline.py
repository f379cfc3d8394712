"""FreeSWITCH's inline dialplan, as the switch reads it: ``app:arg,app:arg``, or with another
separator ``^^;app:arg;app``. The policy guard judges each application of an inline transfer
by what FreeSWITCH will run, and the simulator runs the same list."""

from __future__ import annotations


def parse_inline(dest: str) -> list[tuple[str, str]]:
    """The (application, argument) pairs of an inline dialplan destination."""
    sep = ","
    if dest.startswith("^^") and len(dest) > 2:
        sep, dest = dest[2], dest[3:]
    apps = []
    for item in dest.split(sep):
        app, _, arg = item.partition(":")
        if app.strip():
            apps.append((app.strip(), arg))
    return apps
