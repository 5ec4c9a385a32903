"""Pull connectors: one Lambda and one EventBridge Scheduler schedule per declared connector.

Each function runs ``lambdas/connector/handler.py`` with its connector's settings (the
``CONNECTOR`` variable) and may only: put objects under its own
``drops/<dataset>/connectors/<name>/`` prefix of the raw bucket, read and update its own
``connector#<name>`` item of the Control table, and read its own secret. PostgreSQL
connectors get the pg8000 layer (built at synth from the installed package); connectors
with subnets and security groups run in that VPC. No connectors: nothing is created.
"""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_scheduler as scheduler
from aws_cdk import aws_scheduler_targets as targets
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk import aws_sns as sns
from constructs import Construct

from stacks.config import StageConfig
from stacks.constructs.python_function import RUNTIME, PythonFunction
from stacks.grants import KMS_ACTIONS, grant_objects
from stacks.nag import IAM5, WildcardAllowances, acknowledge
from stacks.python_layer import LAYERS, build_layer
from tuneloop.connectors.settings import ConnectorSettings

CONNECTOR_TIMEOUT = Duration.minutes(15)
# Scheduler retries a failed invocation; a run that keeps failing is recorded in the
# connector's state and the next scheduled run tries again.
SCHEDULE_RETRY_ATTEMPTS = 2
STATE_ACTIONS = ("dynamodb:GetItem", "dynamodb:UpdateItem")
# Lambda's own ENI management for functions in a VPC (AWSLambdaVPCAccessExecutionRole).
VPC_ACTIONS = (
    "ec2:CreateNetworkInterface",
    "ec2:DescribeNetworkInterfaces",
    "ec2:DeleteNetworkInterface",
    "ec2:AssignPrivateIpAddresses",
    "ec2:UnassignPrivateIpAddresses",
)


def _pascal(name: str) -> str:
    """``tickets-db`` → ``TicketsDb``."""
    return "".join(part[:1].upper() + part[1:] for part in name.split("-"))


def connector_prefix(connector: ConnectorSettings) -> str:
    return f"drops/{connector.dataset}/connectors/{connector.name}/"


