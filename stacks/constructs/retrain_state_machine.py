"""The retrain state machine (docs/contracts.md, "The retrain state machine").

PrepareDataset → Train → Evaluate → Gate → GateDecision ─┬─ Register → Deploy →
DeploymentHeld ─┬─ HeldByFreeze (deployment frozen: the version stays registered)
                └─ WaitForEndpoint → CheckEndpoint → EndpointReady ─┬─ ConfirmDeployment → Notify
                                                   ├─ EndpointFailed → RecordFailure
                                                   └─ (else) WaitForEndpoint
                                            └─ NotifyRejected → Rejected

Deploy … ConfirmDeployment is the fragment shared with the release state machine
(stacks/constructs/endpoint_deployment.py).

Every task catches ``States.ALL`` into ``$.error`` → RecordFailure → NotifyFailure → Failed.
With model lines a run trains one line: PrepareDataset reads ``model_line`` from the run's
input and returns it in ``$.dataset.model_line`` ("" without lines), which Gate, Register,
Deploy, ConfirmDeployment and the notifications carry on.
Each step writes its result under its own key, so later steps read every earlier result.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, cast

from aws_cdk import Aws, Duration, Size, Stack
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sns as sns
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

from stacks.config import StageConfig
from stacks.constructs.endpoint_deployment import EndpointDeployment, lambda_task
from stacks.constructs.state_machine import logged_state_machine
from stacks.grants import KMS_ACTIONS
from stacks.nag import WildcardAllowances

JOBS_PREFIX = "jobs/"
CHECKPOINTS_PREFIX = "checkpoints/"
CHECKPOINT_LOCAL_PATH = "/opt/ml/checkpoints"
# What the trainer prints (tuneloop/training/loop.py) -> SageMaker metrics of the Train job.
TRAIN_METRIC_DEFINITIONS = {
    "train_loss": r"train_loss=([0-9.eE+-]+);",
    "train_tokens_per_second": r"train_tokens_per_second=([0-9.eE+-]+);",
}
SAGEMAKER_RETRY_ERRORS = ["SageMaker.AmazonSageMakerException", "SageMaker.ThrottlingException"]
_P = sfn.JsonPath


class _S3Uri(tasks.S3Location):
    """An ``s3://`` location as given, or read from the state (``from_state``).

    ``S3Location.from_bucket`` renders an ``https://`` URL, while the contract (and the
    Gate, and the local platform) use ``s3://`` URIs; and ``S3Location.from_json_expression``
    grants the job role s3:GetObject/s3:ListBucket on every bucket ("*"). Access is granted
    to the SageMaker role by its construct, prefix by prefix, not here."""

    def __init__(self, uri: str) -> None:
        super().__init__()
        self._uri = uri

    @classmethod
    def from_state(cls, json_path: str) -> _S3Uri:
        return cls(_P.string_at(json_path))

    def bind(
        self,
        task: tasks.ISageMakerTask,
        *,
        for_reading: bool | None = None,
        for_writing: bool | None = None,
    ) -> tasks.S3LocationConfig:
        del task, for_reading, for_writing
        return tasks.S3LocationConfig(uri=self._uri)


class _TrainingJob(tasks.SageMakerCreateTrainingJob):
    """``SageMakerCreateTrainingJob`` plus request fields CDK does not model
    (``CheckpointConfig``, ``EnableManagedSpotTraining``, ``StoppingCondition.MaxWaitTime``):
    they are merged into the rendered state's ``Parameters``, one level deep."""

    def __init__(
        self, scope: Construct, construct_id: str, *, extra: Mapping[str, Any], **props: Any
    ) -> None:
        super().__init__(scope, construct_id, **props)
        self._extra = dict(extra)

    def to_state_json(
        self, state_machine_query_language: sfn.QueryLanguage | None = None
    ) -> Mapping[Any, Any]:
        state = dict(super().to_state_json(state_machine_query_language))
        parameters = dict(state["Parameters"])
        for key, value in self._extra.items():
            current = parameters.get(key)
            if isinstance(current, Mapping) and isinstance(value, Mapping):
                value = {**current, **value}
            parameters[key] = value
        state["Parameters"] = parameters
        return state


