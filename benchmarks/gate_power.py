"""Gate power: how often the general-suite check blocks a candidate, by simulation.

    .venv/bin/python benchmarks/gate_power.py [--sims 200] [--items 1000]
        [--champion-acc 0.6] [--regression 0.03] [--discordance 0.15,0.48]

Each simulation draws per-item 0/1 results for champion and candidate on ``--items`` items
and runs the gate's own ``decide`` with the default (dev stage) general-suite policy:
``delta`` 0.05, 2,000 paired-bootstrap samples, 95% CI, and the default reliability
settings (``max_false_block`` 0.05, ``max_delta`` 0.10: the margin widens when the paired
differences are too noisy for 0.05). The same decision also gives the verdict of a fixed
0.05 margin (the previous default: ``max_delta`` = ``delta``), since the interval does not
depend on the margin. Two scenarios:

- **null**: the candidate equals the champion in distribution (same accuracy); every block
  is a false block. Goal: at most 5%.
- **regression**: the candidate is ``--regression`` (3 points) worse; a block is a
  detection. A 3-point drop is inside the 5-point margin, so non-inferiority is *not*
  required to block it: the figure shows how often it does anyway.

Paired results are drawn from the 2x2 table of (champion, candidate) outcomes with a given
**discordance** — the share of items on which the two models disagree. A fine-tune of the
champion agrees with it on most items (low discordance); 0.48 is two unrelated models at
60% (2 * 0.6 * 0.4), the worst case. Baseline, run in the same process on the same draws:
the unpaired Wald interval for a difference of two proportions, which ignores the pairing.
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from statistics import NormalDist

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tuneloop.gating import decide, parse_policy

DEFAULT_DELTA = 0.05  # stacks/config.py: the dev stage's mmlu suite
# The defaults apply: max_false_block 0.05, max_delta 0.10.
SUITE = {"role": "general", "metric": "acc", "delta": DEFAULT_DELTA}


@dataclass(frozen=True)
class Outcome:
    gate_blocks: int
    fixed_blocks: int
    baseline_blocks: int
    sims: int
    median_margin: float


def paired_draw(
    rng: random.Random, n: int, champion_acc: float, regression: float, discordance: float
) -> tuple[list[float], list[float]]:
    """Per-item (champion, candidate) 0/1 results with the given marginals and discordance."""
    champion_only = (discordance + regression) / 2  # champion right, candidate wrong
    candidate_only = (discordance - regression) / 2
    both = champion_acc - champion_only
    if min(champion_only, candidate_only, both, 1 - both - discordance) < 0:
        raise SystemExit(f"discordance {discordance} is impossible with these accuracies")
    champion: list[float] = []
    candidate: list[float] = []
    for _ in range(n):
        u = rng.random()
        if u < both:
            pair = (1.0, 1.0)
        elif u < both + champion_only:
            pair = (1.0, 0.0)
        elif u < both + discordance:
            pair = (0.0, 1.0)
        else:
            pair = (0.0, 0.0)
        champion.append(pair[0])
        candidate.append(pair[1])
    return champion, candidate


def gate_blocks(
    champion: Sequence[float], candidate: Sequence[float], seed: int
) -> tuple[bool, bool, float]:
    """(blocked by the default gate, blocked with the fixed 0.05 margin, margin used).

    The fixed-margin verdict comes from the same decision: the bootstrap interval depends
    only on the items and the seed, not on the margin.
    """

    def suite(values: Sequence[float]) -> dict[str, object]:
        items = [{"id": str(i), "score": v} for i, v in enumerate(values)]
        return {"acc": math.fsum(values) / len(values), "items": items}

    report = {
        "results": {
            "candidate": {"general": suite(candidate)},
            "champion": {"general": suite(champion)},
        }
    }
    # A fresh bootstrap per draw.
    policy = parse_policy({"suites": {"general": SUITE}, "bootstrap_samples": 2000, "seed": seed})
    general = decide(report, policy).comparisons[0]
    assert general.ci_low is not None and general.margin is not None
    return not general.passed, not general.ci_low > -DEFAULT_DELTA, general.margin


def baseline_blocks(champion: Sequence[float], candidate: Sequence[float]) -> bool:
    """Unpaired Wald CI of p_candidate - p_champion; blocks on the same rule."""
    n = len(champion)
    p1, p2 = math.fsum(candidate) / n, math.fsum(champion) / n
    se = math.sqrt(p1 * (1 - p1) / n + p2 * (1 - p2) / n)
    low = (p1 - p2) - NormalDist().inv_cdf(0.975) * se
    return not low > -DEFAULT_DELTA


def simulate(args: argparse.Namespace, regression: float, discordance: float) -> Outcome:
    rng = random.Random(f"{args.seed}:{regression}:{discordance}")
    gate = fixed = baseline = 0
    margins: list[float] = []
    started = time.monotonic()
    for sim in range(args.sims):
        champion, candidate = paired_draw(
            rng, args.items, args.champion_acc, regression, discordance
        )
        blocked, blocked_fixed, margin = gate_blocks(champion, candidate, sim)
        gate += blocked
        fixed += blocked_fixed
        margins.append(margin)
        baseline += baseline_blocks(champion, candidate)
        if (sim + 1) % 50 == 0 or sim + 1 == args.sims:
            print(
                f"  ... {sim + 1}/{args.sims} simulations ({time.monotonic() - started:.0f} s)",
                file=sys.stderr,
                flush=True,
            )
    return Outcome(gate, fixed, baseline, args.sims, statistics.median(margins))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sims", type=int, default=200)
    parser.add_argument("--items", type=int, default=1000)
    parser.add_argument("--champion-acc", type=float, default=0.6)
    parser.add_argument("--regression", type=float, default=0.03)
    parser.add_argument("--discordance", default="0.15,0.48")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    levels = [float(v) for v in args.discordance.split(",") if v.strip()]
    print(
        f"gate power: {args.items} items, champion acc {args.champion_acc}, general-suite "
        f"delta {DEFAULT_DELTA} (adaptive: max_false_block 0.05, max_delta 0.10), "
        f"{args.sims} simulations per cell"
    )
    detect = f"detect -{args.regression * 100:.0f}pt"
    header = (
        f"{'discordance':>11}  {'margin':>6}  {'false-block gate':>16}  {'fixed':>6}  "
        f"{'unpaired':>8}  {detect + ' gate':>16}  {'fixed':>6}  {'unpaired':>8}"
    )
    print(header, flush=True)
    for discordance in levels:
        print(f"discordance {discordance}: null scenario", file=sys.stderr)
        null = simulate(args, 0.0, discordance)
        print(f"discordance {discordance}: {args.regression:.0%} regression", file=sys.stderr)
        regressed = simulate(args, args.regression, discordance)
        fb, fbb = null.gate_blocks / null.sims, null.baseline_blocks / null.sims
        fbf, dtf = null.fixed_blocks / null.sims, regressed.fixed_blocks / regressed.sims
        dt, dtb = regressed.gate_blocks / regressed.sims, regressed.baseline_blocks / regressed.sims
        verdict = "meets" if fb <= 0.05 else "MISSES"
        print(
            f"{discordance:>11.2f}  {null.median_margin:>6.3f}  "
            f"{fb:>15.1%}{'*' if fb > 0.05 else ' '}"
            f"  {fbf:>6.1%}  {fbb:>8.1%}  {dt:>16.1%}  {dtf:>6.1%}  {dtb:>8.1%}"
            f"   ({verdict} the 5% goal)",
            flush=True,
        )
    print(
        "\nfalse-block = blocked although candidate == champion in distribution; "
        "detect = blocked with a true regression of "
        f"{args.regression:.0%} (inside the {DEFAULT_DELTA:.0%} margin)."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
