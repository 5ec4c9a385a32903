"""The pg8000 layer is built from installed files: complete, deterministic, pure Python."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest

from stacks.python_layer import (
    LayerBuildError,
    build_layer,
    distribution_closure,
    layer_zip_bytes,
)


def _fake_distribution(root: Path, name: str, files: dict[str, str], requires: list[str]) -> None:
    info = root / f"{name}-1.0.dist-info"
    info.mkdir(parents=True)
    lines = [f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n"]
    lines += [f"Requires-Dist: {r}\n" for r in requires]
    (info / "METADATA").write_text("".join(lines))
    record = [f"{name}-1.0.dist-info/METADATA,,", f"{name}-1.0.dist-info/RECORD,,"]
    for relative, text in files.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_text(text)
        record.append(f"{relative},,")
    (info / "RECORD").write_text("\n".join(record) + "\n")


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def test_pg8000_layer_holds_its_dependencies_and_is_deterministic(tmp_path: Path) -> None:
    pytest.importorskip("pg8000", reason="pg8000 (the 'connectors' extra) is not installed")
    names = [d.metadata["Name"].lower() for d in distribution_closure(["pg8000"])]
    assert {"pg8000", "scramp", "asn1crypto"} <= set(names)
    first = build_layer("pg8000", ["pg8000"], out_dir=tmp_path)
    content = first.read_bytes()
    assert build_layer("pg8000", ["pg8000"], out_dir=tmp_path) == first
    assert layer_zip_bytes(["pg8000"]) == content  # byte for byte, run after run
    archive = zipfile.ZipFile(io.BytesIO(content))
    listed = archive.namelist()
    assert "python/pg8000/native.py" in listed and listed == sorted(listed)
    assert {info.date_time for info in archive.infolist()} == {(1980, 1, 1, 0, 0, 0)}
    assert not [n for n in listed if n.endswith(("RECORD", ".pyc")) or "__pycache__" in n]


def test_markers_are_evaluated_for_the_lambda_runtime(site: Path) -> None:
    requires = ["depa", "oldpy; python_version < '3.0'", "extraonly; extra == 'x'"]
    _fake_distribution(site, "needsdep", {"needsdep/__init__.py": ""}, requires)
    _fake_distribution(site, "depa", {"depa.py": "X = 1\n"}, [])
    names = [d.metadata["Name"] for d in distribution_closure(["needsdep"])]
    assert names == ["depa", "needsdep"]
    listed = zipfile.ZipFile(io.BytesIO(layer_zip_bytes(["needsdep"]))).namelist()
    assert listed == [
        "python/depa-1.0.dist-info/METADATA",
        "python/depa.py",
        "python/needsdep-1.0.dist-info/METADATA",
        "python/needsdep/__init__.py",
    ]


def test_native_code_and_missing_packages_are_refused(site: Path) -> None:
    _fake_distribution(site, "nativepkg", {"nativepkg/_speed.so": "ELF"}, [])
    with pytest.raises(LayerBuildError, match=r"nativepkg ships a native library"):
        layer_zip_bytes(["nativepkg"])
    with pytest.raises(LayerBuildError, match=r"not-installed-pkg is not installed.*connectors"):
        layer_zip_bytes(["not-installed-pkg"])
