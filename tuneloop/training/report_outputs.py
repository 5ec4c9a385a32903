"""Extra outputs of a run: the loss-curve picture and the process's peak memory."""

from __future__ import annotations

import resource
import sys
from collections.abc import Sequence
from pathlib import Path


def peak_rss_mb() -> float:
    """The process's peak resident memory so far, in MiB (ru_maxrss: KiB on Linux, B on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def write_loss_curve(losses: Sequence[float], path: Path, *, title: str = "") -> Path:
    """Plot the per-step training loss to a PNG at ``path`` (headless: Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")  # no display on a training instance
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6, 3.5), dpi=100)
    try:
        steps = range(1, len(losses) + 1)
        axes.plot(steps, list(losses), marker="o" if len(losses) <= 30 else None, linewidth=1.5)
        axes.set_xlabel("optimizer step")
        axes.set_ylabel("training loss (per label token)")
        axes.set_title(title or "training loss")
        axes.grid(alpha=0.3)
        figure.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(path, format="png")
    finally:
        plt.close(figure)
    return path
