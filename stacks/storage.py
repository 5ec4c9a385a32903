"""Storage (stateful): the data key, the S3 data lake and the DynamoDB tables."""

from __future__ import annotations

from typing import Any

from aws_cdk import CfnResource, Stack
from constructs import Construct

from stacks.config import StageConfig
from stacks.constructs.data_lake import DataLake
from stacks.constructs.encryption_key import EncryptionKey
from stacks.constructs.state_tables import StateTables
from stacks.outputs import add_outputs
from tuneloop import stack_outputs as out

PINNED_LOGICAL_IDS = {
    "DataKey": "key",
    "AccessLogsBucket": "lake.access_logs",
    "RawBucket": "lake.raw",
    "CuratedBucket": "lake.curated",
    "ArtifactsBucket": "lake.artifacts",
    "RecordsTable": "tables.records",
    "DropsTable": "tables.drops",
    "ModelVersionsTable": "tables.model_versions",
    "ControlTable": "tables.control",
    "BenchmarksTable": "tables.benchmarks",
    "AuditTable": "tables.audit",
    "IncidentsTable": "tables.incidents",
}
"""Logical ID → attribute path. Renaming a construct must not replace stored data."""


class StorageStack(Stack):
    def __init__(
        self, scope: Construct, construct_id: str, *, config: StageConfig, **kwargs: Any
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.key = EncryptionKey(
            self, "DataKey", description="TuneLoop data at rest", retain=config.retain_data
        ).key
        self.lake = DataLake(self, "DataLake", key=self.key, config=config)
        self.tables = StateTables(self, "Tables", key=self.key, config=config)
        for logical_id, path in PINNED_LOGICAL_IDS.items():
            target: Any = self
            for attribute in path.split("."):
                target = getattr(target, attribute)
            resource = target.node.default_child
            assert isinstance(resource, CfnResource), logical_id
            resource.override_logical_id(logical_id)
        lake, tables = self.lake, self.tables
        add_outputs(
            self,
            {
                out.RAW_BUCKET: (lake.raw.bucket_name, "Data drops (drops/) and quarantine/"),
                out.CURATED_BUCKET: (lake.curated.bucket_name, "Training sets (datasets/)"),
                out.ARTIFACTS_BUCKET: (
                    lake.artifacts.bucket_name,
                    "Benchmarks, job output, checkpoints, gate decisions, models",
                ),
                out.ACCESS_LOGS_BUCKET: (lake.access_logs.bucket_name, "S3 server access logs"),
                out.RECORDS_TABLE: (tables.records.table_name, "Stored records"),
                out.DROPS_TABLE: (tables.drops.table_name, "Drop manifests"),
                out.MODEL_VERSIONS_TABLE: (tables.model_versions.table_name, "Model versions"),
                out.CONTROL_TABLE: (tables.control.table_name, "Production pointer, locks"),
                out.BENCHMARKS_TABLE: (tables.benchmarks.table_name, "Custom benchmarks"),
                out.AUDIT_TABLE: (tables.audit.table_name, "Audit trail (append-only)"),
                out.INCIDENTS_TABLE: (tables.incidents.table_name, "Incidents (alarms that fired)"),
                out.DATA_KEY: (self.key.key_arn, "KMS key of the buckets and tables"),
            },
        )
