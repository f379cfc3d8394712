"""The only way to build an ESL command.

Every piece of user data that ends up in a command is first turned into an :class:`Arg` by one
of the validators here; each has a strict grammar, so a newline (which ends a command and
starts another), a space (which splits api arguments), ``{…}``/``[…]``/``,``/``'`` (which
reshape dial strings) or ``${…}`` (which FreeSWITCH expands, and which can call APIs) never
reaches FreeSWITCH unless the grammar allows it in a place where it is harmless. A refused
value raises :class:`CommandError` before a single byte is sent.

Commands keep their structure beside their bytes: every :class:`Arg` says which validator
minted it (``kind``), composite arguments keep their parts (a dial string its endpoint and
variables, an ``&app(arg)`` its application and argument), and a :class:`Command` keeps its
api arguments or its executed application. The tenancy policy's send-time guard reads that
structure, never the bytes.
"""

from __future__ import annotations

import re
import unicodedata
import uuid as _uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from dataclasses import field as dataclass_field  # "field" is every validator's parameter

__all__ = [
    "AppRef",
    "Arg",
    "Assignment",
    "Command",
    "CommandError",
    "HANGUP_CAUSES",
    "API_COMMANDS",
    "APPLICATIONS",
    "api",
    "app_ref",
    "assignment",
    "join",
    "bgapi",
    "context",
    "control",
    "DialString",
    "Joined",
    "SYSTEM_VARIABLES",
    "digit_binding",
    "dial_string",
    "dial_target",
    "dialplan",
    "digits",
    "endpoint",
    "enum",
    "execute",
    "free_text",
    "hangup",
    "hangup_cause",
    "integer",
    "media",
    "system_var",
    "tenancy_var",
    "uuid",
    "var_name",
    "var_value",
    "word",
]


class CommandError(ValueError):
    """Bad user input for a command, refused before anything is sent (HTTP 400)."""

    def __init__(self, field: str, reason: str):
        self.field = field
        self.reason = reason
        super().__init__(f"{field}: {reason}")


_MINT = object()  # only this module can mint an Arg


class Arg(str):
    """A validated token. ``kind`` names the validator that minted it (``uuid``, ``var_name``,
    ``system_var``, ``context``, ``media``…). ``last_only`` marks values with spaces or
    quotes: FreeSWITCH splits api arguments on spaces, so such a value is only safe as the
    final argument of an api command (where the command takes the rest of the line)."""

    field: str
    kind: str
    last_only: bool

    def __new__(cls, value: str, field: str, token: object, last_only: bool = False,
                kind: str = "arg") -> Arg:
        if token is not _MINT:
            raise TypeError("Arg values are made by eslchan.esl.commands validators only")
        self = super().__new__(cls, value)
        self.field = field
        self.kind = kind
        self.last_only = last_only
        return self

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str.__repr__(self)}, field={self.field!r}, kind={self.kind!r})"


class DialString(Arg):
    """``{k=v,…}endpoint``, with its parsed parts."""

    endpoint: Arg
    variables: tuple[tuple[Arg, Arg], ...]


class AppRef(Arg):
    """``&app(arg)``: what an originated leg runs once answered."""

    app: str
    app_arg: Arg | None


class Assignment(Arg):
    """``name=value`` for the set/export applications."""

    name: Arg
    value: Arg


class Joined(Arg):
    """Validated tokens joined by one separator (``say`` arguments, ``engine|voice|text``)."""

    parts: tuple[Arg, ...]
    sep: str


def _mint(value: str, field: str, kind: str, last_only: bool = False, cls: type[Arg] = Arg) -> Arg:
    return cls(value, field, _MINT, last_only, kind)


def _text(value: object, field: str, max_len: int) -> str:
    """Common checks: a non-empty str of bounded length with no control characters."""
    if isinstance(value, bool) or not isinstance(value, str):
        raise CommandError(field, f"must be a string, not {type(value).__name__}")
    if not value:
        raise CommandError(field, "must not be empty")
    if len(value) > max_len:
        raise CommandError(field, f"longer than {max_len} characters")
    for ch in value:
        if ch < " " or ch == "\x7f" or (ch > "\x7f" and _is_control(ch)):
            raise CommandError(field, f"control character {ch!r} not allowed")
    return value


