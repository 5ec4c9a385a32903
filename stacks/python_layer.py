"""Build a Lambda layer from installed distributions (no Docker).

The layer is a zip of the distributions' files, with every dependency they declare for
Lambda's runtime, under ``python/`` as Lambda expects. A pure-Python distribution is copied
from its installed files (``importlib.metadata``); one with compiled extensions is taken
from its Lambda wheel at the installed version (:mod:`stacks.lambda_wheels`), since the
synth machine's ``.so`` files are built for the synth machine. The zip is deterministic
(sorted entries, fixed timestamps and modes; install-specific metadata such as ``RECORD``
and ``direct_url.json`` left out), so an unchanged set of packages gives an unchanged asset
hash and no layer update on deploy.
"""

from __future__ import annotations

import io
import os
import re
import tempfile
import zipfile
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path
from typing import Any, cast

from packaging.markers import default_environment
from packaging.requirements import Requirement

from stacks.assets import BUILD_DIR
from stacks.lambda_wheels import LAMBDA_PYTHON, WHEEL_DIR, lambda_wheel

LAYERS: dict[str, tuple[str, ...]] = {
    "pg8000": ("pg8000",),
    # FastAPI, its ASGI adapter, templates, forms, sessions and Cognito token checks; boto3
    # and Powertools come from the runtime and the managed Powertools layer.
    "console": ("fastapi", "mangum", "jinja2", "python-multipart", "itsdangerous", "joserfc"),
}
"""Each layer the app builds, by name: the distributions it is built from."""

# Lambda's Python 3.12 runtime: markers are evaluated for it, not for the synth machine.
LAMBDA_MARKER_ENVIRONMENT: dict[str, str] = {
    **cast(dict[str, str], default_environment()),
    "python_version": "3.12",
    "python_full_version": "3.12.0",
    "sys_platform": "linux",
    "platform_system": "Linux",
    "os_name": "posix",
    "platform_machine": "x86_64",
    "implementation_name": "cpython",
    "platform_python_implementation": "CPython",
}
_INSTALL_SPECIFIC = frozenset({"RECORD", "INSTALLER", "REQUESTED", "direct_url.json"})
_NATIVE_SUFFIXES = (".so", ".pyd", ".dylib", ".dll")
_FIXED_TIME = (1980, 1, 1, 0, 0, 0)


class LayerBuildError(RuntimeError):
    """A distribution is not installed, or has no usable files for Lambda."""


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _marker_environment(python: tuple[int, int]) -> dict[str, str]:
    version = "{}.{}".format(*python)
    return {
        **LAMBDA_MARKER_ENVIRONMENT,
        "python_version": version,
        "python_full_version": f"{version}.0",
        "extra": "",
    }


def distribution_closure(
    names: Iterable[str], python: tuple[int, int] = LAMBDA_PYTHON
) -> list[metadata.Distribution]:
    """The named distributions and everything they require on Lambda, sorted by name."""
    environment = _marker_environment(python)
    found: dict[str, metadata.Distribution] = {}
    pending = list(names)
    while pending:
        name = _canonical(pending.pop())
        if name in found:
            continue
        try:
            distribution = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            raise LayerBuildError(
                f"{name} is not installed, so its Lambda layer cannot be built; install the "
                "project's extras (pip install -e '.[connectors,console]', part of make setup)"
            ) from None
        found[name] = distribution
        for text in distribution.requires or []:
            requirement = Requirement(text)
            marker = requirement.marker
            if marker is None or marker.evaluate(cast(Any, environment)):
                pending.append(requirement.name)
    return [found[name] for name in sorted(found)]


def _is_native(distribution: metadata.Distribution) -> bool:
    return any(str(file).endswith(_NATIVE_SUFFIXES) for file in distribution.files or [])


def native_distributions(
    names: Iterable[str], python: tuple[int, int] = LAMBDA_PYTHON
) -> list[metadata.Distribution]:
    """The distributions of the layer built from ``names`` that carry compiled code."""
    return [d for d in distribution_closure(names, python) if _is_native(d)]


def _keep(relative: str) -> bool:
    parts = relative.split("/")
    if relative.startswith(("/", "..")) or "__pycache__" in parts:
        return False  # scripts in bin/, byte code: not part of the importable package
    return not relative.endswith((".pyc", ".pyo")) and parts[-1] not in _INSTALL_SPECIFIC


def _installed_files(distribution: metadata.Distribution) -> list[tuple[str, bytes]]:
    files: list[tuple[str, bytes]] = []
    for file in distribution.files or []:
        relative = file.as_posix()
        if _keep(relative):
            path = Path(str(distribution.locate_file(file)))
            files.append((f"python/{relative}", path.read_bytes()))
    return files


def _wheel_files(wheel: Path) -> list[tuple[str, bytes]]:
    files: list[tuple[str, bytes]] = []
    with zipfile.ZipFile(wheel) as archive:
        for member in archive.namelist():
            top, _, relative = member.partition("/")
            if top.endswith(".data"):
                scheme, _, relative = relative.partition("/")
                if scheme not in ("purelib", "platlib"):
                    continue  # scripts, headers, data: not importable
            else:
                relative = member
            if relative and not relative.endswith("/") and _keep(relative):
                files.append((f"python/{relative}", archive.read(member)))
    return files


def layer_entries(
    names: Iterable[str], python: tuple[int, int] = LAMBDA_PYTHON, wheel_dir: Path = WHEEL_DIR
) -> list[tuple[str, bytes]]:
    """(name in the zip, content) pairs, sorted by name in the zip.

    ``python`` is the Lambda runtime's version (the tests build for their own interpreter
    to import the result).
    """
    entries: list[tuple[str, bytes]] = []
    for distribution in distribution_closure(names, python):
        if _is_native(distribution):
            try:
                name, version = distribution.metadata["Name"], distribution.version
                wheel = lambda_wheel(name, version, wheel_dir, python)
            except RuntimeError as error:
                raise LayerBuildError(str(error)) from error
            entries.extend(_wheel_files(wheel))
        else:
            entries.extend(_installed_files(distribution))
    return sorted(entries, key=lambda entry: entry[0])


def layer_zip_bytes(
    names: Iterable[str], python: tuple[int, int] = LAMBDA_PYTHON, wheel_dir: Path = WHEEL_DIR
) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, content in layer_entries(names, python, wheel_dir):
            info = zipfile.ZipInfo(name, date_time=_FIXED_TIME)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, content)
    return buffer.getvalue()


def build_layer(name: str, distributions: Iterable[str], out_dir: Path | None = None) -> Path:
    """Write ``<out_dir>/layers/<name>.zip`` (default ``build/``); replaced only on change."""
    target_dir = (out_dir or BUILD_DIR) / "layers"
    target_dir.mkdir(parents=True, exist_ok=True)
    target = target_dir / f"{name}.zip"
    content = layer_zip_bytes(distributions)
    if target.is_file() and target.read_bytes() == content:
        return target
    fd, tmp_name = tempfile.mkstemp(dir=target_dir, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(content)
        os.replace(tmp_name, target)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return target
