"""Register: a Model Registry package (approved) and the ``registered`` lineage item.

Event: ``{"model_version", "model_data", "dataset", "train_job", "eval_job",
"decision_s3_uri", "execution_arn", "model_line"}``. Result (``$.registration``):
``{"model_package_arn"}``. A version of a model line records ``model_line`` on its item and
in the package's metadata; a line ``MODEL_LINES`` does not list fails here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.typing import LambdaContext

from tuneloop.envmodel import load_env
from tuneloop.release.lmi import LmiSettings
from tuneloop.release.registry import Registration, register_model
from tuneloop.release.serving_container import ServingContainer
from tuneloop.run_line import run_line

logger = Logger()
tracer = Tracer()


@dataclass(frozen=True)
class Env:
    model_versions_table: str
    model_package_group: str
    serving_image_uri: str  # the image Deploy uses (LMI's for the lmi backend)
    serving_backend: str = "tuneloop"
    artifacts_bucket: str = ""
    lmi_options: str = "{}"
    # ModelLines.to_json() of the stage ("[]": no lines).
    model_lines: str = "[]"


@logger.inject_lambda_context
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    env = load_env(Env)
    registration = Registration.from_event(event)
    run_line(env.model_lines, registration.model_line)  # a line this deployment has
    result = register_model(
        registration,
        model_versions_table=env.model_versions_table,
        model_package_group=env.model_package_group,
        container=ServingContainer(
            image_uri=env.serving_image_uri,
            backend=env.serving_backend,
            artifacts_bucket=env.artifacts_bucket,
            lmi=LmiSettings.from_json(env.lmi_options),
        ),
    )
    logger.info("model registered", extra={"registration": result})
    return result
