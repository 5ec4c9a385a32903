"""The container that serves a model version, for the configured backend.

Register and Deploy both describe it from here, so the Model Registry's package names the
image, model data and environment the endpoint actually runs: our ``inference.py`` on the
Hugging Face DLC (``tuneloop``), or AWS's LMI/vLLM image with the repacked adapter (``lmi``);
a model line's version is an adapter component's archive (docs/serving.md, "Model lines").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tuneloop.release.lmi import LmiSettings, prepare_lmi_model

SERVING_PROGRAM = "inference.py"
BACKENDS = ("tuneloop", "lmi")


@dataclass(frozen=True)
class ServingContainer:
    image_uri: str
    backend: str = "tuneloop"
    artifacts_bucket: str = ""  # where the LMI layout of a version is written
    lmi: LmiSettings = field(default_factory=LmiSettings)

    def definition(self, model_version: str, model_data: str) -> dict[str, Any]:
        """``Image``, ``ModelDataUrl`` and ``Environment`` for ``model_data``. With LMI the
        artifact is repacked once per version (a second call reuses the repacked copy)."""
        if self.backend == "tuneloop":
            return {
                "Image": self.image_uri,
                "ModelDataUrl": model_data,
                "Environment": {"SAGEMAKER_PROGRAM": SERVING_PROGRAM},
            }
        if self.backend == "lmi":
            if not self.artifacts_bucket:
                raise ValueError("the lmi backend needs ARTIFACTS_BUCKET for the repacked model")
            lmi = prepare_lmi_model(
                model_version, model_data, artifacts_bucket=self.artifacts_bucket, settings=self.lmi
            )
            return {
                "Image": self.image_uri,
                "ModelDataUrl": lmi.model_data_url,
                "Environment": lmi.environment,
            }
        raise ValueError(
            f"unknown serving backend {self.backend!r}; expected {' or '.join(BACKENDS)}"
        )

    def adapter_definition(self, model_data: str) -> dict[str, Any]:
        """An adapter inference component's container: the trained archive as it is. Both
        backends load a LoRA folder from it through SageMaker's adapter API (the adapter
        files sit at its root; LMI ignores our ``code/`` and ``tuneloop_model.json``), so
        nothing is repacked and the base component's environment applies."""
        if self.backend not in BACKENDS:
            raise ValueError(
                f"unknown serving backend {self.backend!r}; expected {' or '.join(BACKENDS)}"
            )
        return {"Image": self.image_uri, "ModelDataUrl": model_data}
