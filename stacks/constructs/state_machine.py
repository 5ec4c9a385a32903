"""A TuneLoop state machine: standard, traced, its own encrypted log group.

The log group keeps every state transition without inputs and outputs: a run's timeline stays
searchable, while records, dataset details and error payloads stay in the execution history
(docs/stacks.md). The retrain, release and benchmark run machines are all built this way.
"""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_logs as logs
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from stacks.config import StageConfig
from stacks.constructs.logs_key import logs_key
from stacks.retention import log_retention


def logged_state_machine(
    scope: Construct,
    *,
    definition: sfn.IChainable,
    comment: str,
    timeout: Duration,
    config: StageConfig,
) -> tuple[sfn.StateMachine, logs.LogGroup]:
    """``<scope>/StateMachine`` and ``<scope>/Logs``."""
    log_group = logs.LogGroup(
        scope,
        "Logs",
        retention=log_retention(config.log_retention_days),
        encryption_key=logs_key(scope, retain=config.retain_data),
        removal_policy=RemovalPolicy.RETAIN if config.retain_data else RemovalPolicy.DESTROY,
    )
    machine = sfn.StateMachine(
        scope,
        "StateMachine",
        comment=comment,
        definition_body=sfn.DefinitionBody.from_chainable(definition),
        state_machine_type=sfn.StateMachineType.STANDARD,
        timeout=timeout,
        tracing_enabled=True,
        logs=sfn.LogOptions(
            destination=log_group, level=sfn.LogLevel.ALL, include_execution_data=False
        ),
    )
    return machine, log_group
