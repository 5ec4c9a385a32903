"""The gate's HTML report: numbers, reasons, per-tag breakdown, SVG plot, escaping."""

from __future__ import annotations

import html
import re
from typing import Any
from xml.etree import ElementTree

from tuneloop.gating import decide, parse_policy
from tuneloop.gating.report import render_report, score_interval

POLICY = parse_policy(
    {
        "suites": {
            "mmlu": {"role": "general", "metric": "acc", "delta": 0.05},
            "faq": {"role": "must_pass", "metric": "acc", "floor": 0.5},
        },
        "bootstrap_samples": 500,
    }
)


def suite(values: list[float], tags: list[str], prediction: str = "0") -> dict[str, Any]:
    items = [
        {"id": f"q{i}", "score": v, "prediction": prediction, "target": 0, "tags": [tags[i % 2]]}
        for i, v in enumerate(values)
    ]
    return {"acc": sum(values) / len(values), "items": items}


def evaluation() -> dict[str, Any]:
    # Candidate right on 30 of 40 MMLU items, champion on 20: a +0.25 difference.
    cand = [1.0] * 30 + [0.0] * 10
    champ = [1.0] * 20 + [0.0] * 20
    tags = ["algebra", "<b>law</b>"]
    return {
        "benchmarks": {"mmlu": {"version": "ab" * 32, "n_items": 40, "kind": "multiple_choice"}},
        "results": {
            "candidate": {
                "mmlu": suite(cand, tags, prediction="<script>alert(1)</script>"),
                "faq": suite([1.0, 0.0], tags),
            },
            "champion": {"mmlu": suite(champ, tags), "faq": suite([1.0, 1.0], tags)},
        },
    }


def render() -> tuple[str, Any]:
    report = evaluation()
    decision = decide(report, POLICY)
    document = {"model_version": "v2<x>", "champion_version": "v1", "policy": POLICY.to_dict()}
    return render_report(document, decision, report), decision


def test_report_shows_scores_with_intervals_and_the_paired_difference() -> None:
    page, decision = render()
    mmlu = decision.comparisons[0]
    cand = score_interval([1.0] * 30 + [0.0] * 10)
    champ = score_interval([1.0] * 20 + [0.0] * 20)
    assert cand is not None and champ is not None
    assert cand.text() in page and champ.text() in page
    assert f"{mmlu.diff:+.3f} [{mmlu.ci_low:+.3f}, {mmlu.ci_high:+.3f}]" in page
    assert "+0.250" in page
    # Every reason of the decision is listed
    for reason in decision.reasons:
        assert f"<li>{html.escape(reason)}</li>" in page
    assert "ababababab" in page  # the benchmark version


def test_wilson_interval_brackets_the_mean_and_stays_in_range() -> None:
    interval = score_interval([1.0] * 10)
    assert interval is not None
    assert interval.mean == 1.0 and interval.high == 1.0 and 0.6 < interval.low < 0.8
    assert score_interval([]) is None


def test_per_tag_breakdown_counts_items_and_compares_models() -> None:
    page, _ = render()
    # algebra = even items: candidate 15/20 right, champion 10/20
    assert re.search(
        r"<td>algebra</td><td class=\"num\">20</td>"
        r"<td class=\"num\">0.750</td><td class=\"num\">0.500</td>"
        r"<td class=\"num\">\+0.250</td>",
        page,
    )


def test_item_and_tag_text_is_escaped() -> None:
    page, _ = render()
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<b>law</b>" not in page and "&lt;b&gt;law&lt;/b&gt;" in page
    assert "v2&lt;x&gt;" in page


def test_the_difference_plot_is_well_formed_svg_with_one_marker_per_compared_suite() -> None:
    page, decision = render()
    svg = page[page.index("<svg") : page.index("</svg>") + len("</svg>")]
    root = ElementTree.fromstring(svg)
    circles = root.findall("{http://www.w3.org/2000/svg}circle")
    # Every suite with a champion gets a paired CI, must-pass ones too (shown, not gated).
    compared = [c.suite for c in decision.comparisons if c.ci_low is not None]
    assert compared == ["mmlu", "faq"] and len(circles) == 2
    labels = [t.text for t in root.findall("{http://www.w3.org/2000/svg}text")]
    assert "mmlu" in labels and "faq" in labels


def test_without_a_champion_the_report_says_so() -> None:
    report = evaluation()
    del report["results"]["champion"]
    page = render_report({"model_version": "v1"}, decide(report, POLICY), report)
    assert "No paired comparison" in page and "none (first model)" in page
