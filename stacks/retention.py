"""Stage-config retention days → CDK's ``RetentionDays`` enum."""

from __future__ import annotations

from aws_cdk import aws_logs as logs

from stacks.config import LOG_RETENTION_DAYS

# RetentionDays lists the periods in ascending order, then INFINITE.
_BY_DAYS = dict(zip(sorted(LOG_RETENTION_DAYS), list(logs.RetentionDays)[:-1], strict=True))


def log_retention(days: int) -> logs.RetentionDays:
    """The enum member for ``days`` (validated by the stage config)."""
    return _BY_DAYS[days]
