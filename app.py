#!/usr/bin/env python3
"""The TuneLoop CDK app: the only entry point (``npx cdk synth``, or ``python app.py``).

Context ``stage`` (default in cdk.json) picks the :class:`stacks.config.StageConfig`;
the keys of :data:`stacks.config.OVERRIDABLE_FIELDS` may override it, and any other key of
ours is an error naming the closest valid one (docs/stacks.md)::

    npx cdk synth -c stage=local -c retrain_threshold=3
    CDK_OUTDIR=cdk.out python app.py          # without the CLI: context from cdk.json

The region the CLI deploys to (``CDK_DEFAULT_REGION``) must have the images and layers the
stacks name (:mod:`stacks.regions`); another region fails here rather than at deploy time.

cdk-nag (AwsSolutions) runs as a validation plugin; synth fails on any finding that is
not acknowledged on its construct.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import aws_cdk as cdk
from cdk_nag import AwsSolutionsChecks

from stacks.config import ConfigError, config_from_context
from stacks.console import ConsoleStack
from stacks.ingestion import IngestionStack
from stacks.pipeline import PipelineStack
from stacks.regions import check_region
from stacks.serving import ServingStack
from stacks.storage import StorageStack

CDK_JSON = Path(__file__).resolve().parent / "cdk.json"


def _cdk_json_context() -> dict[str, Any]:
    """cdk.json's context (default stage, feature flags).

    The CLI passes it itself; ``python app.py`` run directly reads it here so both ways
    synthesize the same templates. Context from the CLI or ``CDK_CONTEXT_JSON`` wins.
    """
    return dict(json.loads(CDK_JSON.read_text())["context"])


def build_app(
    *,
    context: Mapping[str, Any] | None = None,
    outdir: str | None = None,
    region: str | None = None,
) -> cdk.App:
    """Build (not synthesize) the app; ``context`` overrides cdk.json's. ``region``, when
    known, is where the environment-agnostic stacks will be deployed."""
    app = cdk.App(context={**_cdk_json_context(), **(context or {})}, outdir=outdir)
    # Every context key (cdk.json, -c, CDK_CONTEXT_JSON): a typo must fail, not be ignored.
    config = config_from_context(app.node.get_all_context())
    if region:  # the one check: the stage's images and both layers exist there
        check_region(region, config.dlc_images)

    prefix = f"TuneLoop-{config.stage}"
    common: dict[str, Any] = {
        "config": config,
        "tags": {"project": "tuneloop", "stage": config.stage},
    }
    storage = StorageStack(
        app,
        f"{prefix}-Storage",
        description="TuneLoop storage (stateful): data key, data lake, tables",
        termination_protection=config.termination_protection,
        **common,
    )
    serving = ServingStack(
        app,
        f"{prefix}-Serving",
        description="TuneLoop serving: endpoint alarms, rollback, notifications, dashboard",
        tables=storage.tables,
        lake=storage.lake,
        **common,
    )
    pipeline = PipelineStack(
        app,
        f"{prefix}-Pipeline",
        description="TuneLoop retrain pipeline: state machine, SageMaker role and jobs",
        lake=storage.lake,
        tables=storage.tables,
        notifications=serving.notifications,
        endpoint_alarms=serving.endpoint_alarms,
        endpoint_name=serving.endpoint_name,
        endpoint_arn=serving.endpoint_arn,
        **common,
    )
    IngestionStack(
        app,
        f"{prefix}-Ingestion",
        description="TuneLoop ingestion: S3 events, queue, ingest and retrain trigger",
        lake=storage.lake,
        tables=storage.tables,
        notifications=serving.notifications,
        state_machine=pipeline.state_machine,
        **common,
    )

    ConsoleStack(
        app,
        f"{prefix}-Console",
        description="TuneLoop console: Cognito users, HTTP API and the console Lambda",
        lake=storage.lake,
        tables=storage.tables,
        retrain_state_machine=pipeline.state_machine,
        release_state_machine=pipeline.release_state_machine,
        benchmark_run_state_machine=pipeline.benchmark_run_state_machine,
        rollback_function=serving.rollback.function,
        notify_topic=serving.notifications.notify_topic,
        alarm_topic=serving.notifications.alarm_topic,
        endpoint_name=serving.endpoint_name,
        endpoint_arn=serving.endpoint_arn,
        **common,
    )

    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    return app


def main() -> int:
    # cdk.App reads CDK_OUTDIR itself (the CLI sets it); without it, pass -o via the CLI.
    try:
        # The CLI sets CDK_DEFAULT_REGION to the region it deploys environment-agnostic
        # stacks to; without it (python app.py, no AWS config) there is nothing to check.
        app = build_app(
            outdir=os.environ.get("CDK_OUTDIR"), region=os.environ.get("CDK_DEFAULT_REGION")
        )
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    app.synth()
    return 0


if __name__ == "__main__":
    sys.exit(main())
