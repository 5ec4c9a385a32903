"""Upload a file or a folder of drop files as one push: ``drops/<dataset>/<push id>/...``.

The optional manifest (``_manifest.json``) is written before any data file, so the
ingestion of the first file already finds it. Files go through boto3's transfer manager:
multipart above ``MULTIPART_THRESHOLD``, parts uploaded in parallel.
"""

from __future__ import annotations

import json
import re
import secrets
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from boto3.s3.transfer import TransferConfig

from tuneloop import aws

DROPS_PREFIX = "drops/"
MANIFEST_NAME = "_manifest.json"
# Multipart pays off above a few parts; S3 needs parts of at least 5 MiB.
MULTIPART_THRESHOLD = 16 * 1024 * 1024
PART_SIZE = 16 * 1024 * 1024
_DATASET = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


class PushError(ValueError):
    """The push cannot start: bad files, arguments or manifest (nothing was uploaded)."""


def supported_extensions() -> list[str]:
    """What the ingestion parses: each parser's extension and its gzip-compressed form."""
    from tuneloop.ingest import parsing

    # EXTENSIONS (extension -> format) in the streaming parser, PARSERS before it.
    known = getattr(parsing, "EXTENSIONS", None) or getattr(parsing, "PARSERS", {})
    plain = sorted(known)
    return plain + [f"{extension}.gz" for extension in plain]


def is_supported(path: Path, extensions: list[str]) -> bool:
    name = path.name.lower()
    return any(name.endswith(extension) for extension in extensions)


def _hidden(relative: Path) -> bool:
    return any(part.startswith(".") for part in relative.parts)


def collect_files(path: Path) -> list[tuple[Path, str]]:
    """``(file, path relative to the push)`` for a file or every non-hidden file of a folder.

    Raises ``PushError`` naming every unsupported file, before anything is uploaded.
    """
    if path.is_file():
        found = [(path, path.name)]
    elif path.is_dir():
        found = [
            (file, file.relative_to(path).as_posix())
            for file in sorted(path.rglob("*"))
            if file.is_file() and not _hidden(file.relative_to(path))
        ]
    else:
        raise PushError(f"{path}: no such file or folder")
    if not found:
        raise PushError(f"{path}: no files to push (hidden files are skipped)")
    extensions = supported_extensions()
    unsupported = [relative for file, relative in found if not is_supported(file, extensions)]
    if unsupported:
        listed = "\n  ".join(unsupported)
        raise PushError(
            f"{len(unsupported)} file(s) of {path} cannot be ingested (supported: "
            f"{', '.join(extensions)}); remove or convert them:\n  {listed}"
        )
    return found


def parse_mapping(pairs: list[str]) -> dict[str, str]:
    """``--map canonical=source`` pairs as ``{canonical: source field}``."""
    mapping: dict[str, str] = {}
    for pair in pairs:
        canonical, sep, source = pair.partition("=")
        if not sep or not canonical.strip() or not source.strip():
            raise PushError(f"--map {pair!r}: expected canonical=source, e.g. text=body")
        mapping[canonical.strip()] = source.strip()
    return mapping


def build_manifest(
    dataset: str, source: str | None, tags: list[str], mapping: dict[str, str]
) -> dict[str, Any] | None:
    """The push's manifest, or None when nothing beyond the defaults was given."""
    if source is None and not tags and not mapping:
        return None
    manifest: dict[str, Any] = {"dataset": dataset}
    if source is not None:
        manifest["source"] = source
    if mapping:
        manifest["field_mapping"] = mapping
    if tags:
        manifest["tags"] = list(dict.fromkeys(tags))
    check_manifest(json.dumps(manifest).encode("utf-8"), "--source/--tag/--map", dataset)
    return manifest


def check_manifest(body: bytes, where: str, dataset: str) -> None:
    """Validate with the ingestion's own reader: a push it would reject is refused now."""
    from tuneloop.ingest.manifest import parse_manifest

    try:
        parse_manifest(body, key=where, dataset=dataset)
    except ValueError as exc:
        raise PushError(str(exc)) from exc


def check_folder_manifests(files: list[tuple[Path, str]], dataset: str, own: bool) -> None:
    """Manifests inside the pushed folder must be valid, and not clash with the flags'."""
    from tuneloop.ingest.manifest import is_manifest_key

    for file, relative in files:
        if not is_manifest_key(relative):
            continue
        if own and relative == MANIFEST_NAME:
            raise PushError(
                f"{file} is a folder manifest and --source/--tag/--map would write another "
                "one; put the settings in one place"
            )
        check_manifest(file.read_bytes(), str(file), dataset)


