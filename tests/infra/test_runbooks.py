"""Every CloudWatch alarm names its runbook, and the runbooks are complete and indexed.

An alarm's description ends with ``Runbook: docs/runbooks/<name>.md``; that file exists,
has the four sections an operator reads, says what the alarm's action really does (the
alarm topic drives the Rollback Lambda, the notify topic only tells people), and is listed
in ``docs/runbooks/README.md``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from stacks.nag import flatten_reference
from tests.infra.conftest import PROJECT_ROOT, Assembly, synthesize
from tests.infra.test_connectors import CONNECTORS

RUNBOOKS = PROJECT_ROOT / "docs" / "runbooks"
INDEX = "README.md"
SECTIONS = ("What it means", "What was done automatically", "What to check", "How to recover")
AUTOMATIC = SECTIONS[1]
# What the "What was done automatically" section must say for each kind of alarm action.
ROLLBACK = "Rollback Lambda restores"
NOTIFY_ONLY = "Notification only"
_RUNBOOK = re.compile(r"Runbook: (docs/runbooks/[a-z0-9-]+\.md)$")
_HEADING = re.compile(r"^## +(.+?) *$", re.MULTILINE)


def sections(markdown: str) -> dict[str, str]:
    """``## Heading`` → the text up to the next ``##`` heading."""
    parts = _HEADING.split(markdown)
    return {parts[i]: parts[i + 1] for i in range(1, len(parts) - 1, 2)}


def runbook_problems(path: Path) -> list[str]:
    """What a runbook file lacks: the file itself, or any of the four sections."""
    if not path.is_file():
        return [f"{path.name} does not exist"]
    found = sections(path.read_text())
    return [f"{path.name} has no '## {name}' section" for name in SECTIONS if name not in found]


def alarm_problems(alarms: Mapping[str, Mapping[str, Any]], root: Path) -> list[str]:
    """Every way the alarms (``key`` → properties) and the runbooks under ``root`` disagree."""
    problems = []
    for key, props in alarms.items():
        description = flatten_reference(props.get("AlarmDescription")).strip()
        match = _RUNBOOK.search(description)
        if match is None:
            problems.append(
                f"{key}: description does not end with 'Runbook: docs/runbooks/<name>.md': "
                f"{description!r}"
            )
            continue
        path = root / match.group(1)
        found = runbook_problems(path)
        problems += [f"{key}: {problem}" for problem in found]
        if found:
            continue
        automatic = sections(path.read_text())[AUTOMATIC]
        actions = " ".join(flatten_reference(a) for a in props.get("AlarmActions", []))
        expected = ROLLBACK if "AlarmTopic" in actions else NOTIFY_ONLY
        if expected not in automatic:
            problems.append(
                f"{key}: acts on {actions or 'nothing'}, but {path.name}'s '{AUTOMATIC}' "
                f"does not say {expected!r}"
            )
    return problems


def index_problems(runbooks: Path) -> list[str]:
    """Runbooks the index does not link, and links of the index to no file."""
    index = (runbooks / INDEX).read_text()
    linked = set(re.findall(r"\]\(([a-z0-9-]+\.md)\)", index))
    files = {path.name for path in runbooks.glob("*.md")} - {INDEX}
    return [f"{INDEX} does not link {name}" for name in sorted(files - linked)] + [
        f"{INDEX} links {name}, which does not exist" for name in sorted(linked - files)
    ]


def _alarms(assembly: Assembly) -> dict[str, dict[str, Any]]:
    return {
        key: resource["Properties"]
        for key, resource in assembly.resources("AWS::CloudWatch::Alarm").items()
    }


@pytest.fixture(scope="session")
def dev_with_connectors(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Assembly]:
    # The default stages declare no connectors, so no connector alarm; this synth has two.
    yield synthesize(
        "dev", tmp_path_factory.mktemp("cdk-runbooks-connectors"), connectors=CONNECTORS
    )


@pytest.mark.parametrize("assembly_name", ["dev", "local", "dev_with_connectors"])
def test_every_alarm_names_a_complete_runbook_that_matches_its_action(
    assembly_name: str, request: pytest.FixtureRequest
) -> None:
    assembly: Assembly = request.getfixturevalue(assembly_name)
    alarms = _alarms(assembly)
    # The endpoint, quality, ingest DLQ and regression alarms at least (no vacuous pass)
    assert len(alarms) >= 7, sorted(alarms)
    if assembly_name == "dev_with_connectors":
        assert sum("Connectors" in key for key in alarms) == len(CONNECTORS), sorted(alarms)

    assert alarm_problems(alarms, PROJECT_ROOT) == []


def test_every_runbook_has_the_four_sections_and_is_in_the_index() -> None:
    runbooks = sorted(path for path in RUNBOOKS.glob("*.md") if path.name != INDEX)
    assert len(runbooks) >= 10, runbooks

    assert [problem for path in runbooks for problem in runbook_problems(path)] == []
    assert index_problems(RUNBOOKS) == []


def test_the_checks_find_what_is_wrong(tmp_path: Path) -> None:
    # Given: a runbook without its recovery section, one in the right shape that claims a
    # rollback, and an index that links only the first
    runbooks = tmp_path / "docs" / "runbooks"
    runbooks.mkdir(parents=True)
    complete = {name: "text" for name in SECTIONS} | {AUTOMATIC: f"The {ROLLBACK} it."}
    (runbooks / "rolls-back.md").write_text(
        "".join(f"## {name}\n\n{text}\n\n" for name, text in complete.items())
    )
    (runbooks / "partial.md").write_text("## What it means\n\n## What to check\n")
    (runbooks / INDEX).write_text("| a | [partial.md](partial.md) | b |\n")
    notify = [{"Fn::ImportValue": "TuneLoop-dev-Serving:ExportsOutputRefNotifyTopic"}]
    alarms: dict[str, dict[str, Any]] = {
        "S/NoRunbook": {"AlarmDescription": "Something broke."},
        "S/RunbookNotLast": {"AlarmDescription": "Runbook: docs/runbooks/rolls-back.md. Later"},
        "S/Missing": {"AlarmDescription": "x\nRunbook: docs/runbooks/missing.md"},
        "S/Partial": {"AlarmDescription": "x\nRunbook: docs/runbooks/partial.md"},
        "S/WrongAction": {
            "AlarmDescription": "x\nRunbook: docs/runbooks/rolls-back.md",
            "AlarmActions": notify,
        },
        "S/Fine": {
            "AlarmDescription": "x\nRunbook: docs/runbooks/rolls-back.md",
            "AlarmActions": [{"Ref": "NotificationsAlarmTopic1234"}],
        },
    }

    # When
    problems = alarm_problems(alarms, tmp_path)
    unindexed = index_problems(runbooks)

    # Then: each wrong alarm is reported, the right one is not
    reported = [problem.split(":", 1)[0] for problem in problems]
    assert reported == [
        "S/NoRunbook",
        "S/RunbookNotLast",
        "S/Missing",
        "S/Partial",
        "S/Partial",
        "S/WrongAction",
    ]
    assert "partial.md has no '## How to recover' section" in problems[4]
    assert unindexed == ["README.md does not link rolls-back.md"]
