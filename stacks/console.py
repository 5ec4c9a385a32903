"""Console: the Cognito user pool (viewer/operator/admin), an HTTP API and the console Lambda.

No cycle between the app client and the API: the client's callback URL needs the API's URL,
the function needs the client's id, and the API resource itself needs neither (its route and
integration do). The client secret is never in the environment: the function reads it at
cold start with ``cognito-idp:DescribeUserPoolClient`` on its own pool.
"""

from __future__ import annotations

import json
from typing import Any

from aws_cdk import Arn, ArnFormat, Duration, RemovalPolicy, Stack
from aws_cdk import aws_apigatewayv2 as apigw
from aws_cdk import aws_apigatewayv2_integrations as integrations
from aws_cdk import aws_cognito as cognito
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk import aws_sns as sns
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from stacks.config import StageConfig
from stacks.constructs.data_lake import DataLake
from stacks.constructs.incident_response import IncidentResponse
from stacks.constructs.logs_key import logs_key
from stacks.constructs.python_function import PythonFunction
from stacks.constructs.state_tables import StateTables
from stacks.grants import KMS_ACTIONS, grant_audit_append, grant_objects, grant_table
from stacks.nag import acknowledge
from stacks.outputs import add_outputs
from stacks.python_layer import LAYERS, build_layer
from stacks.retention import log_retention
from tuneloop import stack_outputs as out
from tuneloop.operations.freeze import FREEZE_KEY
from tuneloop.operations.gate_policy import GATE_POLICY_KEY
from tuneloop.retrain import RETRAIN_KEY

CONSOLE_CONTROL_KEYS = [FREEZE_KEY, GATE_POLICY_KEY, RETRAIN_KEY]
"""The Control items the console's actions write (dynamodb:LeadingKeys)."""
CONSOLE_GROUPS = ("viewer", "operator", "admin")
CALLBACK_PATH = "/auth/callback"


class ConsoleUserPool(Construct):
    """The people who sign in: no self sign-up, MFA, a strong password policy, groups."""

    def __init__(self, scope: Construct, construct_id: str, *, config: StageConfig) -> None:
        super().__init__(scope, construct_id)
        self.pool = cognito.UserPool(
            self,
            "Pool",
            self_sign_up_enabled=False,  # admins create users (AdminCreateUser)
            sign_in_aliases=cognito.SignInAliases(username=True, email=True),
            password_policy=cognito.PasswordPolicy(
                min_length=14,
                require_lowercase=True,
                require_uppercase=True,
                require_digits=True,
                require_symbols=True,
                temp_password_validity=Duration.days(3),
            ),
            mfa=cognito.Mfa.REQUIRED,
            mfa_second_factor=cognito.MfaSecondFactor(sms=False, otp=True),
            account_recovery=cognito.AccountRecovery.EMAIL_ONLY,
            # Threat protection (compromised credentials, adaptive sign-in) needs the Plus plan.
            feature_plan=cognito.FeaturePlan.PLUS,
            standard_threat_protection_mode=cognito.StandardThreatProtectionMode.FULL_FUNCTION,
            removal_policy=RemovalPolicy.RETAIN if config.retain_data else RemovalPolicy.DESTROY,
        )
        for group in CONSOLE_GROUPS:
            cognito.CfnUserPoolGroup(
                self,
                f"Group{group.capitalize()}",
                user_pool_id=self.pool.user_pool_id,
                group_name=group,
                description=f"TuneLoop console role {group}",
            )
        self.domain = self.pool.add_domain(
            "HostedUi",
            cognito_domain=cognito.CognitoDomainOptions(domain_prefix=config.console_domain_prefix),
        )


