"""Pipeline: the retrain and release state machines, their Lambdas, the SageMaker role, code
and registry."""

from __future__ import annotations

from typing import Any

from aws_cdk import Duration, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from stacks.config import StageConfig
from stacks.constructs.benchmark_run_state_machine import BenchmarkRunStateMachine
from stacks.constructs.component_endpoint import component_arn
from stacks.constructs.continuous_evaluation import (
    ContinuousEvaluation,
    grant_evaluation_metrics,
)
from stacks.constructs.data_lake import DataLake
from stacks.constructs.dlc_image import DlcImageUri
from stacks.constructs.drift_check import DriftCheck
from stacks.constructs.endpoint_alarms import EndpointAlarms
from stacks.constructs.model_registry import ModelRegistry
from stacks.constructs.notifications import Notifications
from stacks.constructs.python_function import PythonFunction
from stacks.constructs.release_state_machine import ReleaseStateMachine
from stacks.constructs.retrain_state_machine import RetrainStateMachine, pipeline_failure_alarm
from stacks.constructs.sagemaker_execution_role import SageMakerExecutionRole
from stacks.constructs.state_tables import StateTables
from stacks.constructs.training_code import TrainingCode
from stacks.endpoint_autoscaling import grant_endpoint_autoscaling
from stacks.grants import (
    grant_audit_append,
    grant_base_model_config,
    grant_line_components,
    grant_objects,
    grant_table,
)
from stacks.nag import WildcardAllowances
from stacks.outputs import add_outputs
from tuneloop import stack_outputs as out

MODEL_PACKAGE_GROUP_LOGICAL_ID = "ModelPackageGroup"


