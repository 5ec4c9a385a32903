"""One TuneLoop Lambda handler: shared code asset, Powertools layer, its own role and logs."""

from __future__ import annotations

from collections.abc import Mapping

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from stacks.assets import LAMBDA_CODE_EXCLUDES, PROJECT_ROOT
from stacks.config import StageConfig
from stacks.constructs.logs_key import logs_key
from stacks.nag import WildcardAllowances, acknowledge
from stacks.retention import log_retention
from tuneloop.powertools_env import PowertoolsEnv

POWERTOOLS_LAYER_ACCOUNT = "017000801446"
"""The AWS account that publishes the managed Powertools for AWS Lambda (Python) layers."""
POWERTOOLS_LAYER_NAME = "AWSLambdaPowertoolsPythonV3-python312-x86_64"
RUNTIME = lambda_.Runtime.PYTHON_3_12


def handler_string(name: str) -> str:
    """``lambdas/<name>/handler.py``'s ``handler`` function (docs/contracts.md, "Names")."""
    return f"lambdas.{name}.handler.handler"


class PythonFunction(Construct):
    """A Lambda running ``lambdas/<name>/handler.py`` with exactly ``environment``.

    The code asset is the project root filtered to ``lambdas/`` and ``tuneloop/`` (no
    Docker bundling); Powertools comes from the AWS-managed layer, configured by the
    variables of :class:`PowertoolsEnv` (service name, metrics namespace, log level). The
    function gets a dedicated role whose only built-in permissions are writing to its own
    log group and X-Ray; callers add the rest with ``grant_*`` on :attr:`function`.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        name: str,
        description: str,
        environment: Mapping[str, str],
        config: StageConfig,
        timeout: Duration | None = None,
        memory_size: int = 512,
    ) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        self.name = name
        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"TuneLoop {name} Lambda",
        )
        self.log_group = logs.LogGroup(
            self,
            "Logs",
            retention=log_retention(config.log_retention_days),
            encryption_key=logs_key(self, retain=config.retain_data),
            removal_policy=RemovalPolicy.RETAIN if config.retain_data else RemovalPolicy.DESTROY,
        )
        self.log_group.grant_write(self.role)
        layer = lambda_.LayerVersion.from_layer_version_arn(
            self,
            "Powertools",
            f"arn:{stack.partition}:lambda:{stack.region}:{POWERTOOLS_LAYER_ACCOUNT}:layer:"
            f"{POWERTOOLS_LAYER_NAME}:{config.powertools_layer_version}",
        )
        self.function = lambda_.Function(
            self,
            "Function",
            description=description,
            runtime=RUNTIME,
            architecture=lambda_.Architecture.X86_64,
            handler=handler_string(name),
            code=lambda_.Code.from_asset(str(PROJECT_ROOT), exclude=list(LAMBDA_CODE_EXCLUDES)),
            layers=[layer],
            role=self.role,
            log_group=self.log_group,
            environment={
                **environment,
                **PowertoolsEnv.for_function(name, stage=config.stage).variables(),
            },
            # Every handler's Powertools Tracer records its invocation and AWS calls.
            tracing=lambda_.Tracing.ACTIVE,
            timeout=timeout or Duration.seconds(60),
            memory_size=memory_size,
        )
        self.allowances = WildcardAllowances(self.role)
        """Accepted wildcard findings of :attr:`role`; see :mod:`stacks.grants`."""
        self.allowances.allow_resource(
            "*",
            "X-Ray PutTraceSegments/PutTelemetryRecords support no resource-level permissions.",
        )
        acknowledge(
            self.function,
            "AwsSolutions-L1",
            "Python 3.12 is the runtime of the contract and of the managed Powertools layer "
            "pinned in the stage config; changing it is a deliberate, tested change.",
        )
