"""Every place where the local platform fills a gap in moto. One module, one patch per gap.

Each patch names the gap it covers. They are installed once, in the emulator's own process
(moto runs as a ThreadedMotoServer in that process), by ``install``; while no platform is
running (``uninstall``), the patched calls behave as moto's own, so other users of moto in
the same process (unit tests with ``mock_aws``) see plain moto.
"""

from __future__ import annotations

import datetime
import json
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import boto3

from tuneloop.local import component_api, emf, metric_periods, sfn_metrics
from tuneloop.local.alarms import AlarmEvaluator
from tuneloop.local.endpoints import InvokeResult, LocalEndpoints, ServingProcess
from tuneloop.local.iam import enforce
from tuneloop.local.iam.credentials import AssumeRoleDeniedError, Credentials
from tuneloop.local.inference_components import ComponentError, LocalInferenceComponents
from tuneloop.local.jobs import JobOutcome, JobSpec, LocalJobRunner, describe_channels
from tuneloop.local.lambda_runtime import FunctionSpec, LambdaRuntime
from tuneloop.local.traffic_split import Rollout, RolloutPlan


@dataclass
class LocalServices:
    lambdas: LambdaRuntime
    jobs: LocalJobRunner
    endpoints: LocalEndpoints
    alarms: AlarmEvaluator | None = None
    """The alarm evaluator whose transitions the endpoint updates' auto-rollback hears."""
    components: LocalInferenceComponents | None = None
    """Inference components (``tuneloop.local.component_api``)."""


def _components() -> LocalInferenceComponents:
    components = services().components
    if components is None:
        raise ComponentError("this local platform runs no inference components")
    return components


_installed: LocalServices | None = None
_patched = False
_install_lock = threading.Lock()


def services() -> LocalServices:
    if _installed is None:
        raise RuntimeError("the local platform's patches are not installed")
    return _installed


def install(local: LocalServices) -> None:
    """Install every patch (idempotent: later calls only swap the services they use)."""
    global _installed, _patched
    with _install_lock:
        _installed = local
        if not _patched:
            _patched = True
            _patch_lambda_invoke()
            _patch_execution_names()
            _patch_stepfunctions_sagemaker()
            _patch_fail_state_errors()
            _patch_training_jobs()
            _patch_endpoints()
            _patch_invoke_endpoint()
            component_api.install(_components, _start_base, _active)
            sfn_metrics.patch_execution_metrics(lambda: _internal_client("cloudwatch"), _active)
            metric_periods.install()
            _register_cloudformation_models()


def uninstall() -> None:
    """Stop routing to local services: the patched calls fall back to moto's behaviour."""
    global _installed
    with _install_lock:
        _installed = None


def _active() -> bool:
    return _installed is not None


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _role_session(role_arn: str | None, service: str, source_arn: str) -> Credentials | None:
    """A session of the role a service runs code as (None when no enforcer is installed)."""
    enforcer = enforce.active()
    if enforcer is None or not role_arn:
        return None
    return enforcer.role_session(role_arn, service, source_arn)


def _internal_client(service: str) -> Any:
    """A client for what AWS does inside its own services (no account policy governs it)."""
    enforcer = enforce.active()
    if enforcer is None:
        make: Any = boto3.client
        return make(service)
    return enforcer.registry.internal.client(service)


# Gap: moto's CloudFormation skips resource types it does not know (alarms, resource
# policies), so templates referring to them fail. See cfn_models for the types added.
def _register_cloudformation_models() -> None:
    from tuneloop.local import cfn_models

    cfn_models.register()


