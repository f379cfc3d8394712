"""Configuration: the sample file is valid, and every mistake is named by its key."""

import subprocess
import sys
from pathlib import Path

import pytest

from eslchan.config import ConfigError, VariableMapping, hash_api_key, load_config, parse_config

SAMPLE = Path(__file__).resolve().parents[1] / "conf" / "eslchan.toml"
SAMPLE_ENV = {
    "ESLCHAN_SIGNING_KEY": "s" * 32,
    "FS1_ESL_PASSWORD": "ClueCon",
    "ESLCHAN_ADMIN_API_KEY": "k" * 32,
}


def minimal(**extra):
    raw = {
        "auth": {"signing_key": "x" * 32},
        "nodes": [{"name": "fs1", "host": "127.0.0.1", "password": "ClueCon"}],
        "accounts": [{"id": "a" * 32, "api_key": "k" * 20}],
    }
    raw.update(extra)
    return raw


def problems_of(raw, env=None):
    with pytest.raises(ConfigError) as info:
        parse_config(raw, env=env or {})
    return dict(info.value.problems)


def test_sample_config_loads_with_its_secrets_from_the_environment():
    config = load_config(SAMPLE, env=SAMPLE_ENV)
    assert config.nodes[0].password == "ClueCon"
    assert config.auth.signing_key == "s" * 32
    admin = config.account("ad000000000000000000000000000000")
    assert admin.superduper_admin and admin.api_key_hash == hash_api_key("k" * 32)
    assert config.http.listen == "127.0.0.1:8000"
    assert config.metaflow.callflows_dir == SAMPLE.parent / "callflows"


def test_a_misspelt_key_is_named():
    raw = minimal(channels={"sytem_wide_channels_list": True})
    assert "channels.sytem_wide_channels_list" in problems_of(raw)


def test_wrong_types_are_named_with_the_expected_type():
    raw = minimal(http={"listen": 8000}, channels={"system_wide_channels_list": "yes"})
    found = problems_of(raw)
    assert found["http.listen"] == "must be str, not int"
    assert found["channels.system_wide_channels_list"] == "must be bool, not str"


def test_every_problem_is_reported_at_once():
    raw = minimal(nodes=[{"name": "bad name!", "host": "", "port": 70000}])
    found = problems_of(raw)
    assert {"nodes[0].name", "nodes[0].host", "nodes[0].port", "nodes[0].password"} <= set(found)


def test_a_missing_environment_secret_is_named_once():
    raw = minimal(nodes=[{"name": "fs1", "host": "h", "password_env": "NOPE"}])
    found = problems_of(raw)
    assert found == {"nodes[0].password_env": "environment variable NOPE is not set"}


def test_accounts_are_checked_for_ids_parents_and_cycles():
    a, b = "a" * 32, "b" * 32
    raw = minimal(
        accounts=[
            {"id": a, "api_key": "k" * 20, "parent": b},
            {"id": b, "api_key": "j" * 20, "parent": a},
            {"id": "NOT-HEX", "api_key": "short"},
        ]
    )
    found = problems_of(raw)
    assert found["accounts[0].parent"] == "the parent chain loops"
    assert "accounts[2].id" in found and "accounts[2].api_key" in found


def test_api_keys_are_kept_hashed():
    config = parse_config(minimal(), env={})
    assert config.accounts[0].api_key_hash == hash_api_key("k" * 20)
    assert "k" * 20 not in repr(config.accounts)


def test_kazoo_preset_maps_to_ecallmgr_variables():
    config = parse_config(minimal(channels={"preset": "kazoo"}), env={})
    assert config.channels.mapping == VariableMapping.preset("kazoo")
    assert config.channels.mapping.account == "ecallmgr_Account-ID"