class PipelineStack(Stack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: StageConfig,
        lake: DataLake,
        tables: StateTables,
        notifications: Notifications,
        endpoint_alarms: EndpointAlarms,
        endpoint_name: str,
        endpoint_arn: str,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        training_image = DlcImageUri(self, "TrainingImage", image=config.training_image)
        serving_image = DlcImageUri(self, "ServingImage", image=config.serving_image)
        # The endpoint's container: our server on the HF inference DLC (also what Register
        # records), or AWS's LMI (vLLM) image with the LoRA adapter (docs/serving.md).
        lmi = config.serving_backend == "lmi"
        deploy_image = DlcImageUri(self, "LmiImage", image=config.lmi.image) if lmi else None
        code = TrainingCode(self, "TrainingCode")
        execution = SageMakerExecutionRole(
            self,
            "SageMakerExecution",
            curated=lake.curated,
            artifacts=lake.artifacts,
            training_code=code,
            images=[training_image, serving_image] + ([deploy_image] if deploy_image else []),
            rollback_alarms=endpoint_alarms.alarms,
            base_model=config.base_model,
        )
        self.sagemaker_role = execution.role
        # Endpoint data capture: SageMaker writes the captured objects as the model's role
        # (docs/monitoring.md, "Data capture").
        grant_objects(
            lake.curated, self.sagemaker_role, execution.allowances, prefix="capture/", access="put"
        )
        lake_key = lake.curated.encryption_key
        assert lake_key is not None  # the data lake buckets are KMS-encrypted
        if lmi:  # the endpoint loads the model Deploy repacked for LMI
            grant_objects(
                lake.artifacts,
                self.sagemaker_role,
                execution.allowances,
                prefix="models/",
                access="read",
            )
        registry = ModelRegistry(
            self,
            "ModelRegistry",
            description=f"TuneLoop {config.stage} fine-tuned models",
            retain=config.retain_data,
        )
        t, b = tables, lake

        def fn(construct_id: str, name: str, env: dict[str, str], **extra: Any) -> Any:
            return PythonFunction(
                self,
                construct_id,
                name=name,
                environment=env,
                config=config,
                description=f"TuneLoop retrain step {construct_id}",
                **extra,
            )

        self.functions = {
            "PrepareDataset": fn(
                "PrepareDataset",
                "prepare_dataset",
                {
                    "RECORDS_TABLE": t.records.table_name,
                    # The drops since the champion's data set (by_month index).
                    "DROPS_TABLE": t.drops.table_name,
                    "CONTROL_TABLE": t.control.table_name,
                    "MODEL_VERSIONS_TABLE": t.model_versions.table_name,
                    "CURATED_BUCKET": b.curated.bucket_name,
                    "ARTIFACTS_BUCKET": b.artifacts.bucket_name,
                    "BENCHMARKS_TABLE": t.benchmarks.table_name,
                    # Names the suites (and pinned versions) each run freezes.
                    "GATE_POLICY": config.gate_policy.to_json(),
                    # A line's run reads its datasets, its champion, its gate policy.
                    "MODEL_LINES": config.model_lines.to_json(),
                    # The held-out slice (Evaluate's heldout channel) and the replay sample
                    # (Train's replay channel); docs/contracts.md.
                    "HELDOUT_FRACTION": str(config.dataset.heldout_fraction),
                    "HELDOUT_MAX_RECORDS": str(config.dataset.heldout_max_records),
                    "REPLAY_RATIO": str(config.dataset.replay_ratio),
                    # Train's instance type and settings: an s3:// base model, which synth
                    # cannot size, is checked against them before the GPU job.
                    "TRAINING_CAPACITY": config.training_capacity_settings().to_json(),
                },
                timeout=Duration.minutes(15),
                memory_size=2048,
            ),
            "Gate": fn(
                "Gate",
                "gate",
                {
                    "ARTIFACTS_BUCKET": b.artifacts.bucket_name,
                    "MODEL_VERSIONS_TABLE": t.model_versions.table_name,
                    # An admin's policy (Control "gate_policy") overrides GATE_POLICY.
                    "CONTROL_TABLE": t.control.table_name,
                    "GATE_POLICY": config.gate_policy.to_json(),
                    # A line's run gates by its line's policy ("gate_policy#<line>" first).
                    "MODEL_LINES": config.model_lines.to_json(),
                },
                timeout=Duration.minutes(5),
                memory_size=1024,
            ),
            "Register": fn(
                "Register",
                "register",
                {
                    "MODEL_VERSIONS_TABLE": t.model_versions.table_name,
                    "MODEL_PACKAGE_GROUP": registry.group_name,
                    # The package is what Deploy runs (docs/serving.md).
                    "SERVING_IMAGE_URI": (deploy_image or serving_image).uri,
                    "SERVING_BACKEND": config.serving_backend,
                    "ARTIFACTS_BUCKET": b.artifacts.bucket_name,
                    "LMI_OPTIONS": config.lmi.to_json(),
                    # The version's model_line is checked against these and recorded.
                    "MODEL_LINES": config.model_lines.to_json(),
                },
                # LMI: the adapter artifact is repacked here, once per version.
                **({"timeout": Duration.minutes(5), "memory_size": 1024} if lmi else {}),
            ),
            "Deploy": fn(
                "Deploy",
                "deploy",
                {
                    "CONTROL_TABLE": t.control.table_name,
                    "MODEL_VERSIONS_TABLE": t.model_versions.table_name,
                    "ENDPOINT_NAME": endpoint_name,
                    # Image, model data and environment come from the registered package.
                    "SERVING_INSTANCE_TYPE": config.serving_instance_type,
                    "SAGEMAKER_ROLE_ARN": self.sagemaker_role.role_arn,
                    "ROLLBACK_ALARM_NAMES": endpoint_alarms.alarm_names,
                    # Data capture, the container's refusal patterns and the quality
                    # alarms' baselines (docs/monitoring.md).
                    "QUALITY_SETTINGS": config.quality.to_json(),
                    "QUALITY_ALARMS": endpoint_alarms.quality_alarm_names,
                    "CAPTURE_DESTINATION": f"s3://{b.curated.bucket_name}/capture/",
                    "DATA_LAKE_KEY_ARN": lake_key.key_arn,
                    # Canary/linear traffic shifting and the variant's size (docs/serving.md).
                    "ROLLOUT_SETTINGS": config.rollout.to_json(),
                    # Suspended before an update (docs/serving.md, "Autoscaling").
                    "AUTOSCALING_SETTINGS": config.autoscaling.to_json(),
                    # A run of a line deploys its adapter component (docs/serving.md).
                    "MODEL_LINES": config.model_lines.to_json(),
                    # ... and re-bounds that line's quality alarms (docs/monitoring.md).
                    "LINE_QUALITY_ALARMS": endpoint_alarms.line_quality_alarm_names,
                },
            ),
            "ConfirmDeployment": fn(
                "ConfirmDeployment",
                "confirm_deployment",
                {
                    "CONTROL_TABLE": t.control.table_name,
                    "MODEL_VERSIONS_TABLE": t.model_versions.table_name,
                    "ENDPOINT_NAME": endpoint_name,
                    "AUDIT_TABLE": t.audit.table_name,
                    # Registered, or restored, once the endpoint is InService.
                    "AUTOSCALING_SETTINGS": config.autoscaling.to_json(),
                    "MODEL_LINES": config.model_lines.to_json(),
                },
            ),
            "RecordFailure": fn(
                "RecordFailure",
                "record_failure",
                {
                    "MODEL_VERSIONS_TABLE": t.model_versions.table_name,
                },
            ),
        }
        f = {state: python_function.function for state, python_function in self.functions.items()}
        a = {state: python_function.allowances for state, python_function in self.functions.items()}
        grant_table(t.records, f["PrepareDataset"], a["PrepareDataset"], write=False)
        grant_table(t.drops, f["PrepareDataset"], a["PrepareDataset"], write=False)
        # The drops' curated copies: an incremental run reads these, not the Records table.
        grant_objects(
            b.curated, f["PrepareDataset"], a["PrepareDataset"], prefix="curated/", access="read"
        )
        grant_objects(
            b.curated,
            f["PrepareDataset"],
            a["PrepareDataset"],
            prefix="datasets/",
            access="read_write",
        )
        # Record bodies over DynamoDB's item limit, written by Ingest (docs/contracts.md).
        grant_objects(
            b.curated, f["PrepareDataset"], a["PrepareDataset"], prefix="records/", access="read"
        )
        grant_objects(
            b.artifacts,
            f["PrepareDataset"],
            a["PrepareDataset"],
            prefix="benchmarks/",
            access="read",
        )
        grant_table(t.benchmarks, f["PrepareDataset"], a["PrepareDataset"], write=False)
        grant_base_model_config(f["PrepareDataset"], config.base_model)
        # The run's frozen copies: runs/<model_version>/benchmarks/<name>.jsonl.
        grant_objects(
            b.artifacts,
            f["PrepareDataset"],
            a["PrepareDataset"],
            prefix="runs/",
            access="read_write",
        )
        grant_objects(b.artifacts, f["Gate"], a["Gate"], prefix="jobs/", access="read")
        grant_objects(b.artifacts, f["Gate"], a["Gate"], prefix="gate/", access="read_write")
        grant_objects(b.artifacts, f["Register"], a["Register"], prefix="jobs/", access="read")
        if lmi:  # Register repacks the trained artifact into its LMI layout, once
            grant_objects(
                b.artifacts, f["Register"], a["Register"], prefix="models/", access="read_write"
            )
        registry.grant_register(f["Register"])
        a["Register"].allow_resource(
            registry.packages_arn,
            "Versions of the one model package group; SageMaker numbers them at run time.",
        )
        self._grant_deploy(
            f["Deploy"], a["Deploy"], endpoint_arn=endpoint_arn, packages_arn=registry.packages_arn
        )
        endpoint_alarms.grant_set_quality_thresholds(f["Deploy"], a["Deploy"])
        if config.model_lines:
            grant_line_components(
                f["Deploy"],
                f["ConfirmDeployment"],
                endpoint_arn=endpoint_arn,
                components=[component_arn(self, name) for name in config.model_lines.names],
            )
        if config.autoscaling.enabled:
            grant_endpoint_autoscaling(
                f["Deploy"],
                a["Deploy"],
                endpoint_name=endpoint_name,
                endpoint_arn=endpoint_arn,
                put_policy=False,
                create_service_linked_role=False,
            )
            grant_endpoint_autoscaling(
                f["ConfirmDeployment"],
                a["ConfirmDeployment"],
                endpoint_name=endpoint_name,
                endpoint_arn=endpoint_arn,
                put_policy=True,
                create_service_linked_role=True,  # the first deployment registers the target
            )
        f["ConfirmDeployment"].add_to_role_policy(
            iam.PolicyStatement(
                actions=["sagemaker:DescribeEndpoint"],
                resources=[endpoint_arn],
            )
        )
        for state in (
            "PrepareDataset",
            "Gate",
            "Register",
            "Deploy",
            "ConfirmDeployment",
            "RecordFailure",
        ):
            grant_table(t.model_versions, f[state], a[state], write=True)
        for state in ("PrepareDataset", "Deploy", "ConfirmDeployment"):
            grant_table(t.control, f[state], a[state], write=True)
        grant_table(t.control, f["Gate"], a["Gate"], write=False)  # the gate policy in force
        # The pipeline's own deployments are audited (auto_deploy); append only.
        grant_audit_append(t.audit, f["ConfirmDeployment"])

        self.retrain = RetrainStateMachine(
            self,
            "Retrain",
            config=config,
            functions=f,
            sagemaker_role=self.sagemaker_role,
            training_image_uri=training_image.uri,
            submit_directory=code.s3_url,
            artifacts=lake.artifacts,
            notify_topic=notifications.notify_topic,
            endpoint_arn=endpoint_arn,
        )
        self.state_machine = self.retrain.state_machine
        self.failure_alarm = pipeline_failure_alarm(
            self.retrain, self.state_machine, notifications.notify_topic
        )
        # A person's deploy or rollback to a chosen version: the same Deploy path.
        self.release = ReleaseStateMachine(
            self,
            "Release",
            config=config,
            deploy=f["Deploy"],
            confirm=f["ConfirmDeployment"],
            notify_topic=notifications.notify_topic,
            endpoint_arn=endpoint_arn,
        )
        self.release_state_machine = self.release.state_machine
        # A person's run of one suite on one version (the console's /benchmarks, the CLI).
        benchmark_run = PythonFunction(
            self,
            "BenchmarkRun",
            name="benchmark_run",
            environment={
                "ARTIFACTS_BUCKET": b.artifacts.bucket_name,
                "BENCHMARKS_TABLE": t.benchmarks.table_name,
                "MODEL_VERSIONS_TABLE": t.model_versions.table_name,
                "MMLU_SUBSET_SIZE": str(config.evaluation.mmlu_subset_size),
            },
            config=config,
            description="TuneLoop benchmark run: prepare the suite, record the score",
        )
        run_fn, run_allow = benchmark_run.function, benchmark_run.allowances
        grant_table(t.benchmarks, run_fn, run_allow, write=False)
        grant_table(t.model_versions, run_fn, run_allow, write=True)
        grant_objects(b.artifacts, run_fn, run_allow, prefix="benchmarks/", access="read")
        grant_objects(b.artifacts, run_fn, run_allow, prefix="runs/", access="read_write")
        grant_objects(b.artifacts, run_fn, run_allow, prefix="jobs/", access="read")
        grant_evaluation_metrics(run_fn, run_allow)  # Record: a scheduled run's regression check
        self.benchmark_run = BenchmarkRunStateMachine(
            self,
            "BenchmarkRunMachine",
            config=config,
            function=run_fn,
            sagemaker_role=self.sagemaker_role,
            training_image_uri=training_image.uri,
            submit_directory=code.s3_url,
            artifacts=lake.artifacts,
        )
        self.benchmark_run_state_machine = self.benchmark_run.state_machine
        # Production re-scored on the gate's suites on a schedule (docs/monitoring.md).
        self.continuous_evaluation = ContinuousEvaluation(
            self,
            "ContinuousEvaluation",
            config=config,
            benchmark_run_state_machine=self.benchmark_run_state_machine,
            model_versions_table=t.model_versions,
            control_table=t.control,
            benchmarks_table=t.benchmarks,
            artifacts=b.artifacts,
            notify_topic=notifications.notify_topic,
        )
        # The endpoint's captured prompts against production's training data (same doc).
        self.drift_check = DriftCheck(
            self,
            "DriftCheck",
            config=config,
            curated=b.curated,
            raw=b.raw,
            control_table=t.control,
            model_versions_table=t.model_versions,
            endpoint_name=endpoint_name,
            notify_topic=notifications.notify_topic,
        )
        self.model_package_group = registry.group
        # Stateful (holds every registered version): pinned like Storage's resources.
        registry.group.override_logical_id(MODEL_PACKAGE_GROUP_LOGICAL_ID)
        add_outputs(
            self,
            {
                out.STATE_MACHINE: (
                    self.state_machine.state_machine_arn,
                    "The retrain state machine",
                ),
                out.RELEASE_STATE_MACHINE: (
                    self.release_state_machine.state_machine_arn,
                    "The release state machine (manual deploys and rollbacks to a version)",
                ),
                out.BENCHMARK_RUN_STATE_MACHINE: (
                    self.benchmark_run_state_machine.state_machine_arn,
                    "The benchmark run state machine (one suite on one model version)",
                ),
                out.CONTINUOUS_EVALUATION_FUNCTION: (
                    self.continuous_evaluation.function.function.function_name,
                    "The continuous evaluation function (`tuneloop watch evaluate` invokes it)",
                ),
                out.DRIFT_CHECK_FUNCTION: (
                    self.drift_check.function.function.function_name,
                    "The drift check function (`tuneloop watch drift` invokes it)",
                ),
                out.SAGEMAKER_ROLE: (
                    self.sagemaker_role.role_arn,
                    "The role SageMaker jobs and the endpoint run as",
                ),
                out.MODEL_PACKAGE_GROUP: (registry.group_name, "The Model Registry group"),
            },
        )

    def _grant_deploy(
        self,
        deploy: lambda_.IFunction,
        allow: WildcardAllowances,
        *,
        endpoint_arn: str,
        packages_arn: str,
    ) -> None:
        """Deploy: the model from the registered package, a config, then the endpoint.

        Each action on every resource type SageMaker authorizes it against (Service
        Authorization Reference, "Actions defined by Amazon SageMaker AI",
        https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazonsagemaker.html):
        CreateEndpoint and UpdateEndpoint check the endpoint and the endpoint config.
        """
        any_model, any_config = (
            self.format_arn(service="sagemaker", resource=kind, resource_name="*")
            for kind in ("model", "endpoint-config")
        )
        statements = [
            (["sagemaker:DescribeModelPackage"], [packages_arn]),
            (["sagemaker:CreateModel"], [any_model]),
            (["sagemaker:CreateEndpointConfig"], [any_config]),
            (["sagemaker:CreateEndpoint", "sagemaker:UpdateEndpoint"], [endpoint_arn, any_config]),
            (["sagemaker:DescribeEndpoint"], [endpoint_arn]),
        ]
        for actions, resources in statements:
            deploy.add_to_role_policy(iam.PolicyStatement(actions=actions, resources=resources))
        # CreateModel passes the execution role, to SageMaker only ("Grant a user
        # permissions to pass a role to an AWS service", iam:PassedToService,
        # https://docs.aws.amazon.com/IAM/latest/UserGuide/id_roles_use_passrole.html).
        deploy.add_to_role_policy(
            iam.PolicyStatement(
                actions=["iam:PassRole"],
                resources=[self.sagemaker_role.role_arn],
                conditions={"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}},
            )
        )
        allow.allow_resource(
            any_model, "Deploy creates one model per model version, named at run time."
        )
        allow.allow_resource(
            any_config,
            "Deploy creates one endpoint config per model version, named at run time; "
            "CreateEndpoint/UpdateEndpoint authorize that config too.",
        )
        allow.allow_resource(
            packages_arn,
            "Versions of the one model package group; SageMaker numbers them at run time.",
        )