# Gap: moto's Lambda runs code in Docker (none here) or returns canned results
# (LambdaSimpleBackend). Every invocation path (Invoke API, SQS and EventBridge event
# sources, SNS subscriptions, Step Functions tasks) ends in LambdaFunction._invoke_lambda,
# so that is the one place to run the real handler from the deployed code asset.
def _patch_lambda_invoke() -> None:
    from moto.awslambda.models import LambdaFunction

    original = LambdaFunction._invoke_lambda

    def invoke_locally(self: Any, event: Any = None) -> tuple[str, bool, str]:
        if not _active():
            return original(self, event)
        try:
            credentials = _role_session(self.role, "lambda.amazonaws.com", self.function_arn)
        except AssumeRoleDeniedError as denied:
            # What Lambda answers when it cannot assume the execution role.
            error = {
                "errorType": "AccessDeniedException",
                "errorMessage": "The role defined for the function cannot be assumed by "
                f"Lambda. {denied.decision.message}",
            }
            return json.dumps(error), True, error["errorMessage"]
        spec = FunctionSpec(
            name=self.function_name,
            handler=self.handler,
            code_zip=self.code_bytes,
            environment=dict(self.environment_vars or {}),
            timeout_seconds=int(self.timeout or 60),
            memory_mb=int(self.memory_size or 128),
            credentials=credentials.environment() if credentials else {},
        )
        result = services().lambdas.invoke(spec, event if event is not None else {})
        return json.dumps(result.payload), not result.ok, result.log

    LambdaFunction._invoke_lambda = invoke_locally  # type: ignore[method-assign]


# Gap: moto's Step Functions interpreter leaves an execution unnamed when StartExecution
# gives no name (AWS generates a UUID), so `$$.Execution.Name` — which job names and
# model versions are made of — resolves to null.
def _patch_execution_names() -> None:
    from moto.stepfunctions.parser.models import StepFunctionsParserBackend

    original = StepFunctionsParserBackend.start_execution

    def start_execution(
        self: Any, state_machine_arn: str, name: Any = None, *a: Any, **k: Any
    ) -> Any:
        return original(self, state_machine_arn, name or str(uuid.uuid4()), *a, **k)

    StepFunctionsParserBackend.start_execution = start_execution  # type: ignore[method-assign]


# Gap: the Step Functions interpreter treats `sagemaker` as unsupported (only
# .waitForTaskToken). Route it to our integration with request-response and .sync.
def _patch_stepfunctions_sagemaker() -> None:
    from moto.stepfunctions.parser.asl.component.state.exec.state_task import state_task_factory

    from tuneloop.local.sfn_sagemaker import StateTaskServiceSageMaker

    original = state_task_factory.state_task_service_for

    def service_for(service_name: str) -> Any:
        if service_name == "sagemaker" and _active():
            return StateTaskServiceSageMaker()
        return original(service_name)

    state_task_factory.state_task_service_for = service_for


# Gap: moto's Fail state takes its Error (here from ErrorPath) as a custom error name and
# refuses one that starts with "States.", so rethrowing a caught States.TaskFailed (a failed
# training job) ends the execution in a States.Runtime ValueError instead of the job's
# cause. AWS takes any string there.
def _patch_fail_state_errors() -> None:
    from moto.stepfunctions.parser.asl.component.common.error_name import custom_error_name
    from moto.stepfunctions.parser.asl.component.common.error_name.error_name import ErrorName
    from moto.stepfunctions.parser.asl.component.state.fail import state_fail

    class FailStateErrorName(custom_error_name.CustomErrorName):
        def __init__(self, error_name: str | None) -> None:
            if _active():
                ErrorName.__init__(self, error_name=error_name)
            else:
                super().__init__(error_name)

    state_fail.CustomErrorName = FailStateErrorName  # type: ignore[misc]


# Gap: moto records a training job as Completed at once and runs nothing. Run the job's
# entry point locally, once per instance, and report InProgress → Completed/Failed like
# SageMaker.
def _patch_training_jobs() -> None:
    from moto.sagemaker.models import SageMakerModelBackend

    original = SageMakerModelBackend.create_training_job

    def create_training_job(self: Any, *args: Any, **kwargs: Any) -> Any:
        job: Any = original(self, *args, **kwargs)
        if not _active():
            return job
        job.training_job_status = "InProgress"
        job.secondary_status = "Training"
        job.training_end_time = None

        def finished(outcome: JobOutcome) -> None:
            job.training_job_status = "Completed" if outcome.succeeded else "Failed"
            job.secondary_status = job.training_job_status
            job.training_end_time = job.last_modified_time = _now()
            if not outcome.succeeded:
                job.failure_reason = outcome.failure_reason

        try:
            # SageMaker runs the job (downloads, container, uploads) as the job's role.
            credentials = _role_session(job.role_arn, "sagemaker.amazonaws.com", job.arn)
        except AssumeRoleDeniedError as denied:
            finished(JobOutcome(False, f"ClientError: {denied.decision.message}"))
            return job
        resources = dict(job.resource_config or {})
        spec = JobSpec(
            name=job.training_job_name,
            hyperparameters=dict(job.hyper_parameters or {}),
            channels=describe_channels(job.input_data_config),
            output_path=job.output_data_config["S3OutputPath"],
            credentials=credentials,
            # N > 1: N host processes, algo-1..algo-N (jobs.py).
            instance_count=int(resources.get("InstanceCount", 1)),
            instance_type=str(resources.get("InstanceType", "local")),
        )
        services().jobs.start(spec, finished)
        return job

    SageMakerModelBackend.create_training_job = create_training_job  # type: ignore[method-assign]


