"""Quality alarms, data capture and its permissions and retention, as synthesized."""

from __future__ import annotations

import json
from typing import Any

from stacks.config import load_stage_config
from stacks.nag import flatten_reference
from tests.infra.conftest import Assembly
from tests.infra.test_permissions import _function_role, _resources_allowed, _role_statements
from tests.infra.test_permissions import _sagemaker_role as sagemaker_role
from tuneloop.watch.quality import QualitySettings


def _quality_alarms(assembly: Assembly) -> dict[str, dict[str, Any]]:
    return {
        props["MetricName"]: props
        for resource in assembly.template("Serving")["Resources"].values()
        if resource["Type"] == "AWS::CloudWatch::Alarm"
        for props in [resource["Properties"]]
        if props["Namespace"] == "TuneLoop/Endpoint"
    }


def _deploy_environment(assembly: Assembly) -> dict[str, Any]:
    (variables,) = [
        fn["Properties"]["Environment"]["Variables"]
        for fn in assembly.resources("AWS::Lambda::Function").values()
        if fn["Properties"]["Handler"] == "lambdas.deploy.handler.handler"
    ]
    return dict(variables)


def test_quality_alarms_are_rates_on_the_endpoint_that_roll_back(dev: Assembly) -> None:
    settings = load_stage_config("dev").quality
    alarms = _quality_alarms(dev)
    assert set(alarms) == {"EmptyAnswer", "Truncated", "Refusal"}
    bounds = {
        "EmptyAnswer": settings.max_empty_rate,
        "Truncated": settings.max_truncated_rate,
        "Refusal": settings.max_refusal_rate,
    }
    runbooks = {"EmptyAnswer": "empty", "Truncated": "truncated", "Refusal": "refusal"}
    for name, alarm in alarms.items():
        # An Average of per-answer 0/1 values over the window is the rate
        assert (alarm["Statistic"], alarm["Period"]) == ("Average", settings.window_minutes * 60)
        assert alarm["Threshold"] == bounds[name]
        assert alarm["ComparisonOperator"] == "GreaterThanThreshold"
        assert alarm["EvaluationPeriods"] == settings.evaluation_periods
        assert alarm["TreatMissingData"] == "notBreaching"
        (dimension,) = alarm["Dimensions"]
        assert dimension["Name"] == "EndpointName" and "endpoint" in dimension["Value"]
        # They act on the alarm topic, so the Rollback Lambda restores last-known-good
        (action,) = alarm["AlarmActions"]
        assert action["Ref"].startswith("NotificationsAlarmTopic")
        first_line, _, rest = alarm["AlarmDescription"].partition("\n")
        assert first_line.startswith("Too many") and "roll back" in first_line
        assert f"docs/runbooks/quality-{runbooks[name]}.md" in rest


def test_deploy_gets_the_quality_alarms_for_rollback_and_baselines(dev: Assembly) -> None:
    env = _deploy_environment(dev)
    # Blue/green auto-rollback watches them too (ROLLBACK_ALARM_NAMES: 5XX, latency, quality)
    joined = env["ROLLBACK_ALARM_NAMES"]["Fn::Join"]
    assert joined[0] == "," and len(joined[1]) == 5
    quality = flatten_reference(env["QUALITY_ALARMS"])
    assert all(kind in quality for kind in ("empty", "truncated", "refusal")), quality
    settings = QualitySettings.from_json(env["QUALITY_SETTINGS"])
    assert settings == load_stage_config("dev").quality
    assert flatten_reference(env["CAPTURE_DESTINATION"]).endswith("/capture/")
    assert "DataKey" in flatten_reference(env["DATA_LAKE_KEY_ARN"])


def test_deploy_may_set_only_the_quality_alarms_bounds(dev: Assembly) -> None:
    statements = _role_statements(dev, _function_role(dev, "deploy"))
    put = _resources_allowed(statements, "cloudwatch:PutMetricAlarm")
    assert len(put) == 3 and all("EndpointAlarmsQuality" in r for r in put), put
    assert len(_resources_allowed(statements, "cloudwatch:DescribeAlarms")) == 3
    assert _resources_allowed(statements, "cloudwatch:GetMetricStatistics") == ["*"]


def test_the_model_role_may_write_capture_objects_with_the_lake_key(dev: Assembly) -> None:
    logical_id, _ = sagemaker_role(dev)
    statements = _role_statements(dev, logical_id)
    puts = _resources_allowed(statements, "s3:PutObject")
    assert any(r.endswith("/capture/*") and "Curated" in r for r in puts), puts
    # SSE-KMS with the data lake key: the writer generates a data key and encrypts
    for action in ("kms:GenerateDataKey*", "kms:Encrypt"):
        keys = _resources_allowed(statements, action)
        assert any("DataKey" in k for k in keys), (action, keys)


def test_capture_objects_expire_after_the_stage_retention(dev: Assembly) -> None:
    days = load_stage_config("dev").quality.capture_retention_days
    (curated,) = [
        r
        for key, r in dev.resources("AWS::S3::Bucket").items()
        if key.split("/")[1] == "CuratedBucket"
    ]
    rules = curated["Properties"]["LifecycleConfiguration"]["Rules"]
    (capture,) = [r for r in rules if r.get("Id") == "expire-capture"]
    assert capture["Prefix"] == "capture/" and capture["ExpirationInDays"] == days
    assert capture["Status"] == "Enabled"


def test_quality_settings_round_trip_as_the_lambda_reads_them() -> None:
    settings = QualitySettings(max_refusal_rate=0.3, refusal_patterns=("^no$",))
    assert QualitySettings.from_json(settings.to_json()) == settings
    bad = json.loads(settings.to_json()) | {"window_minutes": 0}
    try:
        QualitySettings.from_json(json.dumps(bad))
    except ValueError as exc:
        assert "window_minutes" in str(exc)
    else:
        raise AssertionError("an invalid window is refused")
