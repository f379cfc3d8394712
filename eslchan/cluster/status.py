"""The cluster's view from Redis alone (``eslchan cluster status``): who is alive, who owns
which node, how far each instance's mirror is behind, how long the stream is, which instance
delivers the webhooks."""

from __future__ import annotations

import json
import time
from typing import Any

from eslchan.cluster.store import Store
from eslchan.config import Config


def _text(value: Any) -> str | None:
    return value.decode() if isinstance(value, bytes) else value


def cluster_status(config: Config, *, store: Store | None = None) -> dict[str, Any]:
    """Raises the Redis client's error when Redis cannot be reached."""
    assert config.cluster is not None
    store = store if store is not None else Store(config.cluster)
    k, r = store.keys, store.redis
    now_s, now_us = r.time()
    now_ms = now_s * 1000 + now_us // 1000
    members = r.zrangebyscore(k.members, now_ms, "+inf", withscores=True)
    instances = []
    for raw, expires in members:
        name = _text(raw) or ""
        info = json.loads(r.get(k.member(name)) or "{}")
        instances.append({
            "instance": name,
            "http": info.get("http"),
            "owned": info.get("owned", []),
            "mirror_lag_s": info.get("mirror_lag"),
            "mirror_seq": info.get("mirror_seq"),
            "up_s": round(time.time() - info["started"]) if info.get("started") else None,
            "presence_expires_in_s": round((expires - now_ms) / 1000, 2),
        })
    nodes = []
    for node in config.nodes:
        lease = _text(r.get(k.lease(node.name)))
        ttl = r.pttl(k.lease(node.name))
        holder, _, token = (lease or "").partition("|")
        nodes.append({"node": node.name, "owner": holder or None, "token": int(token) if token else None,
                      "lease_expires_in_s": round(ttl / 1000, 2) if ttl and ttl > 0 else None,
                      "channels": r.hlen(k.snapshot(node.name))})
    seq = int(r.get(k.seq) or 0)
    deliverer = (_text(r.get(k.webhooks("lease"))) or "").partition("|")[0] or None
    return {"instances": instances, "nodes": nodes, "stream": {"length": r.xlen(k.stream), "last": seq},
            "epoch": _text(r.get(k.epoch)), "webhooks_deliverer": deliverer}


def format_status(status: dict[str, Any]) -> str:
    last = status["stream"]["last"]
    lines = [f"stream: {status['stream']['length']} record(s), last {last}, epoch {status['epoch']}", "",
             "instances:"]
    if not status["instances"]:
        lines.append("  (none alive)")
    for inst in status["instances"]:
        behind = None if inst["mirror_seq"] is None else last - inst["mirror_seq"]
        lines.append(
            f"  {inst['instance']:<20} http {inst['http'] or '?':<22} owns {len(inst['owned'])} node(s)"
            f"  mirror lag {inst['mirror_lag_s'] if inst['mirror_lag_s'] is not None else '?'} s,"
            f" {behind if behind is not None else '?'} record(s) behind  up {inst['up_s']} s")
    lines += ["", "nodes:"]
    for node in status["nodes"]:
        owner = node["owner"] or "(no owner)"
        expires = f", lease {node['lease_expires_in_s']} s" if node["lease_expires_in_s"] is not None else ""
        lines.append(f"  {node['node']:<20} {owner:<20} token {node['token']}{expires}, "
                     f"{node['channels']} channel(s)")
    lines += ["", f"webhooks: delivered by {status['webhooks_deliverer'] or '(no instance)'}"]
    return "\n".join(lines)