def check_dataset(dataset: str) -> str:
    if not _DATASET.match(dataset):
        raise PushError(
            f"--dataset {dataset!r}: use letters, digits, '_', '-' or '.' (at most 128), "
            "starting with a letter or digit"
        )
    return dataset


def new_push_id(now: datetime | None = None) -> str:
    """A UTC timestamp (sorts by time) and a short random part (two pushes in one second)."""
    moment = (now or datetime.now(UTC)).astimezone(UTC)
    return f"{moment:%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


@dataclass
class Progress:
    """Files and bytes sent so far; boto3 calls ``add`` from its upload threads."""

    total_files: int
    total_bytes: int
    stream: TextIO | None  # None: silent
    interactive: bool = False
    files: int = 0
    sent: int = 0
    started: float = field(default_factory=time.monotonic)
    _last: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, sent: int) -> None:
        with self._lock:
            self.sent += sent
            now = time.monotonic()
            if now - self._last >= (0.2 if self.interactive else 2.0):
                self._last = now
                self._show()

    def file_done(self) -> None:
        with self._lock:
            self.files += 1
            self._last = time.monotonic()
            self._show()

    def finish(self) -> None:
        if self.stream is not None and self.interactive:
            self.stream.write("\n")
            self.stream.flush()

    def line(self) -> str:
        elapsed = max(time.monotonic() - self.started, 1e-6)
        return (
            f"pushed {self.files}/{self.total_files} files, "
            f"{_megabytes(self.sent)}/{_megabytes(self.total_bytes)} MB, "
            f"{_megabytes(self.sent / elapsed)} MB/s"
        )

    def _show(self) -> None:
        if self.stream is None:
            return
        # A terminal gets one line rewritten in place; a log gets a line per update.
        end = "\r" if self.interactive else "\n"
        self.stream.write(self.line() + end)
        self.stream.flush()


def _megabytes(value: float) -> str:
    return f"{value / 1e6:.1f}"


@dataclass(frozen=True)
class PushResult:
    bucket: str
    prefix: str
    keys: list[str]
    manifest_key: str | None
    bytes: int


def push(
    path: Path,
    *,
    bucket: str,
    dataset: str,
    manifest: dict[str, Any] | None,
    progress_stream: TextIO | None = None,
    interactive: bool = False,
    push_id: str | None = None,
) -> PushResult:
    """Upload ``path`` (a file or folder) as one push; the manifest first when there is one."""
    from tuneloop.ingest.manifest import is_manifest_key

    files = collect_files(path)
    check_folder_manifests(files, check_dataset(dataset), manifest is not None)
    # Manifests first: a data file ingested before its manifest arrives gets the defaults.
    files.sort(key=lambda pair: not is_manifest_key(pair[1]))
    prefix = f"{DROPS_PREFIX}{dataset}/{push_id or new_push_id()}/"
    s3 = aws.s3()
    manifest_key = None
    if manifest is not None:
        manifest_key = prefix + MANIFEST_NAME
        s3.put_object(
            Bucket=bucket,
            Key=manifest_key,
            Body=json.dumps(manifest, indent=2, ensure_ascii=False).encode("utf-8"),
            ContentType="application/json",
        )
    sizes = [file.stat().st_size for file, _ in files]
    progress = Progress(len(files), sum(sizes), progress_stream, interactive)
    config = TransferConfig(
        multipart_threshold=MULTIPART_THRESHOLD, multipart_chunksize=PART_SIZE, max_concurrency=4
    )
    keys: list[str] = []
    for file, relative in files:
        key = prefix + relative
        s3.upload_file(str(file), bucket, key, Config=config, Callback=progress.add)
        keys.append(key)
        progress.file_done()
    progress.finish()
    return PushResult(bucket, prefix, keys, manifest_key, sum(sizes))


def progress_target(requested: bool, stream: TextIO | None = None) -> tuple[TextIO | None, bool]:
    """Where progress goes: a terminal always, anything else only with ``--progress``."""
    stream = stream or sys.stderr
    interactive = stream.isatty()
    return (stream if interactive or requested else None), interactive
