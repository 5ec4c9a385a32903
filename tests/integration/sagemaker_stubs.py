"""botocore Stubber helpers for the SageMaker calls moto does not implement (update_endpoint)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

ENDPOINT_ARN = "arn:aws:sagemaker:us-east-1:123456789012:endpoint/tuneloop-endpoint"


def endpoint_description(name: str, config: str, status: str = "InService") -> dict[str, Any]:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    return {
        "EndpointName": name,
        "EndpointArn": ENDPOINT_ARN,
        "EndpointConfigName": config,
        "EndpointStatus": status,
        "CreationTime": now,
        "LastModifiedTime": now,
    }


class CapturedCalls:
    """Records the parameters of every call a client makes (register on its events)."""

    def __init__(self, client: Any) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        client.meta.events.register("provide-client-params.sagemaker.*", self._capture)

    def _capture(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        self.calls.append((model.name, dict(params)))

    def params(self, operation: str) -> dict[str, Any]:
        matches = [params for name, params in self.calls if name == operation]
        assert len(matches) == 1, f"{operation} called {len(matches)} times"
        return matches[0]