def _variant_model(backend: Any, endpoint_config_name: str) -> Any:
    config = backend.endpoint_configs[endpoint_config_name]
    return backend.describe_model(config.production_variants[0]["ModelName"])


# Gap: a model made from a registered package (``ModelPackageName``, what Deploy creates)
# names no artifact of its own; SageMaker serves the package's container, so the local
# endpoint resolves the package to its container (image, ModelDataUrl, environment).
def _serving_container(model: Any) -> dict[str, Any]:
    from moto.sagemaker.models import sagemaker_backends

    container = dict(model.primary_container or (model.containers or [{}])[0])
    package_arn = container.get("ModelPackageName")
    if not package_arn:
        return container
    region, account = str(package_arn).split(":")[3:5]
    package = sagemaker_backends[account][region].describe_model_package(package_arn)
    return dict(package.inference_specification["Containers"][0])


def _model_data_url(model: Any) -> str:
    container = _serving_container(model)
    return str(container.get("ModelDataUrl") or "")  # none: a base the container names


def _container_environment(model: Any) -> dict[str, str]:
    """The package's environment with the model's own on top, as SageMaker merges them."""
    own = dict(model.primary_container or (model.containers or [{}])[0])
    return {
        **dict(_serving_container(model).get("Environment") or {}),
        **dict(own.get("Environment") or {}),
    }


def _start_fleet(backend: Any, endpoint: Any, config_name: str) -> ServingProcess:
    """Start the serving process of ``config_name`` and wait until it answers /ping."""
    return _start_model(
        endpoint,
        _variant_model(backend, config_name),
        config_name,
        data_capture=backend.endpoint_configs[config_name].data_capture_config,
    )


def _start_base(
    backend: Any, endpoint: Any, component_name: str, model_name: str
) -> ServingProcess:
    """A base inference component's process: the model's container, as a fleet's."""
    return _start_model(endpoint, backend.describe_model(model_name), component_name)


def _start_model(
    endpoint: Any, model: Any, process_name: str, data_capture: dict[str, Any] | None = None
) -> ServingProcess:
    # The model's container runs (and its artifact is fetched) as the model's role.
    credentials = _role_session(model.execution_role_arn, "sagemaker.amazonaws.com", endpoint.arn)
    return services().endpoints.start(
        process_name,
        _model_data_url(model),
        credentials,
        environment=_container_environment(model),
        data_capture=data_capture,
    )


def _serves_config(backend: Any, endpoint: Any, config_name: str) -> None:
    """The endpoint's description once ``config_name`` serves all its traffic."""
    config = backend.endpoint_configs[config_name]
    endpoint.endpoint_config_name = config_name
    endpoint.production_variants = endpoint._process_production_variants(config.production_variants)
    endpoint.failure_reason = None
    endpoint.endpoint_status = "InService"
    endpoint.last_modified_time = _now()


def _serve_in_background(
    backend: Any, endpoint: Any, config_name: str, on_failure: Callable[[str], None]
) -> None:
    def run() -> None:
        try:
            serving = _start_fleet(backend, endpoint, config_name)
        except Exception as exc:
            on_failure(str(exc))
            return
        services().endpoints.route(endpoint.endpoint_name, serving)
        _serves_config(backend, endpoint, config_name)

    threading.Thread(target=run, name=f"endpoint-{config_name}", daemon=True).start()


