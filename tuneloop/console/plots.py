"""Inline SVG plots drawn on the server: no JavaScript, no image files, readable without CSS.

Each function returns markup safe to place in a template (`Markup`); empty data gives a short
"no data" figure rather than an empty box.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

from markupsafe import Markup

WIDTH, HEIGHT, PAD = 640, 220, 40
COLOURS = ("#2563eb", "#dc2626", "#059669", "#9333ea")


@dataclass(frozen=True)
class Interval:
    """One labelled value with an optional confidence interval."""

    label: str
    value: float | None
    low: float | None = None
    high: float | None = None


def _empty(title: str) -> Markup:
    return Markup(
        f'<svg class="plot" role="img" viewBox="0 0 {WIDTH} 60" aria-label="{escape(title)}">'
        f'<text x="10" y="35">{escape(title)}: no data yet</text></svg>'
    )


def _scale(lo: float, hi: float, out_lo: float, out_hi: float) -> tuple[float, float]:
    span = (hi - lo) or 1.0
    factor = (out_hi - out_lo) / span
    return factor, out_lo - lo * factor


def _frame(title: str, y_lo: float, y_hi: float, body: str) -> Markup:
    axis = (
        f'<line x1="{PAD}" y1="{HEIGHT - PAD}" x2="{WIDTH - 10}" y2="{HEIGHT - PAD}" '
        'stroke="#888"/>'
        f'<line x1="{PAD}" y1="10" x2="{PAD}" y2="{HEIGHT - PAD}" stroke="#888"/>'
        f'<text x="2" y="16" font-size="11">{y_hi:.3g}</text>'
        f'<text x="2" y="{HEIGHT - PAD}" font-size="11">{y_lo:.3g}</text>'
    )
    return Markup(
        f'<svg class="plot" role="img" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'aria-label="{escape(title)}"><title>{escape(title)}</title>{axis}{body}</svg>'
    )


def line_chart(title: str, series: Sequence[tuple[str, Sequence[float]]]) -> Markup:
    """Curves over their index (loss per logged step); one colour and legend entry each."""
    drawn = [(name, list(values)) for name, values in series if values]
    if not drawn:
        return _empty(title)
    every = [v for _, values in drawn for v in values]
    y_lo, y_hi = min(every), max(every)
    longest = max(len(values) for _, values in drawn)
    fx, bx = _scale(0, max(longest - 1, 1), PAD, WIDTH - 10)
    fy, by = _scale(y_lo, y_hi, HEIGHT - PAD, 10)
    body = []
    for index, (name, values) in enumerate(drawn):
        colour = COLOURS[index % len(COLOURS)]
        points = " ".join(f"{i * fx + bx:.1f},{v * fy + by:.1f}" for i, v in enumerate(values))
        body.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{points}"/>')
        body.append(
            f'<text x="{PAD + 10 + index * 150}" y="{HEIGHT - 8}" fill="{colour}" '
            f'font-size="12">{escape(name)}</text>'
        )
    return _frame(title, y_lo, y_hi, "".join(body))


def band_chart(title: str, points: Sequence[Interval]) -> Markup:
    """Values in order (a suite's score per model version) with their CI as a shaded band."""
    shown = [p for p in points if p.value is not None]
    if not shown:
        return _empty(title)
    lows = [p.low if p.low is not None else p.value for p in shown]
    highs = [p.high if p.high is not None else p.value for p in shown]
    y_lo = min(v for v in lows if v is not None)
    y_hi = max(v for v in highs if v is not None)
    fx, bx = _scale(0, max(len(shown) - 1, 1), PAD + 10, WIDTH - 20)
    fy, by = _scale(y_lo, y_hi, HEIGHT - PAD, 10)
    xs = [i * fx + bx for i in range(len(shown))]
    upper = [f"{x:.1f},{(h or 0) * fy + by:.1f}" for x, h in zip(xs, highs, strict=True)]
    lower = [f"{x:.1f},{(lo or 0) * fy + by:.1f}" for x, lo in zip(xs, lows, strict=True)]
    band = f'<polygon fill="#93c5fd" opacity="0.5" points="{" ".join(upper + lower[::-1])}"/>'
    pairs = list(zip(xs, shown, strict=True))
    line = " ".join(f"{x:.1f},{(p.value or 0) * fy + by:.1f}" for x, p in pairs)
    dots = "".join(
        f'<circle cx="{x:.1f}" cy="{(p.value or 0) * fy + by:.1f}" r="3" fill="#2563eb">'
        f"<title>{escape(p.label)}: {p.value:.3f}</title></circle>"
        for x, p in zip(xs, shown, strict=True)
    )
    labels = "".join(
        f'<text x="{x:.1f}" y="{HEIGHT - PAD + 14}" font-size="10" text-anchor="middle">'
        f"{escape(p.label[-8:])}</text>"
        for x, p in list(zip(xs, shown, strict=True))[:: max(1, len(shown) // 8)]
    )
    body = f'{band}<polyline fill="none" stroke="#2563eb" stroke-width="2" points="{line}"/>'
    return _frame(title, y_lo, y_hi, body + dots + labels)


def bar_chart(title: str, bars: Sequence[tuple[str, int]]) -> Markup:
    """Counts per label (records ingested per day)."""
    if not bars:
        return _empty(title)
    top = max(count for _, count in bars) or 1
    step = (WIDTH - PAD - 10) / len(bars)
    fy, by = _scale(0, top, HEIGHT - PAD, 10)
    body = []
    for index, (label, count) in enumerate(bars):
        x, y = PAD + index * step, count * fy + by
        body.append(
            f'<rect x="{x + 1:.1f}" y="{y:.1f}" width="{max(step - 2, 1):.1f}" '
            f'height="{HEIGHT - PAD - y:.1f}" fill="#059669"><title>{escape(label)}: {count}'
            "</title></rect>"
        )
    body.append(f'<text x="{PAD}" y="{HEIGHT - 8}" font-size="11">{escape(bars[0][0])}</text>')
    body.append(
        f'<text x="{WIDTH - 10}" y="{HEIGHT - 8}" font-size="11" text-anchor="end">'
        f"{escape(bars[-1][0])}</text>"
    )
    return _frame(title, 0, top, "".join(body))


def difference_chart(title: str, rows: Sequence[Interval]) -> Markup:
    """Paired differences (b - a) per suite with their CIs around a zero line."""
    shown = [r for r in rows if r.value is not None]
    if not shown:
        return _empty(title)
    values = [v for r in shown for v in (r.value, r.low, r.high) if v is not None] + [0.0]
    lo, hi = min(values), max(values)
    row_height = 28
    height = 30 + row_height * len(shown)
    left = 160
    fx, bx = _scale(lo, hi, left, WIDTH - 20)
    zero = 0 * fx + bx
    body = [f'<line x1="{zero:.1f}" y1="5" x2="{zero:.1f}" y2="{height - 20}" stroke="#888"/>']
    for index, row in enumerate(shown):
        y = 20 + index * row_height
        low = row.low if row.low is not None else row.value
        high = row.high if row.high is not None else row.value
        colour = "#059669" if (low or 0) > 0 else "#dc2626" if (high or 0) < 0 else "#2563eb"
        body.append(f'<text x="5" y="{y + 4}" font-size="12">{escape(row.label)}</text>')
        body.append(
            f'<line x1="{(low or 0) * fx + bx:.1f}" y1="{y}" x2="{(high or 0) * fx + bx:.1f}" '
            f'y2="{y}" stroke="{colour}" stroke-width="3"/>'
        )
        body.append(
            f'<circle cx="{(row.value or 0) * fx + bx:.1f}" cy="{y}" r="5" fill="{colour}">'
            f"<title>{escape(row.label)}: {row.value:+.3f}</title></circle>"
        )
    body.append(f'<text x="{left}" y="{height - 4}" font-size="11">{lo:+.3g}</text>')
    body.append(
        f'<text x="{WIDTH - 20}" y="{height - 4}" font-size="11" text-anchor="end">{hi:+.3g}</text>'
    )
    return Markup(
        f'<svg class="plot" role="img" viewBox="0 0 {WIDTH} {height}" '
        f'aria-label="{escape(title)}"><title>{escape(title)}</title>{"".join(body)}</svg>'
    )
