"""Local SageMaker inference components: a base model and its LoRA adapters on one endpoint.

moto has no inference components. Here a *base* component (``Specification.ModelName``) is a
local serving process of that model, started as an endpoint config's fleet is; an *adapter*
component (``Specification.BaseInferenceComponentName`` + ``Container.ArtifactUrl``) is its
artifact downloaded and registered with the base's process through SageMaker's LoRA adapter
API (``POST /adapters``, ``DELETE /adapters/<name>``: ``tuneloop.serving.adapters``), as
SageMaker does with a container that serves adapters. An invocation that names a component
goes to its base's process, with the adapter header for an adapter component. Updating an
adapter component's artifact swaps the adapter in place; a failed update keeps the old one
and records the ``FailureReason``.
"""

from __future__ import annotations

import datetime
import json
import tarfile
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuneloop.local.endpoints import InvokeResult, LocalEndpoints, ServingProcess, stop_process
from tuneloop.local.s3util import download_object, parse_s3_uri, s3_client
from tuneloop.serving.adapters import ADAPTER_HEADER

StartBase = Callable[[str, str], ServingProcess]
"""(component name, model name) → the base model's serving process, ready."""


class ComponentError(ValueError):
    """The request cannot be carried out (the message is the API's ValidationException)."""


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


@dataclass
class Component:
    name: str
    arn: str
    endpoint_name: str
    variant_name: str
    specification: dict[str, Any]
    copy_count: int
    status: str = "Creating"
    failure_reason: str | None = None
    created: datetime.datetime = field(default_factory=_now)
    modified: datetime.datetime = field(default_factory=_now)
    serving: ServingProcess | None = None
    """A base component's process."""
    revision: int = 0

    @property
    def base_name(self) -> str | None:
        name = self.specification.get("BaseInferenceComponentName")
        return str(name) if name else None

    @property
    def artifact_url(self) -> str:
        return str((self.specification.get("Container") or {}).get("ArtifactUrl") or "")

    def description(self, endpoint_arn: str) -> dict[str, Any]:
        described: dict[str, Any] = {
            "InferenceComponentName": self.name,
            "InferenceComponentArn": self.arn,
            "EndpointName": self.endpoint_name,
            "EndpointArn": endpoint_arn,
            "VariantName": self.variant_name,
            "Specification": self.specification,
            "RuntimeConfig": {
                "DesiredCopyCount": self.copy_count,
                "CurrentCopyCount": self.copy_count,
            },
            "InferenceComponentStatus": self.status,
            "CreationTime": self.created.isoformat(),
            "LastModifiedTime": self.modified.isoformat(),
        }
        if self.failure_reason:
            described["FailureReason"] = self.failure_reason
        return described


