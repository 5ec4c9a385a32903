"""Evaluate entry point (SageMaker script mode; the logic is in ``tuneloop.evaluation``).

On SageMaker the channels and hyperparameters come from the container contract
(docs/contracts.md). Locally, from the repository root::

    SM_CHANNEL_CANDIDATE=work/candidate SM_CHANNEL_BENCHMARKS=benchmarks \\
    SM_OUTPUT_DATA_DIR=work/out/data SM_OUTPUT_DIR=work/out \\
    python eval_containers/evaluate.py --mmlu_subset_size 20 --seed 0 --batch_size 8 \\
        --champion_model_data ""

``work/candidate`` holds ``model.tar.gz`` (or an extracted model folder). The report is
``work/out/data/evaluation.json``; on failure the reason is in ``work/out/failure``.
Optional: ``SM_CHANNEL_HELDOUT`` (training-format ``*.jsonl``) adds the held-out perplexity
suite; lm-eval task YAMLs in ``tasks/`` next to this script (and ``*.yaml`` in the
benchmarks channel) add standard tasks (see ``tuneloop/evaluation/harness.py``).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from tuneloop.evaluation.job import main as run_job

# lm-eval task YAMLs (tuneloop.evaluation.harness) shipped beside this script.
TASKS_DIR = Path(__file__).resolve().parent / "tasks"


def main(argv: Sequence[str] | None = None) -> int:
    return run_job(sys.argv[1:] if argv is None else argv, tasks_dir=TASKS_DIR)


if __name__ == "__main__":
    sys.exit(main())
