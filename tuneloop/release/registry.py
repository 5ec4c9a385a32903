"""Register: a SageMaker Model Registry package per approved model, and its lineage item."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tuneloop import aws
from tuneloop.release import model_versions
from tuneloop.release.model_versions import now_iso
from tuneloop.release.serving_container import ServingContainer

# Customer metadata values are limited to 256 characters each.
MAX_METADATA_VALUE = 256


@dataclass(frozen=True)
class Registration:
    model_version: str
    model_data: str
    dataset: dict[str, Any]
    train_job: str
    eval_job: str
    decision_s3_uri: str
    execution_arn: str
    # The model line the version was trained for ("" without lines).
    model_line: str = ""

    @classmethod
    def from_event(cls, event: dict[str, Any]) -> Registration:
        missing = [key for key in ("model_version", "model_data") if not event.get(key)]
        if missing:
            raise ValueError(f"Register input lacks {', '.join(missing)}: got keys {sorted(event)}")
        return cls(
            model_version=str(event["model_version"]),
            model_data=str(event["model_data"]),
            dataset=dict(event.get("dataset") or {}),
            train_job=job_name(event.get("train_job")),
            eval_job=job_name(event.get("eval_job")),
            decision_s3_uri=str(event.get("decision_s3_uri", "")),
            execution_arn=str(event.get("execution_arn", "")),
            # The payload's, else PrepareDataset's result (an older state machine's input).
            model_line=str(
                event.get("model_line") or dict(event.get("dataset") or {}).get("model_line") or ""
            ),
        )

    def lineage(self) -> dict[str, Any]:
        """Lineage fields that the input carries (absent ones do not erase earlier values)."""
        fields: dict[str, Any] = {
            "model_data_url": self.model_data,
            "dataset_s3_uri": str(self.dataset.get("dataset_s3_uri", "")),
            "dataset_sha256": str(self.dataset.get("dataset_sha256", "")),
            "parent_version": str(self.dataset.get("champion_version", "")),
            "train_job": self.train_job,
            "eval_job": self.eval_job,
            "decision_s3_uri": self.decision_s3_uri,
            "execution_arn": self.execution_arn,
            "model_line": self.model_line,
        }
        if "record_count" in self.dataset:
            fields["record_count"] = int(self.dataset["record_count"])
        return {name: value for name, value in fields.items() if value != ""}


def job_name(value: Any) -> str:
    """A job reference as the state machine passes it: a name, or ``{"job_name": ...}``."""
    if isinstance(value, dict):
        return str(value.get("job_name", ""))
    return "" if value is None else str(value)


def register_model(
    registration: Registration,
    *,
    model_versions_table: str,
    model_package_group: str,
    container: ServingContainer,
) -> dict[str, str]:
    """Create the model package (approved) and mark the version ``registered``."""
    existing = model_versions.get_version(model_versions_table, registration.model_version) or {}
    if existing.get("model_package_arn"):
        # A retried invocation: the package exists already; do not create a second one.
        return {"model_package_arn": str(existing["model_package_arn"])}
    lineage = registration.lineage()
    metadata = {
        "model_version": registration.model_version,
        **{name: str(value) for name, value in lineage.items()},
    }
    # The container Deploy runs from this package (with LMI: the adapter is repacked here,
    # once per version, and the package names the repacked artifact and the LMI image). A
    # line's version is an adapter component's artifact: the adapter archive itself.
    # Any: the container's environment comes from configuration; the stubs want literals.
    definition = (
        container.adapter_definition(registration.model_data)
        if registration.model_line
        else container.definition(registration.model_version, registration.model_data)
    )
    specification: Any = {
        "Containers": [definition],
        "SupportedContentTypes": ["application/json"],
        "SupportedResponseMIMETypes": ["application/json"],
    }
    response = aws.sagemaker().create_model_package(
        ModelPackageGroupName=model_package_group,
        ModelPackageDescription=(
            f"TuneLoop {registration.model_version}: LoRA fine-tune"
            + (f" of model line {registration.model_line}" if registration.model_line else "")
            + " on "
            f"{lineage.get('record_count', '?')} records, approved by the gate"
        ),
        InferenceSpecification=specification,
        ModelApprovalStatus="Approved",
        MetadataProperties={"GeneratedBy": registration.execution_arn[:1024] or "tuneloop"},
        CustomerMetadataProperties={
            name: value[:MAX_METADATA_VALUE] for name, value in metadata.items()
        },
    )
    arn = response["ModelPackageArn"]
    model_versions.register(
        model_versions_table,
        registration.model_version,
        {
            "model_package_arn": arn,
            "serving_backend": container.backend,
            "registered_at": now_iso(),
            **lineage,
        },
    )
    return {"model_package_arn": arn}