def _is_control(ch: str) -> bool:
    # Cc: C0/C1 controls, Cs: lone surrogates, Zl/Zp: line and paragraph separators.
    return unicodedata.category(ch) in ("Cc", "Cs", "Zl", "Zp")


def _grammar(value: object, field: str, pattern: re.Pattern[str], what: str, max_len: int) -> str:
    text = _text(value, field, max_len)
    if not pattern.fullmatch(text):
        raise CommandError(field, f"not a valid {what}")
    return text


_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_DIAL_TARGET = re.compile(r"[A-Za-z0-9+*#._@][A-Za-z0-9+*#._@-]{0,63}")
_ENDPOINT = re.compile(r"[A-Za-z0-9+*#._@][A-Za-z0-9+*#._@/:=-]{0,255}")
_CONTEXT = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_VAR_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,63}")
_DIGITS = re.compile(r"[0-9*#A-Da-dwW]+")
_CAUSE = re.compile(r"[A-Z_]{1,48}")
_WORD = re.compile(r"-?[A-Za-z_][A-Za-z0-9_]{0,31}")
# media: one token, no spaces/quotes/braces/brackets/'$'; a path or a known scheme.
_MEDIA_SCHEMES = (
    "tone_stream://",
    "silence_stream://",
    "local_stream://",
    "file_string://",
    "http_cache://",
    "http://",
    "https://",
    "shout://",
    "say:",
    "speak:",
)
_MEDIA_BODY = re.compile(r"[A-Za-z0-9_./%(),;=:+*#@!&?~|-]+")
_MEDIA_PATH = re.compile(r"[A-Za-z0-9_./+-]+")

HANGUP_CAUSES = frozenset(
    """UNSPECIFIED UNALLOCATED_NUMBER NO_ROUTE_TRANSIT_NET NO_ROUTE_DESTINATION CHANNEL_UNACCEPTABLE
    CALL_AWARDED_DELIVERED NORMAL_CLEARING USER_BUSY NO_USER_RESPONSE NO_ANSWER SUBSCRIBER_ABSENT
    CALL_REJECTED NUMBER_CHANGED REDIRECTION_TO_NEW_DESTINATION EXCHANGE_ROUTING_ERROR
    DESTINATION_OUT_OF_ORDER INVALID_NUMBER_FORMAT FACILITY_REJECTED RESPONSE_TO_STATUS_ENQUIRY
    NORMAL_UNSPECIFIED NORMAL_CIRCUIT_CONGESTION NETWORK_OUT_OF_ORDER NORMAL_TEMPORARY_FAILURE
    SWITCH_CONGESTION ACCESS_INFO_DISCARDED REQUESTED_CHAN_UNAVAIL PRE_EMPTED
    FACILITY_NOT_SUBSCRIBED OUTGOING_CALL_BARRED INCOMING_CALL_BARRED BEARERCAPABILITY_NOTAUTH
    BEARERCAPABILITY_NOTAVAIL SERVICE_UNAVAILABLE BEARERCAPABILITY_NOTIMPL CHAN_NOT_IMPLEMENTED
    FACILITY_NOT_IMPLEMENTED SERVICE_NOT_IMPLEMENTED INVALID_CALL_REFERENCE
    INCOMPATIBLE_DESTINATION INVALID_MSG_UNSPECIFIED MANDATORY_IE_MISSING MESSAGE_TYPE_NONEXIST
    WRONG_MESSAGE IE_NONEXIST INVALID_IE_CONTENTS WRONG_CALL_STATE RECOVERY_ON_TIMER_EXPIRE
    MANDATORY_IE_LENGTH_ERROR PROTOCOL_ERROR INTERWORKING ORIGINATOR_CANCEL CRASH SYSTEM_SHUTDOWN
    LOSE_RACE MANAGER_REQUEST BLIND_TRANSFER ATTENDED_TRANSFER ALLOTTED_TIMEOUT USER_CHALLENGE
    MEDIA_TIMEOUT PICKED_OFF USER_NOT_REGISTERED PROGRESS_TIMEOUT INVALID_GATEWAY GATEWAY_DOWN
    INVALID_URL INVALID_PROFILE NO_PICKUP SRTP_READ_ERROR BOWOUT BUSY_EVERYWHERE DECLINE
    DOES_NOT_EXIST_ANYWHERE NOT_ACCEPTABLE UNWANTED NO_IDENTITY BAD_IDENTITY_INFO
    UNSUPPORTED_CERTIFICATE INVALID_IDENTITY STALE_DATE""".split()
)


