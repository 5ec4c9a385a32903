"""What the gate stores on a version item for list views, read back as the views read it."""

from __future__ import annotations

import json

import pytest

from tests.unit.test_gate import policy, report, scores
from tuneloop.gating import decide
from tuneloop.gating.scores import gate_fields
from tuneloop.operations.views import scores_of


def test_the_stored_scores_read_back_with_their_cis_and_paired_differences() -> None:
    evaluation = report(
        {"mmlu": scores(200, 90), "company_faq": scores(10, 8)},
        {"mmlu": scores(200, 80), "company_faq": scores(10, 6)},
    )
    evaluation["results"]["candidate"]["mmlu"]["acc_stderr"] = 0.035
    decision = decide(evaluation, policy())

    fields = gate_fields(evaluation, decision, {"company_faq": "0" * 64})

    assert isinstance(fields["scores"], str)  # one attribute, not nested maps (cheap to Scan)
    rows = {row.suite: row for row in scores_of({"scores": fields["scores"]})}
    mmlu = rows["mmlu"]
    assert mmlu.value == pytest.approx(0.45)
    # The normal interval from the report's standard error, at the policy's 95%
    assert (mmlu.ci_low, mmlu.ci_high) == pytest.approx(
        (0.45 - 1.959964 * 0.035, 0.45 + 1.959964 * 0.035), abs=1e-5
    )
    paired = next(c for c in decision.comparisons if c.suite == "mmlu")
    assert (mmlu.diff, mmlu.diff_ci_low, mmlu.diff_ci_high) == pytest.approx(
        (paired.diff, paired.ci_low, paired.ci_high)
    )
    assert rows["company_faq"].passed is True and rows["company_faq"].n_items == 10
    # Items written before the summary became a string keep reading as they were.
    as_map = json.loads(fields["scores"])
    assert scores_of({"scores": as_map}) == tuple(rows[name] for name in sorted(rows))
