"""SageMaker serving entry point: ``GET /ping`` and ``POST /invocations`` over HTTP.

Run it the way a serving container does (the model folder is the extracted
``model.tar.gz``: an adapter folder from train.py, or a plain Hugging Face model)::

    SM_MODEL_DIR=out/model PORT=8080 python training_containers/serve.py

``HOST`` defaults to 127.0.0.1 (set ``HOST=0.0.0.0`` inside a container). Once the model is
loaded it prints ``serving on http://HOST:PORT``. The logic is in ``tuneloop.serving``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

_HERE = Path(__file__).resolve().parent
if str(_HERE.parent) not in sys.path and not (_HERE / "tuneloop").is_dir():
    # Run from the repository (not from sourcedir.tar.gz, where tuneloop/ sits beside us).
    sys.path.insert(0, str(_HERE.parent))

from tuneloop.serving.app import run  # noqa: E402 (after the sys.path fix above)


def main(argv: Sequence[str] | None = None) -> int:
    """Serve until interrupted; 1 if the model cannot be loaded or the port bound."""
    del argv  # configuration comes from the environment, as in a SageMaker container
    return run()


if __name__ == "__main__":
    sys.exit(main())
