"""Metaflow validation: Kazoo-shaped errors, defaults, both body shapes, bounds, hostile input."""

import pytest

from eslchan.config import MetaflowConfig
from metaflow import ModuleRegistry, ValidationFailed
from metaflow.validation import TreeValidator

pytestmark = pytest.mark.timeout(30)

CONFIG = MetaflowConfig(media={"welcome": "tone_stream://%(400,200,523)", "moh1": "local_stream://moh"})


@pytest.fixture(scope="module")
def validator() -> TreeValidator:
    return TreeValidator(ModuleRegistry(), CONFIG)


def errors(validator, tree):
    with pytest.raises(ValidationFailed) as info:
        validator.validate(tree)
    return info.value.errors


def test_missing_required_field_is_named_with_its_dotted_path(validator):
    tree = {"module": "play", "data": {"id": "welcome"},
            "children": {"_": {"module": "transfer", "data": {}}}}
    assert errors(validator, tree) == {
        "children._.data.target": {"required": {"message": "Field is required but missing"}}}


def test_root_field_error_matches_the_spec_example(validator):
    assert errors(validator, {"module": "transfer", "data": {}}) == {
        "data.target": {"required": {"message": "Field is required but missing"}}}


def test_defaults_are_filled_in_everywhere_and_the_input_is_not_touched(validator):
    tree = {"module": "collect_dtmf", "children": {"1": {"module": "record_call"}}}
    out = validator.validate(tree)
    assert out["data"] == {"max_digits": 1, "timeout": 5000, "interdigit_timeout": 2000,
                           "terminators": ["#"]}
    assert out["children"]["1"]["data"]["action"] == "toggle"
    assert out["children"]["1"]["data"]["format"] == "wav"
    assert "data" not in tree  # a copy was validated
    assert validator.validate(out) == out  # idempotent


@pytest.mark.parametrize("body", [
    {"module": "hangup"},
    {"action": "metaflow", "data": {"module": "hangup"}},
    {"action": "metaflow", "data": {"data": {"module": "hangup"}}},  # Kazoo's extra nesting
    {"data": {"data": {"module": "hangup"}}},
])
def test_both_body_shapes_are_accepted(validator, body):
    assert validator.validate(body) == {"module": "hangup", "data": {"cause": "NORMAL_CLEARING"},
                                        "children": {}}


def test_unknown_module_is_named(validator):
    errs = errors(validator, {"module": "play", "data": {"id": "welcome"},
                              "children": {"2": {"module": "teleport"}}})
    assert list(errs) == ["children.2.module"]
    assert "teleport" in errs["children.2.module"]["enum"]["message"]


def test_wrong_types_enums_and_unknown_fields(validator):
    errs = errors(validator, {"module": "play", "data": {"id": 5, "leg": "left", "volume": 3}})
    assert errs["data.id"]["type"]["target"] == "string"
    assert errs["data.leg"]["enum"]["target"] == ["self", "peer", "both"]
    assert "additionalProperties" in errs["data.volume"]


def test_every_error_of_the_tree_is_reported_at_once(validator):
    tree = {"module": "hold_control", "data": {"action": "nap"}, "children": {
        "_": {"module": "sleep", "data": {"duration": -1}},
        "x": {"module": "set_variable", "data": {"name": "a"}}}}
    assert set(errors(validator, tree)) == {"data.action", "children._.data.duration",
                                            "children.x.data.value"}


def test_node_shape_errors(validator):
    errs = errors(validator, {"data": {}, "children": {"_": "hangup"}, "extra": 1})
    assert errs["module"] == {"required": {"message": "Field is required but missing"}}
    assert "additionalProperties" in errs["extra"]
    assert "type" in errs["children._"]


def chain(depth: int) -> dict:
    node = {"module": "hangup"}
    for _ in range(depth - 1):
        node = {"module": "break", "children": {"_": node}}
    return node


def test_depth_is_bounded(validator):
    validator.validate(chain(32))
    errs = errors(validator, chain(33))
    (path, detail), = errs.items()
    assert path == ".".join(["children._"] * 32)
    assert detail["maxDepth"]["target"] == 32


def test_node_count_is_bounded(validator):
    wide = {"module": "collect_dtmf", "children": {str(i): {"module": "hangup"} for i in range(255)}}
    validator.validate(wide)  # 256 nodes
    wide["children"]["x"] = {"module": "hangup"}
    errs = errors(validator, wide)
    assert [d for d in errs.values() if "maxNodes" in d]


HOSTILE = ["2600\napi system rm -rf /", "${system(id)}", "{origination_uuid=x}user/1", "a'b",
           "a b", 'a"b', "a\rb", "$${x}", "[x]", "a\x00b"]
STRING_FIELDS = [
    ("transfer", "target", {}), ("transfer", "context", {"target": "2600"}),
    ("transfer", "dialplan", {"target": "2600"}), ("transfer", "takeback_dtmf", {"target": "2600"}),
    ("transfer", "moh", {"target": "2600"}), ("transfer", "ringback", {"target": "2600"}),
    ("play", "id", {}), ("tts", "engine", {"text": "hi"}), ("tts", "voice", {"text": "hi"}),
    ("tts", "language", {"text": "hi"}), ("say", "text", {}), ("say", "language", {"text": "1"}),
    ("hold", "moh_aleg", {}), ("hold", "moh_bleg", {}), ("hold", "unhold_key", {}),
    ("record_call", "media_name", {}), ("record_call", "label", {}),
    ("intercept", "target_id", {"target_type": "device"}), ("move", "device_id", {}),
    ("move", "owner_id", {}), ("callflow", "id", {}), ("collect_dtmf", "collection_name", {}),
    ("set_variable", "name", {"value": "v"}), ("send_dtmf", "digits", {}), ("hangup", "cause", {}),
]


