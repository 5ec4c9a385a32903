"""The DynamoDB tables of the data model (docs/contracts.md, "DynamoDB")."""

from __future__ import annotations

from aws_cdk import RemovalPolicy
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_kms as kms
from constructs import Construct

from stacks.config import StageConfig

_S = dynamodb.AttributeType.STRING


class StateTables(Construct):
    """Records (+ GSI ``by_dataset``), Drops and ModelVersions (+ GSI ``by_month`` each:
    tuneloop/month_index.py), Control, Benchmarks, Audit and Incidents (+ GSI ``by_month``).

    On-demand billing, KMS encryption with the data key, point-in-time recovery and
    deletion protection (stages that retain data).
    """

    def __init__(
        self, scope: Construct, construct_id: str, *, key: kms.IKey, config: StageConfig
    ) -> None:
        super().__init__(scope, construct_id)

        def table(table_id: str, partition_key: str, sort_key: str | None = None) -> dynamodb.Table:
            return dynamodb.Table(
                self,
                table_id,
                partition_key=dynamodb.Attribute(name=partition_key, type=_S),
                sort_key=dynamodb.Attribute(name=sort_key, type=_S) if sort_key else None,
                billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
                encryption=dynamodb.TableEncryption.CUSTOMER_MANAGED,
                encryption_key=key,
                point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                    point_in_time_recovery_enabled=True
                ),
                deletion_protection=config.retain_data,
                removal_policy=(
                    RemovalPolicy.RETAIN if config.retain_data else RemovalPolicy.DESTROY
                ),
            )

        self.records = table("Records", "record_id")
        self.records.add_global_secondary_index(
            index_name="by_dataset",
            partition_key=dynamodb.Attribute(name="dataset", type=_S),
            sort_key=dynamodb.Attribute(name="ingested_at", type=_S),
            projection_type=dynamodb.ProjectionType.ALL,
        )
        self.drops = table("Drops", "drop_id")
        # Newest drops without a Scan (segment items have no started_month: not indexed).
        self.drops.add_global_secondary_index(
            index_name="by_month",
            partition_key=dynamodb.Attribute(name="started_month", type=_S),
            sort_key=dynamodb.Attribute(name="started_at", type=_S),
            projection_type=dynamodb.ProjectionType.ALL,
        )
        self.model_versions = table("ModelVersions", "model_version")
        self.model_versions.add_global_secondary_index(
            index_name="by_month",
            partition_key=dynamodb.Attribute(name="created_month", type=_S),
            sort_key=dynamodb.Attribute(name="created_at", type=_S),
            projection_type=dynamodb.ProjectionType.ALL,
        )
        self.control = table("Control", "key")
        # Immutable benchmark versions (tuneloop/benchmarks/store.py).
        self.benchmarks = table("Benchmarks", "name", sort_key="version")
        # The audit trail (tuneloop/operations/audit.py): append-only, one partition per
        # month, events sorted by "<ISO timestamp>#<request id>".
        self.audit = table("Audit", "month", sort_key="event_id")
        # One item per alarm that fired (tuneloop/incidents/record.py), newest first by month.
        self.incidents = table("Incidents", "incident_id")
        self.incidents.add_global_secondary_index(
            index_name="by_month",
            partition_key=dynamodb.Attribute(name="opened_month", type=_S),
            sort_key=dynamodb.Attribute(name="opened_at", type=_S),
            projection_type=dynamodb.ProjectionType.ALL,
        )