def train_job_extras(config: StageConfig, artifacts: s3.IBucket) -> dict[str, Any]:
    """Train's checkpoints (``s3://<artifacts>/checkpoints/<model_version>/`` synced with
    ``/opt/ml/checkpoints``, where the trainer saves and resumes) and, when the stage says
    so, managed spot training."""
    extras: dict[str, Any] = {
        "CheckpointConfig": {
            "S3Uri.$": (
                f"States.Format('s3://{artifacts.bucket_name}/{CHECKPOINTS_PREFIX}{{}}/', "
                "$.dataset.model_version)"
            ),
            "LocalPath": CHECKPOINT_LOCAL_PATH,
        }
    }
    if config.training_spot:
        extras["EnableManagedSpotTraining"] = True
        extras["StoppingCondition"] = {
            "MaxWaitTimeInSeconds": config.training_spot_max_wait_minutes * 60
        }
    return extras


def acknowledge_job_machine_role(
    machine: sfn.StateMachine, functions: Iterable[lambda_.IFunction], *, job_names: str
) -> None:
    """The wildcard findings of a state machine that invokes ``functions`` and runs SageMaker
    training jobs named at run time (``job_names`` says how), each with its reason."""
    allow = WildcardAllowances(cast(iam.Role, machine.role))
    for function in functions:
        allow.allow_resource(
            f"{function.function_arn}:*",
            "CDK's LambdaInvoke grant covers the function's versions and aliases too.",
        )
    allow.allow_resource(
        Stack.of(machine).format_arn(
            service="sagemaker", resource="training-job", resource_name="*"
        ),
        f"{job_names}, known only at run time.",
    )
    allow.allow_resource(
        "*",
        "X-Ray and CloudWatch Logs delivery (logs:CreateLogDelivery, ...) for the state "
        "machine support no resource-level permissions; sagemaker:ListTags on '*' is Step "
        "Functions' documented policy for SageMaker .sync tasks. "
        "tests/infra/test_permissions.py pins the actions allowed on '*'.",
    )
    allow.allow_action("kms:GenerateDataKey*", KMS_ACTIONS["kms:GenerateDataKey*"])


def _execution_name_with(suffix: str) -> str:
    return _P.format("{}-" + suffix, _P.string_at("$$.Execution.Name"))


def training_job(
    scope: Construct,
    state_name: str,
    *,
    config: StageConfig,
    role: iam.IRole,
    image_uri: str,
    submit_directory: str,
    artifacts: s3.IBucket,
    program: str,
    name_suffix: str,
    channels: Mapping[str, str],
    hyperparameters: Mapping[str, Any],
    result_selector: Mapping[str, Any],
    result_path: str,
    metric_definitions: Mapping[str, str] | None = None,
    extra: Mapping[str, Any] | None = None,
    instance_count: int = 1,
) -> tasks.SageMakerCreateTrainingJob:
    """A script-mode SageMaker training job (``createTrainingJob.sync``) named
    ``<execution name>-<suffix>``, running ``program`` from ``sourcedir.tar.gz`` on
    ``instance_count`` instances (only Train's entry point spans several)."""
    metrics = metric_definitions or {"train_loss": TRAIN_METRIC_DEFINITIONS["train_loss"]}
    task = _TrainingJob(
        scope,
        state_name,
        extra=extra or {},
        integration_pattern=sfn.IntegrationPattern.RUN_JOB,
        training_job_name=_execution_name_with(name_suffix),
        role=role,
        algorithm_specification=tasks.AlgorithmSpecification(
            training_image=tasks.DockerImage.from_registry(image_uri),
            training_input_mode=tasks.InputMode.FILE,
            metric_definitions=[
                tasks.MetricDefinition(name=name, regex=regex) for name, regex in metrics.items()
            ],
        ),
        input_data_config=[
            tasks.Channel(
                channel_name=name,
                data_source=tasks.DataSource(
                    s3_data_source=tasks.S3DataSource(
                        s3_location=_S3Uri.from_state(path),
                        s3_data_type=tasks.S3DataType.S3_PREFIX,
                        s3_data_distribution_type=tasks.S3DataDistributionType.FULLY_REPLICATED,
                    )
                ),
            )
            for name, path in channels.items()
        ],
        output_data_config=tasks.OutputDataConfig(
            s3_output_location=_S3Uri(artifacts.s3_url_for_object(JOBS_PREFIX))
        ),
        resource_config=tasks.ResourceConfig(
            instance_count=instance_count,
            instance_type=ec2.InstanceType(config.training_instance_type.removeprefix("ml.")),
            volume_size=Size.gibibytes(config.training_volume_gb),
        ),
        stopping_condition=tasks.StoppingCondition(
            max_runtime=Duration.minutes(config.training_max_runtime_minutes)
        ),
        hyperparameters={
            "sagemaker_program": program,
            "sagemaker_submit_directory": submit_directory,
            "sagemaker_region": Aws.REGION,
            **hyperparameters,
        },
        result_selector=dict(result_selector),
        result_path=result_path,
    )
    task.add_retry(
        errors=SAGEMAKER_RETRY_ERRORS,
        interval=Duration.seconds(30),
        max_attempts=3,
        backoff_rate=2,
    )
    return task


