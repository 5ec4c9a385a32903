"""The drift check's report: one self-contained HTML page with inline SVG plots.

For each univariate feature the reference and the window are drawn side by side over the
bins PSI used (the reference's quantile bins; one bin per category), with the PSI, its band
and the test's p-value; then the domain classifier's AUC against its bound and the n-grams
that weigh most. The page shows features, never prompts: the n-grams come from redacted
prompts and, like every other text on the page, are HTML-escaped. A Content-Security-Policy
forbids scripts and every external resource, so the page renders the same from S3, a mail
attachment or a local file.

Plain ``html.escape`` and string SVG, not :mod:`tuneloop.console.plots`: those return
``markupsafe.Markup``, and markupsafe is not in the DriftCheck function's runtime (the
console's layer carries it for the console only).
"""

from __future__ import annotations

import bisect
import itertools
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape
from typing import Any

from tuneloop.watch.drift import ALPHA, SMALL_SAMPLE, DriftResult, FeatureDrift
from tuneloop.watch.drift_classifier import AUC_THRESHOLD, ClassifierVerdict
from tuneloop.watch.drift_stats import PSI_MODERATE, PSI_SIGNIFICANT, quantile_edges

FEATURES = {
    "prompt_tokens": ("Prompt length", "tokens per prompt (ingestion's estimate)"),
    "language": ("Language", "share of prompts per detected language"),
    "pii_redacted": ("PII redaction rate", "share of prompts in which something was redacted"),
    "oov_rate": ("Out-of-vocabulary rate", "share of a prompt's words not in the reference"),
}
REFERENCE_COLOUR, CURRENT_COLOUR = "#2563eb", "#dc2626"
WIDTH, HEIGHT, PAD = 640, 230, 44
_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 60rem; color: #111; }
table { border-collapse: collapse; margin: 0.5rem 0 1.5rem; }
th, td { border-bottom: 1px solid #ddd; padding: 0.3rem 0.7rem; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.verdict { display: inline-block; padding: 0.3rem 0.8rem; border-radius: 0.3rem;
  font-weight: bold; }
