"""Channel variables FreeSWITCH acts on at a moment of a call, and the log of when it would.

FreeSWITCH runs what some variables name (``api_hangup_hook=system …`` is a shell command on
the switch when the call hangs up) and routes by others (``transfer_after_bridge``). The
simulator runs none of them, but records every time real FreeSWITCH would, in
``Simulator.hooks``, so a test can assert that nothing a tenant sent ever armed one.
Variable names are matched ignoring case, as FreeSWITCH does.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

#: moment → (variable or ``prefix*``, what FreeSWITCH does with it)
HOOKS: dict[str, tuple[tuple[str, str], ...]] = {
    "ring": (("api_on_ring", "code"), ("execute_on_ring*", "code")),
    "pre_answer": (("api_on_pre_answer", "code"), ("execute_on_pre_answer*", "code")),
    "media": (("api_on_media", "code"), ("execute_on_media*", "code")),
    "answer": (("api_on_answer", "code"), ("execute_on_answer*", "code")),
    "originate": (("api_on_originate", "code"), ("execute_on_originate*", "code"),
                  ("api_on_post_originate", "code"), ("execute_on_post_originate*", "code")),
    "bridge": (("bridge_pre_execute_app", "code"), ("bridge_pre_execute_aleg_app", "code"),
               ("bridge_pre_execute_bleg_app", "code"), ("api_before_bridge", "code"),
               ("execute_on_pre_bridge*", "code")),
    "after_bridge": (("exec_after_bridge_app", "code"), ("api_after_bridge", "code"),
                     ("execute_on_post_bridge*", "code"), ("transfer_after_bridge", "routing"),
                     ("hangup_after_bridge", "routing"), ("park_after_bridge", "routing")),
    "hangup": (("api_hangup_hook", "code"), ("session_in_hangup_hook", "code")),
    "reporting": (("api_reporting_hook", "code"),),
    "record_stop": (("record_post_process_exec_app", "code"), ("record_post_process_exec_api", "code")),
}


@dataclass(frozen=True)
class HookRun:
    """FreeSWITCH would have acted on ``variable`` (``value``) of channel ``uuid`` now."""

    uuid: str
    moment: str
    variable: str
    value: str
    kind: str  # "code" (runs an application or API) or "routing"


def due(uuid: str, variables: Mapping[str, str], moment: str) -> list[HookRun]:
    """The hooks a channel with ``variables`` arms at ``moment`` (set and not empty)."""
    out = []
    wanted = HOOKS.get(moment, ())
    for name, value in variables.items():
        low = name.lower()
        for pattern, kind in wanted:
            hit = low.startswith(pattern[:-1]) if pattern.endswith("*") else low == pattern
            if hit and value:
                out.append(HookRun(uuid, moment, name, value, kind))
    return out
