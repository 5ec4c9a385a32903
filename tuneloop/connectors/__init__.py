"""Pull connectors: SQL tables and JSON APIs → data drops in the raw bucket.

Decisions and settings: docs/connectors.md.
"""

from tuneloop.connectors.runner import RunResult, run_connector
from tuneloop.connectors.settings import (
    ConnectorConfigError,
    ConnectorSettings,
    HttpSettings,
    SqlSettings,
    connector_from_dict,
    parse_connectors,
)

__all__ = [
    "ConnectorConfigError",
    "ConnectorSettings",
    "HttpSettings",
    "RunResult",
    "SqlSettings",
    "connector_from_dict",
    "parse_connectors",
    "run_connector",
]
