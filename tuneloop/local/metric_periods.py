"""CloudWatch statistics in periods that start where AWS starts them.

Gap: moto's ``GetMetricStatistics`` starts its periods at the first datapoint it finds, so
the same query puts the same datapoints into different periods depending on what came first.
CloudWatch starts them at ``StartTime`` (which it rounds down to the minute; here it is kept
to the second, so that the local alarm evaluator's windows end at the moment it evaluates):
an incident's values around an alarm then fall into the periods the alarm saw.
"""

from __future__ import annotations

import datetime
from typing import Any

from moto.cloudwatch import models


def install() -> None:
    """Re-cut moto's periods from ``StartTime`` (idempotent)."""
    backend = models.CloudWatchBackend
    if getattr(backend.get_metric_statistics, "tuneloop_periods", False):
        return
    moto_statistics = backend.get_metric_statistics

    def get_metric_statistics(
        self: Any,
        namespace: str,
        metric_name: str,
        start_time: datetime.datetime,
        end_time: datetime.datetime,
        period: int,
        stats: list[str],
        dimensions: list[dict[str, str]],
        unit: str | None = None,
    ) -> list[Any]:
        start = start_time.replace(microsecond=0)  # as moto keeps it
        found = moto_statistics(
            self, namespace, metric_name, start, end_time, period, stats, dimensions, unit
        )
        data = sorted(
            (datum for statistic in found for datum in statistic.metric_data),
            key=lambda datum: datum.timestamp,
        )
        step = datetime.timedelta(seconds=period)
        cut: dict[int, Any] = {}
        for datum in data:
            index = int((datum.timestamp - start) // step)
            if index not in cut:
                cut[index] = models.Statistics(stats, start + index * step)
            cut[index].metric_data.append(datum)
            cut[index].unit = datum.unit
        return [cut[index] for index in sorted(cut)]

    get_metric_statistics.tuneloop_periods = True  # type: ignore[attr-defined]
    backend.get_metric_statistics = get_metric_statistics  # type: ignore[method-assign]
