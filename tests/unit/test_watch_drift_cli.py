"""`tuneloop watch drift`: its arguments, the stage's function, and how a result reads."""

from __future__ import annotations

import pytest

from tuneloop.cli import build_parser, main
from tuneloop.operations.names import PlatformNames
from tuneloop.watch.commands import render_drift


def test_the_window_length_is_a_whole_number_of_hours_in_range(
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = build_parser().parse_args(["watch", "drift", "--stage", "qa", "--hours", "6", "--json"])
    assert (args.stage, args.hours, args.json) == ("qa", 6, True)

    for bad in ("0", "1.5", "400"):
        with pytest.raises(SystemExit):
            build_parser().parse_args(["watch", "drift", "--hours", bad])
    assert "--hours" in capsys.readouterr().err


def test_a_stage_without_the_function_says_which_output_is_missing(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    names = PlatformNames(
        stage="qa",
        raw_bucket="r",
        curated_bucket="c",
        artifacts_bucket="a",
        records_table="t",
        drops_table="t",
        model_versions_table="t",
        control_table="t",
        benchmarks_table="t",
    )
    monkeypatch.setattr(PlatformNames, "for_stage", staticmethod(lambda stage: names))

    assert main(["watch", "drift", "--stage", "qa"]) == 1
    assert "DriftCheckFunctionName (stack TuneLoop-qa-Pipeline)" in capsys.readouterr().err


def test_a_window_not_judged_reads_as_such_with_its_reason() -> None:
    shown = render_drift(
        {
            "status": "too_few_prompts",
            "endpoint": "ep",
            "window_start": "2026-12-02T06:00:00Z",
            "window_end": "2026-12-03T06:00:00Z",
            "model_version": "v0003",
            "summary": "too few prompts: 3 captured in the window, at least 50 needed",
            "features": [],
            "classifier": None,
            "report_uri": "s3://c/watch/drift/ep/20261203T060000Z/report.html",
        }
    )

    first, reason, report = shown.splitlines()
    assert first.endswith("model v0003): not judged")
    assert "too few prompts: 3 captured" in reason
    assert report == "  report: s3://c/watch/drift/ep/20261203T060000Z/report.html"
