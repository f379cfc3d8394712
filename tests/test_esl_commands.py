"""The command builder refuses every injection vector before a byte is sent."""

from __future__ import annotations

import pytest

from eslchan.esl import commands as c
from eslchan.esl.commands import Arg, CommandError

pytestmark = pytest.mark.timeout(30)

U = "d807444d-9b3e-405f-a412-dcdedef69da1"

# Values that must never pass any validator (each is an attack on a different ESL layer).
HOSTILE_ALWAYS = [
    "abc\nFake: x",  # newline: new header / command
    "abc\n\napi system rm -rf /",  # ends the command, starts a second one
    "abc\r\n",
    "a\x00b",  # NUL
    "${system(id)}",  # variable/api expansion
    "$${hostname}",
    "",  # empty
    "a" * 5000,  # overlong
    "a\u2028b",  # unicode line separator
    "tab\there",
]
HOSTILE_TOKEN = HOSTILE_ALWAYS + [
    "{origination_uuid=x}user/1",
    "[leg_var=x]user/1",
    "a'b",
    "a,b",
    "a b",
    "a|b",
]
NON_STRINGS = [None, 1, 1.5, b"1001", ["1001"], {"a": 1}, True]

TOKEN_VALIDATORS = {
    "uuid": (c.uuid, U),
    "dial_target": (c.dial_target, "1001"),
    "endpoint": (c.endpoint, "user/1001@example.com"),
    "context": (c.context, "default"),
    "var_name": (c.var_name, "my_var"),
    "media": (c.media, "tone_stream://%(500,500,440);loops=2"),
    "digits": (c.digits, "12*#"),
    "hangup_cause": (c.hangup_cause, "NORMAL_CLEARING"),
    "word": (c.word, "json"),
}
TEXT_VALIDATORS = {
    "var_value": (c.var_value, "hello world/a=b&c"),
    "free_text": (c.free_text, "Hello, you have 3 new messages."),
}


@pytest.mark.parametrize("name", sorted(TOKEN_VALIDATORS))
def test_token_validators_accept_good_value(name):
    fn, good = TOKEN_VALIDATORS[name]
    out = fn(good)
    assert isinstance(out, Arg) and out == good.lower() if name == "uuid" else out == good


@pytest.mark.parametrize("name", sorted(TOKEN_VALIDATORS))
@pytest.mark.parametrize("bad", HOSTILE_TOKEN, ids=repr)
def test_token_validators_refuse_hostile(name, bad):
    fn, _ = TOKEN_VALIDATORS[name]
    with pytest.raises(CommandError) as info:
        fn(bad, field="data.x")
    assert info.value.field == "data.x"
    assert str(info.value).startswith("data.x: ")


@pytest.mark.parametrize("name", sorted(TOKEN_VALIDATORS) + sorted(TEXT_VALIDATORS))
@pytest.mark.parametrize("bad", NON_STRINGS, ids=repr)
def test_validators_refuse_non_strings(name, bad):
    fn, _ = {**TOKEN_VALIDATORS, **TEXT_VALIDATORS}[name]
    with pytest.raises(CommandError, match="must be a string"):
        fn(bad)


@pytest.mark.parametrize("name", sorted(TEXT_VALIDATORS))
@pytest.mark.parametrize("bad", HOSTILE_ALWAYS, ids=repr)
def test_text_validators_refuse_hostile(name, bad):
    fn, good = TEXT_VALIDATORS[name]
    assert fn(good) == good
    with pytest.raises(CommandError):
        fn(bad)


@pytest.mark.parametrize("bad", ["{x}", "[x]", "it's", "a}", "back\\slash"])
def test_free_text_refuses_dial_string_and_quote_characters(bad):
    with pytest.raises(CommandError):
        c.free_text(bad)


def test_text_allows_spaces_but_only_as_last_api_argument():
    value = c.var_value("hello world")
    assert value.last_only
    cmd = c.api("uuid_setvar", c.uuid(U), c.var_name("note"), value)
    assert cmd.wire == f"api uuid_setvar {U} note hello world\n\n".encode()
    with pytest.raises(CommandError, match="last argument"):
        c.api("uuid_setvar", c.uuid(U), value, c.var_name("note"))


def test_uuid_is_lowercased_and_strict():
    assert c.uuid(U.upper()) == U
    for bad in [U + "0", U[:-1], U.replace("-", ""), " " + U, U + "\n", "g" * 8 + U[8:]]:
        with pytest.raises(CommandError):
            c.uuid(bad)


def test_dial_target_refuses_leading_dash_and_overlong():
    with pytest.raises(CommandError):
        c.dial_target("-bleg")
    c.dial_target("a" * 64)
    with pytest.raises(CommandError):
        c.dial_target("a" * 65)


