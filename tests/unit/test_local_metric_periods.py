"""The local platform's CloudWatch cuts statistics periods from the query's StartTime (as
CloudWatch does), not from the first datapoint it finds (moto's own behaviour)."""

from __future__ import annotations

import datetime

import boto3
from moto import mock_aws

from tuneloop.local import metric_periods

T0 = datetime.datetime(2026, 12, 6, 8, 0, 0, tzinfo=datetime.UTC)


def _put(cloudwatch: object, seconds: int, value: float) -> None:
    cloudwatch.put_metric_data(  # type: ignore[attr-defined]
        Namespace="TuneLoop/Endpoint",
        MetricData=[
            {
                "MetricName": "EmptyAnswer",
                "Dimensions": [{"Name": "EndpointName", "Value": "e"}],
                "Timestamp": T0 + datetime.timedelta(seconds=seconds),
                "Value": value,
            }
        ],
    )


def _averages(cloudwatch: object, start_seconds: int) -> list[tuple[int, float]]:
    points = cloudwatch.get_metric_statistics(  # type: ignore[attr-defined]
        Namespace="TuneLoop/Endpoint",
        MetricName="EmptyAnswer",
        Dimensions=[{"Name": "EndpointName", "Value": "e"}],
        StartTime=T0 + datetime.timedelta(seconds=start_seconds),
        EndTime=T0 + datetime.timedelta(seconds=300),
        Period=60,
        Statistics=["Average"],
    )["Datapoints"]
    return sorted((int((p["Timestamp"] - T0).total_seconds()), p["Average"]) for p in points)


@mock_aws
def test_periods_start_at_the_query_start_whatever_came_first() -> None:
    # Given good answers, then only empty answers from 100 s on
    metric_periods.install()
    cloudwatch = boto3.client("cloudwatch", region_name="us-east-1")
    _put(cloudwatch, 30, 0.0)
    for second in range(100, 160, 5):
        _put(cloudwatch, second, 1.0)
    _put(cloudwatch, 170, 0.0)
    # When the periods are asked from 100 s (the moment the failure began)
    averages = _averages(cloudwatch, 100)
    # Then the first period holds only the empty answers, stamped at the query's start
    assert averages[0] == (100, 1.0)
    assert averages[1] == (160, 0.0)
    # And from 0 s the periods are [0, 60), [60, 120), [120, 180), not moto's [30, 90), ...
    assert [start for start, _ in _averages(cloudwatch, 0)] == [0, 60, 120]


@mock_aws
def test_installing_twice_keeps_one_patch() -> None:
    metric_periods.install()
    patched = metric_periods.models.CloudWatchBackend.get_metric_statistics
    metric_periods.install()
    assert metric_periods.models.CloudWatchBackend.get_metric_statistics is patched
