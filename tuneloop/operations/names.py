"""Every name an operation needs, found from the stage's stack outputs.

``PlatformNames.for_stage("dev")`` reads ``TuneLoop-dev-*`` (``DescribeStacks``); against the
local platform (``AWS_ENDPOINT_URL`` set, stage ``local``) the same call reads the emulator's
stacks. Nothing is configured twice.

Names of stacks or outputs not deployed yet (the Console stack, the audit table before its
output exists) are empty strings: a command that needs one calls :meth:`PlatformNames.require`,
which says which output of which stack is missing.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path

from botocore.exceptions import BotoCoreError, ClientError

from tuneloop import stack_outputs as ids
from tuneloop.model_line_settings import ModelLines

STAGE_ENV = "TUNELOOP_STAGE"
FALLBACK_STAGE = "dev"

# field -> output id (docs/contracts.md, "Stack outputs")
OUTPUT_IDS: dict[str, str] = {
    "raw_bucket": ids.RAW_BUCKET,
    "curated_bucket": ids.CURATED_BUCKET,
    "artifacts_bucket": ids.ARTIFACTS_BUCKET,
    "records_table": ids.RECORDS_TABLE,
    "drops_table": ids.DROPS_TABLE,
    "model_versions_table": ids.MODEL_VERSIONS_TABLE,
    "control_table": ids.CONTROL_TABLE,
    "benchmarks_table": ids.BENCHMARKS_TABLE,
    "audit_table": ids.AUDIT_TABLE,
    "incidents_table": ids.INCIDENTS_TABLE,
    "state_machine_arn": ids.STATE_MACHINE,
    "release_state_machine_arn": ids.RELEASE_STATE_MACHINE,
    "benchmark_run_state_machine_arn": ids.BENCHMARK_RUN_STATE_MACHINE,
    "continuous_evaluation_function": ids.CONTINUOUS_EVALUATION_FUNCTION,
    "drift_check_function": ids.DRIFT_CHECK_FUNCTION,
    "endpoint_name": ids.ENDPOINT_NAME,
    "rollback_function": ids.ROLLBACK_FUNCTION,
    "notify_topic_arn": ids.NOTIFY_TOPIC,
    "model_package_group": ids.MODEL_PACKAGE_GROUP,
    "console_url": ids.CONSOLE_URL,
    "model_lines": ids.MODEL_LINES,
}
# Without these nothing works: a stage that lacks one is not deployed (or not this one).
REQUIRED = (
    "raw_bucket",
    "curated_bucket",
    "artifacts_bucket",
    "records_table",
    "drops_table",
    "model_versions_table",
    "control_table",
    "benchmarks_table",
)
# Which stack declares each output (for the message when one is missing).
_STACK_OF = {
    "AuditTableName": "Storage",
    "ReleaseStateMachineArn": "Pipeline",
    "RollbackFunctionName": "Serving",
    "ConsoleUrl": "Console",
    **{output: part for part, outputs in ids.STACK_OUTPUTS.items() for output in outputs},
}


class NamesError(RuntimeError):
    """A stage's stacks or one of their outputs cannot be found; the message says what to do."""


class MissingOutputError(NamesError):
    """An output a command needs is not deployed in this stage."""


@dataclass(frozen=True)
class PlatformNames:
    stage: str
    raw_bucket: str
    curated_bucket: str
    artifacts_bucket: str
    records_table: str
    drops_table: str
    model_versions_table: str
    control_table: str
    benchmarks_table: str
    audit_table: str = ""
    incidents_table: str = ""
    state_machine_arn: str = ""
    release_state_machine_arn: str = ""
    benchmark_run_state_machine_arn: str = ""
    continuous_evaluation_function: str = ""
    drift_check_function: str = ""
    endpoint_name: str = ""
    rollback_function: str = ""
    notify_topic_arn: str = ""
    model_package_group: str = ""
    console_url: str = ""
    model_lines: str = ""  # ModelLines.to_json(); "" (a stage from before lines) is none

    @classmethod
    def for_stage(cls, stage: str) -> PlatformNames:
        """The stage's names from its stacks' outputs (stacks not deployed are skipped)."""
        try:
            outputs = ids.read_outputs(stage, skip_missing_stacks=True)
        except (ClientError, BotoCoreError) as exc:
            raise NamesError(
                f"cannot read the outputs of stage {stage!r} (stacks "
                f"{ids.stack_name(stage, '*')}): {exc}; check the AWS credentials and region, "
                "or export AWS_ENDPOINT_URL for the local platform (`tuneloop up` prints it)"
            ) from exc
        return cls.from_outputs(stage, outputs)

    @classmethod
    def from_outputs(cls, stage: str, outputs: Mapping[str, str]) -> PlatformNames:
        missing = [OUTPUT_IDS[name] for name in REQUIRED if not outputs.get(OUTPUT_IDS[name])]
        if missing:
            stack = ids.stack_name(stage, "Storage")
            raise NamesError(
                f"stage {stage!r} is not deployed: stack {stack} has no output "
                f"{', '.join(missing)}; deploy it (`npx cdk deploy -c stage={stage} --all`), "
                "start the local platform (`tuneloop up`, then export what it prints), or "
                "pick another stage with --stage"
            )
        values = {name: str(outputs.get(output, "")) for name, output in OUTPUT_IDS.items()}
        return cls(stage=stage, **values)

    def require(self, name: str) -> str:
        """The value of field ``name``, or a :class:`MissingOutputError` naming the output."""
        value = getattr(self, name)
        if value:
            return str(value)
        output = OUTPUT_IDS[name]
        stack = ids.stack_name(self.stage, _STACK_OF.get(output, "?"))
        raise MissingOutputError(
            f"stage {self.stage!r} has no output {output} (stack {stack}): deploy that stack "
            f"(`npx cdk deploy -c stage={self.stage} {stack}`) or update the local platform"
        )

    def lines(self) -> ModelLines:
        """The stage's model lines (none: the endpoint serves one model)."""
        return ModelLines.from_json(self.model_lines)

    def to_dict(self) -> dict[str, str]:
        return {f.name: str(getattr(self, f.name)) for f in fields(self)}


def default_stage(explicit: str | None = None) -> str:
    """``--stage``, else ``$TUNELOOP_STAGE``, else cdk.json's default stage."""
    if explicit:
        return explicit
    if os.environ.get(STAGE_ENV):
        return os.environ[STAGE_ENV]
    return cdk_default_stage()


def cdk_default_stage() -> str:
    """The ``stage`` context in cdk.json (project root, else the working directory)."""
    for root in (Path(__file__).resolve().parents[2], Path.cwd()):
        path = root / "cdk.json"
        if path.is_file():
            try:
                stage = json.loads(path.read_text(encoding="utf-8")).get("context", {})["stage"]
            except (ValueError, KeyError, AttributeError):
                continue
            if isinstance(stage, str) and stage:
                return stage
    return FALLBACK_STAGE
