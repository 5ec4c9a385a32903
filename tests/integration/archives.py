"""Gzipped tarballs as SageMaker jobs write them (``model.tar.gz``, ``sourcedir.tar.gz``)."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path


def archive_folder(folder: Path) -> bytes:
    """``folder``'s files at the root of the archive, as a training job uploads a model."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for path in sorted(folder.iterdir()):
            archive.add(path, arcname=path.name)
    return buffer.getvalue()


def archive_files(files: dict[str, bytes]) -> bytes:
    """An archive of ``{name: content}``."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()
