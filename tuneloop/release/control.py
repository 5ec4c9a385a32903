"""The Control item ``key="production"``: what the endpoint serves and what to go back to.

A model line on an endpoint of inference components has its own item,
``production#<line>`` (``production_key``), with the same fields."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from tuneloop import aws
from tuneloop.release.model_versions import now_iso

PRODUCTION_KEY = "production"


def production_key(model_line: str | None = None) -> str:
    """The Control key of a model line's production item (the endpoint's own without one)."""
    return f"{PRODUCTION_KEY}#{model_line}" if model_line else PRODUCTION_KEY


class ProductionChangedError(RuntimeError):
    """Control ``production`` changed between reading and writing it (a concurrent deploy or
    rollback); nothing was overwritten. Re-run the step after checking the endpoint."""


@dataclass(frozen=True)
class Release:
    """One deployed model: the version, the endpoint config serving it, its artifact."""

    model_version: str
    endpoint_config_name: str
    model_data_url: str

    def to_item(self) -> dict[str, str]:
        return {
            "model_version": self.model_version,
            "endpoint_config_name": self.endpoint_config_name,
            "model_data_url": self.model_data_url,
        }

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> Release:
        return cls(
            model_version=str(item.get("model_version", "")),
            endpoint_config_name=str(item.get("endpoint_config_name", "")),
            model_data_url=str(item.get("model_data_url", "")),
        )


@dataclass(frozen=True)
class Production:
    current: Release
    last_known_good: Release | None
    item: dict[str, Any]  # the raw item, for fields other steps keep there


def read_production(control_table: str, key: str = PRODUCTION_KEY) -> Production | None:
    item = aws.table(control_table).get_item(Key={"key": key}, ConsistentRead=True).get("Item")
    if not item or not item.get("model_version"):
        return None
    lkg = item.get("last_known_good")
    return Production(
        current=Release.from_item(dict(item)),
        last_known_good=Release.from_item(dict(lkg)) if isinstance(lkg, dict) and lkg else None,
        item=dict(item),
    )


def replace_production(
    control_table: str,
    new: Release,
    *,
    last_known_good: Release | None,
    expected: Release | None,
    extra: dict[str, Any] | None = None,
    key: str = PRODUCTION_KEY,
) -> None:
    """Write the production item, but only if it still holds ``expected`` (None: absent)."""
    item: dict[str, Any] = {
        "key": key,
        **new.to_item(),
        "updated_at": now_iso(),
        **(extra or {}),
    }
    if last_known_good is not None:
        item["last_known_good"] = last_known_good.to_item()
    condition: dict[str, Any]
    if expected is None:
        condition = {"ConditionExpression": "attribute_not_exists(#mv) OR #mv = :empty"}
        names = {"#mv": "model_version"}
        values: dict[str, Any] = {":empty": ""}
    else:
        condition = {"ConditionExpression": "#mv = :mv AND #config = :config"}
        names = {"#mv": "model_version", "#config": "endpoint_config_name"}
        values = {":mv": expected.model_version, ":config": expected.endpoint_config_name}
    try:
        aws.table(control_table).put_item(
            Item=item,
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=values,
            **condition,
        )
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
            was = expected.model_version if expected else "nothing"
            raise ProductionChangedError(
                f"Control {key!r} no longer holds {was}: another deployment or rollback "
                f"changed it; {new.model_version} was not promoted"
            ) from exc
        raise
