"""The gate's HTML evaluation report: one self-contained page per run, next to decision.json.

It shows, for every suite: both models' scores with confidence intervals (Wilson for 0/1
scores, normal approximation otherwise), the paired difference and its bootstrap CI from
the decision, a per-tag (MMLU: per-subject) breakdown, the items the models disagree on,
and every reason of the decision. The plot of paired differences is inline SVG built here
(no plotting library in the Gate Lambda). Every text that comes from a benchmark or a
model (ids, tags, generations) is HTML-escaped.
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

from tuneloop.gating.decide import ITEM_FIELDS, Comparison, GateDecision

MAX_DISAGREEMENTS = 25  # per suite: enough to read examples, small enough to open anywhere
MAX_TAGS = 60

_STYLE = """
body{font-family:system-ui,sans-serif;margin:2rem;color:#222;max-width:70rem}
table{border-collapse:collapse;margin:.5rem 0 1.5rem}
th,td{border:1px solid #ccc;padding:.25rem .5rem;text-align:left;font-size:.9rem}
th{background:#f3f3f3} td.num{text-align:right;font-variant-numeric:tabular-nums}
.pass{color:#0a6b2d;font-weight:600} .fail{color:#b00020;font-weight:600}
code{font-size:.85rem}
"""


@dataclass(frozen=True)
class Interval:
    mean: float
    low: float
    high: float
    n: int

    def text(self) -> str:
        return f"{self.mean:.3f} [{self.low:.3f}, {self.high:.3f}]"


def score_interval(values: Sequence[float], confidence: float = 0.95) -> Interval | None:
    """Mean of per-item scores with a ``confidence`` interval; None without items."""
    n = len(values)
    if n == 0:
        return None
    mean = math.fsum(values) / n
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    if all(v in (0.0, 1.0) for v in values):
        # Wilson: stays inside [0, 1] and is not degenerate at 0% or 100%.
        centre = (mean + z * z / (2 * n)) / (1 + z * z / n)
        half = z * math.sqrt(mean * (1 - mean) / n + z * z / (4 * n * n)) / (1 + z * z / n)
        return Interval(mean, max(0.0, centre - half), min(1.0, centre + half), n)
    variance = math.fsum((v - mean) ** 2 for v in values) / (n - 1) if n > 1 else 0.0
    half = z * math.sqrt(variance / n)
    return Interval(mean, mean - half, mean + half, n)


def render_report(
    document: Mapping[str, Any], decision: GateDecision, report: Mapping[str, Any]
) -> str:
    """The HTML page for one gate run.

    ``document``: the stored decision JSON (model versions, policy, benchmark versions);
    ``report``: the Evaluate job's ``evaluation.json`` (per-item results).
    """
    confidence = float(document.get("policy", {}).get("confidence", 0.95))
    results = report.get("results", {}) if isinstance(report, Mapping) else {}
    candidate = _mapping(results.get("candidate"))
    champion = _mapping(results.get("champion"))
    benchmarks = _mapping(report.get("benchmarks"))
    verdict = "APPROVED" if decision.approved else "REJECTED"
    title = f"TuneLoop gate: {document.get('model_version', '?')} {verdict.lower()}"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{_e(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>Gate report: <code>{_e(document.get('model_version', '?'))}</code></h1>",
        f'<p class="{"pass" if decision.approved else "fail"}">{verdict}: '
        f"{_e(decision.summary)}</p>",
        "<p>Champion: <code>"
        + _e(document.get("champion_version") or "none (first model)")
        + f"</code>. Evaluation job <code>{_e(document.get('evaluation_job', ''))}</code>,"
        f" decided {_e(document.get('decided_at', ''))}. Candidate and champion were scored"
        " in the same job on the same benchmark versions.</p>",
        "<h2>Reasons</h2><ol>",
        *(f"<li>{_e(reason)}</li>" for reason in decision.reasons),
        "</ol>",
        _comparisons_table(decision.comparisons, confidence, candidate, champion),
        "<h2>Paired differences (candidate &minus; champion)</h2>",
        _difference_plot(decision.comparisons, confidence),
        _benchmarks_table(benchmarks),
    ]
    for comparison in decision.comparisons:
        parts.append(_suite_section(comparison, candidate, champion))
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _comparisons_table(
    comparisons: Sequence[Comparison],
    confidence: float,
    candidate: Mapping[str, Any],
    champion: Mapping[str, Any],
) -> str:
    level = f"{confidence:.0%}"
    rows = [
        "<h2>Suites</h2><table><tr><th>suite</th><th>role</th><th>metric</th>"
        f"<th>candidate ({level} CI)</th><th>champion ({level} CI)</th>"
        f"<th>difference ({level} paired bootstrap CI)</th><th>threshold</th>"
        "<th>McNemar p</th><th>result</th></tr>"
    ]
    for c in comparisons:
        field = ITEM_FIELDS.get(c.metric, "score")
        cand = score_interval(_item_values(candidate.get(c.suite), field), confidence)
        champ = score_interval(_item_values(champion.get(c.suite), field), confidence)
        if c.lower_is_better:  # perplexities (lower is better); the difference is relative
            cand = champ = None
        diff = (
            f"{c.diff:+.3f} [{c.ci_low:+.3f}, {c.ci_high:+.3f}]"
            if c.diff is not None and c.ci_low is not None and c.ci_high is not None
            else (f"{c.diff:+.3f}" if c.diff is not None else "&ndash;")
        )
        rows.append(
            f"<tr><td>{_e(c.suite)}</td><td>{_e(c.role)}</td><td>{_e(c.metric)}</td>"
            f'<td class="num">{_interval_or(cand, c.candidate)}</td>'
            f'<td class="num">{_interval_or(champ, c.champion)}</td>'
            f'<td class="num">{diff}</td>'
            f'<td class="num">{_num(c.threshold, "+.3f")}</td>'
            f'<td class="num">{_num(c.mcnemar_p, ".4f")}</td>'
            f'<td class="{"pass" if c.passed else "fail"}">'
            f"{'pass' if c.passed else 'fail'}</td></tr>"
        )
    rows.append("</table>")
    return "\n".join(rows)


def _benchmarks_table(benchmarks: Mapping[str, Any]) -> str:
    rows = [
        "<h2>Benchmark versions</h2><table><tr><th>suite</th><th>version</th>"
        "<th>items</th><th>kind</th></tr>"
    ]
    for name, info in sorted(benchmarks.items()):
        info = _mapping(info)
        rows.append(
            f"<tr><td>{_e(name)}</td><td><code>{_e(info.get('version', ''))}</code></td>"
            f'<td class="num">{_e(info.get("n_items", ""))}</td><td>{_e(info.get("kind", ""))}'
            "</td></tr>"
        )
    rows.append("</table>")
    return "\n".join(rows)


def _suite_section(c: Comparison, candidate: Mapping[str, Any], champion: Mapping[str, Any]) -> str:
    field = ITEM_FIELDS.get(c.metric, "score")
    cand_items = _items(candidate.get(c.suite))
    champ_items = {str(i.get("id")): i for i in _items(champion.get(c.suite))}
    parts = [f"<h2>Suite {_e(c.suite)}</h2>", f"<p>{_e(c.reason)}</p>"]
    by_tag: dict[str, list[tuple[float, float | None]]] = {}
    for item in cand_items:
        value = _float(item.get(field))
        if value is None:
            continue
        other = champ_items.get(str(item.get("id")))
        champ_value = _float(other.get(field)) if other is not None else None
        for tag in item.get("tags") or ["(untagged)"]:
            by_tag.setdefault(str(tag), []).append((value, champ_value))
    if by_tag:
        parts.append(
            f"<h3>By tag ({_e(c.metric)})</h3><table><tr><th>tag</th><th>items</th>"
            "<th>candidate</th><th>champion</th><th>difference</th></tr>"
        )
        shown = sorted(by_tag.items(), key=lambda kv: (-len(kv[1]), kv[0]))[:MAX_TAGS]
        for tag, pairs in sorted(shown):
            cand_mean = math.fsum(p[0] for p in pairs) / len(pairs)
            champ_values = [p[1] for p in pairs if p[1] is not None]
            champ_mean = (
                math.fsum(champ_values) / len(champ_values)
                if len(champ_values) == len(pairs)
                else None
            )
            diff = cand_mean - champ_mean if champ_mean is not None else None
            parts.append(
                f'<tr><td>{_e(tag)}</td><td class="num">{len(pairs)}</td>'
                f'<td class="num">{cand_mean:.3f}</td>'
                f'<td class="num">{_num(champ_mean, ".3f")}</td>'
                f'<td class="num">{_num(diff, "+.3f")}</td></tr>'
            )
        parts.append("</table>")
        if len(by_tag) > MAX_TAGS:
            parts.append(f"<p>{len(by_tag) - MAX_TAGS} smaller tags not shown.</p>")
    disagreements = []
    for item in cand_items:
        other = champ_items.get(str(item.get("id")))
        if other is None or _float(item.get(field)) == _float(other.get(field)):
            continue
        disagreements.append((item, other))
    if disagreements:
        parts.append(
            f"<h3>Items where the models disagree ({len(disagreements)})</h3><table><tr>"
            "<th>id</th><th>tags</th><th>target</th><th>candidate</th><th>champion</th></tr>"
        )
        for item, other in disagreements[:MAX_DISAGREEMENTS]:
            tags = ", ".join(map(str, item.get("tags") or []))
            parts.append(
                f"<tr><td>{_e(item.get('id'))}</td><td>{_e(tags)}"
                f"</td><td>{_e(item.get('target', ''))}</td>"
                f"<td>{_answer(item, field)}</td><td>{_answer(other, field)}</td></tr>"
            )
        parts.append("</table>")
    return "\n".join(parts)


def _answer(item: Mapping[str, Any], field: str) -> str:
    prediction = item.get("prediction_norm" if field == "score_norm" else "prediction", "")
    return f"{_e(prediction)} ({_num(_float(item.get(field)), '.0f')})"


def _difference_plot(comparisons: Sequence[Comparison], confidence: float) -> str:
    """A forest plot: each compared suite's mean paired difference with its CI, the zero
    line, and the suite's threshold (-delta for general suites, min_gain for target suites)."""
    rows = [c for c in comparisons if c.diff is not None and c.ci_low is not None]
    if not rows:
        return "<p>No paired comparison (no champion, or no per-item results).</p>"
    width, left, right, row_h, top = 640, 150, 30, 34, 30
    values = [0.0]
    for c in rows:
        values += [float(c.ci_low or 0), float(c.ci_high or 0), float(c.threshold or 0)]
    low, high = min(values), max(values)
    pad = max(0.02, (high - low) * 0.1)
    low, high = low - pad, high + pad
    height = top + row_h * len(rows) + 30

    def x(value: float) -> float:
        return left + (value - low) / (high - low) * (width - left - right)

    svg = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'role="img" aria-label="paired differences with {confidence:.0%} CIs">',
        f'<line x1="{x(0):.1f}" y1="{top - 10}" x2="{x(0):.1f}" y2="{height - 25}" '
        'stroke="#555" stroke-dasharray="4 3"/>',
        f'<text x="{x(0):.1f}" y="{top - 14}" font-size="11" text-anchor="middle">0</text>',
    ]
    for tick in _ticks(low, high):
        svg.append(
            f'<text x="{x(tick):.1f}" y="{height - 8}" font-size="10" text-anchor="middle">'
            f"{tick:+.2f}</text>"
        )
    for index, c in enumerate(rows):
        y = top + row_h * index + row_h / 2
        color = "#0a6b2d" if c.passed else "#b00020"
        svg.append(
            f'<text x="{left - 8}" y="{y + 4:.1f}" font-size="12" text-anchor="end">'
            f"{_e(c.suite)}</text>"
        )
        if c.threshold is not None and c.role in ("general", "target"):
            svg.append(
                f'<line x1="{x(c.threshold):.1f}" y1="{y - 12:.1f}" x2="{x(c.threshold):.1f}" '
                f'y2="{y + 12:.1f}" stroke="#e08a00" stroke-width="2">'
                f"<title>threshold {c.threshold:+.3f}</title></line>"
            )
        svg.append(
            f'<line x1="{x(float(c.ci_low or 0)):.1f}" y1="{y:.1f}" '
            f'x2="{x(float(c.ci_high or 0)):.1f}" y2="{y:.1f}" stroke="{color}" '
            'stroke-width="3"/>'
        )
        svg.append(
            f'<circle cx="{x(float(c.diff or 0)):.1f}" cy="{y:.1f}" r="5" fill="{color}">'
            f"<title>{_e(c.suite)}: {c.diff:+.3f} [{c.ci_low:+.3f}, {c.ci_high:+.3f}]</title>"
            "</circle>"
        )
    svg.append("</svg>")
    legend = (
        "<p>Dot: mean paired difference; bar: its "
        f"{confidence:.0%} bootstrap CI; orange mark: the suite's threshold.</p>"
    )
    return "\n".join(svg) + "\n" + legend


def _ticks(low: float, high: float) -> Iterable[float]:
    step = (high - low) / 4
    return (low + step * i for i in range(5))


def _items(result: Any) -> list[Mapping[str, Any]]:
    items = result.get("items") if isinstance(result, Mapping) else None
    return [i for i in items if isinstance(i, Mapping)] if isinstance(items, list) else []


def _item_values(result: Any, field: str) -> list[float]:
    return [v for v in (_float(i.get(field)) for i in _items(result)) if v is not None]


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _float(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _interval_or(interval: Interval | None, value: float | None) -> str:
    if interval is not None:
        return f"{interval.text()} <small>n={interval.n}</small>"
    return _num(value, ".3f")


def _num(value: float | None, spec: str) -> str:
    return "&ndash;" if value is None else format(value, spec)


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)