def _update_in_background(
    backend: Any,
    endpoint: Any,
    config_name: str,
    plan: RolloutPlan,
    on_failure: Callable[[str], None],
) -> None:
    """Blue/green: the new fleet comes up, traffic shifts as the ``DeploymentConfig``'s plan
    says (``traffic_split``), and an auto-rollback alarm in ALARM on the way restores the old."""
    started = time.monotonic()
    previous_config = endpoint.endpoint_config_name

    def run() -> None:
        try:
            serving = _start_fleet(backend, endpoint, config_name)
        except Exception as exc:
            on_failure(str(exc))
            return
        local = services()
        split = local.endpoints.begin_split(endpoint.endpoint_name, serving)
        if split is None:  # nothing served the endpoint: the new fleet takes it all
            local.endpoints.route(endpoint.endpoint_name, serving)
            _serves_config(backend, endpoint, config_name)
            return
        alarms = local.alarms

        def tripped(_alarm_name: str) -> None:  # in the evaluator's thread, before actions
            endpoint.endpoint_status = "RollingBack"

        rollout = Rollout(
            plan,
            split,
            on_trip=tripped,
            settle=alarms.wait_for_actions if alarms is not None else None,
            started=started,
        )
        if alarms is not None:
            alarms.add_listener(rollout.alarm_changed)
        try:
            outcome = rollout.run()
        finally:
            if alarms is not None:
                alarms.remove_listener(rollout.alarm_changed)
        local.endpoints.end_split(endpoint.endpoint_name, keep_new=outcome.completed)
        if outcome.completed:
            _serves_config(backend, endpoint, config_name)
            return
        # As SageMaker's auto-rollback: the old config serves on, the update failed.
        endpoint.endpoint_config_name = previous_config
        endpoint.failure_reason = outcome.reason
        endpoint.endpoint_status = "InService"
        endpoint.last_modified_time = _now()

    threading.Thread(target=run, name=f"endpoint-update-{config_name}", daemon=True).start()


