"""New metaflow modules without touching eslchan: a handler + schema found through the
``eslchan.metaflow_modules`` entry point group, and a module declared by its schema alone."""

import importlib
import textwrap

import pytest
from test_metaflow_modules import ACME, Call, finished

from metaflow import Interpreter, ModuleRegistry, ValidationFailed
from metaflow.registry import ModuleError

pytestmark = pytest.mark.timeout(60)

PLUGIN = '''
"""A third-party metaflow module package (lives outside eslchan)."""
from eslchan.esl import commands as esl
from metaflow import branch

SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "required": ["who"],
    "properties": {"who": {"type": "string", "pattern": "^[a-z]{1,16}$"},
                   "lang": {"type": "string", "enum": ["en", "fr"], "default": "en"}},
}


def run(ctx, data):
    word = {"en": "hello", "fr": "bonjour"}[data["lang"]]
    ctx.api(esl.api("uuid_setvar", ctx.arg_uuid(), esl.var_name("eslchan_greeting"),
                    esl.var_value(word + "_" + data["who"])))
    return branch("greeted")


# a module that is one ESL command, declared by its schema alone
FLUSH = {
    "type": "object",
    "additionalProperties": False,
    "properties": {"digits": {"type": "string", "pattern": "^[0-9]{1,8}$", "x-esl": "digits"}},
    "required": ["digits"],
    "x-eslchan-command": {"kind": "api", "name": "uuid_send_dtmf", "args": ["{peer}", "{digits}"]},
}

BROKEN = {"type": "object", "x-eslchan-command": {"kind": "api", "name": "system", "args": []}}
'''


@pytest.fixture
def plugin_dir(tmp_path, monkeypatch):
    (tmp_path / "greeter_plugin.py").write_text(textwrap.dedent(PLUGIN))
    dist = tmp_path / "greeter_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: greeter-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[eslchan.metaflow_modules]\n"
        "greet = greeter_plugin\n"
        "peer_dtmf = greeter_plugin:FLUSH\n"
        "broken = greeter_plugin:BROKEN\n"
        "missing = greeter_plugin_nowhere\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    return tmp_path


def test_entry_point_modules_are_found_and_broken_ones_skipped(plugin_dir, caplog):
    modules = ModuleRegistry()
    assert "greet" in modules and "peer_dtmf" in modules
    assert "broken" not in modules and "missing" not in modules
    assert modules.get("greet").source == "entry_point:greeter_plugin"
    assert "not loaded" in caplog.text


def test_a_plugin_module_runs_in_a_flow(plugin_dir, daemon, simulator):
    interp = Interpreter(daemon.registry, daemon.links, daemon.config.metaflow, modules=ModuleRegistry())
    call = Call(daemon, simulator)
    tree = {"module": "greet", "data": {"who": "bob", "lang": "fr"},
            "children": {"greeted": {"module": "peer_dtmf", "data": {"digits": "42"}}}}
    with pytest.raises(ValidationFailed) as info:
        interp.validate({"module": "greet", "data": {"who": "Bob\n"}})
    assert "data.who" in info.value.errors
    run = interp.start(call.channel, tree, ACME)
    assert finished(run) == "finished"
    assert call.sent() == [f"api uuid_setvar {call.a} eslchan_greeting bonjour_bob",
                           f"api uuid_send_dtmf {call.b} 42"]
    assert simulator.channel(call.a).variables["eslchan_greeting"] == "bonjour_bob"


def test_register_at_runtime_and_template_checks():
    modules = ModuleRegistry(builtins=False, load_entry_points=False)
    modules.register("nap", {"type": "object", "properties": {"s": {"type": "integer", "minimum": 0,
                                                                    "maximum": 9}},
                             "x-eslchan-command": {"kind": "execute", "app": "sleep", "arg": "{s}"}})
    assert modules.names() == ["nap"]
    bad = [
        {"type": "object", "x-eslchan-command": {"kind": "api", "name": "system", "args": []}},
        {"type": "object", "x-eslchan-command": {"kind": "api", "name": "uuid_kill", "args": ["{nope}"]}},
        {"type": "object", "x-eslchan-command": {"kind": "api", "name": "uuid_kill",
                                                 "args": ["{uuid}", "a;b"]}},
        {"type": "object", "properties": {"t": {"type": "string"}},
         "x-eslchan-command": {"kind": "api", "name": "uuid_kill", "args": ["{t}"]}},  # untyped
        {"type": "object"},  # neither handler nor command
    ]
    for i, schema in enumerate(bad):
        with pytest.raises(ModuleError):
            modules.register(f"bad{i}", schema)
    with pytest.raises(ModuleError):
        modules.register("Bad Name", {"type": "object"}, lambda ctx, data: None)
    with pytest.raises(ModuleError):
        modules.register("nap", {"type": "object"}, lambda ctx, data: None)  # taken


def test_a_declared_media_placeholder_is_resolved_through_the_configuration(daemon, simulator):
    modules = ModuleRegistry(builtins=False, load_entry_points=False)
    modules.register("jingle", {
        "type": "object", "additionalProperties": False, "required": ["file"],
        "properties": {"file": {"type": "string", "format": "eslchan-media", "x-esl": "media"}},
        "x-eslchan-command": {"kind": "execute", "app": "playback", "arg": "{file}"}})
    interp = Interpreter(daemon.registry, daemon.links, daemon.config.metaflow, modules=modules)
    call = Call(daemon, simulator)
    run = interp.start(call.channel, {"module": "jingle", "data": {"file": "media_id"}}, ACME)
    assert finished(run) == "finished"
    assert call.sent() == [f"sendmsg {call.a}\n{daemon.config.metaflow.media['media_id']}"]
    with pytest.raises(ValidationFailed) as info:
        interp.validate({"module": "jingle", "data": {"file": "/etc/passwd"}})
    assert "data.file" in info.value.errors
