"""Layers: installed files, native parts from Lambda wheels; complete and deterministic."""

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


def test_native_code_comes_from_the_lambda_wheel(site: Path, tmp_path: Path) -> None:
    _fake_distribution(site, "nativepkg", {"nativepkg/_speed.so": "ELF for this machine"}, [])
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    with zipfile.ZipFile(wheels / "nativepkg-1.0-cp312-cp312-manylinux_2_17_x86_64.whl", "w") as w:
        w.writestr("nativepkg/_speed.cpython-312-x86_64-linux-gnu.so", "ELF for Lambda")
        w.writestr("nativepkg-1.0.dist-info/METADATA", "Name: nativepkg\n")
        w.writestr("nativepkg-1.0.dist-info/RECORD", "")
        w.writestr("nativepkg-1.0.data/purelib/nativepkg_extra.py", "X = 1\n")
        w.writestr("nativepkg-1.0.data/scripts/nativepkg-cli", "#!/bin/sh\n")
    archive = zipfile.ZipFile(io.BytesIO(layer_zip_bytes(["nativepkg"], wheel_dir=wheels)))
    assert archive.namelist() == [
        "python/nativepkg-1.0.dist-info/METADATA",
        "python/nativepkg/_speed.cpython-312-x86_64-linux-gnu.so",
        "python/nativepkg_extra.py",
    ]
    assert archive.read("python/nativepkg/_speed.cpython-312-x86_64-linux-gnu.so") == (
        b"ELF for Lambda"
    )


def test_a_native_package_without_a_lambda_wheel_and_missing_packages_are_refused(
    site: Path, tmp_path: Path
) -> None:
    _fake_distribution(site, "nativepkg", {"nativepkg/_speed.so": "ELF"}, [])
    with pytest.raises(LayerBuildError, match=r"(?s)nativepkg==1.0 has native code.*make setup"):
        layer_zip_bytes(["nativepkg"], wheel_dir=tmp_path)
    with pytest.raises(LayerBuildError, match=r"not-installed-pkg is not installed.*console"):
        layer_zip_bytes(["not-installed-pkg"])