class RetrainStateMachine(Construct):
    """The state machine, its log group and its role's permissions."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: StageConfig,
        functions: Mapping[str, lambda_.IFunction],
        sagemaker_role: iam.IRole,
        training_image_uri: str,
        submit_directory: str,
        artifacts: s3.IBucket,
        notify_topic: sns.ITopic,
        endpoint_arn: str,
    ) -> None:
        super().__init__(scope, construct_id)
        self._functions = functions
        self._topic = notify_topic

        # ---- failure path ------------------------------------------------------------
        record_failure = self._lambda(
            "RecordFailure",
            {
                "execution_name": _P.string_at("$$.Execution.Name"),
                "execution_arn": _P.string_at("$$.Execution.Id"),
                "error": _P.object_at("$.error"),
                "state": _P.entire_payload,
            },
            result_path="$.failure",
        )
        notify_failure = self._notify(
            "NotifyFailure",
            "TuneLoop: retrain run failed",
            # The run's input names its model line ($.dataset may not exist yet).
            {
                "event": "failed",
                "error": _P.object_at("$.error"),
                "execution_input": _P.object_at("$$.Execution.Input"),
            },
        )
        failed = sfn.Fail(self, "Failed", error_path="$.error.Error", cause_path="$.error.Cause")
        record_failure.add_catch(notify_failure, errors=[sfn.Errors.ALL], result_path="$.error")
        notify_failure.add_catch(failed, errors=[sfn.Errors.ALL], result_path="$.error")
        record_failure.next(notify_failure).next(failed)

        # ---- happy path ----------------------------------------------------------------
        prepare = self._lambda(
            "PrepareDataset",
            {
                "execution_name": _P.string_at("$$.Execution.Name"),
                "execution_arn": _P.string_at("$$.Execution.Id"),
                # The run's input whole: its model_line, when the trigger named one (a path
                # to a field an input lacks would fail the state; the whole input never does).
                "input": _P.object_at("$$.Execution.Input"),
            },
            result_path="$.dataset",
        )
        common_job: dict[str, Any] = {
            "config": config,
            "role": sagemaker_role,
            "image_uri": training_image_uri,
            "submit_directory": submit_directory,
            "artifacts": artifacts,
        }
        train = training_job(
            self,
            "Train",
            program="train.py",
            name_suffix="train",
            # replay: earlier records the trainer mixes in (hyperparameter replay_fraction).
            channels={"train": "$.dataset.train_s3_uri", "replay": "$.dataset.replay_s3_uri"},
            hyperparameters={
                "base_model": config.base_model,
                # Written into the model so the endpoint can say which version answers.
                "model_version": _P.string_at("$.dataset.model_version"),
                # Incremental training: continue the production adapter ("" = none yet).
                "init_adapter": _P.string_at("$.dataset.champion_model_data"),
                **config.training.as_hyperparameters(),
            },
            result_selector={
                "job_name": _P.string_at("$.TrainingJobName"),
                "model_data": _P.string_at("$.ModelArtifacts.S3ModelArtifacts"),
            },
            result_path="$.train",
            metric_definitions=TRAIN_METRIC_DEFINITIONS,
            extra=train_job_extras(config, artifacts),
            instance_count=config.training_instance_count,
            **common_job,
        )
        evaluate = training_job(
            self,
            "Evaluate",
            program="evaluate.py",
            name_suffix="eval",
            channels={
                "candidate": "$.train.model_data",
                "benchmarks": "$.dataset.benchmarks_s3_uri",
                # The held-out slice of the curated data: the heldout_perplexity suite.
                "heldout": "$.dataset.heldout_s3_uri",
            },
            hyperparameters={
                "champion_model_data": _P.string_at("$.dataset.champion_model_data"),
                # A first model (no champion) is compared with its base model instead.
                "compare_base": "true",
                "mmlu_subset_size": str(config.evaluation.mmlu_subset_size),
                "seed": str(config.evaluation.seed),
            },
            result_selector={
                "job_name": _P.string_at("$.TrainingJobName"),
                "output_path": _P.string_at("$.OutputDataConfig.S3OutputPath"),
            },
            result_path="$.evaluation",
            **common_job,
        )
        gate = self._lambda(
            "Gate",
            {
                "model_version": _P.string_at("$.dataset.model_version"),
                "evaluation": _P.object_at("$.evaluation"),
                "champion_version": _P.string_at("$.dataset.champion_version"),
                # The gate checks the job scored the versions PrepareDataset froze.
                "benchmark_versions": _P.object_at("$.dataset.benchmark_versions"),
                # The line's gate policy decides ("" without model lines).
                "model_line": _P.string_at("$.dataset.model_line"),
            },
            result_path="$.gate",
        )
        register = self._lambda(
            "Register",
            {
                "model_version": _P.string_at("$.dataset.model_version"),
                "model_data": _P.string_at("$.train.model_data"),
                "dataset": _P.object_at("$.dataset"),
                "train_job": _P.string_at("$.train.job_name"),
                "eval_job": _P.string_at("$.evaluation.job_name"),
                "decision_s3_uri": _P.string_at("$.gate.decision_s3_uri"),
                "execution_arn": _P.string_at("$$.Execution.Id"),
                "model_line": _P.string_at("$.dataset.model_line"),
            },
            result_path="$.registration",
        )
        notify = self._notify(
            "Notify",
            "TuneLoop: new model in production",
            {
                "event": "deployed",
                "model_version": _P.string_at("$.dataset.model_version"),
                "production_version": _P.string_at("$.confirmation.production_version"),
                "last_known_good_version": _P.string_at("$.confirmation.last_known_good_version"),
                "endpoint_name": _P.string_at("$.deployment.endpoint_name"),
                "model_line": _P.string_at("$.dataset.model_line"),
            },
        )
        notify_rejected = self._notify(
            "NotifyRejected",
            "TuneLoop: candidate rejected by the gate",
            {
                "event": "rejected",
                "model_version": _P.string_at("$.dataset.model_version"),
                "decision_s3_uri": _P.string_at("$.gate.decision_s3_uri"),
                "summary": _P.string_at("$.gate.summary"),
                "model_line": _P.string_at("$.dataset.model_line"),
            },
        )
        rejected = sfn.Succeed(self, "Rejected")
        # Deploy serves the package Register created: what the gate approved is what runs.
        # While deployment is frozen, Deploy returns held and the run ends in HeldByFreeze.
        deployment = EndpointDeployment(
            self,
            deploy=functions["Deploy"],
            confirm=functions["ConfirmDeployment"],
            deploy_payload={
                "model_version": _P.string_at("$.dataset.model_version"),
                "model_package_arn": _P.string_at("$.registration.model_package_arn"),
                # "" without model lines: the endpoint's one model (docs/serving.md).
                "model_line": _P.string_at("$.dataset.model_line"),
            },
            confirm_payload={
                "model_version": _P.string_at("$.dataset.model_version"),
                "deployment": _P.object_at("$.deployment"),
                "model_line": _P.string_at("$.dataset.model_line"),
            },
            endpoint_arn=endpoint_arn,
            poll_seconds=config.endpoint_poll_seconds,
            on_success=notify,
            on_failure=record_failure,
            hold_when_frozen=True,
        )

        for task in (prepare, train, evaluate, gate, register, notify, notify_rejected):
            task.add_catch(record_failure, errors=[sfn.Errors.ALL], result_path="$.error")

        gate_decision = (
            sfn.Choice(self, "GateDecision")
            .when(
                sfn.Condition.boolean_equals("$.gate.approved", True),
                register.next(deployment.start),
            )
            .otherwise(notify_rejected.next(rejected))
        )
        definition = prepare.next(train).next(evaluate).next(gate).next(gate_decision)

        self.state_machine, self.log_group = logged_state_machine(
            self,
            definition=definition,
            comment="TuneLoop retrain: prepare, train, evaluate, gate, register, deploy",
            timeout=Duration.hours(config.execution_timeout_hours),
            config=config,
        )
        # SnsPublish grants sns:Publish only; the topic is KMS-encrypted, and publishing
        # needs kms:GenerateDataKey* and kms:Decrypt on its key ("Configure AWS KMS
        # permissions", https://docs.aws.amazon.com/sns/latest/dg/sns-key-management.html).
        # grant_publish adds both on that one key.
        notify_topic.grant_publish(self.state_machine)
        self._acknowledge_role_findings()

    # ---- state builders ------------------------------------------------------------------

    def _lambda(
        self, state_name: str, payload: Mapping[str, Any], *, result_path: str
    ) -> tasks.LambdaInvoke:
        """A Lambda task whose result is the handler's return value (no ``Payload``
        wrapper); retries Lambda service errors."""
        return lambda_task(
            self, state_name, self._functions[state_name], payload, result_path=result_path
        )

    def _notify(
        self, state_name: str, subject: str, message: Mapping[str, Any]
    ) -> tasks.SnsPublish:
        """An SNS publish of a JSON message; publishing twice is harmless, so it retries."""
        task = tasks.SnsPublish(
            self,
            state_name,
            topic=self._topic,
            subject=subject,
            message=sfn.TaskInput.from_object(
                {**message, "execution_arn": _P.string_at("$$.Execution.Id")}
            ),
            result_path=_P.DISCARD,
        )
        task.add_retry(
            errors=[sfn.Errors.TASKS_FAILED],
            interval=Duration.seconds(2),
            max_attempts=2,
            backoff_rate=2,
        )
        return task

    def _acknowledge_role_findings(self) -> None:
        """The state machine role's wildcard findings, each with its reason."""
        acknowledge_job_machine_role(
            self.state_machine,
            self._functions.values(),
            job_names="Training job names are '<execution name>-train/-eval'",
        )


def pipeline_failure_alarm(
    scope: Construct, state_machine: sfn.StateMachine, notify_topic: sns.ITopic
) -> cw.Alarm:
    """A failed retrain run (``AWS/States`` ExecutionsFailed): people are notified and an
    incident opens. RecordFailure has already marked the version failed and notified with
    the error; the alarm makes the failure an incident like every other alarm."""
    alarm = cw.Alarm(
        scope,
        "FailureAlarm",
        metric=state_machine.metric_failed(period=Duration.minutes(5), statistic=cw.Stats.SUM),
        alarm_description=(
            "A retrain run failed.\n"
            "Nothing was deployed; the failed version and its error are in `tuneloop models` "
            "and `tuneloop runs`. Runbook: docs/runbooks/pipeline-failure.md"
        ),
        threshold=1,
        comparison_operator=cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        evaluation_periods=1,
        treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
    )
    alarm.add_alarm_action(cw_actions.SnsAction(notify_topic))
    return alarm
