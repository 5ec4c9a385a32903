"""SageMaker entry point of the Train step: LoRA (or full) fine-tuning of a causal LM.

Run it the way SageMaker does (hyperparameters as ``--name value``; paths from ``SM_*``
variables, defaulting to ``/opt/ml/...``)::

    SM_CHANNEL_TRAIN=data/ SM_MODEL_DIR=out/model SM_OUTPUT_DATA_DIR=out/data \\
    SM_OUTPUT_DIR=out python training_containers/train.py \\
        --base_model smollm2-135m-instruct --max_steps 10 --learning_rate 2e-4 \\
        --lora_r 8 --lora_alpha 16 --lora_dropout 0.05 --max_seq_length 256 \\
        --per_device_batch_size 4 --seed 42

Optional: ``--init_adapter <model.tar.gz, S3 URI or folder>`` continues that adapter (the
production model) instead of starting a fresh one; ``SM_CHANNEL_REPLAY`` with
``--replay_fraction 0.2`` mixes in earlier data. A checkpoint in ``--checkpoint_dir`` (saved
every ``--checkpoint_steps`` and on SIGTERM) is resumed exactly. ``--finetune_method full``
trains every weight; ``--quantize_4bit true`` is QLoRA (CUDA + bitsandbytes). On an instance
with several GPUs (``SM_NUM_GPUS`` > 1) this script relaunches itself under ``torchrun``, one
data-parallel process per GPU.

``python training_containers/train.py --help`` lists every hyperparameter. The logic lives in
``tuneloop.training``; this file only wires the container contract to it.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

_HERE = Path(__file__).resolve().parent
if str(_HERE.parent) not in sys.path and not (_HERE / "tuneloop").is_dir():
    # Run from the repository (not from sourcedir.tar.gz, where tuneloop/ sits beside us).
    sys.path.insert(0, str(_HERE.parent))

from tuneloop.training.job import run  # noqa: E402 (after the sys.path fix above)

# Shipped in model.tar.gz's code/ so the Hugging Face inference container can serve it.
# No requirements.txt: the container would pip-install it from the internet at every start;
# the serving code runs on the image's own packages (requirements-serving.txt).
SERVING_CODE = (_HERE / "inference.py",)


def main(argv: Sequence[str] | None = None) -> int:
    """Train with ``argv`` (default: the process arguments); 0 on success, 1 on failure."""
    args = sys.argv[1:] if argv is None else list(argv)
    return run(
        args,
        serving_code=[path for path in SERVING_CODE if path.is_file()],
        script=Path(__file__).resolve(),
    )


if __name__ == "__main__":
    sys.exit(main())
