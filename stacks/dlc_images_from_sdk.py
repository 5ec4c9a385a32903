"""Generate ``stacks/dlc_images.json`` from the SageMaker Python SDK's image-URI data.

``make dlc-images`` runs this after a ``sagemaker-core`` upgrade. Every URI in the file is
what the SDK's own :func:`sagemaker.core.image_uris.retrieve` returns, for every region its
configuration lists, so the stacks synthesize exactly the images the SDK would pick without
importing the SDK at synth (its cost is in docs/stacks.md, "DLC images"). The SDK is a dev
dependency: ``tests/infra/test_dlc_images.py`` regenerates the data and compares.

Covered: the images a stage can name, i.e. the Hugging Face PyTorch training and inference
DLCs (``huggingface.json``) and the LMI DLC (``djl-lmi.json``). Hugging Face versions whose
configuration has no ``container_version`` are left out: the SDK's tag for them needs a
caller-supplied CUDA/OS suffix, so its bare ``retrieve`` names no published image.
"""

from __future__ import annotations

import functools
import json
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.metadata import version as installed_version
from pathlib import Path
from typing import Any

from sagemaker.core import common_utils, image_uris

DATA_FILE = Path(__file__).resolve().parent / "dlc_images.json"
SDK_DISTRIBUTION = "sagemaker-core"

_INSTANCE_TYPES = {"gpu": "ml.g5.xlarge", "cpu": "ml.m5.xlarge"}
"""One instance type per processor the configuration names: ``retrieve`` derives the
processor from the instance type."""
_URI = re.compile(
    r"^(?P<account>\d{12})\.dkr\.ecr\.(?P<region>[a-z0-9-]+)\.(?P<suffix>[a-z0-9.-]+)/"
    r"(?P<repository>[a-z0-9._/-]+):(?P<tag>[A-Za-z0-9_.-]+)$"
)


def _add(images: dict[str, dict[str, Any]], uri: str, region: str, **source: str) -> None:
    match = _URI.match(uri)
    if match is None or match["region"] != region:
        raise ValueError(f"unexpected URI from the SDK for {region}: {uri}")
    entry = images.setdefault(match["repository"], {}).setdefault(
        match["tag"], {"sdk": source, "registries": {}}
    )
    if entry["sdk"] != source:
        raise ValueError(f"two SDK entries give {uri}: {entry['sdk']} and {source}")
    entry["registries"][region] = match["account"]


def _huggingface(images: dict[str, dict[str, Any]], scope: str) -> None:
    config = image_uris.config_for_framework("huggingface")[scope]
    processors: list[str] = config["processors"]
    for version, bases in config["versions"].items():
        for base, base_config in bases.items():
            if not base.startswith("pytorch") or "container_version" not in base_config:
                continue  # version_aliases, TensorFlow bases, tags the SDK cannot complete
            for py_version in base_config["py_versions"]:
                for processor in processors:
                    if processor not in base_config["container_version"]:
                        continue
                    for region in base_config["registries"]:
                        uri = image_uris.retrieve(
                            "huggingface",
                            region,
                            version=version,
                            base_framework_version=base,
                            py_version=py_version,
                            instance_type=_INSTANCE_TYPES[processor],
                            image_scope=scope,
                        )
                        _add(
                            images,
                            uri,
                            region,
                            framework="huggingface",
                            scope=scope,
                            version=version,
                            base_framework_version=base,
                            py_version=py_version,
                            processor=processor,
                        )


def _djl_lmi(images: dict[str, dict[str, Any]]) -> None:
    config = image_uris.config_for_framework("djl-lmi")
    for version, version_config in config["versions"].items():
        for region in version_config["registries"]:
            uri = image_uris.retrieve(
                "djl-lmi",
                region,
                version=version,
                instance_type=_INSTANCE_TYPES["gpu"],
                image_scope="inference",
            )
            _add(images, uri, region, framework="djl-lmi", scope="inference", version=version)


@contextmanager
def _endpoint_data_loaded_once() -> Iterator[None]:
    """``retrieve`` re-reads botocore's endpoint file on each call (~90 ms of its ~95 ms);
    one resolver for the whole run gives the same hostnames in seconds instead of minutes."""
    original = common_utils._botocore_resolver
    common_utils._botocore_resolver = functools.cache(original)
    try:
        yield
    finally:
        common_utils._botocore_resolver = original


def generate() -> dict[str, Any]:
    """The data file's content, from the installed SDK."""
    images: dict[str, dict[str, Any]] = {}
    with _endpoint_data_loaded_once():
        _huggingface(images, "training")
        _huggingface(images, "inference")
        _djl_lmi(images)
    return {
        "source": f"{SDK_DISTRIBUTION}=={installed_version(SDK_DISTRIBUTION)}",
        "images": {
            repository: {
                tag: {**entry, "registries": dict(sorted(entry["registries"].items()))}
                for tag, entry in sorted(tags.items())
            }
            for repository, tags in sorted(images.items())
        },
    }


def render(data: dict[str, Any]) -> str:
    """The file's text: one line per image so a diff shows which images changed."""
    lines = ["{", f'"source": {json.dumps(data["source"])},', '"images": {']
    repositories = list(data["images"].items())
    for i, (repository, tags) in enumerate(repositories):
        lines.append(f"{json.dumps(repository)}: {{")
        for j, (tag, entry) in enumerate(tags.items()):
            comma = "," if j < len(tags) - 1 else ""
            lines.append(f"  {json.dumps(tag)}: {json.dumps(entry)}{comma}")
        lines.append("}," if i < len(repositories) - 1 else "}")
    lines += ["}", "}"]
    return "\n".join(lines) + "\n"


def main() -> int:
    data = generate()
    DATA_FILE.write_text(render(data))
    print(f"wrote {DATA_FILE.name} from {data['source']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
