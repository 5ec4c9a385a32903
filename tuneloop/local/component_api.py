"""Gap: moto has no SageMaker inference components. This adds their API to moto's SageMaker
(Create/Describe/Update/Delete/ListInferenceComponents), lets an endpoint config without a
``ModelName`` (an endpoint that hosts components) be created, and serves such an endpoint
with no fleet of its own: its components bring their processes
(``tuneloop.local.inference_components``). Installed by ``tuneloop.local.gaps.install``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tuneloop.local.endpoints import ServingProcess
from tuneloop.local.inference_components import (
    Component,
    ComponentError,
    LocalInferenceComponents,
)

COMPONENT_HEADER = "X-Amzn-SageMaker-Inference-Component"
"""Where ``InvokeEndpoint``'s ``InferenceComponentName`` travels."""


def hosts_components(backend: Any, endpoint_config_name: str) -> bool:
    """An endpoint config whose variant names no model: inference components serve it."""
    config = backend.endpoint_configs[endpoint_config_name]
    return not config.production_variants[0].get("ModelName")


def install(
    components: Callable[[], LocalInferenceComponents],
    start_base: Callable[[Any, Any, str, str], ServingProcess],
    active: Callable[[], bool],
) -> None:
    """``start_base(backend, endpoint, component name, model name)`` starts a base model's
    process as the endpoint's model would be started."""
    from moto.core.responses import ActionResult, EmptyResult
    from moto.sagemaker.exceptions import ValidationError
    from moto.sagemaker.models import SageMakerModelBackend
    from moto.sagemaker.responses import SageMakerResponse

    original_validate = SageMakerModelBackend.validate_production_variants

    def validate_production_variants(self: Any, variants: list[dict[str, Any]]) -> None:
        original_validate(self, [v for v in variants if v.get("ModelName")])

    def endpoint_of(backend: Any, name: str) -> Any:
        endpoint = backend.endpoints.get(name)
        if endpoint is None:
            raise ValidationError(message=f"Could not find endpoint '{name}'.")
        return endpoint

    def guarded(call: Callable[[Any], Any]) -> Callable[[Any], Any]:
        def run(self: Any) -> Any:
            if not active():
                raise ValidationError(message="inference components need the local platform")
            try:
                return call(self)
            except ComponentError as exc:
                raise ValidationError(message=str(exc)) from exc

        return run

    @guarded
    def create_inference_component(self: Any) -> Any:
        backend = self.sagemaker_backend
        endpoint = endpoint_of(backend, self._get_param("EndpointName"))
        if not hosts_components(backend, endpoint.endpoint_config_name):
            raise ComponentError(
                f"endpoint '{endpoint.endpoint_name}' serves a model of its own; inference "
                "components need an endpoint config whose variant names no model"
            )
        name = str(self._get_param("InferenceComponentName"))
        runtime = self._get_param("RuntimeConfig") or {}
        component = Component(
            name=name,
            arn=f"arn:aws:sagemaker:{backend.region_name}:{backend.account_id}:"
            f"inference-component/{name}",
            endpoint_name=endpoint.endpoint_name,
            variant_name=str(self._get_param("VariantName") or "AllTraffic"),
            specification=dict(self._get_param("Specification") or {}),
            copy_count=int(runtime.get("CopyCount") or 1),
        )
        components().create(
            component, lambda ic_name, model: start_base(backend, endpoint, ic_name, model)
        )
        return ActionResult({"InferenceComponentArn": component.arn})

    @guarded
    def describe_inference_component(self: Any) -> Any:
        component = components().get(str(self._get_param("InferenceComponentName")))
        endpoint = endpoint_of(self.sagemaker_backend, component.endpoint_name)
        return ActionResult(component.description(endpoint.arn))

    @guarded
    def update_inference_component(self: Any) -> Any:
        runtime = self._get_param("RuntimeConfig") or {}
        copies = runtime.get("CopyCount")
        component = components().update(
            str(self._get_param("InferenceComponentName")),
            self._get_param("Specification"),
            int(copies) if copies is not None else None,
        )
        return ActionResult({"InferenceComponentArn": component.arn})

    @guarded
    def delete_inference_component(self: Any) -> Any:
        components().delete(str(self._get_param("InferenceComponentName")))
        return EmptyResult()

    @guarded
    def list_inference_components(self: Any) -> Any:
        backend = self.sagemaker_backend
        found = components().list(self._get_param("EndpointNameEquals"))
        summaries = []
        for component in found:
            endpoint = endpoint_of(backend, component.endpoint_name)
            described = component.description(endpoint.arn)
            summaries.append({key: described[key] for key in _SUMMARY_KEYS if key in described})
        return ActionResult({"InferenceComponents": summaries})

    SageMakerModelBackend.validate_production_variants = validate_production_variants  # type: ignore[method-assign,assignment]
    SageMakerResponse.create_inference_component = create_inference_component  # type: ignore[attr-defined]
    SageMakerResponse.describe_inference_component = describe_inference_component  # type: ignore[attr-defined]
    SageMakerResponse.update_inference_component = update_inference_component  # type: ignore[attr-defined]
    SageMakerResponse.delete_inference_component = delete_inference_component  # type: ignore[attr-defined]
    SageMakerResponse.list_inference_components = list_inference_components  # type: ignore[attr-defined]


_SUMMARY_KEYS = (
    "InferenceComponentName",
    "InferenceComponentArn",
    "EndpointName",
    "EndpointArn",
    "VariantName",
    "InferenceComponentStatus",
    "CreationTime",
    "LastModifiedTime",
)
