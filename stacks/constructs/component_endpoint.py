"""The endpoint of model lines: one base inference component that the lines' adapter
components share (docs/serving.md, "Model lines").

CloudFormation creates what changes only with the stage: the base's SageMaker model (the
serving container with the base model and no artifact of its own), an endpoint config whose
variant names no model, the endpoint under the stage's one endpoint name, and the base
component ``BASE_COMPONENT``. Each line's adapter component is created and re-pointed by
Deploy at run time (``tuneloop.release.model_lines``), since its artifact is the version the
gate just approved.

The endpoint runs as its own role: it reads the adapter artifacts Register named (the
training jobs' output under ``jobs/``) and an ``s3://`` base model, pulls the image and writes
its logs and metrics; nothing of the training jobs' access.
"""

from __future__ import annotations

import dataclasses

from aws_cdk import Stack
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sagemaker as sagemaker
from constructs import Construct

from stacks.config import StageConfig
from stacks.constructs.dlc_image import DlcImageUri
from stacks.constructs.sagemaker_execution_role import sagemaker_service_role
from stacks.grants import grant_objects
from stacks.nag import WildcardAllowances
from stacks.sagemaker_grants import grant_base_model_read, grant_sagemaker_logs_and_metrics
from tuneloop.model_line_settings import BASE_COMPONENT
from tuneloop.planning.instances import gpu_instance
from tuneloop.release.deployment import VARIANT_NAME
from tuneloop.release.lmi import lmi_base_model_id, lmi_environment
from tuneloop.release.serving_container import SERVING_PROGRAM
from tuneloop.serving.app import BASE_MODEL_VARIABLE
from tuneloop.watch.quality import ENDPOINT_NAME_VARIABLE, REFUSAL_PATTERNS_VARIABLE

# A CPU instance's base: one core and 1 GiB, the least SageMaker accepts for a component;
# the tuneloop server batches on whatever the instance has beyond that.
CPU_BASE_CORES = 1
CPU_BASE_MEMORY_MB = 1024
# The share of a GPU instance's host memory the base reserves: the rest is the container's
# and the agents' (the adapters use the base's reservation).
GPU_HOST_MEMORY_SHARE = 0.5


def component_arn(stack: Stack, name: str) -> str:
    """An inference component's ARN (SageMaker lower-cases names inside ARNs)."""
    return stack.format_arn(
        service="sagemaker", resource="inference-component", resource_name=name.lower()
    )


def base_compute_requirements(instance_type: str) -> dict[str, int]:
    """The base component takes every GPU of the instance (LMI shards over them) and half
    its host memory; on CPU, one core and 1 GiB."""
    instance = gpu_instance(instance_type)
    if instance is None:
        return {
            "NumberOfCpuCoresRequired": CPU_BASE_CORES,
            "MinMemoryRequiredInMb": CPU_BASE_MEMORY_MB,
        }
    return {
        "NumberOfAcceleratorDevicesRequired": instance.gpus,
        "MinMemoryRequiredInMb": int(instance.host_memory_gib * 1024 * GPU_HOST_MEMORY_SHARE),
    }


def base_container_environment(config: StageConfig, endpoint_name: str) -> dict[str, str]:
    """The base's container: our server on the base model (``TUNELOOP_BASE_MODEL``; the
    adapters arrive through its adapter API), or LMI with LoRA on for every line."""
    if config.serving_backend == "lmi":
        # vLLM holds at most max_loras adapters in a batch: at least one per line.
        lines = len(config.model_lines.lines)
        settings = dataclasses.replace(config.lmi, max_loras=max(config.lmi.max_loras, lines))
        return lmi_environment(
            settings, model_id=lmi_base_model_id(config.base_model), adapter=True
        )
    env = {
        "SAGEMAKER_PROGRAM": SERVING_PROGRAM,
        BASE_MODEL_VARIABLE: config.base_model,
        ENDPOINT_NAME_VARIABLE: endpoint_name,
    }
    patterns = config.quality.refusal_patterns_json()
    if patterns:
        env[REFUSAL_PATTERNS_VARIABLE] = patterns
    return env


