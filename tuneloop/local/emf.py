"""CloudWatch Logs' embedded-metric-format extraction, for the local endpoints' log lines.

Gap: the emulator has no CloudWatch Logs ingestion, so nothing turns the serving
container's EMF lines into metrics. This module does what CloudWatch Logs does with a
valid EMF record: one metric datum per metric per dimension set of each
``_aws.CloudWatchMetrics`` directive, stamped with ``_aws.Timestamp``; lines that are not
EMF records are skipped, as CloudWatch keeps them as plain log events.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Iterable
from typing import Any


def records(lines: Iterable[str]) -> list[dict[str, Any]]:
    """The EMF records among log lines (JSON objects with an ``_aws`` directive)."""
    found = []
    for line in lines:
        text = line.strip()
        if not text.startswith("{"):
            continue
        try:
            record = json.loads(text)
        except ValueError:
            continue
        if isinstance(record, dict) and isinstance(record.get("_aws"), dict):
            found.append(record)
    return found


def metric_data(record: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Namespace → ``PutMetricData`` datums of one EMF record."""
    directive = record["_aws"]
    stamp = datetime.datetime.fromtimestamp(int(directive["Timestamp"]) / 1000, datetime.UTC)
    by_namespace: dict[str, list[dict[str, Any]]] = {}
    for metrics in directive.get("CloudWatchMetrics", []):
        datums = by_namespace.setdefault(str(metrics["Namespace"]), [])
        for dimension_set in metrics.get("Dimensions", [[]]):
            if not all(isinstance(record.get(name), str) for name in dimension_set):
                continue  # CloudWatch rejects a directive whose dimension is not a string
            dimensions = [{"Name": name, "Value": record[name]} for name in dimension_set]
            for metric in metrics.get("Metrics", []):
                value = record.get(metric["Name"])
                if isinstance(value, bool) or not isinstance(value, int | float):
                    continue
                datum: dict[str, Any] = {
                    "MetricName": metric["Name"],
                    "Value": float(value),
                    "Dimensions": dimensions,
                    "Timestamp": stamp,
                }
                if metric.get("Unit"):
                    datum["Unit"] = metric["Unit"]
                datums.append(datum)
    return by_namespace


def publish(cloudwatch: Any, lines: Iterable[str]) -> int:
    """Put the metrics of every EMF record among ``lines``; return how many datums."""
    count = 0
    for record in records(lines):
        for namespace, datums in metric_data(record).items():
            for start in range(0, len(datums), 1000):  # PutMetricData's limit per call
                cloudwatch.put_metric_data(
                    Namespace=namespace, MetricData=datums[start : start + 1000]
                )
            count += len(datums)
    return count
