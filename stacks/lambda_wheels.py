"""Wheels built for Lambda's runtime, for distributions whose installed copy is native code.

A distribution with compiled extensions (pydantic-core, cryptography, cffi, MarkupSafe)
cannot be copied from the synth machine's site-packages into a layer: its ``.so`` files are
built for that machine. Its layer files come instead from the wheel PyPI publishes for
Lambda's Python 3.12 on x86_64 (manylinux, glibc up to Amazon Linux 2023's 2.34), at exactly
the installed version, so the layer runs the code the tests ran. Wheels are fetched once
with pip into ``build/wheels/`` (``make setup`` does it ahead of synth) and reused.
"""

from __future__ import annotations

import subprocess
import sys
from functools import cache
from pathlib import Path

from packaging.tags import Tag, compatible_tags, cpython_tags
from packaging.utils import canonicalize_name, parse_wheel_filename

from stacks.assets import BUILD_DIR

WHEEL_DIR = BUILD_DIR / "wheels"
LAMBDA_PYTHON = (3, 12)
# Lambda's python3.12 runtime is Amazon Linux 2023 (glibc 2.34); manylinux2014 is 2_17.
LAMBDA_PLATFORMS: tuple[str, ...] = (
    *(f"manylinux_2_{minor}_x86_64" for minor in range(34, 16, -1)),
    "manylinux2014_x86_64",
)


class WheelFetchError(RuntimeError):
    """No Lambda wheel of this distribution and version could be found or downloaded."""


@cache
def lambda_tags(python: tuple[int, int] = LAMBDA_PYTHON) -> frozenset[Tag]:
    """Every wheel tag CPython ``python`` on Lambda's x86_64 accepts (abi3 and pure too)."""
    abi = "cp{}{}".format(*python)
    return frozenset(
        [
            *cpython_tags(python, abis=[abi], platforms=LAMBDA_PLATFORMS),
            *compatible_tags(python, interpreter=abi, platforms=LAMBDA_PLATFORMS),
        ]
    )


def find_wheel(
    name: str, version: str, wheel_dir: Path = WHEEL_DIR, python: tuple[int, int] = LAMBDA_PYTHON
) -> Path | None:
    """An already fetched Lambda wheel of ``name==version``, if there is one."""
    wanted = canonicalize_name(name)
    for path in sorted(wheel_dir.glob("*.whl")):
        wheel_name, wheel_version, _, tags = parse_wheel_filename(path.name)
        if wheel_name == wanted and str(wheel_version) == version and tags & lambda_tags(python):
            return path
    return None


def lambda_wheel(
    name: str, version: str, wheel_dir: Path = WHEEL_DIR, python: tuple[int, int] = LAMBDA_PYTHON
) -> Path:
    """The Lambda wheel of ``name==version``: from ``wheel_dir``, else downloaded with pip."""
    found = find_wheel(name, version, wheel_dir, python)
    if found is not None:
        return found
    wheel_dir.mkdir(parents=True, exist_ok=True)
    abi = "cp{}{}".format(*python)
    command = [
        sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
        "--only-binary=:all:", "--implementation", "cp", "--python-version", abi[2:],
        "--abi", abi, "--abi", "abi3", "--abi", "none",
        *(arg for platform in LAMBDA_PLATFORMS for arg in ("--platform", platform)),
        "--dest", str(wheel_dir), f"{name}=={version}",
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    found = find_wheel(name, version, wheel_dir, python)
    if result.returncode != 0 or found is None:
        errors = [line for line in result.stderr.splitlines() if line.startswith("ERROR")]
        reason = " ".join(errors) or result.stderr.strip()[-400:] or "no matching wheel"
        raise WheelFetchError(
            f"{name}=={version} has native code, so its Lambda layer files come from the "
            f"wheel built for Lambda (CPython {python[0]}.{python[1]}, manylinux x86_64); "
            f"pip could not fetch it into {wheel_dir}: {reason} "
            "Run make setup with access to the package index, or put the wheel there."
        )
    return found


def main(names: list[str]) -> None:
    """Fetch the Lambda wheels the named layers need (``make setup`` runs this)."""
    from stacks.python_layer import LAYERS, native_distributions

    for layer in names or sorted(LAYERS):
        for distribution in native_distributions(LAYERS[layer]):
            path = lambda_wheel(distribution.metadata["Name"], distribution.version)
            print(f"{layer}: {path.name}")


if __name__ == "__main__":
    main(sys.argv[1:])
