"""The scheduled invocation of the RetrainTrigger Lambda."""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_lambda as lambda_
from constructs import Construct


class RetrainSchedule(Construct):
    """Invokes ``function`` every ``every`` with ``{"trigger": "schedule"}``."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        function: lambda_.IFunction,
        every: Duration,
    ) -> None:
        super().__init__(scope, construct_id)
        self.rule = events.Rule(
            self,
            "Rule",
            description="Scheduled retrain check",
            schedule=events.Schedule.rate(every),
            targets=[
                targets.LambdaFunction(
                    function,
                    event=events.RuleTargetInput.from_object({"trigger": "schedule"}),
                    retry_attempts=2,
                )
            ],
        )
