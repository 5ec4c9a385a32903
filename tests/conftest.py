"""Settings every test session shares.

Powertools' ``Logger``, ``Tracer`` and ``Metrics`` read their variables when a handler
module creates them, at import: these are set before any test module imports a handler,
with the values the construct sets on a function (``tuneloop.powertools_env``).
"""

from __future__ import annotations

import os

from tuneloop.powertools_env import PowertoolsEnv

TEST_POWERTOOLS_ENV = PowertoolsEnv(
    powertools_service_name="tuneloop-test", powertools_metrics_namespace="TuneLoop/test"
)
for _name, _value in TEST_POWERTOOLS_ENV.variables().items():
    os.environ.setdefault(_name, _value)
