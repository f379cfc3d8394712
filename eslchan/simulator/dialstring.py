"""Dial strings and dialplans as FreeSWITCH reads them: ``{vars}[vars]endpoint`` dial strings,
``a=1,b='x,y'`` variable blocks (inline dialplans: eslchan.esl.inline), the originate api's
first-word split and the default dialplan. Pure functions: no switch state, no greenlets."""

from __future__ import annotations

Dialplan = dict[str, list[tuple[str, list[tuple[str, str]]]]]


def default_dialplan() -> Dialplan:
    """The extensions of the recorded server plus catch-alls so any number answers."""
    tone = "tone_stream://%(200,200,600);loops=2"
    std: list[tuple[str, list[tuple[str, str]]]] = [
        (r"^esl_park$", [("park", "")]),
        (r"^esl_answer(_.*)?$", [("answer", ""), ("park", "")]),
        (r"^esl_tone$", [("answer", ""), ("playback", tone), ("park", "")]),
        (r"^esl_sip_answer$", [("answer", ""), ("park", "")]),
        (r"^(echo|9196)$", [("answer", ""), ("echo", "")]),
        (r"^park$", [("park", "")]),
        (r"^hangup$", [("hangup", "")]),
        (r"^(ring|noanswer)$", [("park", "")]),
        (r"^esl_socket$", [("socket", "127.0.0.1:8084 async full")]),
        # any dialable number answers and waits (what a test's "far end" usually does)
        (r"^\+?[0-9*#]{1,32}$", [("answer", ""), ("park", "")]),
    ]
    return {"default": std, "public": list(std)}


def split_vars(block: str) -> dict[str, str]:
    r"""``a=1,b='x,y',c=x\,y`` → dict, honouring single quotes and backslash escapes as
    FreeSWITCH's switch_separate_string does."""
    out: dict[str, str] = {}
    cur, quoted, parts = [], False, []
    escaped = False
    for c in block:
        if escaped:
            cur.append(c)
            escaped = False
            continue
        if c == "\\":
            escaped = True
            continue
        if c == "'":
            quoted = not quoted
            continue
        if c == "," and not quoted:
            parts.append("".join(cur))
            cur = []
            continue
        cur.append(c)
    parts.append("".join(cur))
    for p in parts:
        if "=" in p:
            k, v = p.split("=", 1)
            out[k.strip()] = v
    return out


def split_top(s: str, sep: str) -> list[str]:
    """Split on ``sep`` outside of {…}, […] and quotes (dial strings carry vars in them)."""
    out, cur, depth, quoted = [], [], 0, False
    for c in s:
        if c == "'":
            quoted = not quoted
        elif not quoted and c in "{[":
            depth += 1
        elif not quoted and c in "}]":
            depth = max(0, depth - 1)
        elif c == sep and depth == 0 and not quoted:
            out.append("".join(cur))
            cur = []
            continue
        cur.append(c)
    out.append("".join(cur))
    return out


def parse_dial_string(s: str) -> tuple[dict[str, str], str]:
    """``{vars}[vars]endpoint`` → (vars, endpoint)."""
    variables: dict[str, str] = {}
    s = s.strip()
    while s and s[0] in "{[<":
        close = {"{": "}", "[": "]", "<": ">"}[s[0]]
        end = s.find(close)
        if end < 0:
            break
        variables.update(split_vars(s[1:end]))
        s = s[end + 1:]
    return variables, s


def _split_first(s: str) -> tuple[str, str]:
    s = s.strip()
    if not s:
        return "", ""
    # a leading {…} block may contain spaces inside quotes
    depth = 0
    quoted = False
    for i, c in enumerate(s):
        if c == "'":
            quoted = not quoted
        elif c in "{[(" and not quoted:
            depth += 1
        elif c in "}])" and not quoted:
            depth = max(0, depth - 1)
        elif c.isspace() and depth == 0 and not quoted:
            return s[:i], s[i:].strip()
    return s, ""