# --- validators ---------------------------------------------------------------------------


def uuid(value: object, field: str = "uuid") -> Arg:
    """A channel/job UUID (8-4-4-4-12 hex), lower-cased."""
    return _mint(_grammar(value, field, _UUID, "UUID (8-4-4-4-12 hex)", 36).lower(), field, "uuid")


_as_uuid = uuid  # the name ``uuid`` is also a parameter of the command builders


def dial_target(value: object, field: str = "target") -> Arg:
    """An extension, number or SIP user: ``[A-Za-z0-9+*#._@-]``, 1-64, no leading '-'."""
    return _mint(_grammar(value, field, _DIAL_TARGET, "dial target", 64), field, "dial_target")


def endpoint(value: object, field: str = "endpoint") -> Arg:
    """A dial endpoint such as ``user/1001@example.com`` or ``loopback/2000/default``."""
    text = _grammar(value, field, _ENDPOINT, "dial endpoint", 256)
    if "/" not in text:
        raise CommandError(field, "not a valid dial endpoint (expected type/address)")
    return _mint(text, field, "endpoint")


def context(value: object, field: str = "context") -> Arg:
    """A dialplan context: ``[A-Za-z0-9_.-]``, 1-64."""
    return _mint(_grammar(value, field, _CONTEXT, "context name", 64), field, "context")


def dialplan(value: object, field: str = "dialplan") -> Arg:
    """A dialplan name (``XML``, ``inline``…): the same grammar as a context."""
    return _mint(_grammar(value, field, _CONTEXT, "dialplan name", 64), field, "dialplan")


def var_name(value: object, field: str = "name") -> Arg:
    """A channel variable name a caller chose: the tenancy policy decides whether it may be set."""
    return _mint(_grammar(value, field, _VAR_NAME, "variable name", 64), field, "var_name")


#: Variables eslchan itself sets while running a module (never names a tenant chose). The
#: policy's guard accepts these whatever the account's variable rule, and checks their values.
SYSTEM_VARIABLES = frozenset(
    """origination_uuid originate_timeout origination_caller_id_name origination_caller_id_number
    origination_callee_id_name origination_callee_id_number park_after_bridge hold_music
    sip_auto_answer RECORD_MIN_SEC record_sample_rate eslchan_recording_label
    eavesdrop_enable_dtmf eavesdrop_whisper_aleg eavesdrop_whisper_bleg""".split()
)


def system_var(name: str, field: str = "name") -> Arg:
    """One of :data:`SYSTEM_VARIABLES`, for eslchan's own use (not for a tenant's input)."""
    if name not in SYSTEM_VARIABLES:
        raise CommandError(field, f"{name!r} is not a variable eslchan sets itself")
    return _mint(name, field, "system_var")


def tenancy_var(name: object, field: str = "name") -> Arg:
    """A tenancy variable (account, owner, authorizing id/type of the channel-variable mapping)
    that eslchan sets on a leg it creates. The guard accepts it only when it is one of the
    mapping's names and, for the account, only with the run's own account id as its value."""
    return _mint(_grammar(name, field, _VAR_NAME, "variable name", 64), field, "tenancy_var")


