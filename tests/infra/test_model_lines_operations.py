"""How the CLI and the console learn the model lines: the Serving stack's ``ModelLines``
output, the console's ``PLATFORM_NAMES``, and the console role's read of the lines'
inference components."""

from __future__ import annotations

import json
from typing import Any

from tests.infra.conftest import MODEL_LINES, Assembly
from tests.infra.test_console_stack import _console_statements
from tuneloop import stack_outputs as out
from tuneloop.model_line_settings import ModelLines
from tuneloop.operations.names import PlatformNames


def _joined(value: Any) -> str:
    """A ``Fn::Join`` of literals and tokens as text, each token as ``TOKEN``."""
    if isinstance(value, str):
        return value
    separator, parts = value["Fn::Join"]
    return str(separator).join(p if isinstance(p, str) else "TOKEN" for p in parts)


def _console_names(assembly: Assembly) -> dict[str, str]:
    (function,) = [
        resource["Properties"]
        for resource in assembly.template("Console")["Resources"].values()
        if resource["Type"] == "AWS::Lambda::Function"
        and resource["Properties"]["Handler"] == "lambdas.console.handler.handler"
    ]
    return dict(json.loads(_joined(function["Environment"]["Variables"]["PLATFORM_NAMES"])))


def test_the_serving_stack_outputs_the_model_lines(dev_lines: Assembly, dev: Assembly) -> None:
    # Given the dev stage with two lines, and without
    output = dev_lines.template("Serving")["Outputs"][out.MODEL_LINES]
    # Then the output is the lines' JSON, which the readers parse back to the same lines
    assert ModelLines.from_json(output["Value"]) == ModelLines.parse(MODEL_LINES)
    assert ModelLines.from_json(output["Value"]).names == ("support", "search")
    assert output["Description"] and "Export" not in output
    assert dev.template("Serving")["Outputs"][out.MODEL_LINES]["Value"] == "[]"


def test_the_console_gets_the_lines_in_its_names(dev_lines: Assembly, dev: Assembly) -> None:
    names = _console_names(dev_lines)
    assert ModelLines.from_json(names["model_lines"]).names == ("support", "search")
    # every key is a PlatformNames field, so the console builds its names from them
    assert PlatformNames(**names).lines().names == ("support", "search")
    assert PlatformNames(**_console_names(dev)).lines().names == ()


def test_the_console_reads_exactly_the_lines_components(dev_lines: Assembly, dev: Assembly) -> None:
    def component_reads(assembly: Assembly) -> list[str]:
        return [
            _joined(resource)
            for statement in _console_statements(assembly)
            if "sagemaker:DescribeInferenceComponent" in statement["Action"]
            for resource in statement["Resource"]
        ]

    reads = component_reads(dev_lines)
    assert sorted(r.rsplit(":", 1)[-1] for r in reads) == [
        "inference-component/search",
        "inference-component/support",
    ]
    assert component_reads(dev) == []
