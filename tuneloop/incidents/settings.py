"""The stage's incident settings (``StageConfig.incidents``), validated at synth."""

from __future__ import annotations

import re
from dataclasses import dataclass

# Secrets Manager names: 1-512 of letters, digits and /_+=.@- (an ARN is accepted too).
_SECRET_NAME = re.compile(r"^(arn:[\w-]+:secretsmanager:[\w-]+:\d{12}:secret:)?[\w/+=.@-]{1,512}$")


@dataclass(frozen=True, kw_only=True)
class IncidentSettings:
    """What an incident records, where it is announced, and the repeated-failure guard."""

    max_automatic_rollbacks: int = 3
    """After this many automatic rollbacks within ``rollback_window_hours``, the
    repeated-failure guard freezes automatic deployment."""
    rollback_window_hours: int = 24
    metric_minutes_before: int = 30
    """How much of the alarm's metric before the state change an incident keeps."""
    webhook_secret_name: str = ""
    """A Secrets Manager secret whose value is a Slack- or Teams-compatible incoming webhook
    URL; empty: notifications go to the SNS notify topic only."""

    def problems(self) -> list[tuple[str, str]]:
        found: list[tuple[str, str]] = []
        for name in ("max_automatic_rollbacks", "rollback_window_hours", "metric_minutes_before"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                found.append((name, f"must be a positive integer, got {value!r}"))
        if self.metric_minutes_before > 24 * 60:
            found.append(("metric_minutes_before", "must be at most 1440 (a day)"))
        secret = self.webhook_secret_name
        if not isinstance(secret, str) or (secret and not _SECRET_NAME.match(secret)):
            found.append(
                (
                    "webhook_secret_name",
                    f"must be empty or a Secrets Manager secret name or ARN, got {secret!r}",
                )
            )
        return found
