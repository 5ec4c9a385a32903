"""Gate: champion-vs-challenger decision on the Evaluate job's report.

Input (state machine Gate row): ``{"model_version", "evaluation": {"job_name",
"output_path"}, "champion_version"}``. Output: ``{"approved", "decision_s3_uri",
"summary"}``. The rules live in ``tuneloop.gating``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from tuneloop import aws
from tuneloop.envmodel import load_env
from tuneloop.gating.policy import parse_policy
from tuneloop.gating.service import GateEvent, run_gate

logger = logging.getLogger(__name__)
logger.setLevel(logging.INFO)


@dataclass(frozen=True)
class Env:
    artifacts_bucket: str
    model_versions_table: str
    gate_policy: str


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    env = load_env(Env)
    policy = parse_policy(env.gate_policy)
    gate_event = GateEvent.parse(event)
    result = run_gate(
        gate_event,
        policy,
        artifacts_bucket=env.artifacts_bucket,
        model_versions_table=env.model_versions_table,
        s3=aws.s3(),  # created lazily, on first use, so AWS_ENDPOINT_URL and moto apply
        dynamodb=aws.dynamodb(),
    )
    logger.info("gate %s: %s", gate_event.model_version, result["summary"])
    return result