.drift { background: #fee2e2; color: #991b1b; }
.stable { background: #dcfce7; color: #166534; }
.unjudged { background: #fef9c3; color: #854d0e; }
svg { max-width: 100%; height: auto; display: block; margin: 0.3rem 0 1.2rem; }
dl { display: grid; grid-template-columns: max-content auto; gap: 0.2rem 1rem; }
dt { font-weight: bold; }
.legend span { margin-right: 1.2rem; }
"""


@dataclass(frozen=True)
class Distribution:
    """A feature's shares per bin on each side (the bins PSI compared)."""

    labels: list[str]
    reference: list[float]
    current: list[float]

    def to_dict(self) -> dict[str, Any]:
        return {"bins": self.labels, "reference": self.reference, "current": self.current}


def _number(value: float) -> str:
    return f"{value:.3g}"


def distribution(feature: FeatureDrift) -> Distribution:
    """Shares per bin: the reference's quantile bins for a numeric feature, its categories
    (most common in the reference first) for a categorical one."""
    ref, cur = feature.reference, feature.current
    if ref and all(isinstance(v, int | float) for v in [*ref, *cur]):
        numbers_ref = [float(v) for v in ref]
        numbers_cur = [float(v) for v in cur]
        edges = quantile_edges(numbers_ref)
        labels = (
            [f"< {_number(edges[0])}"]
            + [f"{_number(a)} to {_number(b)}" for a, b in itertools.pairwise(edges)]
            + [f"≥ {_number(edges[-1])}"]
            if edges
            else ["all"]
        )

        def shares(values: Sequence[float]) -> list[float]:
            counts = [0] * (len(edges) + 1)
            for value in values:
                counts[bisect.bisect_right(edges, value)] += 1
            return [count / len(values) if values else 0.0 for count in counts]

        return Distribution(labels, shares(numbers_ref), shares(numbers_cur))
    ref_counts, cur_counts = Counter(map(str, ref)), Counter(map(str, cur))
    categories = sorted(set(ref_counts) | set(cur_counts), key=lambda c: (-ref_counts[c], c))
    return Distribution(
        categories,
        [ref_counts[c] / len(ref) if ref else 0.0 for c in categories],
        [cur_counts[c] / len(cur) if cur else 0.0 for c in categories],
    )


def psi_band(psi: float) -> str:
    if psi >= PSI_SIGNIFICANT:
        return "significant"
    return "moderate" if psi >= PSI_MODERATE else "stable"


def _test_name(feature: FeatureDrift) -> str:
    numeric = all(isinstance(v, int | float) for v in feature.reference)
    return "Mann-Whitney U" if numeric else "chi-square"


def grouped_bars(title: str, shown: Distribution) -> str:
    """Reference and window shares side by side per bin."""
    top = max([*shown.reference, *shown.current, 0.01])
    groups = len(shown.labels)
    step = (WIDTH - PAD - 10) / max(groups, 1)
    bar = max(min(step / 2 - 2, 40), 1)
    body: list[str] = []
    for index, label in enumerate(shown.labels):
        x = PAD + index * step + (step - 2 * bar) / 2
        for offset, (side, value, colour) in enumerate(
            (
                ("reference", shown.reference[index], REFERENCE_COLOUR),
                ("window", shown.current[index], CURRENT_COLOUR),
            )
        ):
            height = (HEIGHT - PAD - 12) * value / top
            y = HEIGHT - PAD - height
            body.append(
                f'<rect x="{x + offset * bar:.1f}" y="{y:.1f}" width="{bar:.1f}" '
                f'height="{height:.1f}" fill="{colour}"><title>{escape(label)}, {side}: '
                f"{value:.1%}</title></rect>"
            )
        if groups <= 12 or index % max(1, groups // 12) == 0:
            body.append(
                f'<text x="{PAD + index * step + step / 2:.1f}" y="{HEIGHT - PAD + 14}" '
                f'font-size="10" text-anchor="middle">{escape(label)}</text>'
            )
    axis = (
        f'<line x1="{PAD}" y1="{HEIGHT - PAD}" x2="{WIDTH - 10}" y2="{HEIGHT - PAD}" '
        'stroke="#888"/>'
        f'<line x1="{PAD}" y1="12" x2="{PAD}" y2="{HEIGHT - PAD}" stroke="#888"/>'
        f'<text x="2" y="20" font-size="11">{top:.0%}</text>'
        f'<text x="2" y="{HEIGHT - PAD}" font-size="11">0%</text>'
        f'<text x="{PAD}" y="{HEIGHT - 8}" font-size="12" fill="{REFERENCE_COLOUR}">'
        "■ reference (training data)</text>"
        f'<text x="{PAD + 220}" y="{HEIGHT - 8}" font-size="12" fill="{CURRENT_COLOUR}">'
        "■ window (captured prompts)</text>"
    )
    return (
        f'<svg role="img" viewBox="0 0 {WIDTH} {HEIGHT}" aria-label="{escape(title)}">'
        f"<title>{escape(title)}</title>{axis}{''.join(body)}</svg>"
    )


def auc_gauge(verdict: ClassifierVerdict) -> str:
    """The AUC and its lower bound on [0, 1] against the drift bound."""
    height, left, right = 70, 20, WIDTH - 20

    def x(value: float) -> float:
        return left + (right - left) * max(0.0, min(1.0, value))

    colour = CURRENT_COLOUR if verdict.drift else "#059669"
    ticks = "".join(
        f'<text x="{x(t):.1f}" y="{height - 4}" font-size="10" text-anchor="middle">{t:.1f}</text>'
        for t in (0.0, 0.25, 0.5, 0.75, 1.0)
    )
    title = f"Domain classifier AUC {verdict.auc:.3f}, lower bound {verdict.auc_lower_bound:.3f}"
    return (
        f'<svg role="img" viewBox="0 0 {WIDTH} {height}" aria-label="{escape(title)}">'
        f"<title>{escape(title)}</title>"
        f'<line x1="{left}" y1="30" x2="{right}" y2="30" stroke="#888"/>'
        f'<line x1="{x(AUC_THRESHOLD):.1f}" y1="12" x2="{x(AUC_THRESHOLD):.1f}" y2="48" '
        f'stroke="#111" stroke-dasharray="4 3"><title>drift bound {AUC_THRESHOLD}</title></line>'
        f'<line x1="{x(verdict.auc_lower_bound):.1f}" y1="30" x2="{x(verdict.auc):.1f}" y2="30" '
        f'stroke="{colour}" stroke-width="6"/>'
        f'<circle cx="{x(verdict.auc):.1f}" cy="30" r="7" fill="{colour}">'
        f"<title>AUC {verdict.auc:.3f}</title></circle>"
        f'<text x="{x(AUC_THRESHOLD) + 4:.1f}" y="14" font-size="10">bound {AUC_THRESHOLD}</text>'
        f"{ticks}</svg>"
    )


def weight_bars(features: Sequence[tuple[str, float]]) -> str:
    """The heaviest n-grams as a diverging bar chart: right typical of the window, left of
    the reference."""
    if not features:
        return "<p>No features.</p>"
    row, left = 22, 260
    height = 24 + row * len(features)
    middle = left + (WIDTH - left - 10) / 2
    half = (WIDTH - left - 10) / 2
    top = max(abs(weight) for _, weight in features) or 1.0
    body = [f'<line x1="{middle:.1f}" y1="4" x2="{middle:.1f}" y2="{height - 16}" stroke="#888"/>']
    for index, (gram, weight) in enumerate(features):
        y = 8 + index * row
        length = half * abs(weight) / top
        x = middle if weight >= 0 else middle - length
        colour = CURRENT_COLOUR if weight >= 0 else REFERENCE_COLOUR
        shown = gram if len(gram) <= 40 else gram[:39] + "…"
        body.append(
            f'<text x="4" y="{y + 13}" font-size="11">{escape(shown)}</text>'
            f'<rect x="{x:.1f}" y="{y}" width="{length:.1f}" height="{row - 6}" fill="{colour}">'
            f"<title>{escape(gram)}: {weight:+.3f}</title></rect>"
        )
    body.append(
        f'<text x="{left}" y="{height - 2}" font-size="11" fill="{REFERENCE_COLOUR}">'
        "← typical of the reference</text>"
        f'<text x="{WIDTH - 10}" y="{height - 2}" font-size="11" text-anchor="end" '
        f'fill="{CURRENT_COLOUR}">typical of the window →</text>'
    )
    return (
        f'<svg role="img" viewBox="0 0 {WIDTH} {height}" '
        'aria-label="Heaviest n-grams of the domain classifier">'
        f"<title>Heaviest n-grams of the domain classifier</title>{''.join(body)}</svg>"
    )


def _verdict_badge(result: DriftResult | None) -> str:
    if result is None:
        return '<p class="verdict unjudged">Not judged</p>'
    if result.drift_detected:
        return '<p class="verdict drift">Drift detected</p>'
    return '<p class="verdict stable">No drift</p>'


def _feature_rows(result: DriftResult) -> str:
    rows = []
    for feature in result.features:
        label = FEATURES.get(feature.name, (feature.name, ""))[0]
        rows.append(
            f"<tr><td>{escape(label)}</td><td><code>{escape(feature.name)}</code></td>"
            f'<td class="num">{feature.psi:.3f}</td><td>{psi_band(feature.psi)}</td>'
            f'<td class="num">{feature.p_value:.3g}</td><td>{_test_name(feature)}</td>'
            f"<td>{'drift' if feature.drift else '-'}</td></tr>"
        )
    return (
        "<table><thead><tr><th>feature</th><th>name</th><th>PSI</th><th>band</th>"
        "<th>p-value</th><th>test</th><th>verdict</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def _feature_sections(result: DriftResult) -> str:
    parts = []
    for feature in result.features:
        label, meaning = FEATURES.get(feature.name, (feature.name, ""))
        title = (
            f"{label}: PSI {feature.psi:.3f} ({psi_band(feature.psi)}), "
            f"{_test_name(feature)} p = {feature.p_value:.3g}"
        )
        parts.append(
            f'<section id="{escape(feature.name)}"><h3>{escape(label)}</h3>'
            f"<p>{escape(meaning[:1].upper() + meaning[1:])}. "
            f"PSI {feature.psi:.3f} ({psi_band(feature.psi)}); "
            f"{_test_name(feature)} p-value {feature.p_value:.3g}; "
            f"{'<strong>drift</strong>' if feature.drift else 'no drift'}.</p>"
            f"{grouped_bars(title, distribution(feature))}</section>"
        )
    return "".join(parts)


def _classifier_section(verdict: ClassifierVerdict | None) -> str:
    if verdict is None:
        return "<h2>Domain classifier</h2><p>Not run: it needs at least 4 prompts on each side.</p>"
    bound = (
        "the AUC itself (at least 100 held-out prompts per side)"
        if verdict.auc_lower_bound == verdict.auc
        else "the 5th percentile of 200 bootstrap AUCs (fewer than 100 held-out prompts per side)"
    )
    rows = "".join(
        f"<tr><td><code>{escape(gram)}</code></td><td class='num'>{weight:+.3f}</td>"
        f"<td>{'window' if weight >= 0 else 'reference'}</td></tr>"
        for gram, weight in verdict.top_features
    )
    return (
        "<h2>Domain classifier</h2>"
        f"<p>A logistic regression trained to tell the window from a reference sample of the "
        f"same size: ROC AUC <strong>{verdict.auc:.3f}</strong> on a held-out split, lower "
        f"bound <strong>{verdict.auc_lower_bound:.3f}</strong> ({bound}). Drift when the "
        f"bound exceeds {AUC_THRESHOLD}: {'<strong>drift</strong>' if verdict.drift else 'no'}"
        ". An AUC near 0.5 means the two cannot be told apart.</p>"
        f"{auc_gauge(verdict)}"
        "<h3>Most telling features</h3>"
        "<p>Hashed word and character n-grams with the largest weights (up to three n-grams "
        "share a bucket).</p>"
        f"{weight_bars(verdict.top_features)}"
        "<table><thead><tr><th>n-grams</th><th>weight</th><th>typical of</th></tr></thead>"
        f"<tbody>{rows}</tbody></table>"
    )


def render_report(
    *,
    endpoint: str,
    model_version: str,
    window_start: str,
    window_end: str,
    trigger: str,
    summary: str,
    prompts: int,
    reference_prompts: int,
    reference_source: str,
    result: DriftResult | None,
    generated_at: str,
) -> str:
    """The page; ``result`` None for a window that was not judged (``summary`` says why)."""
    facts = [
        ("Endpoint", endpoint),
        ("Model version", model_version or "-"),
        ("Window", f"{window_start} to {window_end} (end excluded)"),
        ("Trigger", trigger),
        ("Captured prompts", str(prompts)),
        ("Reference prompts", f"{reference_prompts} ({reference_source or '-'})"),
        ("Generated", generated_at),
    ]
    details = "".join(f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>" for k, v in facts)
    judged = ""
    if result is not None:
        judged = (
            "<h2>Univariate features</h2>"
            f"{_feature_rows(result)}{_feature_sections(result)}"
            f"{_classifier_section(result.classifier)}"
        )
    how = (
        "<h2>How to read this</h2><p>PSI compares the shares per bin: below "
        f"{PSI_MODERATE} stable, {PSI_MODERATE}-{PSI_SIGNIFICANT} moderate, "
        f"{PSI_SIGNIFICANT} and above significant. A feature drifts when its PSI is "
        f"significant and, with fewer than {SMALL_SAMPLE} prompts on either side, its test "
        f"agrees at p &lt; {ALPHA}. The window drifts when any feature or the domain "
        "classifier does. Runbook: docs/runbooks/drift.md.</p>"
    )
    title = f"Drift report: {endpoint}, window ending {window_end}"
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta http-equiv="Content-Security-Policy" '
        "content=\"default-src 'none'; style-src 'unsafe-inline'\">"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head><body>"
        f"<h1>Drift report</h1>{_verdict_badge(result)}<p>{escape(summary)}</p>"
        f"<dl>{details}</dl>{judged}{how}</body></html>"
    )
