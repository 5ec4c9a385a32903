"""The console dashboard's continuous-evaluation history of the production version."""

from __future__ import annotations

import json
import re

from fastapi.testclient import TestClient

from tests.integration.aws_fixtures import (  # noqa: F401 - fixtures
    Platform,
    aws_credentials,
    platform,
    put_version,
)
from tests.integration.test_console_app import app_client, sign_in  # noqa: F401 - fixtures
from tuneloop.release.control import Release, replace_production


def scheduled(run_id: str, at: str, value: float, *, regression: bool, crosses: bool) -> str:
    check = {
        "suite": "company_faq", "metric": "acc", "value": value, "gate_value": 0.8,
        "delta": value - 0.8, "margin": 0.05, "regression": regression,
        "crosses_versions": crosses, "version": "new" if crosses else "old",
        "gate_version": "old", "reason": "dropped beyond the gate's margin" if regression else "ok",
    }  # fmt: skip
    return json.dumps(
        {"run_id": run_id, "suite": "company_faq", "metric": "acc", "value": value, "at": at,
         "version": check["version"], "trigger": "scheduled", "regression_check": check}
    )  # fmt: skip


def test_the_dashboard_shows_each_suites_scheduled_scores_by_date(
    platform: Platform,  # noqa: F811
    app_client: TestClient,  # noqa: F811
) -> None:
    sign_in(app_client, "viewer")
    empty = app_client.get("/").text
    assert "No scheduled evaluation of the production version yet" in empty

    person = json.dumps({"run_id": "p-1", "suite": "company_faq", "value": 0.1, "at": "2026"})
    put_version(
        platform.model_versions_table,
        "v0003",
        status="deployed",
        benchmark_runs=[
            scheduled("ce-1", "2026-12-01T06:01:00+00:00", 0.79, regression=False, crosses=False),
            scheduled("ce-2", "2026-12-02T06:01:00+00:00", 0.70, regression=True, crosses=True),
            person,  # a person's run is not continuous evaluation
        ],
    )
    replace_production(
        platform.control_table,
        Release("v0003", "v0003-config", "s3://models/model.tar.gz"),
        last_known_good=None,
        expected=None,
    )

    page = app_client.get("/").text

    assert "Continuous evaluation of v0003" in page
    table = re.search(r'<table data-testid="evaluation-company_faq">(.*?)</table>', page, re.S)
    assert table, page
    rows = re.findall(r"<tr><td>(\d{4}-\d\d-\d\d)</td>", table.group(1))
    assert rows == ["2026-12-02", "2026-12-01"]  # newest first
    assert table.group(1).count("regression</strong>") == 1
    assert "crosses versions" in table.group(1)
    assert "-0.100" in table.group(1) and "-0.010" in table.group(1)
    assert 'aria-label="company_faq by scheduled run"' in page  # the inline SVG line
