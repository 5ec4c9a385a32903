"""sourcedir.tar.gz: deterministic, with the entry points and tuneloop/ at its root."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

from stacks.assets import build_sourcedir, sourcedir_bytes
from tests.infra.conftest import PROJECT_ROOT, Assembly


def _names(content: bytes) -> list[str]:
    with tarfile.open(fileobj=io.BytesIO(content), mode="r:gz") as tar:
        return tar.getnames()


def _tree(root: Path) -> None:
    (root / "training_containers").mkdir(parents=True)
    (root / "training_containers" / "train.py").write_text("print('train')\n")
    (root / "training_containers" / "Dockerfile").write_text("FROM scratch\n")
    (root / "eval_containers").mkdir()
    (root / "eval_containers" / "evaluate.py").write_text("print('eval')\n")
    (root / "eval_containers" / "tasks").mkdir()
    (root / "eval_containers" / "tasks" / "quiz.yaml").write_text("task: quiz\n")
    (root / "eval_containers" / "tasks" / "quiz.jsonl").write_text("{}\n")
    (root / "eval_containers" / "tasks" / "README.md").write_text("# tasks\n")
    for package in ("tuneloop", "tuneloop/local", "tuneloop/training", "tuneloop/__pycache__"):
        (root / package).mkdir(parents=True)
        (root / package / "__init__.py").write_text("")
    (root / "tuneloop" / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"\0")


def test_sourcedir_layout_skips_local_platform_caches_and_dockerfiles(tmp_path: Path) -> None:
    _tree(tmp_path)
    names = _names(sourcedir_bytes(tmp_path))
    assert names == sorted(names)
    assert {
        "train.py",
        "evaluate.py",
        "tuneloop",
        "tuneloop/__init__.py",
        "tuneloop/training/__init__.py",
        "tasks/quiz.yaml",
        "tasks/quiz.jsonl",
    } <= set(names)
    assert "tasks/README.md" not in names
    assert not [n for n in names if n.startswith("tuneloop/local") or "__pycache__" in n]
    assert "Dockerfile" not in names and "training_containers/train.py" not in names


def test_sourcedir_is_byte_for_byte_reproducible(tmp_path: Path) -> None:
    _tree(tmp_path)
    first = build_sourcedir(tmp_path, out_dir=tmp_path / "out1").read_bytes()
    (tmp_path / "tuneloop" / "__init__.py").touch()  # new mtime, same content
    second = build_sourcedir(tmp_path, out_dir=tmp_path / "out2").read_bytes()
    assert first == second
    assert first[:2] == b"\x1f\x8b" and int.from_bytes(first[4:8], "little") == 0  # gzip mtime
    with tarfile.open(fileobj=io.BytesIO(first), mode="r:gz") as tar:
        assert {(m.mtime, m.uid, m.gid, m.uname) for m in tar.getmembers()} == {(0, 0, 0, "")}


def test_shipped_sourcedir_holds_the_job_entry_points(dev: Assembly) -> None:
    # Given the file asset the Train/Evaluate jobs use as sagemaker_submit_directory
    (manifest,) = [json.loads(p.read_text()) for p in dev.outdir.glob("*Pipeline.assets.json")]
    archives = [
        f["source"]["path"]
        for f in manifest["files"].values()
        if f["source"]["path"].endswith(".tar.gz")
    ]
    assert len(archives) == 1
    names = set(_names((dev.outdir / archives[0]).read_bytes()))
    # Then it holds, at its root, the entry points and the library (not the local platform)
    assert {"train.py", "evaluate.py", "tuneloop", "tuneloop/envmodel.py"} <= names
    assert "tasks/mmlu.yaml" in names, "user task YAMLs ship beside evaluate.py"
    assert not [n for n in names if n.startswith("tuneloop/local")]
    for optional in ("serve.py", "inference.py", "requirements.txt"):
        source = {
            "serve.py": "training_containers/serve.py",
            "inference.py": "training_containers/inference.py",
            "requirements.txt": "training_containers/requirements.txt",
        }[optional]
        assert (optional in names) == (PROJECT_ROOT / source).is_file()
