"""The model line a retrain run trains, as its steps learn it (docs/training.md, "Model
lines: one run per line").

The trigger names the line in the run's input (``{"model_line": ...}``); PrepareDataset
reads it from there and returns it in ``$.dataset.model_line``, which the later steps get
in their payloads. Each step checks it against ``MODEL_LINES``: a run of a line the
deployment does not have, or a run without a line on a deployment that has lines, fails
with a message listing the lines.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tuneloop.model_line_settings import ModelLineError, ModelLines, ModelLineSettings


def requested_line(event: Mapping[str, Any]) -> str:
    """The line a step's event names: its ``model_line``, else its run input's ("")."""
    named = event.get("model_line")
    if not named:
        run_input = event.get("input")
        named = run_input.get("model_line") if isinstance(run_input, Mapping) else ""
    return str(named or "")


def run_line(model_lines_json: str, model_line: str) -> ModelLineSettings | None:
    """The settings of the run's line; None for a deployment without lines."""
    lines = ModelLines.from_json(model_lines_json)
    if model_line:
        return lines.get(model_line)
    if lines:
        raise ModelLineError(
            f"this run names no model line, but the deployment trains lines "
            f"({', '.join(lines.names)}); start runs with the retrain trigger or "
            "`tuneloop runs start --line NAME`"
        )
    return None