class Connectors(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: StageConfig,
        raw_bucket: s3.IBucket,
        control_table: dynamodb.Table,
        notify_topic: sns.ITopic,
    ) -> None:
        super().__init__(scope, construct_id)
        self._notify_topic = notify_topic
        self.functions: dict[str, PythonFunction] = {}
        self.schedules: dict[str, scheduler.Schedule] = {}
        self.alarms: dict[str, cw.Alarm] = {}
        self._pg8000: lambda_.LayerVersion | None = None
        for connector in config.connectors:
            self._add(connector, config, raw_bucket, control_table)

    @property
    def pg8000_layer(self) -> lambda_.LayerVersion:
        if self._pg8000 is None:
            self._pg8000 = lambda_.LayerVersion(
                self,
                "Pg8000Layer",
                code=lambda_.Code.from_asset(str(build_layer("pg8000", LAYERS["pg8000"]))),
                compatible_runtimes=[RUNTIME],
                compatible_architectures=[lambda_.Architecture.X86_64],
                description="pg8000 and its pure-Python dependencies for the SQL connectors",
            )
        return self._pg8000

    def _add(
        self,
        connector: ConnectorSettings,
        config: StageConfig,
        raw_bucket: s3.IBucket,
        control_table: dynamodb.Table,
    ) -> None:
        cid = _pascal(connector.name)
        function = PythonFunction(
            self,
            cid,
            name="connector",
            config=config,
            timeout=CONNECTOR_TIMEOUT,
            memory_size=512,
            description=f"Pull connector {connector.name} ({connector.kind}) → drops",
            environment={
                "RAW_BUCKET": raw_bucket.bucket_name,
                "CONTROL_TABLE": control_table.table_name,
                "CONNECTOR": connector.to_json(),
            },
        )
        self.functions[connector.name] = function
        role, allowances = function.role, function.allowances
        if connector.uses_postgresql:
            function.function.add_layers(self.pg8000_layer)
        grant_objects(
            raw_bucket,
            function.function,
            allowances,
            prefix=connector_prefix(connector),
            access="put",
        )
        role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=list(STATE_ACTIONS),
                resources=[control_table.table_arn],
                conditions={
                    "ForAllValues:StringEquals": {"dynamodb:LeadingKeys": [connector.state_key]}
                },
            )
        )
        if control_table.encryption_key is not None:
            control_table.encryption_key.grant_encrypt_decrypt(role)
            for action, reason in KMS_ACTIONS.items():
                allowances.allow_action(action, reason)
        if connector.secret_arn:
            secretsmanager.Secret.from_secret_complete_arn(
                self, f"{cid}Secret", connector.secret_arn
            ).grant_read(role)
        if connector.subnet_ids:
            self._place_in_vpc(function, connector)
        # One role per schedule (not the stack-wide singleton the target would create), so
        # the invoke grant and its acknowledgment sit on exactly this connector.
        schedule_role = iam.Role(
            self,
            f"{cid}ScheduleRole",
            assumed_by=iam.ServicePrincipal("scheduler.amazonaws.com"),
            description=f"EventBridge Scheduler: invoke pull connector {connector.name}",
        )
        WildcardAllowances(schedule_role).allow_resource(
            f"{function.function.function_arn}:*",
            "CDK's invoke grant also names the function's versions and aliases (<arn>:*) of "
            "this one function.",
        )
        # A failed run is recorded in the state item, but nobody reads that unprompted.
        alarm = function.function.metric_errors(
            period=Duration.minutes(5), statistic=cw.Stats.SUM
        ).create_alarm(
            self,
            f"{cid}Errors",
            alarm_description=f"Pull connector {connector.name} failed; see last_error in "
            f"the Control item connector#{connector.name} and the function's logs.\n"
            "Runbook: docs/runbooks/connector-failures.md",
            threshold=1,
            comparison_operator=cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            evaluation_periods=1,
            treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
        )
        alarm.add_alarm_action(cw_actions.SnsAction(self._notify_topic))
        self.alarms[connector.name] = alarm
        self.schedules[connector.name] = scheduler.Schedule(
            self,
            f"{cid}Schedule",
            schedule=scheduler.ScheduleExpression.expression(connector.schedule),
            description=f"Run pull connector {connector.name}",
            target=targets.LambdaInvoke(
                function.function,
                input=scheduler.ScheduleTargetInput.from_object({"connector": connector.name}),
                retry_attempts=SCHEDULE_RETRY_ATTEMPTS,
                max_event_age=Duration.hours(1),
                role=schedule_role,
            ),
        )

    def _place_in_vpc(self, function: PythonFunction, connector: ConnectorSettings) -> None:
        # Subnet and security-group ids come from the stage config; an L2 ``vpc`` would need a
        # VPC lookup (an AWS call at synth), so the function's VpcConfig is set directly.
        cfn = function.function.node.default_child
        assert isinstance(cfn, lambda_.CfnFunction)
        cfn.vpc_config = lambda_.CfnFunction.VpcConfigProperty(
            subnet_ids=list(connector.subnet_ids),
            security_group_ids=list(connector.security_group_ids),
        )
        # The statement must exist before the function is created, so Lambda can attach ENIs.
        policy = iam.Policy(
            self,
            f"{_pascal(connector.name)}VpcAccess",
            statements=[iam.PolicyStatement(actions=list(VPC_ACTIONS), resources=["*"])],
        )
        policy.attach_to_role(function.role)
        cfn.node.add_dependency(policy)
        acknowledge(
            policy,
            f"{IAM5}[Resource::*]",
            "EC2 network-interface actions Lambda needs to run in the connector's VPC support "
            "no resource-level permissions (as AWSLambdaVPCAccessExecutionRole).",
        )
