"""Errors that mean "the input is wrong", reported to the user without a stack trace."""

from __future__ import annotations


class EvaluationInputError(ValueError):
    """A hyperparameter, channel or model archive of the Evaluate job is unusable."""


class BenchmarkError(EvaluationInputError):
    """A benchmark file is invalid; the message names the file, line and field."""

    def __init__(self, file: str, line: int | None, field: str | None, problem: str) -> None:
        self.file = file
        self.line = line
        self.field = field
        self.problem = problem
        where = file if line is None else f"{file} line {line}"
        if field is not None:
            where += f", field {field!r}"
        super().__init__(f"{where}: {problem}")
