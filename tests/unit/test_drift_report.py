"""The drift report: one self-contained page with every feature's plot, PSI and p-value, the
classifier's AUC and words, and every text escaped."""

from __future__ import annotations

import random
from html.parser import HTMLParser

import pytest

from tuneloop.watch.drift import DriftResult, FeatureDrift, Prompt, detect_drift
from tuneloop.watch.drift_classifier import ClassifierVerdict
from tuneloop.watch.drift_report import distribution, render_report

_TOPICS = ["invoice", "refund", "password", "delivery", "contract"]
_ENGLISH = ["How do I change my {} online?", "Where can I see my {} in the portal?"]
_GERMAN = ["Wie kann ich meine {} im Portal ändern und was muss ich tun?"]


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.ids: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.ids += [value or "" for name, value in attrs if name == "id"]

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def _parsed(page: str) -> _Tags:
    tags = _Tags()
    tags.feed(page)
    return tags


def _prompts(rng: random.Random, n: int, templates: list[str]) -> list[Prompt]:
    return [Prompt(rng.choice(templates).format(rng.choice(_TOPICS))) for _ in range(n)]


def _page(result: DriftResult | None, **overrides: object) -> str:
    fields: dict[str, object] = {
        "endpoint": "tuneloop-endpoint",
        "model_version": "v0003",
        "window_start": "2026-12-02T06:00:00Z",
        "window_end": "2026-12-03T06:00:00Z",
        "trigger": "scheduled",
        "summary": result.summary if result else "too few prompts",
        "prompts": result.current_size if result else 3,
        "reference_prompts": result.reference_size if result else 100,
        "reference_source": "lineage",
        "result": result,
        "generated_at": "2026-12-03T06:01:00Z",
    }
    fields.update(overrides)
    return render_report(**fields)  # type: ignore[arg-type]


def test_every_feature_has_its_plot_psi_and_p_value_and_the_classifier_its_auc() -> None:
    # Given a window where a third of the prompts turned German
    rng = random.Random(3)
    reference = _prompts(rng, 200, _ENGLISH)
    current = _prompts(rng, 140, _ENGLISH) + _prompts(rng, 60, _GERMAN)
    result = detect_drift(reference, current)
    assert result.drift_detected and result.classifier is not None

    # When the report is rendered
    page = _page(result)
    parsed = _parsed(page)

    # Then each univariate feature has a section with a plot and its numbers
    assert {"prompt_tokens", "language", "pii_redacted", "oov_rate"} <= set(parsed.ids)
    assert parsed.tags.count("svg") == 4 + 2  # the features, the AUC gauge, the weights
    text = " ".join(parsed.text)
    for feature in result.features:
        assert f"PSI {feature.psi:.3f}" in text
        assert f"p-value {feature.p_value:.3g}" in text
    # the language plot compares the two sides per language
    language = next(f for f in result.features if f.name == "language")
    assert "de" in distribution(language).labels
    # and the classifier's AUC, its bound and its heaviest n-grams are shown
    assert f"{result.classifier.auc:.3f}" in text
    assert f"{result.classifier.auc_lower_bound:.3f}" in text
    assert result.classifier.top_features[0][0] in text
    assert "Drift detected" in text
    # self-contained: no script, nothing loaded from elsewhere
    assert "script" not in parsed.tags
    assert "default-src 'none'" in page
    assert "http://" not in page.replace("http://www.w3.org", "") and "https://" not in page


def test_user_derived_text_is_escaped() -> None:
    # Given a verdict whose category and n-grams carry markup (user data, redacted or not)
    hostile = '<script>alert("x")</script>'
    feature = FeatureDrift("language", 0.5, 0.001, True, ["en", "en"], [hostile, "en"])
    classifier = ClassifierVerdict(0.9, 0.8, True, [(f"w:{hostile}", 1.5), ("w:<img src=x>", -1)])
    result = DriftResult([feature], classifier, 2, 2)

    # When rendered with a hostile endpoint name and summary too
    page = _page(result, endpoint='e"><b>x', summary=hostile)

    # Then no markup of theirs survives: only escaped text
    parsed = _parsed(page)
    assert "script" not in parsed.tags and "img" not in parsed.tags and "b" not in parsed.tags
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page
    assert "&lt;img src=x&gt;" in page
    assert hostile in " ".join(parsed.text)  # shown as text, not run


def test_a_window_not_judged_says_why_without_plots() -> None:
    page = _page(None, summary="too few prompts: 3 captured in the window, at least 50 needed")
    parsed = _parsed(page)

    assert "Not judged" in page
    assert "too few prompts: 3 captured" in page
    assert "svg" not in parsed.tags


def test_numeric_bins_are_the_reference_quantiles_psi_used() -> None:
    feature = FeatureDrift(
        "prompt_tokens", 0.0, 1.0, False, [float(v) for v in range(100)], [5.0, 95.0]
    )

    shown = distribution(feature)

    assert len(shown.labels) == 10
    assert shown.labels[0] == "< 10" and shown.labels[-1] == "≥ 90"
    assert shown.reference == pytest.approx([0.1] * 10)
    assert shown.current[0] == 0.5 and shown.current[-1] == 0.5