@pytest.mark.parametrize(
    "good",
    [
        "tone_stream://%(200,200,600);loops=2",
        "silence_stream://1000",
        "local_stream://moh",
        "/usr/share/sounds/prompt.wav",
        "ivr/ivr-welcome.wav",
        "https://media.example.com/a.wav?x=1&y=2",
        "http_cache://http://media.example.com/a.mp3",
        "say:en:number:pronounced:5",
    ],
)
def test_media_accepts_resolved_references(good):
    assert c.media(good) == good


@pytest.mark.parametrize(
    "bad",
    [
        "tone_stream://",
        "/tmp/a b.wav",
        "../../etc/passwd",
        "/var/../etc/shadow",
        "-x",
        "javascript:alert(1)",
        "https://x/${system(id)}",
        "https://x/a'b",
        "{x=y}/a.wav",
        "[x]/a.wav",
        # uuid_broadcast runs "path::app(arg)" as a dialplan application
        "tone_stream://%(100,100,440)::system(id)",
        "https://example.com/a.wav::bridge(user/1000)",
        "say:en::system(id)",
    ],
)
def test_media_refuses_bad_references(bad):
    with pytest.raises(CommandError):
        c.media(bad)


def test_digits_enum_integer_cause():
    assert c.digits("123*#ABCDw") == "123*#ABCDw"
    for bad in ["12E", "1 2", "", "1" * 65]:
        with pytest.raises(CommandError):
            c.digits(bad)
    assert c.enum("aleg", ["aleg", "bleg"], "leg") == "aleg"
    for bad in ["cleg", "aleg\n", None, 1]:
        with pytest.raises(CommandError, match="leg: must be one of"):
            c.enum(bad, ["aleg", "bleg"], "leg")
    assert c.integer(5, "n", 0, 10) == "5"
    assert c.integer("7", "n", 0, 10) == "7"
    for bad in [11, -1, "5 ", "5\n", True, 1.0, "1e3", None]:
        with pytest.raises(CommandError):
            c.integer(bad, "n", 0, 10)
    with pytest.raises(CommandError, match="unknown hangup cause"):
        c.hangup_cause("NOT_A_CAUSE")


def test_arg_cannot_be_forged():
    with pytest.raises(TypeError):
        Arg("x", "f", object())


def test_api_refuses_plain_strings_and_unknown_commands():
    with pytest.raises(TypeError):
        c.api("uuid_kill", U)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        c.api("uuid_kill", f"{U}\n\napi system id")  # type: ignore[arg-type]
    with pytest.raises(CommandError, match="not an allowed api command"):
        c.api("system", c.word("id"))
    with pytest.raises(CommandError):
        c.api("uuid_kill\n\napi system", c.uuid(U))


def test_api_and_bgapi_wire_format():
    cmd = c.api("show", c.word("channels"), c.word("as"), c.word("json"))
    assert cmd.wire == b"api show channels as json\n\n"
    assert (cmd.kind, cmd.name, cmd.text) == ("api", "show", "api show channels as json")
    job = "11111111-2222-3333-4444-555555555555"
    bg = c.bgapi("status", job_uuid=job)
    assert bg.wire == f"bgapi status\nJob-UUID: {job}\n\n".encode()
    assert bg.job_uuid == job and bg.kind == "bgapi"
    assert c.bgapi("status").job_uuid != c.bgapi("status").job_uuid
    with pytest.raises(CommandError):
        c.bgapi("status", job_uuid="x\nEvent-Name: FORGED")


def test_execute_puts_the_argument_in_a_body():
    hostile_but_valid = c.var_value("line1 Fake-Header: injected Event-Name: FORGED")
    cmd = c.execute(c.uuid(U), "set", c.assignment(c.var_name("v"), hostile_but_valid))
    head, sep, body = cmd.wire.partition(b"\n\n")
    assert sep and body == b"v=line1 Fake-Header: injected Event-Name: FORGED"
    assert head.split(b"\n") == [
        f"sendmsg {U}".encode(),
        b"call-command: execute",
        b"execute-app-name: set",
        f"Event-UUID: {cmd.event_uuid}".encode(),
        b"content-type: text/plain",
        f"content-length: {len(body)}".encode(),
    ]
    assert cmd.kind == "sendmsg" and cmd.name == "sendmsg execute set"
    assert (cmd.app, cmd.uuid) == ("set", U)


def test_execute_length_counts_utf8_bytes_and_options():
    cmd = c.execute(c.uuid(U), "speak", c.free_text("Zoë 東京"), event_lock=True, loops=2, event_uuid=U)
    head, _, body = cmd.wire.partition(b"\n\n")
    assert body == "Zoë 東京".encode()
    assert f"content-length: {len(body)}".encode() in head.split(b"\n")
    assert b"event-lock: true" in head and b"loops: 2" in head
    assert cmd.event_uuid == U
    with pytest.raises(CommandError):
        c.execute(c.uuid(U), "system", c.free_text("id"))
    with pytest.raises(TypeError):
        c.execute(c.uuid(U), "playback", "/tmp/x.wav")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        c.execute(U, "answer")  # type: ignore[arg-type]
    with pytest.raises(CommandError):
        c.execute(c.uuid(U), "answer", loops=0)