class ComponentEndpoint(Construct):
    """``endpoint``, ``base_component`` and the endpoint's ``role``; ``line_component_arns``
    are the ARNs of the lines' adapter components (for the Lambdas' grants)."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        endpoint_name: str,
        artifacts: s3.IBucket,
        config: StageConfig,
    ) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        lmi = config.serving_backend == "lmi"
        image = DlcImageUri(self, "Image", image=config.lmi.image if lmi else config.serving_image)
        self.role = sagemaker_service_role(
            self, "Role", "TuneLoop endpoint of model lines: base model and adapters"
        )
        self.allowances = WildcardAllowances(self.role)
        self._grant_serving(image, artifacts, base_model=config.base_model)

        self.model = sagemaker.CfnModel(
            self,
            "BaseModel",
            execution_role_arn=self.role.role_arn,
            primary_container=sagemaker.CfnModel.ContainerDefinitionProperty(
                image=image.uri,
                environment=base_container_environment(config, endpoint_name),
            ),
        )
        self.endpoint_config = sagemaker.CfnEndpointConfig(
            self,
            "Config",
            # Components name no role of their own: SageMaker fetches their artifacts and
            # runs their containers as this one.
            execution_role_arn=self.role.role_arn,
            production_variants=[
                sagemaker.CfnEndpointConfig.ProductionVariantProperty(
                    variant_name=VARIANT_NAME,
                    instance_type=config.serving_instance_type,
                    initial_instance_count=config.rollout.instance_count,
                    # The lines share the base's copies: the least busy one takes a request.
                    routing_config=sagemaker.CfnEndpointConfig.RoutingConfigProperty(
                        routing_strategy="LEAST_OUTSTANDING_REQUESTS"
                    ),
                )
            ],
        )
        self.endpoint = sagemaker.CfnEndpoint(
            self,
            "Endpoint",
            endpoint_name=endpoint_name,  # the stage's one endpoint name (stacks/serving.py)
            endpoint_config_name=self.endpoint_config.attr_endpoint_config_name,
        )
        # SageMaker pulls the image and the artifacts as the role from here on: its policy
        # (the role's DefaultPolicy) must exist first.
        self.endpoint.node.add_dependency(self.role)
        requirements = base_compute_requirements(config.serving_instance_type)
        self.base_component = sagemaker.CfnInferenceComponent(
            self,
            "BaseComponent",
            inference_component_name=BASE_COMPONENT,
            endpoint_name=self.endpoint.attr_endpoint_name,
            variant_name=VARIANT_NAME,
            specification=sagemaker.CfnInferenceComponent.InferenceComponentSpecificationProperty(
                model_name=self.model.attr_model_name,
                compute_resource_requirements=sagemaker.CfnInferenceComponent.InferenceComponentComputeResourceRequirementsProperty(
                    number_of_accelerator_devices_required=requirements.get(
                        "NumberOfAcceleratorDevicesRequired"
                    ),
                    number_of_cpu_cores_required=requirements.get("NumberOfCpuCoresRequired"),
                    min_memory_required_in_mb=requirements["MinMemoryRequiredInMb"],
                ),
            ),
            runtime_config=sagemaker.CfnInferenceComponent.InferenceComponentRuntimeConfigProperty(
                copy_count=1
            ),
        )
        self.line_component_arns = [component_arn(stack, name) for name in config.model_lines.names]

    def _grant_serving(self, image: DlcImageUri, artifacts: s3.IBucket, *, base_model: str) -> None:
        # Adapter artifacts: the trained model.tar.gz a line's package names (jobs/), with
        # either backend (ServingContainer.adapter_definition).
        grant_objects(artifacts, self.role, self.allowances, prefix="jobs/", access="read")
        image.grant_pull(self.role)
        grant_sagemaker_logs_and_metrics(self.role, self.allowances)
        if base_model.startswith("s3://"):  # LMI downloads an s3:// base as this role
            grant_base_model_read(self.role, self.allowances, base_model)
