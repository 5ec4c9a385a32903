"""Drop manifests: which one governs a file, what is valid, and errors naming the field."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tuneloop.ingest.manifest import (
    ManifestError,
    is_manifest_key,
    manifest_keys,
    parse_manifest,
)

KEY = "drops/support/tickets/_manifest.json"


def parse(value: Any) -> Any:
    return parse_manifest(json.dumps(value).encode(), key=KEY, dataset="support")


def test_a_full_manifest_is_read_with_source_and_manifest_tags() -> None:
    manifest = parse(
        {
            "dataset": "support",
            "source": "zendesk",
            "format": "CSV",
            "field_mapping": {"prompt": "question", "completion": "answer"},
            "tags": ["team:care", "pii-reviewed"],
        }
    )
    assert (manifest.key, manifest.dataset, manifest.source, manifest.format) == (
        KEY,
        "support",
        "zendesk",
        "csv",
    )
    assert manifest.field_mapping == {"prompt": "question", "completion": "answer"}
    assert manifest.record_tags() == ("source:zendesk", "team:care", "pii-reviewed")


def test_an_empty_object_means_defaults() -> None:
    manifest = parse({})
    assert (manifest.source, manifest.format, manifest.field_mapping, manifest.tags) == (
        None,
        None,
        {},
        (),
    )


@pytest.mark.parametrize(
    ("value", "field", "reason", "words"),
    [
        ({"dataset": "billing"}, "dataset", "dataset_mismatch", "under drops/support/"),
        ({"format": "xlsx"}, "format", "invalid_manifest", "must be one of"),
        ({"field_mapping": ["text"]}, "field_mapping", "invalid_manifest", "must be an object"),
        ({"field_mapping": {"body": "text"}}, "field_mapping.body", "invalid_manifest", "unknown"),
        ({"field_mapping": {"text": ""}}, "field_mapping.text", "invalid_manifest", "non-empty"),
        ({"tags": "a,b"}, "tags", "invalid_manifest", "list of strings"),
        ({"tags": ["ok", 3]}, "tags[1]", "invalid_manifest", "non-empty string"),
        ({"source": 12}, "source", "invalid_manifest", "non-empty string"),
        ({"sourse": "x"}, "sourse", "invalid_manifest", "unknown field"),
        ([1, 2], None, "invalid_manifest", "must be a JSON object"),
    ],
)
def test_invalid_manifests_name_the_manifest_and_the_field(
    value: Any, field: str | None, reason: str, words: str
) -> None:
    with pytest.raises(ManifestError) as caught:
        parse(value)
    error = caught.value
    assert (error.field, error.reason) == (field, reason)
    assert str(error).startswith(f"drop manifest {KEY}")
    if field:
        assert f"field '{field}'" in str(error)
    assert words in str(error)


def test_unparseable_json_names_line_and_column() -> None:
    with pytest.raises(ManifestError, match=r"invalid JSON: .* \(line 2, column"):
        parse_manifest(b'{"source":\n  oops}', key=KEY, dataset="support")


def test_sidecar_wins_over_the_folder_manifest_and_both_are_not_data() -> None:
    sidecar, folder = manifest_keys("drops/support/tickets/2024.csv")
    assert (sidecar, folder) == (
        "drops/support/tickets/2024.csv.manifest.json",
        "drops/support/tickets/_manifest.json",
    )
    assert is_manifest_key(sidecar) and is_manifest_key(folder)
    assert not is_manifest_key("drops/support/tickets/2024.csv")
    assert not is_manifest_key("drops/support/manifest.jsonl")


@pytest.mark.parametrize(
    "name",
    ["..", "a..b", "a/b", "a\\b", ".hidden", "-flag", "a b", "naïve", "a#b", "x" * 65, ""],
)
def test_dataset_names_outside_the_documented_set_are_refused_naming_the_value(
    name: str,
) -> None:
    from tuneloop.ingest.events import dataset_name_problem

    problem = dataset_name_problem(name)
    assert problem is not None
    assert repr(name[:64]) in problem


@pytest.mark.parametrize("name", ["support", "default", "Team_A-2.v1", "x" * 64, "7"])
def test_dataset_names_in_the_documented_set_are_accepted(name: str) -> None:
    from tuneloop.ingest.events import dataset_name_problem

    assert dataset_name_problem(name) is None


def test_a_manifest_dataset_with_a_path_is_an_invalid_dataset_name() -> None:
    with pytest.raises(ManifestError) as caught:
        parse({"dataset": "../support"})
    assert (caught.value.field, caught.value.reason) == ("dataset", "invalid_dataset_name")
    assert "'../support'" in str(caught.value)
