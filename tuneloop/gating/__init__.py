"""The champion-vs-challenger gate: policy, statistics, decision and its S3/DynamoDB I/O.

Pure Python (no numpy): it runs in the Gate Lambda. ``decide`` is the whole rule set.
"""

from tuneloop.gating.decide import Comparison, GateDecision, ReportError, decide
from tuneloop.gating.policy import GatePolicy, PolicyError, SuitePolicy, parse_policy

__all__ = [
    "Comparison",
    "GateDecision",
    "GatePolicy",
    "PolicyError",
    "ReportError",
    "SuitePolicy",
    "decide",
    "parse_policy",
]