def _no_expansion(text: str, field: str) -> None:
    if "${" in text or "$${" in text:
        raise CommandError(field, "'${' (variable expansion) not allowed")


def var_value(value: object, field: str = "value", max_len: int = 1024) -> Arg:
    """A variable value: printable text, no control characters, no ``${`` expansion.

    Spaces and quotes are allowed, which makes the value usable only as the last api argument.
    """
    text = _text(value, field, max_len)
    _no_expansion(text, field)
    return _mint(text, field, "var_value", last_only=_needs_tail(text))


def _needs_tail(text: str) -> bool:
    return any(c in text for c in " '\"\\")


def media(value: object, field: str = "media") -> Arg:
    """An already-resolved media reference: a known scheme (``tone_stream://`` …) or a path."""
    text = _text(value, field, 1024)
    _no_expansion(text, field)
    for scheme in _MEDIA_SCHEMES:
        if text.startswith(scheme):
            rest = text[len(scheme) :]
            if not rest or not _MEDIA_BODY.fullmatch(rest):
                raise CommandError(field, f"not a valid {scheme} media reference")
            break
    else:
        if not _MEDIA_PATH.fullmatch(text) or text.startswith("-"):
            raise CommandError(field, "not a valid media reference (scheme or file path)")
    # uuid_broadcast reads "path::app(arg)" as "run this application": never let one through.
    if "::" in text:
        raise CommandError(field, "'::' (application call) not allowed in media")
    if ".." in text.split("?")[0].split("/"):
        raise CommandError(field, "'..' path segments not allowed")
    return _mint(text, field, "media")


def free_text(value: object, field: str = "text", max_len: int = 1024) -> Arg:
    """Text for TTS/say: spaces allowed (use as the last argument only); no control
    characters, no ``${``, ``{``, ``[``, ``'``."""
    text = _text(value, field, max_len)
    _no_expansion(text, field)
    for bad in ("{", "}", "[", "]", "'", "\\"):
        if bad in text:
            raise CommandError(field, f"character {bad!r} not allowed")
    return _mint(text, field, "free_text", last_only=_needs_tail(text))


def digits(value: object, field: str = "digits", max_len: int = 64) -> Arg:
    """DTMF digits ``[0-9*#A-Da-dwW]``."""
    return _mint(_grammar(value, field, _DIGITS, "DTMF digit string", max_len), field, "digits")


def enum(value: object, choices: Iterable[str], field: str) -> Arg:
    """One of a fixed set of strings."""
    allowed = list(choices)
    if isinstance(value, str) and value in allowed:
        _text(value, field, 256)  # a choice list is code, but a bad one must not slip through
        if " " in value:
            raise CommandError(field, "choices must be single words")
        return _mint(value, field, "enum")
    raise CommandError(field, f"must be one of {', '.join(allowed)}")


def integer(value: object, field: str, lo: int, hi: int) -> Arg:
    """An integer in ``[lo, hi]`` (ints, or strings of decimal digits)."""
    if isinstance(value, bool):
        raise CommandError(field, "must be an integer")
    if isinstance(value, str) and re.fullmatch(r"-?[0-9]{1,18}", value):
        number = int(value)
    elif isinstance(value, int):
        number = value
    else:
        raise CommandError(field, "must be an integer")
    if not lo <= number <= hi:
        raise CommandError(field, f"must be between {lo} and {hi}")
    return _mint(str(number), field, "integer")


def hangup_cause(value: object, field: str = "cause") -> Arg:
    """A FreeSWITCH hangup cause name such as ``NORMAL_CLEARING``."""
    text = _grammar(value, field, _CAUSE, "hangup cause", 48)
    if text not in HANGUP_CAUSES:
        raise CommandError(field, f"unknown hangup cause {text}")
    return _mint(text, field, "hangup_cause")


def word(value: object, field: str = "word") -> Arg:
    """A bare keyword or flag of a command, e.g. ``json``, ``aleg``, ``-bleg``, ``off``."""
    return _mint(_grammar(value, field, _WORD, "keyword", 33), field, "word")


