"""Build the SQS batches the ingest Lambda receives (EventBridge S3 events in SQS bodies)."""

from __future__ import annotations

import json
from typing import Any

from tests.integration.aws_fixtures import REGION
from tuneloop import aws


def put_drop(bucket: str, key: str, body: bytes) -> dict[str, Any]:
    """Upload a drop; return the ``detail.object`` EventBridge would report for it."""
    s3 = aws.client("s3")
    etag = s3.put_object(Bucket=bucket, Key=key, Body=body)["ETag"].strip('"')
    return {"key": key, "size": len(body), "etag": etag, "sequencer": "0001"}


def object_created(bucket: str, detail_object: dict[str, Any]) -> str:
    return json.dumps(
        {
            "version": "0",
            "id": "17793124-05d4-b198-2fde-7ededc63b103",
            "detail-type": "Object Created",
            "source": "aws.s3",
            "account": "123456789012",
            "region": REGION,
            "resources": [f"arn:aws:s3:::{bucket}"],
            "detail": {
                "version": "0",
                "bucket": {"name": bucket},
                "object": detail_object,
                "reason": "PutObject",
            },
        }
    )


def sqs_batch(*bodies: str) -> dict[str, Any]:
    return {
        "Records": [
            {
                "messageId": f"msg-{index}",
                "receiptHandle": f"handle-{index}",
                "body": body,
                "attributes": {"ApproximateReceiveCount": "1"},
                "messageAttributes": {},
                "md5OfBody": "",
                "eventSource": "aws:sqs",
                "eventSourceARN": f"arn:aws:sqs:{REGION}:123456789012:tuneloop-ingest",
                "awsRegion": REGION,
            }
            for index, body in enumerate(bodies, start=1)
        ]
    }
