"""Serving: notifications, endpoint alarms, the Rollback Lambda, a dashboard.

The endpoint itself is created at run time by the Deploy Lambda (blue/green updates need
the SageMaker API, not CloudFormation); its name is generated here and passed on.
"""

from __future__ import annotations

from typing import Any

from aws_cdk import Duration, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_sns_subscriptions as subscriptions
from constructs import Construct

from stacks.config import StageConfig
from stacks.constructs.component_endpoint import ComponentEndpoint
from stacks.constructs.data_lake import DataLake
from stacks.constructs.endpoint_alarms import EndpointAlarms
from stacks.constructs.notifications import Notifications
from stacks.constructs.python_function import PythonFunction
from stacks.constructs.serving_dashboard import ServingDashboard
from stacks.constructs.state_tables import StateTables
from stacks.endpoint_autoscaling import grant_endpoint_autoscaling
from stacks.grants import KMS_ACTIONS, grant_audit_append, grant_table
from stacks.naming import generated_name
from stacks.outputs import add_outputs
from tuneloop import stack_outputs as out


class ServingStack(Stack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: StageConfig,
        tables: StateTables,
        lake: DataLake,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.endpoint_name = generated_name(Construct(self, "Endpoint"))
        self.endpoint_arn = self.format_arn(
            service="sagemaker", resource="endpoint", resource_name=self.endpoint_name
        )
        # Model lines: CloudFormation creates the endpoint and its base component; without
        # lines Deploy creates the endpoint (docs/serving.md, "Model lines").
        self.component_endpoint = (
            ComponentEndpoint(
                self,
                "ComponentEndpoint",
                endpoint_name=self.endpoint_name,
                artifacts=lake.artifacts,
                config=config,
            )
            if config.model_lines
            else None
        )
        self.notifications = Notifications(self, "Notifications", config=config)
        self.endpoint_alarms = EndpointAlarms(
            self,
            "EndpointAlarms",
            endpoint_name=self.endpoint_name,
            alarm_topic=self.notifications.alarm_topic,
            config=config,
        )
        ServingDashboard(self, "Dashboard", alarms=self.endpoint_alarms)

        self.rollback = PythonFunction(
            self,
            "Rollback",
            name="rollback",
            description="Endpoint alarm → restore the last-known-good model",
            environment={
                "CONTROL_TABLE": tables.control.table_name,
                "MODEL_VERSIONS_TABLE": tables.model_versions.table_name,
                "ENDPOINT_NAME": self.endpoint_name,
                "NOTIFY_TOPIC_ARN": self.notifications.notify_topic.topic_arn,
                "AUDIT_TABLE": tables.audit.table_name,
                # The alarm's incident gets what was done; the repeated-failure guard counts.
                "INCIDENTS_TABLE": tables.incidents.table_name,
                "MAX_AUTOMATIC_ROLLBACKS": str(config.incidents.max_automatic_rollbacks),
                "ROLLBACK_WINDOW_HOURS": str(config.incidents.rollback_window_hours),
                # Suspended for the rollback's update, restored once InService again.
                "AUTOSCALING_SETTINGS": config.autoscaling.to_json(),
                # A line's alarm rolls back that line's component (docs/serving.md).
                "MODEL_LINES": config.model_lines.to_json(),
                "MODEL_LINE_ALARMS": self.endpoint_alarms.line_of_alarm,
            },
            config=config,
            # An alarm's rollback waits for the endpoint to be InService again before it
            # restores autoscaling (docs/serving.md, "Autoscaling"): Lambda's longest timeout.
            timeout=Duration.minutes(15 if config.autoscaling.enabled else 2),
        )
        fn, allow = self.rollback.function, self.rollback.allowances
        grant_table(tables.control, fn, allow, write=True)
        grant_table(tables.model_versions, fn, allow, write=True)
        grant_table(tables.incidents, fn, allow, write=True)
        grant_audit_append(tables.audit, fn)  # auto_rollback / rollback records, append only
        self.notifications.notify_topic.grant_publish(fn)
        allow.allow_action("kms:GenerateDataKey*", KMS_ACTIONS["kms:GenerateDataKey*"])
        any_endpoint_config = self.format_arn(
            service="sagemaker", resource="endpoint-config", resource_name="*"
        )
        # UpdateEndpoint is authorized on the endpoint and the target endpoint config
        # (Service Authorization Reference, "Actions defined by Amazon SageMaker AI",
        # https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazonsagemaker.html).
        fn.add_to_role_policy(
            iam.PolicyStatement(
                actions=["sagemaker:UpdateEndpoint"],
                resources=[self.endpoint_arn, any_endpoint_config],
            )
        )
        fn.add_to_role_policy(
            iam.PolicyStatement(
                actions=["sagemaker:DescribeEndpoint"], resources=[self.endpoint_arn]
            )
        )
        allow.allow_resource(
            any_endpoint_config,
            "UpdateEndpoint authorizes the target endpoint config too; the Deploy Lambda names "
            "configs at run time, so rollback must reach any config in this account/region.",
        )
        if self.component_endpoint is not None:
            # roll_back_line re-points a line's adapter component (it never creates one).
            fn.add_to_role_policy(
                iam.PolicyStatement(
                    actions=[
                        "sagemaker:DescribeInferenceComponent",
                        "sagemaker:UpdateInferenceComponent",
                    ],
                    resources=self.component_endpoint.line_component_arns,
                )
            )
        if config.autoscaling.enabled:
            grant_endpoint_autoscaling(
                fn,
                allow,
                endpoint_name=self.endpoint_name,
                endpoint_arn=self.endpoint_arn,
                put_policy=True,
                create_service_linked_role=False,  # it only restores a target it suspended
            )
        self.notifications.alarm_topic.add_subscription(subscriptions.LambdaSubscription(fn))
        add_outputs(
            self,
            {
                out.ENDPOINT_NAME: (self.endpoint_name, "The serving endpoint (created by Deploy)"),
                out.NOTIFY_TOPIC: (
                    self.notifications.notify_topic.topic_arn,
                    "Deployments, rejections, failures, ingestion alarms",
                ),
                out.ALARM_TOPIC: (
                    self.notifications.alarm_topic.topic_arn,
                    "Endpoint alarms (drives rollback)",
                ),
                out.ROLLBACK_FUNCTION: (
                    fn.function_name,
                    "Rollback to last-known-good (alarms; `tuneloop rollback` invokes it)",
                ),
                out.TOPIC_KEY: (self.notifications.key.key_arn, "KMS key of both topics"),
                out.MODEL_LINES: (
                    config.model_lines.to_json(),
                    "The model lines served on the endpoint (JSON; [] for one model)",
                ),
            },
        )