class ConsoleStack(Stack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: StageConfig,
        lake: DataLake,
        tables: StateTables,
        retrain_state_machine: sfn.IStateMachine,
        release_state_machine: sfn.IStateMachine,
        benchmark_run_state_machine: sfn.IStateMachine,
        rollback_function: lambda_.IFunction,
        notify_topic: sns.ITopic,
        alarm_topic: sns.ITopic,
        endpoint_name: str,
        endpoint_arn: str,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        users = ConsoleUserPool(self, "Users", config=config)
        api = apigw.HttpApi(self, "Api", description="TuneLoop console")
        callback_url = f"{api.api_endpoint}{CALLBACK_PATH}"
        client = users.pool.add_client(
            "Client",
            generate_secret=True,
            auth_flows=cognito.AuthFlow(),  # the hosted UI only: no password flows
            o_auth=cognito.OAuthSettings(
                flows=cognito.OAuthFlows(authorization_code_grant=True),
                scopes=[cognito.OAuthScope.OPENID, cognito.OAuthScope.PROFILE],
                callback_urls=[callback_url],
                logout_urls=[f"{api.api_endpoint}/"],
            ),
            prevent_user_existence_errors=True,
            id_token_validity=Duration.hours(1),
            access_token_validity=Duration.hours(1),
            refresh_token_validity=Duration.hours(12),
        )
        self.session_secret = secretsmanager.Secret(
            self,
            "SessionKey",
            description="TuneLoop console: the key that signs session cookies",
            generate_secret_string=secretsmanager.SecretStringGenerator(
                password_length=64, exclude_punctuation=True
            ),
        )
        acknowledge(
            self.session_secret,
            "AwsSolutions-SMG4",
            "The session signing key: rotating it only signs everyone out; sessions last at "
            "most 12 hours and a redeploy can replace it. No rotation Lambda is worth that.",
        )
        names = {
            "stage": config.stage,
            "raw_bucket": lake.raw.bucket_name,
            "curated_bucket": lake.curated.bucket_name,
            "artifacts_bucket": lake.artifacts.bucket_name,
            "records_table": tables.records.table_name,
            "drops_table": tables.drops.table_name,
            "model_versions_table": tables.model_versions.table_name,
            "control_table": tables.control.table_name,
            "benchmarks_table": tables.benchmarks.table_name,
            "audit_table": tables.audit.table_name,
            "incidents_table": tables.incidents.table_name,
            "state_machine_arn": retrain_state_machine.state_machine_arn,
            "release_state_machine_arn": release_state_machine.state_machine_arn,
            "benchmark_run_state_machine_arn": benchmark_run_state_machine.state_machine_arn,
            "endpoint_name": endpoint_name,
            "rollback_function": rollback_function.function_name,
            "model_lines": config.model_lines.to_json(),
        }
        console = PythonFunction(
            self,
            "Console",
            name="console",
            description="TuneLoop web console (FastAPI behind the HTTP API)",
            environment={
                "PLATFORM_NAMES": self.to_json_string(names),
                "USER_POOL_ID": users.pool.user_pool_id,
                "USER_POOL_CLIENT_ID": client.user_pool_client_id,
                "COGNITO_DOMAIN_URL": users.domain.base_url(),
                "SESSION_SECRET_ARN": self.session_secret.secret_arn,
            },
            config=config,
            timeout=Duration.seconds(29),  # the HTTP API's own limit
            memory_size=1024,
        )
        fn = console.function
        fn.add_layers(
            lambda_.LayerVersion(
                self,
                "ConsoleLayer",
                code=lambda_.Code.from_asset(str(build_layer("console", LAYERS["console"]))),
                compatible_runtimes=[fn.runtime],
                compatible_architectures=[lambda_.Architecture.X86_64],
                description="FastAPI, Mangum, Jinja2 and joserfc, native parts built for Lambda",
            )
        )
        self.role = console.role
        self._grant(
            console,
            lake=lake,
            tables=tables,
            retrain=retrain_state_machine,
            release=release_state_machine,
            benchmark_run=benchmark_run_state_machine,
            rollback=rollback_function,
            endpoint_arn=endpoint_arn,
            pool=users.pool,
            line_components=config.model_lines.names,
        )
        api.add_routes(
            path="/{proxy+}",
            methods=[apigw.HttpMethod.ANY],
            integration=integrations.HttpLambdaIntegration("App", fn),
        )
        api.add_routes(
            path="/",
            methods=[apigw.HttpMethod.ANY],
            integration=integrations.HttpLambdaIntegration("Root", fn),
        )
        self._access_logs(api, config)
        incidents = IncidentResponse(
            self,
            "Incidents",
            config=config,
            names=names,
            lake=lake,
            tables=tables,
            notify_topic=notify_topic,
            alarm_topic=alarm_topic,
            console_url=f"{api.api_endpoint}/",
        )
        for route in api.node.find_all():
            if isinstance(route, apigw.CfnRoute):
                acknowledge(
                    route,
                    "AwsSolutions-APIG4",
                    "The console authenticates in the app (Cognito hosted UI, signed session "
                    "cookie) and checks the role on every route; /healthz and /login must be "
                    "reachable signed out.",
                )
        add_outputs(
            self,
            {
                out.CONSOLE_URL: (f"{api.api_endpoint}/", "The web console"),
                out.USER_POOL_ID: (users.pool.user_pool_id, "Console users (groups = roles)"),
                out.CONSOLE_ROLE: (self.role.role_arn, "The role the console runs as"),
                out.INCIDENTS_FUNCTION: (
                    incidents.function.function.function_name,
                    "Opens an incident for every alarm that fires",
                ),
            },
        )

    def _access_logs(self, api: apigw.HttpApi, config: StageConfig) -> None:
        group = logs.LogGroup(
            self,
            "AccessLogs",
            retention=log_retention(config.log_retention_days),
            encryption_key=logs_key(self, retain=config.retain_data),
            removal_policy=RemovalPolicy.RETAIN if config.retain_data else RemovalPolicy.DESTROY,
        )
        stage = api.default_stage
        assert stage is not None
        cfn_stage = stage.node.default_child
        assert isinstance(cfn_stage, apigw.CfnStage)
        cfn_stage.access_log_settings = apigw.CfnStage.AccessLogSettingsProperty(
            destination_arn=group.log_group_arn,
            format=json.dumps(
                {
                    "requestId": "$context.requestId",
                    "ip": "$context.identity.sourceIp",
                    "time": "$context.requestTime",
                    "method": "$context.httpMethod",
                    "path": "$context.path",
                    "status": "$context.status",
                    "latency": "$context.responseLatency",
                }
            ),
        )

    def _grant(
        self,
        console: PythonFunction,
        *,
        lake: DataLake,
        tables: StateTables,
        retrain: sfn.IStateMachine,
        release: sfn.IStateMachine,
        benchmark_run: sfn.IStateMachine,
        rollback: lambda_.IFunction,
        endpoint_arn: str,
        pool: cognito.UserPool,
        line_components: tuple[str, ...] = (),
    ) -> None:
        """Exactly what the views and actions of tuneloop/operations call."""
        fn, allow = console.function, console.allowances
        # Views read every table but Audit with GetItem/Scan/Query; Audit is listed (Query)
        # and appended to, never changed.
        for table in (tables.records, tables.drops, tables.model_versions):
            grant_table(table, fn, allow, write=False)
        grant_table(tables.audit, fn, allow, write=False)
        grant_audit_append(tables.audit, fn)
        # Control: freeze, gate_policy (PutItem), the retrain lock of "start run" (UpdateItem),
        # and no other item: not production, which only the release path writes.
        tables.control.grant_read_data(fn)
        fn.add_to_role_policy(
            iam.PolicyStatement(
                actions=["dynamodb:PutItem", "dynamodb:UpdateItem"],
                resources=[tables.control.table_arn],
                conditions={
                    "ForAllValues:StringEquals": {"dynamodb:LeadingKeys": CONSOLE_CONTROL_KEYS}
                },
            )
        )
        # Benchmarks: new versions (PutItem) beside their file under benchmarks/.
        tables.benchmarks.grant_read_data(fn)
        tables.benchmarks.grant(fn, "dynamodb:PutItem")
        # Incidents: read and listed (by_month), acknowledged and resolved (UpdateItem); never
        # opened or deleted here (the Incidents and Rollback functions open them).
        grant_table(tables.incidents, fn, allow, write=False)
        tables.incidents.grant(fn, "dynamodb:UpdateItem")
        for key in (tables.control, tables.benchmarks, tables.incidents):
            if key.encryption_key is not None:
                key.encryption_key.grant(fn, "kms:Encrypt", "kms:GenerateDataKey*")
        allow.allow_action("kms:GenerateDataKey*", KMS_ACTIONS["kms:GenerateDataKey*"])
        for prefix in ("jobs/", "gate/"):  # training/evaluation outputs, gate decisions
            grant_objects(lake.artifacts, fn, allow, prefix=prefix, access="read")
        grant_objects(lake.artifacts, fn, allow, prefix="benchmarks/", access="read")
        grant_objects(lake.artifacts, fn, allow, prefix="benchmarks/", access="put")
        for machine in (retrain, release, benchmark_run):
            machine.grant_start_execution(fn)
            machine.grant(fn, "states:ListExecutions")
            machine.grant_execution(
                fn, "states:DescribeExecution", "states:GetExecutionHistory", "states:StopExecution"
            )
            # grant_execution's resource, as CDK builds it: every execution of this machine.
            name = Arn.split(machine.state_machine_arn, ArnFormat.COLON_RESOURCE_NAME).resource_name
            executions = self.format_arn(
                service="states",
                resource="execution",
                resource_name=name,
                arn_format=ArnFormat.COLON_RESOURCE_NAME,
            )
            allow.allow_resource(
                f"{executions}:*", "Executions of this one state machine, named at run time."
            )
        rollback.grant_invoke_latest_version(fn)  # the function itself, no versions
        fn.add_to_role_policy(
            iam.PolicyStatement(actions=["sagemaker:DescribeEndpoint"], resources=[endpoint_arn])
        )
        if line_components:
            # The overview shows each model line's adapter component (named after the line;
            # SageMaker lowercases names in ARNs).
            fn.add_to_role_policy(
                iam.PolicyStatement(
                    actions=["sagemaker:DescribeInferenceComponent"],
                    resources=[
                        self.format_arn(
                            service="sagemaker",
                            resource="inference-component",
                            resource_name=name.lower(),
                        )
                        for name in line_components
                    ],
                )
            )
        any_alarm = self.format_arn(
            service="cloudwatch",
            resource="alarm",
            resource_name="*",
            arn_format=ArnFormat.COLON_RESOURCE_NAME,
        )
        fn.add_to_role_policy(
            iam.PolicyStatement(actions=["cloudwatch:DescribeAlarms"], resources=[any_alarm])
        )
        allow.allow_resource(
            any_alarm,
            "The dashboard lists the alarms' states (DescribeAlarms of every metric alarm).",
        )
        self.session_secret.grant_read(fn)
        fn.add_to_role_policy(
            iam.PolicyStatement(
                actions=["cognito-idp:DescribeUserPoolClient"], resources=[pool.user_pool_arn]
            )
        )
