"""A CloudWatch dashboard for the serving endpoint."""

from __future__ import annotations

from aws_cdk import aws_cloudwatch as cw
from constructs import Construct

from stacks.constructs.endpoint_alarms import EndpointAlarms


class ServingDashboard(Construct):
    """Alarm states, invocations, and the two rollback alarms with their thresholds."""

    def __init__(self, scope: Construct, construct_id: str, *, alarms: EndpointAlarms) -> None:
        super().__init__(scope, construct_id)
        self.dashboard = cw.Dashboard(self, "Dashboard")
        self.dashboard.add_widgets(
            cw.AlarmStatusWidget(title="Rollback alarms", alarms=list(alarms.alarms), width=24),
        )
        self.dashboard.add_widgets(
            cw.GraphWidget(title="Invocations", left=[alarms.invocations_metric], width=8),
            cw.AlarmWidget(title="5XX errors", alarm=alarms.errors_alarm, width=8),
            cw.AlarmWidget(title="Model latency p99 (µs)", alarm=alarms.latency_alarm, width=8),
        )
