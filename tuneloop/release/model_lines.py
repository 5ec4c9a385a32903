"""Deploy, confirm and roll back one model line: a LoRA adapter component on a shared base.

An endpoint that hosts several model lines serves a base inference component and one adapter
inference component per line, named after the line (docs/serving.md, "Model lines"). A
line's version goes live by pointing its component at the version's adapter artifact
(``Container.ArtifactUrl``, the registered package's ``ModelDataUrl``): created the first
time, updated after that. SageMaker swaps the adapter on the running base; the other
lines are not touched. Each line has its own production item in Control
(``production#<line>``) with its last-known-good, so a rollback of one line points its
component back at the last-known-good artifact and leaves the others serving.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from tuneloop import aws
from tuneloop.component_names import COMPONENT_NAME_RULE, is_component_name
from tuneloop.model_line_settings import ModelLineError
from tuneloop.operations import audit
from tuneloop.release import model_versions
from tuneloop.release.control import Release, production_key, read_production, replace_production
from tuneloop.release.deployment import (
    AuditContext,
    DeploymentRolledBack,
    EndpointBusyError,
    approved_package,
)
from tuneloop.release.model_versions import now_iso

NOTHING_TO_ROLL_BACK = "no last-known-good; nothing to roll back"


def check_line_name(name: Any) -> str:
    if not is_component_name(name):
        raise ModelLineError(
            f"model line {name!r} must be {COMPONENT_NAME_RULE} (it names the line's inference "
            "component)"
        )
    return str(name)


@dataclass(frozen=True)
class LineServing:
    """Where a line is served: the endpoint, its base component, the line's component."""

    endpoint_name: str
    base_component: str
    model_line: str

    def __post_init__(self) -> None:
        check_line_name(self.model_line)
        if self.model_line == self.base_component:
            raise ModelLineError(
                f"model line {self.model_line!r} has the base component's name; rename it"
            )

    @property
    def component(self) -> str:
        return self.model_line

    @property
    def control_key(self) -> str:
        return production_key(self.model_line)

    def specification(self, artifact_url: str) -> dict[str, Any]:
        return {
            "BaseInferenceComponentName": self.base_component,
            "Container": {"ArtifactUrl": artifact_url},
        }


def describe_component(name: str) -> dict[str, Any] | None:
    try:
        return dict(aws.sagemaker().describe_inference_component(InferenceComponentName=name))
    except ClientError as exc:
        error = exc.response.get("Error", {})
        if error.get("Code") == "ValidationException" and "Could not find" in str(
            error.get("Message", "")
        ):
            return None
        raise


def serving_artifact(component: dict[str, Any]) -> str:
    """The adapter artifact an adapter component serves."""
    return str(
        ((component.get("Specification") or {}).get("Container") or {}).get("ArtifactUrl", "")
    )


def package_artifact(model_package_arn: str) -> str:
    """The approved package's adapter artifact (what its container serves)."""
    package = approved_package(model_package_arn)
    containers = (package.get("InferenceSpecification") or {}).get("Containers") or [{}]
    artifact = str(containers[0].get("ModelDataUrl") or "")
    if not artifact:
        raise ModelLineError(f"model package {model_package_arn} names no ModelDataUrl")
    return artifact


def _point_component(line: LineServing, artifact_url: str) -> dict[str, Any] | None:
    """Create the line's component on ``artifact_url``, or update it; the component before."""
    sagemaker: Any = aws.sagemaker()
    current = describe_component(line.component)
    if current is None:
        sagemaker.create_inference_component(
            InferenceComponentName=line.component,
            EndpointName=line.endpoint_name,
            VariantName="AllTraffic",
            Specification=line.specification(artifact_url),
        )
        return None
    if current.get("InferenceComponentStatus") != "InService":
        raise EndpointBusyError(
            f"inference component {line.component} is {current.get('InferenceComponentStatus')}; "
            "deploy again once it is InService"
        )
    sagemaker.update_inference_component(
        InferenceComponentName=line.component, Specification=line.specification(artifact_url)
    )
    return current


def deploy_line(
    model_version: str,
    model_package_arn: str,
    *,
    line: LineServing,
    model_versions_table: str,
) -> dict[str, str]:
    """Point the line's component at the version's adapter; ConfirmDeployment follows."""
    artifact = package_artifact(model_package_arn)
    before = _point_component(line, artifact)
    model_versions.start_deploying(
        model_versions_table,
        model_version,
        {
            "endpoint_name": line.endpoint_name,
            "inference_component": line.component,
            "model_line": line.model_line,
            "deploy_started_at": now_iso(),
        },
    )
    return {
        "endpoint_name": line.endpoint_name,
        "inference_component": line.component,
        "artifact_url": artifact,
        "previous_artifact_url": serving_artifact(before) if before else "",
    }


