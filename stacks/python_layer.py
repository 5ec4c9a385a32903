"""Build a Lambda layer from installed pure-Python distributions (no network, no Docker).

The layer is a zip of the distributions' own files (``importlib.metadata``), with every
dependency they declare for this platform, under ``python/`` as Lambda expects. It is
deterministic (sorted entries, fixed timestamps and modes; install-specific metadata such
as ``RECORD`` and ``direct_url.json`` left out), so an unchanged set of packages gives an
unchanged asset hash and no layer update on deploy.
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
    """A distribution is not installed, or is not pure Python."""


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def distribution_closure(names: Iterable[str]) -> list[metadata.Distribution]:
    """The named distributions and everything they require on Lambda, sorted by name."""
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
                "project's 'connectors' extra (pip install -e '.[connectors]', part of make setup)"
            ) from None
        found[name] = distribution
        for text in distribution.requires or []:
            requirement = Requirement(text)
            marker = requirement.marker
            if marker is None or marker.evaluate(
                cast(Any, {**LAMBDA_MARKER_ENVIRONMENT, "extra": ""})
            ):
                pending.append(requirement.name)
    return [found[name] for name in sorted(found)]


def layer_entries(names: Iterable[str]) -> list[tuple[Path, str]]:
    """(installed file, name in the zip) pairs, sorted by name in the zip."""
    entries: list[tuple[Path, str]] = []
    for distribution in distribution_closure(names):
        for file in distribution.files or []:
            relative = file.as_posix()
            parts = relative.split("/")
            if relative.startswith(("/", "..")) or "__pycache__" in parts:
                continue  # scripts in bin/, byte code: not part of the importable package
            if relative.endswith((".pyc", ".pyo")) or parts[-1] in _INSTALL_SPECIFIC:
                continue
            if relative.endswith(_NATIVE_SUFFIXES):
                raise LayerBuildError(
                    f"{distribution.metadata['Name']} ships a native library ({relative}); "
                    "only pure-Python distributions can be copied into a layer"
                )
            entries.append((Path(str(distribution.locate_file(file))), f"python/{relative}"))
    return sorted(entries, key=lambda entry: entry[1])


def layer_zip_bytes(names: Iterable[str]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for source, name in layer_entries(names):
            info = zipfile.ZipInfo(name, date_time=_FIXED_TIME)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, source.read_bytes())
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
