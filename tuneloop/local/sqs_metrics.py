"""SQS's queue metrics (``AWS/SQS``) on the local platform.

Gap: moto publishes no CloudWatch metrics for queues. AWS publishes each queue's
``ApproximateNumberOfMessagesVisible`` (and the others below) every minute, from the queue's
attributes; the ingest dead-letter queue's alarm watches it. Before each evaluation the
alarm evaluator publishes, for every queue an alarm watches, the current value of the watched
metric (at most every :data:`PUBLISH_SECONDS` per queue and metric), as SQS would.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Iterable
from typing import Any

NAMESPACE = "AWS/SQS"
PUBLISH_SECONDS = 10.0
# CloudWatch metric → the queue attribute it reports.
ATTRIBUTE_OF_METRIC = {
    "ApproximateNumberOfMessagesVisible": "ApproximateNumberOfMessages",
    "ApproximateNumberOfMessagesNotVisible": "ApproximateNumberOfMessagesNotVisible",
    "ApproximateNumberOfMessagesDelayed": "ApproximateNumberOfMessagesDelayed",
}


def watched_queues(alarms: Iterable[dict[str, Any]]) -> set[tuple[str, str]]:
    """(queue name, metric) of every alarm on an SQS queue metric we can report."""
    found = set()
    for alarm in alarms:
        if (
            alarm.get("Namespace") != NAMESPACE
            or alarm.get("MetricName") not in ATTRIBUTE_OF_METRIC
        ):
            continue
        for dimension in alarm.get("Dimensions") or ():
            if dimension.get("Name") == "QueueName":
                found.add((str(dimension["Value"]), str(alarm["MetricName"])))
    return found


class QueueMetrics:
    """Publishes the watched queue metrics, each at most every ``every_seconds``."""

    def __init__(self, every_seconds: float = PUBLISH_SECONDS) -> None:
        self._every = every_seconds
        self._published: dict[tuple[str, str], float] = {}

    def publish(self, cloudwatch: Any, sqs: Any, alarms: Iterable[dict[str, Any]]) -> int:
        """Publish what is due; returns how many datapoints were put."""
        now = time.monotonic()
        put = 0
        for queue, metric in sorted(watched_queues(alarms)):
            if now - self._published.get((queue, metric), -self._every) < self._every:
                continue
            try:
                url = sqs.get_queue_url(QueueName=queue)["QueueUrl"]
            except Exception:  # the queue is gone (a stack deleted): nothing to report
                continue
            attribute = ATTRIBUTE_OF_METRIC[metric]
            value = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=[attribute])
            cloudwatch.put_metric_data(
                Namespace=NAMESPACE,
                MetricData=[
                    {
                        "MetricName": metric,
                        "Dimensions": [{"Name": "QueueName", "Value": queue}],
                        "Timestamp": datetime.datetime.now(datetime.UTC),
                        "Value": float(value["Attributes"].get(attribute, 0)),
                        "Unit": "Count",
                    }
                ],
            )
            self._published[(queue, metric)] = now
            put += 1
        return put