def test_check_config_command_names_the_misspelt_key(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text(SAMPLE.read_text().replace("token_ttl", "token_tll"))
    env = {"PATH": "/usr/bin:/bin", **SAMPLE_ENV}
    proc = subprocess.run(
        [sys.executable, "-m", "eslchan", "check-config", str(bad)], capture_output=True, text=True, env=env
    )
    assert proc.returncode == 1
    assert "auth.token_tll: unknown key" in proc.stderr
    command = [sys.executable, "-m", "eslchan", "check-config", str(SAMPLE)]
    ok = subprocess.run(command, capture_output=True, text=True, env=env)
    assert ok.returncode == 0, ok.stderr
    assert "OK" in ok.stdout


def test_sizes_and_limits_must_be_positive():
    raw = minimal(
        http={"max_body_bytes": 0},
        link={"event_queue_max": 0},  # would drop every event and resync on each one
        metaflow={"max_depth": -1, "max_nodes": 0},
    )
    found = problems_of(raw)
    for key in ("http.max_body_bytes", "link.event_queue_max", "metaflow.max_depth", "metaflow.max_nodes"):
        assert found[key] == "must be greater than 0"


def test_an_unreadable_file_is_a_config_error_naming_it(tmp_path):
    binary = tmp_path / "binary.toml"
    binary.write_bytes(b"x = '\xff\xfe'\n")
    for path, reason in ((tmp_path, "cannot read"), (binary, "not UTF-8")):
        with pytest.raises(ConfigError) as info:
            load_config(path)
        ((key, message),) = info.value.problems
        assert key == "--config" and reason in message and str(path) in message


def test_the_sample_documents_every_policy_key_with_its_default():
    from dataclasses import fields

    from eslchan.config import HttpConfig, PolicyConfig

    text = SAMPLE.read_text()
    config = load_config(SAMPLE, env=SAMPLE_ENV)
    assert config.policy == PolicyConfig()  # the sample's [policy] is the defaults, spelt out
    policy_table = text.split("\n[policy]\n", 1)[1].split("\n[", 1)[0]
    for f in fields(PolicyConfig):
        assert f"\n{f.name} = " in "\n" + policy_table, f.name
    for name in ("stream_write_timeout", "health_details"):
        assert f"\n{name} = " in text and hasattr(HttpConfig, name)
    acme = config.account("acc00000000000000000000000000001")
    assert acme.context == "acme" and acme.endpoints and dict(acme.policy)["variables"] == ("crm_*",)


@pytest.mark.parametrize("change,key", [
    (('variable_prefix = "eslchan_"', 'variable_prefix = "api_"'), "policy.variable_prefix"),
    (('variables = []', 'variables = ["execute_on_*"]'), "policy.variables"),
    (('variables = ["crm_*"]', 'variables = ["eslchan_account_id"]'), "accounts[1].policy.variables"),
    (('max_streams = 10', 'max_streams = 0'), "policy.max_streams"),
    (('context = "acme"', 'context = "acme; drop"'), "accounts[1].context"),
])
def test_check_config_command_names_a_bad_policy(tmp_path, change, key):
    bad = tmp_path / "bad.toml"
    text = SAMPLE.read_text()
    assert change[0] in text
    bad.write_text(text.replace(change[0], change[1], 1))
    env = {"PATH": "/usr/bin:/bin", **SAMPLE_ENV}
    proc = subprocess.run(
        [sys.executable, "-m", "eslchan", "check-config", str(bad)], capture_output=True, text=True, env=env
    )
    assert proc.returncode == 1
    assert f"{key}: " in proc.stderr, proc.stderr


def test_snapshot_lag_and_anti_entropy_interval():
    channels = parse_config(minimal(), env={}).channels
    assert (channels.snapshot_lag_seconds, channels.anti_entropy_seconds) == (0.5, 30.0)
    channels = parse_config(
        minimal(channels={"snapshot_lag_seconds": 0.3, "anti_entropy_seconds": 0}), env={}
    ).channels
    assert (channels.snapshot_lag_seconds, channels.anti_entropy_seconds) == (0.3, 0.0)  # 0: off
    found = problems_of(minimal(channels={"snapshot_lag_seconds": 0, "anti_entropy_seconds": -1}))
    assert found["channels.snapshot_lag_seconds"] == "must be greater than 0"
    assert found["channels.anti_entropy_seconds"] == "must be 0 (off) or more"


def test_quickcall_endpoints_of_devices_and_users():
    raw = minimal(accounts=[{"id": "a" * 32, "api_key": "k" * 20, "quickcall": {
        "device": "user/{id}@acme.example", "devices": {"d1": "sofia/gateway/pbx/1009"}}}])
    quick = parse_config(raw, env={}).accounts[0].quickcall
    assert quick.endpoint("device", "d1") == "sofia/gateway/pbx/1009"  # the table first
    assert quick.endpoint("device", "d2") == "user/d2@acme.example"
    assert quick.endpoint("user", "u1") is None  # no user template, no table entry
    assert parse_config(minimal(), env={}).accounts[0].quickcall is None


@pytest.mark.parametrize("table,key", [
    ({"device": "user/{id}@{domain}"}, "accounts[0].quickcall.device"),  # only {id}
    ({"user": "user/{id} &system(x)"}, "accounts[0].quickcall.user"),
    ({"device": "{origination_uuid=x}user/{id}"}, "accounts[0].quickcall.device"),
    ({"users": {"u1": "user/1,user/2"}}, "accounts[0].quickcall.users.u1"),
    ({"devices": {"a b": "user/1"}}, "accounts[0].quickcall.devices.a b"),
    ({"phones": {}}, "accounts[0].quickcall.phones"),
])
def test_quickcall_endpoints_are_checked(table, key):
    raw = minimal(accounts=[{"id": "a" * 32, "api_key": "k" * 20, "quickcall": table}])
    assert key in problems_of(raw)


def test_max_originates_is_a_positive_limit():
    assert parse_config(minimal(), env={}).policy.max_originates == 10
    found = problems_of(minimal(policy={"max_originates": 0}))
    assert found["policy.max_originates"] == "must be greater than 0"
