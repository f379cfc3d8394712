"""Cluster mode: several eslchan instances sharing their FreeSWITCH nodes and state in Redis.

Imported only when the configuration has a ``[cluster]`` table (the single process never
imports Redis's client). Layer: beside the registry; it uses esl, registry, policy and config,
and api and metaflow reach it only through what the daemon hands them.
"""

from eslchan.cluster.instance import ClusterInstance

__all__ = ["ClusterInstance"]
