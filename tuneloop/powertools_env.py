"""The Powertools variables every TuneLoop function runs with.

Powertools reads these itself when a handler module creates its ``Logger``, ``Tracer`` and
``Metrics``; no handler reads them. The construct sets exactly :meth:`PowertoolsEnv.variables`
on each function, and the infra tests check each function's environment against its
handler's ``Env`` model plus :class:`PowertoolsEnv`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

METRICS_NAMESPACE_PREFIX = "TuneLoop"


@dataclass(frozen=True)
class PowertoolsEnv:
    # The service dimension of every metric and the ``service`` key of every log line.
    powertools_service_name: str
    # One namespace per stage, so two stages in one account never mix their metrics.
    powertools_metrics_namespace: str
    log_level: str = "INFO"

    @classmethod
    def for_function(cls, name: str, *, stage: str) -> PowertoolsEnv:
        """The settings of the function running ``lambdas/<name>/handler.py`` in ``stage``."""
        return cls(
            powertools_service_name=service_name(name),
            powertools_metrics_namespace=metrics_namespace(stage),
        )

    def variables(self) -> dict[str, str]:
        """As environment variables (field ``log_level`` is ``LOG_LEVEL``)."""
        return {f.name.upper(): str(getattr(self, f.name)) for f in dataclasses.fields(self)}


def service_name(name: str) -> str:
    return f"tuneloop-{name.replace('_', '-')}"


def metrics_namespace(stage: str) -> str:
    return f"{METRICS_NAMESPACE_PREFIX}/{stage}"
