"""Model lines in the stage config and in ``MODEL_LINES``: parsed, validated with messages
that name the field, and read back unchanged by the functions that act for a line."""

from __future__ import annotations

import json
from typing import Any

import pytest

from stacks.config import ConfigError, load_stage_config
from tuneloop.model_line_settings import (
    MAX_LINE_NAME_LENGTH,
    ModelLineError,
    ModelLines,
    line_version_suffix,
)

LINES: list[dict[str, Any]] = [
    {"name": "support", "datasets": ["acme_support", "tickets"]},
    {
        "name": "search",
        "datasets": ["wiki", "tickets"],
        "gate_policy": {"suites": {"acme_search": {"role": "target", "metric": "acc"}}},
    },
]


def test_lines_round_trip_through_the_environment_json() -> None:
    lines = ModelLines.parse(LINES)
    again = ModelLines.from_json(lines.to_json())
    assert again == lines
    assert again.names == ("support", "search")
    assert again.get("search").gate_policy is not None
    assert again.get("support").gate_policy is None


def test_a_dataset_trains_every_line_that_lists_it() -> None:
    lines = ModelLines.parse(LINES)
    assert lines.lines_of_dataset("tickets") == ("support", "search")
    assert lines.lines_of_dataset("wiki") == ("search",)
    assert lines.lines_of_dataset("unlisted") == ()


def test_a_line_without_a_policy_takes_the_stages() -> None:
    lines = ModelLines.parse(LINES)
    stage_policy = {"suites": {"mmlu": {"role": "general", "metric": "acc", "delta": 0.1}}}
    assert [s.name for s in lines.get("support").policy(stage_policy).suites] == ["mmlu"]
    assert [s.name for s in lines.get("search").policy(stage_policy).suites] == ["acme_search"]


def test_an_unknown_line_names_the_known_ones() -> None:
    with pytest.raises(ModelLineError, match="no model line 'faq' \\(lines: support, search\\)"):
        ModelLines.parse(LINES).get("faq")
    with pytest.raises(ModelLineError, match="this deployment has no model lines"):
        ModelLines().get("faq")


def test_no_lines_is_empty_and_false() -> None:
    assert not ModelLines.from_json("[]")
    assert not ModelLines.from_json("")
    assert ModelLines.parse(LINES)


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        ([{"name": "base", "datasets": ["a"]}], r"model_lines\[0\]\.name: 'base' is the base"),
        ([{"name": "-x", "datasets": ["a"]}], r"model_lines\[0\]\.name: must be 1-63"),
        (
            [{"name": "x" * (MAX_LINE_NAME_LENGTH + 1), "datasets": ["a"]}],
            f"at most {MAX_LINE_NAME_LENGTH} characters",
        ),
        ([{"name": "a", "datasets": []}], r"model_lines\[0\]\.datasets: must name at least one"),
        ([{"name": "a", "datasets": "wiki"}], r"model_lines\[0\]\.datasets: must be a list"),
        ([{"name": "a", "datasets": ["w", "w"]}], "lists a dataset twice"),
        ([{"name": "a", "datasets": ["w"], "data": 1}], r"unknown keys \['data'\]"),
        (
            [{"name": "a", "datasets": ["w"]}, {"name": "a", "datasets": ["v"]}],
            r"model_lines\[1\]\.name: 'a' names two lines",
        ),
        (
            [{"name": "a", "datasets": ["w"], "gate_policy": {"suites": {"m": {"role": "x"}}}}],
            r"model_lines\[0\]\.gate_policy: suites\.m\.role",
        ),
        ({"name": "a"}, "must be a list of lines"),
        ("{not json", "not valid JSON"),
    ],
)
def test_a_bad_line_fails_synth_naming_the_field(lines: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_stage_config("dev", {"model_lines": lines})


def test_the_stage_override_takes_json_text() -> None:
    # The local stage serves lines with our own server once its variant does not autoscale
    config = load_stage_config(
        "local", {"model_lines": json.dumps(LINES), "autoscaling": '{"enabled": false}'}
    )
    assert config.model_lines == ModelLines.parse(LINES)
    assert not load_stage_config("local").model_lines


def test_a_lines_versions_end_with_its_name() -> None:
    assert line_version_suffix("support") == "-support"
    assert line_version_suffix("") == ""
