"""Gate power: how often the general-suite check blocks a candidate, by simulation.

    .venv/bin/python benchmarks/gate_power.py [--sims 200] [--items 1000]
        [--champion-acc 0.6] [--regression 0.03] [--discordance 0.15,0.48]

Each simulation draws per-item 0/1 results for champion and candidate on ``--items`` items
and runs the gate's own ``decide`` with the default (dev stage) general-suite policy:
``delta`` 0.05, 2,000 paired-bootstrap samples, 95% CI. Two scenarios:

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
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from statistics import NormalDist

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tuneloop.gating import decide, parse_policy

DEFAULT_DELTA = 0.05  # stacks/config.py: the dev stage's mmlu suite
POLICY = parse_policy(
    {
        "suites": {"general": {"role": "general", "metric": "acc", "delta": DEFAULT_DELTA}},
        "bootstrap_samples": 2000,
        "confidence": 0.95,
        "seed": 0,
    }
)


@dataclass(frozen=True)
class Outcome:
    gate_blocks: int
    baseline_blocks: int
    sims: int


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


def gate_blocks(champion: Sequence[float], candidate: Sequence[float], seed: int) -> bool:
    def suite(values: Sequence[float]) -> dict[str, object]:
        items = [{"id": str(i), "score": v} for i, v in enumerate(values)]
        return {"acc": math.fsum(values) / len(values), "items": items}

    report = {
        "results": {
            "candidate": {"general": suite(candidate)},
            "champion": {"general": suite(champion)},
        }
    }
    policy = parse_policy({**POLICY.to_dict(), "seed": seed})  # a fresh bootstrap per draw
    return not decide(report, policy).approved


def baseline_blocks(champion: Sequence[float], candidate: Sequence[float]) -> bool:
    """Unpaired Wald CI of p_candidate - p_champion; blocks on the same rule."""
    n = len(champion)
    p1, p2 = math.fsum(candidate) / n, math.fsum(champion) / n
    se = math.sqrt(p1 * (1 - p1) / n + p2 * (1 - p2) / n)
    low = (p1 - p2) - NormalDist().inv_cdf(0.975) * se
    return not low > -DEFAULT_DELTA


def simulate(args: argparse.Namespace, regression: float, discordance: float) -> Outcome:
    rng = random.Random(f"{args.seed}:{regression}:{discordance}")
    gate = baseline = 0
    started = time.monotonic()
    for sim in range(args.sims):
        champion, candidate = paired_draw(
            rng, args.items, args.champion_acc, regression, discordance
        )
        gate += gate_blocks(champion, candidate, seed=sim)
        baseline += baseline_blocks(champion, candidate)
        if (sim + 1) % 50 == 0 or sim + 1 == args.sims:
            print(
                f"  ... {sim + 1}/{args.sims} simulations ({time.monotonic() - started:.0f} s)",
                file=sys.stderr,
                flush=True,
            )
    return Outcome(gate, baseline, args.sims)


def ratio(ours: float, base: float) -> str:
    return f"{ours / base:.2f}x" if base else "n/a (baseline 0)"


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
        f"delta {DEFAULT_DELTA}, {args.sims} simulations per cell"
    )
    header = (
        f"{'discordance':>11}  {'false-block (gate)':>18}  {'(unpaired baseline)':>19}  "
        f"{'detect -' + format(args.regression * 100, '.0f') + 'pt (gate)':>20}  "
        f"{'(unpaired baseline)':>19}  {'detect ratio gate/base':>22}"
    )
    print(header, flush=True)
    for discordance in levels:
        print(f"discordance {discordance}: null scenario", file=sys.stderr)
        null = simulate(args, 0.0, discordance)
        print(f"discordance {discordance}: {args.regression:.0%} regression", file=sys.stderr)
        regressed = simulate(args, args.regression, discordance)
        fb, fbb = null.gate_blocks / null.sims, null.baseline_blocks / null.sims
        dt, dtb = regressed.gate_blocks / regressed.sims, regressed.baseline_blocks / regressed.sims
        verdict = "meets" if fb <= 0.05 else "MISSES"
        print(
            f"{discordance:>11.2f}  {fb:>17.1%}{'*' if fb > 0.05 else ' '}  {fbb:>19.1%}  "
            f"{dt:>20.1%}  {dtb:>19.1%}  {ratio(dt, dtb):>22}   ({verdict} the 5% goal)",
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