class LocalInferenceComponents:
    def __init__(self, work_dir: Path, endpoints: LocalEndpoints) -> None:
        self._work_dir = work_dir / "inference-components"
        self._endpoints = endpoints
        self._components: dict[str, Component] = {}
        self._lock = threading.Lock()

    def get(self, name: str) -> Component:
        with self._lock:
            component = self._components.get(name)
        if component is None:
            raise ComponentError(f"Could not find inference component '{name}'.")
        return component

    def list(self, endpoint_name: str | None = None) -> list[Component]:
        with self._lock:
            found = list(self._components.values())
        return [c for c in found if endpoint_name in (None, c.endpoint_name)]

    def create(self, component: Component, start_base: StartBase) -> Component:
        """Register ``component`` and bring it up in the background (status Creating)."""
        base_name = component.base_name
        model_name = component.specification.get("ModelName")
        if bool(base_name) == bool(model_name):
            raise ComponentError(
                "Specification needs exactly one of ModelName (a base component) or "
                "BaseInferenceComponentName (an adapter component)"
            )
        if base_name:
            base = self.get(base_name)
            if base.base_name:
                raise ComponentError(f"'{base_name}' is an adapter component, not a base")
            if base.endpoint_name != component.endpoint_name:
                raise ComponentError(f"'{base_name}' is on endpoint '{base.endpoint_name}'")
            if not component.artifact_url:
                raise ComponentError("an adapter component needs Container.ArtifactUrl")
        with self._lock:
            if component.name in self._components:
                raise ComponentError(f"Inference component '{component.name}' already exists.")
            self._components[component.name] = component

        def bring_up() -> None:
            try:
                if base_name:
                    self._register_adapter(component, self.get(base_name))
                else:
                    component.serving = start_base(component.name, str(model_name))
            except Exception as exc:
                component.status, component.failure_reason = "Failed", str(exc)
            else:
                component.status = "InService"
            component.modified = _now()

        threading.Thread(target=bring_up, name=f"component-{component.name}", daemon=True).start()
        return component

    def update(
        self, name: str, specification: dict[str, Any] | None, copies: int | None
    ) -> Component:
        """A new artifact for an adapter component (swapped in place), or a new copy count."""
        component = self.get(name)
        if component.status != "InService":
            raise ComponentError(
                f"Inference component '{name}' is {component.status}; update it once InService"
            )
        if copies is not None:
            component.copy_count = copies
        if not specification:
            component.modified = _now()
            return component
        if not component.base_name:
            raise ComponentError("only an adapter component's artifact can be updated locally")
        updated = {**component.specification, **specification}
        component.status = "Updating"
        base = self.get(component.base_name)

        def swap() -> None:
            previous = component.specification
            component.specification = updated
            try:
                self._register_adapter(component, base)
            except Exception as exc:  # the old adapter keeps serving, as a rolled-back update
                component.specification = previous
                component.failure_reason = f"update failed: {exc}"
            else:
                component.failure_reason = None
            component.status = "InService"
            component.modified = _now()

        threading.Thread(target=swap, name=f"component-update-{name}", daemon=True).start()
        return component

    def delete(self, name: str) -> None:
        component = self.get(name)
        adapters = [c.name for c in self.list() if c.base_name == name]
        if adapters:
            raise ComponentError(
                f"Inference component '{name}' has adapter components {adapters}: delete them first"
            )
        component.status = "Deleting"
        if component.base_name:
            base = self.get(component.base_name)
            if base.serving is not None:
                _call(base.serving, "DELETE", f"/adapters/{name}")
        elif component.serving is not None:
            stop_process(component.serving)
        with self._lock:
            self._components.pop(name, None)

    def invoke(
        self, endpoint_name: str, name: str, body: bytes, content_type: str
    ) -> tuple[InvokeResult, Component]:
        component = self.get(name)
        if component.endpoint_name != endpoint_name:
            raise ComponentError(
                f"Inference component '{name}' is not on endpoint '{endpoint_name}'"
            )
        if component.status not in ("InService", "Updating"):
            raise ComponentError(f"Inference component '{name}' is {component.status}")
        base = self.get(component.base_name) if component.base_name else component
        if base.serving is None:
            raise ComponentError(f"Inference component '{base.name}' has no serving process")
        headers = {ADAPTER_HEADER: name} if component.base_name else {}
        result = self._endpoints.invoke_process(
            base.serving, endpoint_name, body, content_type, headers=headers
        )
        return result, component

    def stop_all(self) -> None:
        for component in self.list():
            if component.serving is not None:
                stop_process(component.serving)
        with self._lock:
            self._components.clear()

    def _register_adapter(self, component: Component, base: Component) -> None:
        if base.status != "InService" or base.serving is None:
            raise RuntimeError(f"base component '{base.name}' is {base.status}, not InService")
        component.revision += 1
        folder = self._work_dir / component.name / str(component.revision)
        folder.mkdir(parents=True, exist_ok=True)
        archive = folder.parent / f"{component.revision}.tar.gz"
        bucket, key = parse_s3_uri(component.artifact_url)
        # Fetched as the base's model role, which SageMaker uses for the endpoint's artifacts.
        download_object(s3_client(base.serving.credentials), bucket, key, archive)
        with tarfile.open(archive, "r:gz") as tar:
            tar.extractall(folder, filter="data")
        status, answer = _call(
            base.serving, "POST", "/adapters", {"name": component.name, "src": str(folder)}
        )
        if status != 200:
            raise RuntimeError(f"the base's container refused the adapter ({status}): {answer}")


def _call(
    serving: ServingProcess, method: str, path: str, body: dict[str, Any] | None = None
) -> tuple[int, dict[str, Any]]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        f"{serving.url}{path}",
        data=data,
        method=method,
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=300) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")