@pytest.mark.parametrize("module,field,rest", STRING_FIELDS)
def test_hostile_values_are_refused_in_every_string_field(validator, module, field, rest):
    for bad in HOSTILE:
        if module == "record_call" and field == "label" and bad == "a b":
            continue  # a label is free text: spaces are fine there
        errs = errors(validator, {"module": module, "data": {**rest, field: bad}})
        assert f"data.{field}" in errs, (field, bad, errs)


@pytest.mark.parametrize("bad", ["${x}", "a\nb", "{a}", "it's", 'say "x"', "a|b"])
def test_hostile_free_text_is_refused(validator, bad):
    assert "data.text" in errors(validator, {"module": "tts", "data": {"text": bad}})
    if bad != "a|b":  # a pipe is harmless in a variable value
        node = {"module": "set_variable", "data": {"name": "a", "value": bad}}
        assert "data.value" in errors(validator, node)


def test_media_references(validator):
    ok = ["welcome", "tone_stream://%(2000,4000,440,480)", "%(2000,4000,440,480)",
          "/usr/share/freeswitch/sounds/en/us/callie/ivr/8000/ivr-welcome.wav"]
    for ref in ok:
        validator.validate({"module": "play", "data": {"id": ref}})
    bad = ["nosuchid", "/etc/passwd", "/usr/share/freeswitch/sounds/../../../etc/passwd",
           "shout://evil.example/x.mp3", "ftp://example.com/a.wav", "local_stream://moh",
           "tone_stream://%(1,1,1);${x}"]
    for ref in bad:
        errs = errors(validator, {"module": "play", "data": {"id": ref}})
        assert "data.id" in errs, ref


def test_http_media_when_the_configuration_allows_it():
    cfg = MetaflowConfig(allowed_media_schemes=("https",))
    v = TreeValidator(ModuleRegistry(), cfg)
    v.validate({"module": "play", "data": {"id": "https://media.example.com/a/b.wav"}})
    with pytest.raises(ValidationFailed):
        v.validate({"module": "play", "data": {"id": "http://media.example.com/a.wav"}})
    with pytest.raises(ValidationFailed):
        v.validate({"module": "play", "data": {"id": "tone_stream://%(1,1,1)"}})


def test_a_stored_callflow_must_exist_when_the_tree_is_validated(tmp_path):
    tree = {"module": "play", "data": {"id": "welcome"},
            "children": {"_": {"module": "callflow", "data": {"id": "sales"}}}}
    no_dir = TreeValidator(ModuleRegistry(), CONFIG)
    assert "not_allowed" in errors(no_dir, tree)["children._.data.id"]
    with_dir = TreeValidator(ModuleRegistry(), MetaflowConfig(media=CONFIG.media, callflows_dir=tmp_path))
    assert "not_found" in errors(with_dir, tree)["children._.data.id"]
    (tmp_path / "sales.json").write_text('{"module": "hangup"}')
    with_dir.validate(tree)


# free text where a space is a normal character (sent only where FreeSWITCH takes the rest)
SPACES_ALLOWED = {("record_call", "label"), ("set_variable", "value"), ("tts", "text")}


def string_fields():
    modules = ModuleRegistry()
    for name in modules.names():
        for field, prop in modules.get(name).schema.get("properties", {}).items():
            items = prop.get("items", {}) if prop.get("type") == "array" else prop
            if items.get("type") == "string":
                yield name, field, prop


@pytest.mark.parametrize("module,field,prop", list(string_fields()),
                         ids=[f"{m}.{f}" for m, f, _ in string_fields()])
def test_every_string_field_of_every_schema_has_a_grammar_refusing_hostile_values(module, field, prop):
    from jsonschema import Draft7Validator

    v = TreeValidator(ModuleRegistry(), CONFIG)
    checker = Draft7Validator(prop, format_checker=v._formats)
    for bad in HOSTILE:
        if bad == "a b" and (module, field) in SPACES_ALLOWED:
            continue
        value = [bad] if prop.get("type") == "array" else bad
        assert not checker.is_valid(value), (module, field, bad)


@pytest.mark.parametrize("tree,path", [
    ({"module": "transfer", "data": {"target": "2600\n"}}, "data.target"),
    ({"module": "set_variable", "data": {"name": "eslchan_x\n", "value": "1"}}, "data.name"),
    ({"module": "collect_dtmf", "data": {"collection_name": "eslchan_pin\n"}}, "data.collection_name"),
    ({"module": "record_call", "data": {"media_name": "board\n"}}, "data.media_name"),
])
def test_a_pattern_is_the_whole_string_a_final_newline_included(validator, tree, path):
    """JSON Schema's '$' ends the string; Python's also matches before a final newline. The
    schemas' patterns refuse a trailing newline themselves, not only the command builder."""
    found = errors(validator, tree)
    assert list(found) == [path] and "pattern" in found[path]
    ok = {k: (v.rstrip("\n") if isinstance(v, str) else v) for k, v in tree["data"].items()}
    validator.validate({"module": tree["module"], "data": ok})
