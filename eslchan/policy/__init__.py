"""The tenancy and safety policy (SPEC §9): what an account's key may make eslchan do.

Layer: above ``eslchan.esl`` and ``eslchan.registry``, below ``eslchan.api`` and ``metaflow``.
``model`` resolves each account's policy from the configuration and answers pure checks;
``guard`` applies them to every command a metaflow run sends.
"""

from eslchan.policy.guard import Guard
from eslchan.policy.model import AccountPolicy, LimitExceeded, PolicyBook, PolicyError, PolicyViolation

__all__ = ["AccountPolicy", "Guard", "LimitExceeded", "PolicyBook", "PolicyError", "PolicyViolation"]
