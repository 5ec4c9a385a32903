"""Storage: pinned logical IDs, retention and protection of the stateful resources."""

from __future__ import annotations

from typing import Any

from stacks.pipeline import MODEL_PACKAGE_GROUP_LOGICAL_ID
from tests.infra.conftest import Assembly

# Written out (not imported from stacks.storage) so that renaming one fails this test.
PINNED = {
    "DataKey": "AWS::KMS::Key",
    "AccessLogsBucket": "AWS::S3::Bucket",
    "RawBucket": "AWS::S3::Bucket",
    "CuratedBucket": "AWS::S3::Bucket",
    "ArtifactsBucket": "AWS::S3::Bucket",
    "RecordsTable": "AWS::DynamoDB::Table",
    "DropsTable": "AWS::DynamoDB::Table",
    "ModelVersionsTable": "AWS::DynamoDB::Table",
    "ControlTable": "AWS::DynamoDB::Table",
    "BenchmarksTable": "AWS::DynamoDB::Table",
    "AuditTable": "AWS::DynamoDB::Table",
    "IncidentsTable": "AWS::DynamoDB::Table",
}
TABLE_KEYS = {
    "RecordsTable": "record_id",
    "DropsTable": "drop_id",
    "ModelVersionsTable": "model_version",
    "ControlTable": "key",
    "BenchmarksTable": "name",
    "AuditTable": "month",
    "IncidentsTable": "incident_id",
}


def test_stateful_resources_have_pinned_logical_ids(dev: Assembly) -> None:
    resources = dev.template("Storage")["Resources"]
    for logical_id, resource_type in PINNED.items():
        assert resources[logical_id]["Type"] == resource_type, logical_id
    stateful = {"AWS::KMS::Key", "AWS::S3::Bucket", "AWS::DynamoDB::Table"}
    assert {k for k, r in resources.items() if r["Type"] in stateful} == set(PINNED)
    pipeline = dev.template("Pipeline")["Resources"]
    assert pipeline[MODEL_PACKAGE_GROUP_LOGICAL_ID]["Type"] == "AWS::SageMaker::ModelPackageGroup"
    assert MODEL_PACKAGE_GROUP_LOGICAL_ID == "ModelPackageGroup"


def test_dev_retains_data_and_local_does_not(dev: Assembly, local: Assembly) -> None:
    for logical_id in PINNED:
        assert dev.template("Storage")["Resources"][logical_id]["DeletionPolicy"] == "Retain"
        assert local.template("Storage")["Resources"][logical_id]["DeletionPolicy"] == "Delete"


def _bucket(assembly: Assembly, logical_id: str) -> dict[str, Any]:
    return dict(assembly.template("Storage")["Resources"][logical_id]["Properties"])


def test_data_buckets_are_versioned_kms_encrypted_logged_and_private(dev: Assembly) -> None:
    for logical_id in ("RawBucket", "CuratedBucket", "ArtifactsBucket"):
        props = _bucket(dev, logical_id)
        assert props["VersioningConfiguration"] == {"Status": "Enabled"}
        rule = props["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]
        assert rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "aws:kms"
        assert rule["ServerSideEncryptionByDefault"]["KMSMasterKeyID"] == {
            "Fn::GetAtt": ["DataKey", "Arn"]
        }
        assert props["LoggingConfiguration"]["DestinationBucketName"] == {"Ref": "AccessLogsBucket"}
        assert all(props["PublicAccessBlockConfiguration"].values())
        assert props["LifecycleConfiguration"]["Rules"]
    logs = _bucket(dev, "AccessLogsBucket")
    assert (
        logs["BucketEncryption"]["ServerSideEncryptionConfiguration"][0][
            "ServerSideEncryptionByDefault"
        ]["SSEAlgorithm"]
        == "AES256"
    )


def test_every_bucket_denies_non_ssl_requests(dev: Assembly) -> None:
    policies = dev.template("Storage")["Resources"]
    secured = set()
    for resource in policies.values():
        if resource["Type"] != "AWS::S3::BucketPolicy":
            continue
        for statement in resource["Properties"]["PolicyDocument"]["Statement"]:
            if (
                statement["Effect"] == "Deny"
                and statement.get("Condition", {}).get("Bool", {}).get("aws:SecureTransport")
                == "false"
            ):
                secured.add(resource["Properties"]["Bucket"]["Ref"])
    assert secured == {"AccessLogsBucket", "RawBucket", "CuratedBucket", "ArtifactsBucket"}


def test_raw_bucket_sends_events_to_eventbridge_through_its_own_property(dev: Assembly) -> None:
    props = _bucket(dev, "RawBucket")
    assert props["NotificationConfiguration"] == {
        "EventBridgeConfiguration": {"EventBridgeEnabled": True}
    }
    assert "NotificationConfiguration" not in _bucket(dev, "CuratedBucket")


def test_tables_follow_the_data_model(dev: Assembly) -> None:
    resources = dev.template("Storage")["Resources"]
    for logical_id, key in TABLE_KEYS.items():
        props = resources[logical_id]["Properties"]
        assert props["KeySchema"][0] == {"AttributeName": key, "KeyType": "HASH"}
        assert len(props["KeySchema"]) == (
            2 if logical_id in ("BenchmarksTable", "AuditTable") else 1
        )
        assert props["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True
        assert props["SSESpecification"]["SSEEnabled"] is True
        assert props["SSESpecification"]["KMSMasterKeyId"] == {"Fn::GetAtt": ["DataKey", "Arn"]}
        assert props["DeletionProtectionEnabled"] is True
    benchmarks_keys = resources["BenchmarksTable"]["Properties"]["KeySchema"]
    assert benchmarks_keys[1] == {"AttributeName": "version", "KeyType": "RANGE"}
    audit_keys = resources["AuditTable"]["Properties"]["KeySchema"]
    assert audit_keys[1] == {"AttributeName": "event_id", "KeyType": "RANGE"}
    (index,) = resources["RecordsTable"]["Properties"]["GlobalSecondaryIndexes"]
    assert index["IndexName"] == "by_dataset"
    assert index["KeySchema"] == [
        {"AttributeName": "dataset", "KeyType": "HASH"},
        {"AttributeName": "ingested_at", "KeyType": "RANGE"},
    ]


def test_training_checkpoints_expire_and_models_do_not(dev: Assembly) -> None:
    rules = _bucket(dev, "ArtifactsBucket")["LifecycleConfiguration"]["Rules"]
    expiring = {
        rule.get("Prefix"): rule["ExpirationInDays"] for rule in rules if "ExpirationInDays" in rule
    }
    assert expiring == {"checkpoints/": 7}


def test_checkpoints_outlive_the_longest_training_job() -> None:
    import dataclasses

    from stacks.config import load_stage_config
    from stacks.constructs.data_lake import checkpoint_retention_days

    dev = load_stage_config("dev")
    assert checkpoint_retention_days(dev) == 7
    long_runs = dataclasses.replace(
        dev, training_max_runtime_minutes=20 * 24 * 60, training_spot_max_wait_minutes=21 * 24 * 60
    )
    assert checkpoint_retention_days(long_runs) == 22