def dial_string(endpoint: Arg, vars: Mapping[Arg, Arg] | None = None) -> DialString:
    """``{k=v,…}endpoint``. Values are escaped for dial strings: ``,`` becomes ``\\,`` and a
    value with spaces is single-quoted; quotes, braces, brackets, backslashes and ``^`` are
    refused."""
    _require_arg(endpoint, "endpoint")
    if not (_ENDPOINT.fullmatch(endpoint) or _DIAL_TARGET.fullmatch(endpoint)):
        # e.g. a var_value with spaces would add originate arguments
        raise CommandError(endpoint.field, "not a valid dial endpoint")
    parts = []
    pairs = []
    for name, value in (vars or {}).items():
        _require_arg(name, "name")
        _require_arg(value, "value")
        if not _VAR_NAME.fullmatch(name):
            raise CommandError(name.field, "not a valid variable name")
        for bad in ("'", '"', "{", "}", "[", "]", "\\", "^", "|"):
            if bad in value:
                raise CommandError(value.field, f"character {bad!r} not allowed in a dial string")
        _no_expansion(value, value.field)
        escaped = value.replace(",", "\\,")
        if " " in escaped:
            escaped = f"'{escaped}'"
        parts.append(f"{name}={escaped}")
        pairs.append((name, value))
    text = ("{" + ",".join(parts) + "}" if parts else "") + endpoint
    out = _mint(text, endpoint.field, "dial_string", cls=DialString)
    assert isinstance(out, DialString)
    out.endpoint, out.variables = endpoint, tuple(pairs)
    return out


_JOIN_SEPARATORS = frozenset({" ", "|", "=", ":"})


def join(args: Iterable[Arg], sep: str = " ", field: str | None = None) -> Joined:
    """Validated tokens joined into one argument, e.g. ``say`` args or ``engine|voice|text``.
    Only a few separators are allowed; ``,`` is not (it splits dial strings)."""
    parts = list(args)
    if sep not in _JOIN_SEPARATORS:
        raise ValueError(f"separator {sep!r} not allowed")
    if not parts:
        raise ValueError("nothing to join")
    for part in parts:
        _require_arg(part, "part")
    text = sep.join(parts)
    out = _mint(text, field or parts[-1].field, "join", any(p.last_only for p in parts) or " " in text,
                cls=Joined)
    assert isinstance(out, Joined)
    out.parts, out.sep = tuple(parts), sep
    return out


def app_ref(app: str, arg: Arg | None = None) -> AppRef:
    """The ``&app(arg)`` part of an originate: what the new leg runs once answered."""
    _check_name(app, APPLICATIONS, "application")
    if arg is None:
        out = _mint(f"&{app}()", "application", "app_ref", cls=AppRef)
    else:
        _require_arg(arg, "arg")
        if arg.last_only or ")" in arg:
            raise CommandError(arg.field, "spaces, quotes and ')' not allowed in an originate app")
        out = _mint(f"&{app}({arg})", arg.field, "app_ref", cls=AppRef)
    assert isinstance(out, AppRef)
    out.app, out.app_arg = app, arg
    return out


def assignment(name: Arg, value: Arg) -> Assignment:
    """``name=value`` for the set/export applications (value may be an empty var_value)."""
    _require_arg(name, "name")
    _require_arg(value, "value")
    if not _VAR_NAME.fullmatch(name):
        raise CommandError(name.field, "not a valid variable name")
    out = _mint(f"{name}={value}", value.field, "assignment", value.last_only, cls=Assignment)
    assert isinstance(out, Assignment)
    out.name, out.value = name, value
    return out


