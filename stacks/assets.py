"""Local build steps for the app's file assets (pure Python: synth needs no Docker).

- :data:`LAMBDA_CODE_EXCLUDES`: the one shared Lambda code asset is the project root
  filtered to ``lambdas/**`` and ``tuneloop/**`` (without ``tuneloop/local/**``).
- :func:`build_sourcedir`: ``sourcedir.tar.gz`` for the SageMaker jobs (script mode), holding
  at its root the training/serving entry points, ``evaluate.py`` and the ``tuneloop/``
  package. The archive is deterministic (sorted entries, mtime 0, fixed owner and modes,
  gzip header mtime 0), so an unchanged tree gives an unchanged asset hash and no redeploy.
"""

from __future__ import annotations

import gzip
import io
import os
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
"""The repository root (this file is ``<root>/stacks/assets.py``)."""

BUILD_DIR = PROJECT_ROOT / "build"

# Glob patterns (CDK's default ignore mode, evaluated in order, last match wins; a pattern
# without "/" matches the basename at any depth). "*" drops everything, the negations bring
# back the two packages, the tail drops the local platform and caches.
LAMBDA_CODE_EXCLUDES: tuple[str, ...] = (
    "*",
    ".*",
    "!lambdas",
    "!lambdas/**",
    "!tuneloop",
    "!tuneloop/**",
    "tuneloop/local",
    "tuneloop/local/**",
    "__pycache__",
    "*.pyc",
    ".pytest_cache",
    ".mypy_cache",
    ".ruff_cache",
)

# Entry points copied to the archive root: (source relative to the project root, name).
SOURCEDIR_FILES: tuple[tuple[str, str], ...] = (
    ("training_containers/train.py", "train.py"),
    ("training_containers/serve.py", "serve.py"),
    ("training_containers/inference.py", "inference.py"),
    ("training_containers/requirements.txt", "requirements.txt"),
    ("eval_containers/evaluate.py", "evaluate.py"),
)
SOURCEDIR_PACKAGE = "tuneloop"
# Standard tasks in lm-eval's YAML format, with any local data beside them: evaluate.py
# reads them from `tasks/` next to itself.
SOURCEDIR_TASKS = ("eval_containers/tasks", "tasks")
_TASK_SUFFIXES = (".yaml", ".yml", ".json", ".jsonl")
_SKIPPED_DIRS = frozenset({"__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache"})
_SKIPPED_SUFFIXES = (".pyc", ".pyo")


def _package_files(root: Path) -> Iterator[tuple[Path, str]]:
    package = root / SOURCEDIR_PACKAGE
    if not package.is_dir():
        return
    for dirpath, dirnames, filenames in os.walk(package):
        relative_dir = Path(dirpath).relative_to(root)
        dirnames[:] = sorted(
            d
            for d in dirnames
            if d not in _SKIPPED_DIRS and (relative_dir / d).as_posix() != "tuneloop/local"
        )
        for name in sorted(filenames):
            if not name.endswith(_SKIPPED_SUFFIXES):
                yield Path(dirpath) / name, (relative_dir / name).as_posix()


def sourcedir_entries(root: Path = PROJECT_ROOT) -> list[tuple[Path, str]]:
    """(source file, archive name) pairs, sorted by archive name; missing files are skipped."""
    entries = [(root / src, name) for src, name in SOURCEDIR_FILES if (root / src).is_file()]
    entries += list(_package_files(root))
    entries += list(_task_files(root))
    return sorted(entries, key=lambda entry: entry[1])


def _task_files(root: Path) -> Iterator[tuple[Path, str]]:
    source, target = SOURCEDIR_TASKS
    folder = root / source
    if folder.is_dir():
        for path in sorted(folder.iterdir()):
            if path.is_file() and path.suffix in _TASK_SUFFIXES:
                yield path, f"{target}/{path.name}"


def _tar_info(name: str, *, is_dir: bool, size: int = 0) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE if is_dir else tarfile.REGTYPE
    info.mode = 0o755 if is_dir else 0o644
    info.size = size
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def sourcedir_bytes(root: Path = PROJECT_ROOT) -> bytes:
    """The deterministic ``sourcedir.tar.gz`` content for the tree at ``root``."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        seen_dirs: set[str] = set()
        for source, name in sourcedir_entries(root):
            parts = name.split("/")[:-1]
            for depth in range(1, len(parts) + 1):
                directory = "/".join(parts[:depth])
                if directory not in seen_dirs:
                    seen_dirs.add(directory)
                    tar.addfile(_tar_info(directory + "/", is_dir=True))
            data = source.read_bytes()
            tar.addfile(_tar_info(name, is_dir=False, size=len(data)), io.BytesIO(data))
    compressed = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=compressed, mtime=0) as gz:
        gz.write(raw.getvalue())
    return compressed.getvalue()


def build_sourcedir(root: Path = PROJECT_ROOT, out_dir: Path | None = None) -> Path:
    """Write ``<out_dir>/sourcedir/sourcedir.tar.gz`` (default ``build/``) and return its path.

    The file is replaced atomically and only when its content changed.
    """
    target_dir = (out_dir or root / "build") / "sourcedir"
    target_dir.mkdir(parents=True, exist_ok=True)
    target = target_dir / "sourcedir.tar.gz"
    content = sourcedir_bytes(root)
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
