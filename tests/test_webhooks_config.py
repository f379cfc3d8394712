"""The [webhooks] table: the sample documents every key with its default, and each bad value is
named by its key, also by `eslchan check-config`."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from dataclasses import fields
from ipaddress import ip_network
from pathlib import Path

from test_config import SAMPLE, SAMPLE_ENV, minimal, problems_of

from eslchan.config import WebhooksConfig, load_config, parse_config


def test_the_sample_documents_every_key_with_its_default():
    table = tomllib.loads(SAMPLE.read_text())["webhooks"]
    text = SAMPLE.read_text().split("[webhooks]", 1)[1]
    defaults = WebhooksConfig(data_dir=Path("."))
    for field in fields(WebhooksConfig):
        assert field.name in text, f"{field.name} is not in the sample"
        if field.name in table and field.name != "data_dir":
            value = getattr(defaults, field.name)
            shown = table[field.name]
            assert (list(value) if isinstance(value, tuple) else value) == shown, field.name
    config = load_config(SAMPLE, env=SAMPLE_ENV)
    assert config.webhooks is not None and config.webhooks.data_dir == SAMPLE.parent / "data"


def test_without_the_table_webhooks_are_off():
    assert parse_config(minimal(), env={}).webhooks is None


def test_values_are_read_and_relative_paths_follow_the_file(tmp_path):
    (tmp_path / "ca.pem").write_text("x")
    config = parse_config(
        minimal(webhooks={"data_dir": "hooks", "allowed_networks": ["10.1.0.0/16", "fd00::/8"],
                          "ca_file": "ca.pem", "disable_after": 3, "allowed_schemes": ["https"]}),
        env={}, source=tmp_path / "eslchan.toml",
    )  # fmt: skip
    hooks = config.webhooks
    assert hooks.data_dir == tmp_path / "hooks" and hooks.ca_file == tmp_path / "ca.pem"
    assert hooks.allowed_networks == (ip_network("10.1.0.0/16"), ip_network("fd00::/8"))
    assert hooks.disable_after == 3 and hooks.allowed_schemes == ("https",)


def test_bad_values_are_named():
    found = problems_of(
        minimal(
            webhooks={
                "timeout": 0,
                "backoff_initial": 10.0,
                "backoff_max": 1.0,
                "backoff_jitter": 2.0,
                "disable_after": True,
                "max_pending_per_hook": -1,
                "uri_max_length": 100_000,
                "allowed_schemes": ["ftp"],
                "allowed_networks": ["10.0.0.1/8", "nope", 7],
                "denied_networks": "10.0.0.0/8",
                "ca_file": "/nonexistent/ca.pem",
                "retries": 3,
            }
        )
    )
    assert found["webhooks.data_dir"].startswith("required")
    assert found["webhooks.timeout"] == "must be greater than 0"
    assert found["webhooks.backoff_max"] == "must not be less than backoff_initial"
    assert found["webhooks.backoff_jitter"] == "must be between 0 and 1"
    assert found["webhooks.disable_after"] == "must be int, not bool"
    assert found["webhooks.max_pending_per_hook"] == "must be greater than 0"
    assert found["webhooks.uri_max_length"] == "must be at most 8192"
    assert found["webhooks.allowed_schemes"] == "must list http and/or https"
    assert {
        "webhooks.allowed_networks[0]",
        "webhooks.allowed_networks[1]",
        "webhooks.allowed_networks[2]",
    } <= set(found)
    assert found["webhooks.denied_networks"] == "must be list, not str"
    assert found["webhooks.ca_file"] == "no such file: /nonexistent/ca.pem"
    assert found["webhooks.retries"].startswith("unknown key")


def test_check_config_names_a_bad_webhooks_value(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text(SAMPLE.read_text().replace("allowed_networks = []", 'allowed_networks = ["localhost"]'))
    proc = subprocess.run(
        [sys.executable, "-m", "eslchan", "check-config", str(bad)],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", **SAMPLE_ENV},
    )
    assert proc.returncode == 1
    assert "webhooks.allowed_networks[0]: must be a network such as 10.1.0.0/16" in proc.stderr