def digit_binding(realm: Arg, digits_: Arg, app: str) -> Arg:
    """``<realm>,<digits>,exec[H]:<app>`` for bind_digit_action: dialling ``digits`` runs
    ``app`` on the channel (``H``: without putting its peer on hold meanwhile)."""
    _require_arg(realm, "realm")
    _require_arg(digits_, "digits")
    if not _WORD.fullmatch(realm) or realm.startswith("-"):
        raise CommandError(realm.field, "not a valid realm name")
    if not _DIGITS.fullmatch(digits_):
        raise CommandError(digits_.field, "not a valid DTMF digit string")
    _check_name(app, APPLICATIONS, "application")
    return _mint(f"{realm},{digits_},exec[H]:{app}", digits_.field, "digit_binding")


def _require_arg(value: object, what: str) -> None:
    if not isinstance(value, Arg):
        raise TypeError(f"{what} must be a validated Arg (use eslchan.esl.commands), got {value!r}")


def _require_uuid(value: object) -> None:
    """The channel of a sendmsg: an Arg of UUID shape, whichever validator made it."""
    _require_arg(value, "uuid")
    assert isinstance(value, Arg)
    if not _UUID.fullmatch(value):
        raise CommandError(value.field, "not a valid UUID")


# --- commands -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Command:
    wire: bytes = dataclass_field(repr=False)  # exact bytes to write; may hold the ESL password (auth)
    kind: str  # "api" | "bgapi" | "sendmsg" | "control"
    name: str  # for metrics/logs, e.g. "uuid_kill", "sendmsg execute playback"
    text: str  # human readable, never holds a password
    job_uuid: str | None = None  # bgapi: the Job-UUID its BACKGROUND_JOB will carry
    event_uuid: str | None = None  # execute: the Application-UUID of its CHANNEL_EXECUTE*
    # the structure the policy guard reads (the bytes above are what it let through)
    args: tuple[Arg, ...] = ()  # api/bgapi: the arguments after the command name
    uuid: Arg | None = None  # sendmsg: the channel it acts on
    app: str | None = None  # sendmsg execute: the application
    app_arg: Arg | None = None  # sendmsg execute: the application's argument
    loops: int = 1  # sendmsg execute: runs of the application (each fires its own EXECUTE/COMPLETE)


#: api commands eslchan may send.
API_COMMANDS = frozenset(
    """status version show uptime hostname global_getvar sofia originate module_exists
    uuid_answer uuid_audio uuid_break uuid_bridge uuid_broadcast uuid_buglist uuid_deflect
    uuid_displace uuid_dump uuid_exists uuid_fileman uuid_flush_dtmf uuid_getvar uuid_hold
    uuid_kill uuid_park uuid_phone_event uuid_pre_answer uuid_preprocess uuid_recv_dtmf
    uuid_record uuid_send_dtmf uuid_setvar uuid_setvar_multi uuid_simplify uuid_transfer
    uuid_ring_ready uuid_limit uuid_media uuid_debug_media uuid_dual_transfer uuid_chat
    uuid_early_ok uuid_outgoing_answer uuid_redirect uuid_session_heartbeat uuid_warning
    uuid_video_refresh eavesdrop""".split()
)

#: dialplan applications eslchan may execute on a channel.
APPLICATIONS = frozenset(
    """answer pre_answer ring_ready park hangup playback endless_playback speak say set export
    unset multiset bridge transfer sleep send_dtmf start_dtmf stop_dtmf flush_dtmf
    record_session stop_record_session record hold unhold soundtouch set_audio_level
    play_and_get_digits read break intercept eavesdrop att_xfer bind_digit_action
    clear_digit_action digit_action_set_realm bind_meta_app unbind_meta_app
    displace_session stop_displace_session deflect echo info log tone_detect stop_tone_detect
    gentones redirect respond sched_hangup sched_transfer sched_cancel event""".split()
)

_CONTROL_VERBS = frozenset(
    "auth event filter exit noevents nixevent myevents linger nolinger log nolog divert_events resume".split()
)


def _check_name(name: object, allowed: frozenset[str], what: str) -> str:
    if not isinstance(name, str) or name not in allowed:
        raise CommandError(what, f"{name!r} is not an allowed {what}")
    return name