# Gap: moto's endpoints are InService at once and serve canned answers; and moto has no
# UpdateEndpoint (nor DeploymentConfig). Endpoints here are local serving processes; an
# update is blue/green: the new config takes traffic only once healthy, shifted all at once,
# canary or linear as its DeploymentConfig says, and an auto-rollback alarm on the way or a
# failed start keeps the old config (status back to InService with a FailureReason, as
# SageMaker's rollback does).
def _patch_endpoints() -> None:
    from moto.sagemaker.exceptions import ValidationError
    from moto.sagemaker.models import SageMakerModelBackend
    from moto.sagemaker.responses import SageMakerResponse

    original_create = SageMakerModelBackend.create_endpoint

    def create_endpoint(self: Any, endpoint_name: str, endpoint_config_name: str, tags: Any) -> Any:
        endpoint: Any = original_create(self, endpoint_name, endpoint_config_name, tags)
        if not _active():
            return endpoint
        if component_api.hosts_components(self, endpoint_config_name):
            return endpoint  # InService with no fleet: its inference components bring theirs
        endpoint.endpoint_status = "Creating"

        def failed(reason: str) -> None:
            endpoint.endpoint_status = "Failed"
            endpoint.failure_reason = reason

        _serve_in_background(self, endpoint, endpoint_config_name, failed)
        return endpoint

    def update_endpoint(
        self: Any,
        endpoint_name: str,
        endpoint_config_name: str,
        deployment_config: dict[str, Any] | None = None,
    ) -> Any:
        endpoint = self.endpoints.get(endpoint_name)
        if endpoint is None:
            raise ValidationError(message=f"Could not find endpoint '{endpoint_name}'.")
        if endpoint_config_name not in self.endpoint_configs:
            raise ValidationError(
                message=f"Could not find endpoint configuration '{endpoint_config_name}'."
            )
        if endpoint.endpoint_status != "InService":
            raise ValidationError(
                message=f"Cannot update in-progress endpoint '{endpoint_name}' "
                f"(status {endpoint.endpoint_status})."
            )
        if not _active():  # metadata only, as moto would do it
            endpoint.endpoint_config_name = endpoint_config_name
            return endpoint
        variants = self.endpoint_configs[endpoint_config_name].production_variants
        try:
            plan = RolloutPlan.from_deployment_config(
                deployment_config,
                instance_count=int(variants[0].get("InitialInstanceCount") or 1),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValidationError(message=f"Invalid DeploymentConfig: {exc!r}") from exc
        endpoint.endpoint_status = "Updating"

        def rolled_back(reason: str) -> None:
            endpoint.failure_reason = f"update to {endpoint_config_name} failed: {reason}"
            endpoint.endpoint_status = "InService"

        _update_in_background(self, endpoint, endpoint_config_name, plan, rolled_back)
        return endpoint

    def update_endpoint_response(self: Any) -> Any:
        from moto.core.responses import ActionResult

        endpoint = self.sagemaker_backend.update_endpoint(
            endpoint_name=self._get_param("EndpointName"),
            endpoint_config_name=self._get_param("EndpointConfigName"),
            deployment_config=self._get_param("DeploymentConfig"),
        )
        return ActionResult({"EndpointArn": endpoint.arn})

    SageMakerModelBackend.create_endpoint = create_endpoint  # type: ignore[method-assign]
    SageMakerModelBackend.update_endpoint = update_endpoint  # type: ignore[attr-defined]
    SageMakerResponse.update_endpoint = update_endpoint_response  # type: ignore[attr-defined]


# Gap: moto's InvokeEndpoint returns canned data and emits no metrics. Forward to the
# endpoint's serving process and publish the AWS/SageMaker metrics the alarms watch.
def _patch_invoke_endpoint() -> None:
    from moto.sagemakerruntime.responses import SageMakerRuntimeResponse

    original = SageMakerRuntimeResponse.invoke_endpoint

    def invoke_endpoint(self: Any) -> Any:
        if not _active():
            return original(self)
        endpoint_name = self._get_param("EndpointName") or self.path.split("/")[2]
        body = self.body if isinstance(self.body, bytes) else str(self.body).encode()
        content_type = self.headers.get("Content-Type", "application/json")
        component = self.headers.get(component_api.COMPONENT_HEADER)
        result: InvokeResult
        if component:
            try:
                result, _ = _components().invoke(endpoint_name, component, body, content_type)
            except ComponentError as exc:
                invalid = {"__type": "ValidationError", "message": str(exc)}
                return 400, {"status": "400"}, json.dumps(invalid)
        else:
            result = services().endpoints.invoke(endpoint_name, body, content_type)
        _put_endpoint_metrics(endpoint_name, result.status, result.latency_ms, component)
        # Gap: no CloudWatch Logs ingestion; the container's EMF lines become metrics here.
        emf.publish(_internal_client("cloudwatch"), result.log_lines)
        headers = {
            "Content-Type": "application/json",
            "x-Amzn-Invoked-Production-Variant": "AllTraffic",
        }
        if result.status == 200:
            return 200, headers, result.body
        # moto takes a response's status from its "status" header, not the tuple.
        if result.status == 404:
            missing = {
                "__type": "ValidationError",
                "message": f"Endpoint {endpoint_name} not found.",
            }
            return 400, {**headers, "status": "400"}, json.dumps(missing)
        # SageMaker reports a failing container as ModelError with the original status.
        error: dict[str, Any] = {
            "__type": "ModelError",
            "message": f"Received server error ({result.status}) from model: "
            + result.body.decode(errors="replace")[:500],
            "OriginalStatusCode": result.status,
        }
        return 424, {**headers, "status": "424"}, json.dumps(error)

    SageMakerRuntimeResponse.invoke_endpoint = invoke_endpoint  # type: ignore[method-assign]


def _put_endpoint_metrics(
    endpoint_name: str, status: int, latency_ms: float, component: str | None = None
) -> None:
    """AWS/SageMaker's invocation metrics: per variant, and per inference component for a
    request that named one (as SageMaker publishes them)."""
    dimension_sets = [
        [
            {"Name": "EndpointName", "Value": endpoint_name},
            {"Name": "VariantName", "Value": "AllTraffic"},
        ]
    ]
    if component:
        dimension_sets.append([{"Name": "InferenceComponentName", "Value": component}])
    now = _now()
    metrics = [
        ("Invocations", 1.0, "Count"),
        ("Invocation5XXErrors", 1.0 if status >= 500 else 0.0, "Count"),
        ("Invocation4XXErrors", 1.0 if 400 <= status < 500 else 0.0, "Count"),
        ("ModelLatency", latency_ms * 1000.0, "Microseconds"),
    ]
    cloudwatch: Any = _internal_client("cloudwatch")
    cloudwatch.put_metric_data(
        Namespace="AWS/SageMaker",
        MetricData=[
            {"MetricName": n, "Value": v, "Unit": u, "Dimensions": dimensions, "Timestamp": now}
            for dimensions in dimension_sets
            for n, v, u in metrics
        ],
    )