def test_execute_without_argument_ends_with_empty_line():
    cmd = c.execute(c.uuid(U), "answer")
    assert cmd.wire == (f"sendmsg {U}\ncall-command: execute\nexecute-app-name: answer\n"
                        f"Event-UUID: {cmd.event_uuid}\n\n".encode())


def test_every_execute_carries_its_own_event_uuid():
    # its CHANNEL_EXECUTE_COMPLETE (Application-UUID) tells its completion from any other's
    first, second = c.execute(c.uuid(U), "answer"), c.execute(c.uuid(U), "answer")
    assert first.event_uuid and second.event_uuid and first.event_uuid != second.event_uuid
    assert c.uuid(first.event_uuid) == first.event_uuid


def test_hangup():
    cmd = c.hangup(c.uuid(U), c.hangup_cause("USER_BUSY"))
    assert cmd.wire == f"sendmsg {U}\ncall-command: hangup\nhangup-cause: USER_BUSY\n\n".encode()
    with pytest.raises(TypeError):
        c.hangup(c.uuid(U), "USER_BUSY")  # type: ignore[arg-type]


def test_control_hides_password_and_refuses_newlines():
    cmd = c.control("auth ClueCon")
    assert cmd.wire == b"auth ClueCon\n\n" and "ClueCon" not in cmd.text
    assert "ClueCon" not in repr(cmd) and "ClueCon" not in str(cmd)  # e.g. logged with %r
    assert c.control("event json CHANNEL_CREATE").wire == b"event json CHANNEL_CREATE\n\n"
    for bad in ["auth x\n\napi system id", "api status", "", "sendmsg x"]:
        with pytest.raises(CommandError):
            c.control(bad)


def test_dial_string_escapes_values():
    ep = c.endpoint("user/1001@example.com")
    ds = c.dial_string(
        ep,
        {
            c.var_name("origination_caller_id_name"): c.var_value("Alice Smith"),
            c.var_name("absolute_codec_string"): c.var_value("PCMU,PCMA"),
        },
    )
    assert ds == (
        "{origination_caller_id_name='Alice Smith',absolute_codec_string=PCMU\\,PCMA}user/1001@example.com"
    )
    assert not ds.last_only  # a quoted value does not split the originate arguments
    cmd = c.api("originate", ds, c.app_ref("park"))
    assert cmd.wire.count(b"\n") == 2 and cmd.wire.endswith(b"&park()\n\n")
    assert c.dial_string(ep) == "user/1001@example.com"


@pytest.mark.parametrize("bad", ["it's", 'say "x"', "a}b", "{a}", "[b]", "x^y", "a\\b", "a|b"])
def test_dial_string_refuses_what_cannot_be_escaped(bad):
    with pytest.raises(CommandError):
        c.dial_string(c.endpoint("user/1001"), {c.var_name("v"): c.var_value(bad)})


def test_dial_string_refuses_plain_strings():
    with pytest.raises(TypeError):
        c.dial_string("user/1001")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        c.dial_string(c.endpoint("user/1001"), {"v": c.var_value("x")})  # type: ignore[dict-item]


def test_join_and_app_ref():
    j = c.join([c.word("en"), c.word("number"), c.word("pronounced"), c.integer(5, "n", 0, 9)])
    assert j == "en number pronounced 5" and j.last_only
    with pytest.raises(ValueError):
        c.join([c.word("a")], sep=",")
    with pytest.raises(CommandError):
        c.app_ref("system")
    with pytest.raises(CommandError):
        c.app_ref("playback", c.free_text("a b"))


def test_dial_string_endpoint_must_be_an_endpoint():
    with pytest.raises(CommandError):
        c.dial_string(c.var_value("user/1 &system(id)"))
    with pytest.raises(CommandError):
        c.dial_string(c.media("tone_stream://%(1,2,3)"), {c.var_name("a"): c.var_value("b")})
    assert c.dial_string(c.dial_target("1001")) == "1001"


def test_digit_binding_is_built_from_validated_parts_only():
    arg = c.digit_binding(c.word("eslchan_hold_1"), c.digits("*1"), "unhold")
    assert arg == "eslchan_hold_1,*1,exec[H]:unhold"
    with pytest.raises(c.CommandError):
        c.digit_binding(c.word("-bad"), c.digits("1"), "unhold")
    with pytest.raises(c.CommandError):
        c.digit_binding(c.word("realm"), c.digits("1"), "system")  # not an allowed application
    with pytest.raises(TypeError):
        c.digit_binding("realm,1,api:system", c.digits("1"), "unhold")
