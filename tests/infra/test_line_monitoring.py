"""Monitoring of model lines in the synthesized dev stage with two lines: Deploy gets each
line's quality alarm names and may rewrite exactly those alarms (and the endpoint's);
continuous evaluation gets the lines."""

from __future__ import annotations

import json
from typing import Any

from tests.infra.conftest import MODEL_LINES, Assembly
from tests.infra.test_component_endpoint import (
    PIPELINE,
    SERVING,
    _function,
    _of_type,
    _statements,
)
from tuneloop.watch.quality import QUALITY_METRICS


def _quality_alarm_ids(serving: dict[str, Any]) -> dict[str, dict[str, str]]:
    """Line → kind → logical id of the line's quality alarms ("" for the endpoint's)."""
    kind_of = {metric: kind for kind, metric in QUALITY_METRICS.items()}
    found: dict[str, dict[str, str]] = {}
    for logical_id, alarm in _of_type(serving, "AWS::CloudWatch::Alarm").items():
        properties = alarm["Properties"]
        if properties.get("Namespace") != "TuneLoop/Endpoint":
            continue
        dimensions = {d["Name"]: d["Value"] for d in properties["Dimensions"]}
        line = dimensions.get("InferenceComponentName", "")
        found.setdefault(line, {})[kind_of[properties["MetricName"]]] = logical_id
    return found


def _resolved(joined: Any) -> Any:
    """The JSON an ``Fn::Join`` builds, each imported value replaced by its export's name
    after ``ExportsOutputRef`` (the exporting resource's logical id, then a hash)."""
    parts = joined["Fn::Join"][1]
    text = "".join(
        part if isinstance(part, str) else part["Fn::ImportValue"].split("ExportsOutputRef")[1]
        for part in parts
    )
    return json.loads(text)


def test_deploy_gets_each_lines_quality_alarms_and_may_rewrite_only_those(
    dev_lines: Assembly,
) -> None:
    serving, pipeline = dev_lines.templates[SERVING], dev_lines.templates[PIPELINE]
    ids = _quality_alarm_ids(serving)
    names = [str(line["name"]) for line in MODEL_LINES]  # type: ignore[index]
    assert set(ids) == {"", *names} and all(len(kinds) == 3 for kinds in ids.values())

    variables = _function(pipeline, "deploy")["Environment"]["Variables"]
    given = _resolved(variables["LINE_QUALITY_ALARMS"])
    # line → kind → the name of exactly that line's alarm of that kind
    assert set(given) == set(names)
    for line in names:
        assert set(given[line]) == set(QUALITY_METRICS)
        for kind, logical_id in ids[line].items():
            assert given[line][kind].startswith(logical_id)

    (statement,) = _statements(pipeline, "cloudwatch:PutMetricAlarm")
    assert sorted(statement["Action"]) == ["cloudwatch:DescribeAlarms", "cloudwatch:PutMetricAlarm"]
    resources = [json.dumps(resource) for resource in statement["Resource"]]
    quality = {logical_id for kinds in ids.values() for logical_id in kinds.values()}
    # Exactly the nine quality alarms' ARNs (the endpoint's and each line's): no errors or
    # latency alarm, no wildcard
    assert len(resources) == len(quality) == 9
    for logical_id in quality:
        assert sum(f"ExportsOutputFnGetAtt{logical_id}Arn" in r for r in resources) == 1
    assert not any("*" in resource for resource in resources)


def test_continuous_evaluation_gets_the_lines(dev_lines: Assembly, dev: Assembly) -> None:
    names = [str(line["name"]) for line in MODEL_LINES]  # type: ignore[index]
    for assembly, expected in ((dev_lines, names), (dev, [])):
        function = _function(assembly.templates[PIPELINE], "continuous_evaluation")
        lines = json.loads(function["Environment"]["Variables"]["MODEL_LINES"])
        assert [line["name"] for line in lines] == expected