def confirm_line(
    model_version: str,
    deployment: dict[str, Any],
    *,
    line: LineServing,
    control_table: str,
    model_versions_table: str,
    rollback: bool = False,
    audit_context: AuditContext | None = None,
) -> dict[str, str]:
    """Promote ``model_version`` on its line once the component serves its artifact.

    ``rollback``: a person released this earlier version as a rollback; the version it
    replaces becomes ``rolled_back`` and the line has no last-known-good (as
    ``confirm_deployment`` does for the endpoint). ``audit_context``: the promotion's
    audit record (target: the version, or the one taken out by a rollback)."""
    expected = str(deployment.get("artifact_url") or "")
    if not expected:
        raise ValueError(f"ConfirmDeployment input lacks deployment.artifact_url: {deployment}")
    component = describe_component(line.component)
    if component is None:
        raise DeploymentRolledBack(f"inference component {line.component} does not exist")
    status = str(component.get("InferenceComponentStatus", ""))
    if status in ("Creating", "Updating"):
        raise EndpointBusyError(f"inference component {line.component} is {status}")
    if status != "InService" or serving_artifact(component) != expected:
        raise DeploymentRolledBack(
            f"inference component {line.component} serves {serving_artifact(component)!r}, "
            f"not {model_version}'s {expected!r}; the line's previous version keeps serving"
            + (
                f". FailureReason: {component['FailureReason']}"
                if component.get("FailureReason")
                else ""
            )
        )
    production = read_production(control_table, line.control_key)
    if production is not None and production.current.model_version == model_version:
        lkg = production.last_known_good
        return {
            "production_version": model_version,
            "last_known_good_version": lkg.model_version if lkg else "",
        }
    previous = production.current if production else None
    new = Release(model_version, "", expected)
    promoted_at = now_iso()
    replace_production(
        control_table,
        new,
        last_known_good=None if rollback else previous,
        expected=previous,
        key=line.control_key,
        extra={
            "last_rollback": {
                "incident": f"manual@{promoted_at}",
                "from_version": previous.model_version if previous else "",
                "at": promoted_at,
            }
        }
        if rollback
        else None,
    )
    if rollback and previous is not None:
        model_versions.roll_back(
            model_versions_table,
            previous.model_version,
            {"rolled_back_at": promoted_at, "rollback_alarm": "", "rolled_back_to": model_version},
        )
    model_versions.promote(model_versions_table, model_version, {"promoted_at": promoted_at})
    if audit_context is not None:
        _audit_promotion(audit_context, line, model_version, previous, expected, rollback)
    if previous is not None and not rollback:
        model_versions.supersede(
            model_versions_table,
            previous.model_version,
            {"superseded_by": model_version, "superseded_at": promoted_at},
        )
    return {
        "production_version": model_version,
        "last_known_good_version": previous.model_version if previous else "",
    }


def _audit_promotion(
    context: AuditContext,
    line: LineServing,
    model_version: str,
    previous: Release | None,
    artifact_url: str,
    rollback: bool,
) -> None:
    audit.append(
        context.table,
        context.actor,
        context.action,
        previous.model_version if rollback and previous else model_version,
        before={
            "model_version": previous.model_version if previous else "",
            "artifact_url": previous.model_data_url if previous else "",
            "model_line": line.model_line,
        },
        after={
            "model_version": model_version,
            "artifact_url": artifact_url,
            "endpoint_name": line.endpoint_name,
            "inference_component": line.component,
            "model_line": line.model_line,
        },
        request_id=context.request_id,
    )


def roll_back_line(
    line: LineServing,
    *,
    control_table: str,
    model_versions_table: str,
    reason: str,
    incident: str = "",
) -> dict[str, str]:
    """Point the line's component back at its last-known-good adapter and record it.

    The production item changes at once (the component swaps the adapter in place: the
    base keeps serving, and the old adapter finishes the answers it began); there is no
    last-known-good until the line's next deployment, as after an endpoint rollback.
    ``incident`` (an alarm's ``<name>@<state change time>``) is kept in ``last_rollback`` so
    a re-delivered alarm is recognised."""
    production = read_production(control_table, line.control_key)
    if production is None or production.last_known_good is None:
        return {"status": "skipped", "reason": NOTHING_TO_ROLL_BACK}
    lkg, bad = production.last_known_good, production.current
    component = describe_component(line.component)
    blocker = ""
    if component is None:
        blocker = f"inference component {line.component} does not exist"
    elif component.get("InferenceComponentStatus") != "InService":
        blocker = (
            f"inference component {line.component} is {component.get('InferenceComponentStatus')}"
        )
    elif serving_artifact(component) != bad.model_data_url:
        blocker = (
            f"inference component {line.component} serves {serving_artifact(component)!r}, "
            f"not production {bad.model_version}'s; not touching it"
        )
    if blocker:
        return {"status": "skipped", "reason": blocker}
    _point_component(line, lkg.model_data_url)
    at = now_iso()
    replace_production(
        control_table,
        lkg,
        last_known_good=None,
        expected=bad,
        key=line.control_key,
        extra={
            "last_rollback": {
                "reason": reason,
                "from_version": bad.model_version,
                "at": at,
                **({"incident": incident} if incident else {}),
            }
        },
    )
    model_versions.roll_back(
        model_versions_table,
        bad.model_version,
        {"rolled_back_at": at, "rollback_alarm": reason, "rolled_back_to": lkg.model_version},
    )
    model_versions.restore(model_versions_table, lkg.model_version, {"restored_at": at})
    return {
        "status": "rolled_back",
        "model_line": line.model_line,
        "from_version": bad.model_version,
        "to_version": lkg.model_version,
    }
