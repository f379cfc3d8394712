"""The [cluster] table: required keys, bounds, secrets from the environment; and the single
process (no [cluster]) never imports Redis's client."""

from __future__ import annotations

import subprocess
import sys

import pytest

from eslchan.config import ConfigError, parse_config

NODE = {"name": "fs1", "host": "127.0.0.1", "password": "ClueCon"}
BASE = {"nodes": [NODE], "auth": {"signing_key": "k" * 32}}


def parse(cluster: dict, env: dict | None = None):
    return parse_config({**BASE, "cluster": cluster}, env=env or {})


def problems(cluster: dict) -> dict[str, str]:
    with pytest.raises(ConfigError) as exc:
        parse(cluster)
    return dict(exc.value.problems)


def test_a_cluster_table_with_every_key():
    config = parse({"redis_url_env": "REDIS", "instance": "eslchan-1", "key_prefix": "pbx:",
                    "lease_seconds": 2.5, "stream_max_len": 5000, "publish_buffer_max": 100,
                    "redis_timeout": 1.0, "event_headers": ["variable_sip_term_status"]},
                   env={"REDIS": "redis://:secret@10.0.0.5:6379/2"})
    c = config.cluster
    assert c is not None and c.redis_url == "redis://:secret@10.0.0.5:6379/2"
    assert (c.instance, c.key_prefix, c.lease_seconds, c.stream_max_len) == ("eslchan-1", "pbx:", 2.5, 5000)
    assert c.event_headers == ("variable_sip_term_status",)


def test_no_cluster_table_is_the_single_process():
    assert parse_config(BASE, env={}).cluster is None


def test_redis_url_and_instance_are_required():
    found = problems({})
    assert "cluster.redis_url" in found and "cluster.instance" in found


@pytest.mark.parametrize(("cluster", "key"), [
    ({"redis_url": "http://x", "instance": "a"}, "cluster.redis_url"),
    ({"redis_url": "redis://x", "instance": "a b"}, "cluster.instance"),
    ({"redis_url": "redis://x", "instance": "a\nb"}, "cluster.instance"),
    ({"redis_url": "redis://x", "instance": "a", "lease_seconds": 0.1}, "cluster.lease_seconds"),
    ({"redis_url": "redis://x", "instance": "a", "stream_max_len": 0}, "cluster.stream_max_len"),
    ({"redis_url": "redis://x", "instance": "a", "key_prefix": "a b"}, "cluster.key_prefix"),
    ({"redis_url": "redis://x", "instance": "a", "event_headers": ["ok", "new\nline"]},
     "cluster.event_headers"),
    ({"redis_url": "redis://x", "instance": "a", "nodes": 1}, "cluster.nodes"),
    ({"redis_url_env": "UNSET", "instance": "a"}, "cluster.redis_url_env"),
])
def test_bad_values_are_named(cluster, key):
    assert key in problems(cluster)


def test_the_single_process_never_imports_redis():
    code = (
        "import sys\n"
        "from eslchan.simulator import Simulator\n"
        "from eslchan.demo import demo_config, demo_keys\n"
        "from eslchan.daemon import Daemon\n"
        "sim = Simulator(); sim.start()\n"
        "nodes = [('fs1', sim.host, sim.port, 'ClueCon')]\n"
        "d = Daemon(demo_config(nodes, demo_keys(), listen='127.0.0.1:0'))\n"
        "d.start(); d.stop(0.1); sim.stop()\n"
        "names = ('redis', 'redis.', 'hiredis', 'eslchan.cluster')\n"
        "print(sorted(m for m in sys.modules if m.startswith(names)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"
