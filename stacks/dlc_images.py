"""The DLC images the SageMaker Python SDK lists: repository, tag and registry per region.

Read from ``stacks/dlc_images.json``, which ``make dlc-images`` generates from the SDK's
image-URI configuration (:mod:`stacks.dlc_images_from_sdk`); synth reads the file, not the
SDK, whose install and import cost more than the lookup is worth (docs/stacks.md).
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

from tuneloop.settings_keys import did_you_mean

DATA_FILE = Path(__file__).resolve().parent / "dlc_images.json"


@functools.cache
def _data() -> dict[str, Any]:
    return dict(json.loads(DATA_FILE.read_text()))


def source() -> str:
    """The SDK release the data comes from, e.g. ``sagemaker-core==2.27.0``."""
    return str(_data()["source"])


def image_problem(repository: str, tag: str) -> tuple[str, str] | None:
    """(``"repository"`` or ``"tag"``, why ``repository:tag`` is not an image the SDK lists,
    naming what it lists), or None."""
    images: dict[str, dict[str, Any]] = _data()["images"]
    if repository not in images:
        return "repository", (
            f"must be a repository the SageMaker SDK's image data ({source()}) lists, got "
            f"{repository!r}{did_you_mean(repository, images)}; it lists {', '.join(images)}"
        )
    if tag not in images[repository]:
        return "tag", (
            f"must be a tag of {repository} the SageMaker SDK's image data ({source()}) "
            f"lists, got {tag!r}{did_you_mean(tag, images[repository])}; it lists "
            f"{', '.join(images[repository])}"
        )
    return None


def registries(repository: str, tag: str) -> dict[str, str]:
    """The registry account of ``repository:tag`` in each region the SDK lists it for."""
    problem = image_problem(repository, tag)
    if problem:
        raise KeyError(problem[1])
    return dict(_data()["images"][repository][tag]["registries"])
