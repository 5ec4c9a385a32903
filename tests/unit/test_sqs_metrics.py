"""The local platform's SQS queue metrics: what is watched, what is put, how often."""

from __future__ import annotations

from typing import Any

from tuneloop.local.sqs_metrics import QueueMetrics, watched_queues

DLQ_ALARM = {
    "Namespace": "AWS/SQS",
    "MetricName": "ApproximateNumberOfMessagesVisible",
    "Dimensions": [{"Name": "QueueName", "Value": "ingest-dlq"}],
}


class FakeSqs:
    def __init__(self, depth: int) -> None:
        self.depth = depth

    def get_queue_url(self, QueueName: str) -> dict[str, str]:  # noqa: N803 (boto3's names)
        return {"QueueUrl": f"https://sqs/{QueueName}"}

    def get_queue_attributes(self, QueueUrl: str, AttributeNames: list[str]) -> dict[str, Any]:  # noqa: N803
        return {"Attributes": {"ApproximateNumberOfMessages": str(self.depth)}}


class FakeCloudWatch:
    def __init__(self) -> None:
        self.put: list[dict[str, Any]] = []

    def put_metric_data(self, Namespace: str, MetricData: list[dict[str, Any]]) -> None:  # noqa: N803
        self.put += [{"Namespace": Namespace, **datum} for datum in MetricData]


def test_only_sqs_queue_alarms_are_watched() -> None:
    other = {"Namespace": "AWS/SageMaker", "MetricName": "Invocation5XXErrors", "Dimensions": []}
    unknown = {**DLQ_ALARM, "MetricName": "NumberOfMessagesSent"}
    assert watched_queues([DLQ_ALARM, other, unknown]) == {
        ("ingest-dlq", "ApproximateNumberOfMessagesVisible")
    }


def test_the_queue_depth_is_put_and_not_again_before_it_is_due() -> None:
    cloudwatch, metrics = FakeCloudWatch(), QueueMetrics(every_seconds=3600)
    assert metrics.publish(cloudwatch, FakeSqs(depth=2), [DLQ_ALARM]) == 1
    assert metrics.publish(cloudwatch, FakeSqs(depth=5), [DLQ_ALARM]) == 0
    (datum,) = cloudwatch.put
    assert datum["Namespace"] == "AWS/SQS" and datum["Value"] == 2.0
    assert datum["Dimensions"] == [{"Name": "QueueName", "Value": "ingest-dlq"}]
    assert QueueMetrics(every_seconds=0).publish(cloudwatch, FakeSqs(depth=5), [DLQ_ALARM]) == 1