def _api_line(name: str, args: tuple[Arg, ...]) -> str:
    _check_name(name, API_COMMANDS, "api command")
    for i, arg in enumerate(args):
        _require_arg(arg, f"argument {i + 1} of {name}")
        if "\n" in arg or "\r" in arg or "\x00" in arg:  # validators refuse these; belt and braces
            raise CommandError(arg.field, "line break not allowed")
        if arg.last_only and i != len(args) - 1:
            raise CommandError(arg.field, "spaces or quotes allowed only in the last argument")
    return " ".join((name, *args))


def api(name: str, *args: Arg) -> Command:
    """``api <name> <args…>``; the reply is an api/response whose body is the result."""
    line = _api_line(name, args)
    return Command(f"api {line}\n\n".encode(), "api", name, f"api {line}", args=tuple(args))


def bgapi(name: str, *args: Arg, job_uuid: str | None = None) -> Command:
    """``bgapi <name> <args…>`` with a client-chosen Job-UUID (generated when not given)."""
    line = _api_line(name, args)
    job = uuid(job_uuid, "job_uuid") if job_uuid is not None else str(_uuid.uuid4())
    wire = f"bgapi {line}\nJob-UUID: {job}\n\n".encode()
    return Command(wire, "bgapi", name, f"bgapi {line}", job_uuid=str(job), args=tuple(args))


def execute(
    uuid: Arg,
    app: str,
    arg: Arg | None = None,
    *,
    event_lock: bool = False,
    loops: int | None = None,
    event_uuid: str | None = None,
) -> Command:
    """``sendmsg <uuid>`` executing ``app``; the argument travels as a text/plain body with a
    content-length, so nothing in it can be read as a header or a new command. Every execute
    carries an Event-UUID (generated when not given): its CHANNEL_EXECUTE and
    CHANNEL_EXECUTE_COMPLETE carry it as Application-UUID, so its completion is told apart."""
    _require_uuid(uuid)
    _check_name(app, APPLICATIONS, "application")
    lines = [f"sendmsg {uuid}", "call-command: execute", f"execute-app-name: {app}"]
    if event_lock:
        lines.append("event-lock: true")
    if loops is not None:
        if isinstance(loops, bool) or not isinstance(loops, int) or not 1 <= loops <= 1000:
            raise CommandError("loops", "must be an integer between 1 and 1000")
        lines.append(f"loops: {loops}")
    ev = str(_as_uuid(event_uuid, "event_uuid")) if event_uuid is not None else str(_uuid.uuid4())
    lines.append(f"Event-UUID: {ev}")
    body = b""
    text = f"sendmsg {uuid} execute {app}"
    if arg is not None:
        _require_arg(arg, "arg")
        body = str(arg).encode("utf-8")
        lines += ["content-type: text/plain", f"content-length: {len(body)}"]
        text += f" {arg}"
    wire = ("\n".join(lines) + "\n\n").encode() + body
    return Command(wire, "sendmsg", f"sendmsg execute {app}", text, event_uuid=ev, uuid=uuid, app=app,
                   app_arg=arg, loops=loops or 1)


def hangup(uuid: Arg, cause: Arg) -> Command:
    """``sendmsg <uuid>`` hangup with a cause."""
    _require_uuid(uuid)
    _require_arg(cause, "cause")
    if cause not in HANGUP_CAUSES:
        raise CommandError(cause.field, "unknown hangup cause")
    wire = f"sendmsg {uuid}\ncall-command: hangup\nhangup-cause: {cause}\n\n".encode()
    return Command(wire, "sendmsg", "sendmsg hangup", f"sendmsg {uuid} hangup {cause}", uuid=uuid)


def control(line: str) -> Command:
    """Fixed internal commands (auth, event, filter, exit…). Not for user data."""
    if not isinstance(line, str) or not line or any(c in line for c in "\r\n\x00"):
        raise CommandError("control", "must be one line")
    verb = line.split(" ", 1)[0]
    _check_name(verb, _CONTROL_VERBS, "control command")
    text = "auth ********" if verb == "auth" else line
    return Command(f"{line}\n\n".encode(), "control", verb, text)
