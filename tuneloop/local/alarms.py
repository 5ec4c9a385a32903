"""Evaluates CloudWatch alarms against the emulator's metrics and fires their actions.

Gap: moto stores metrics and alarms but never evaluates them. This evaluator applies each
single-metric alarm's statistic, period, evaluation periods and threshold to the stored
datapoints, moves the alarm's state through the CloudWatch API, and on a transition
publishes CloudWatch's alarm message to the SNS topics among the alarm's actions.

Reading metrics and moving the alarm's state is CloudWatch's own work (internal
credentials, which no account policy governs); publishing an action is a delivery as
``cloudwatch.amazonaws.com`` with the alarm as ``aws:SourceArn``, which the topic's policy
must allow. A refused publish is dropped, as CloudWatch drops it, and reported.

Listeners (``add_listener``) hear of each state change before its actions are delivered;
the local endpoint updates use this to watch their auto-rollback alarms
(``tuneloop.local.traffic_split``). ``wait_for_actions`` returns once the evaluation pass
running now has delivered its actions.
"""

from __future__ import annotations

import datetime
import json
import operator
import threading
from collections.abc import Callable
from typing import Any

import boto3
from botocore.exceptions import ClientError

from tuneloop.local.iam.credentials import CredentialRegistry
from tuneloop.local.sqs_metrics import QueueMetrics

AlarmListener = Callable[[str, str], None]
"""Called with (alarm name, new state) on a state change, before the alarm's actions."""

_COMPARE: dict[str, Callable[[float, float], bool]] = {
    "GreaterThanThreshold": operator.gt,
    "GreaterThanOrEqualToThreshold": operator.ge,
    "LessThanThreshold": operator.lt,
    "LessThanOrEqualToThreshold": operator.le,
}


def _datapoint_value(point: dict[str, Any], alarm: dict[str, Any]) -> float | None:
    if alarm.get("Statistic"):
        return point.get(alarm["Statistic"])
    extended = point.get("ExtendedStatistics", {})
    return extended.get(alarm.get("ExtendedStatistic", ""))


# What an evaluation range with no datapoint means, by the alarm's TreatMissingData
# (CloudWatch, "Configuring how CloudWatch alarms treat missing data"): None keeps the state.
_MISSING_DATA_STATE: dict[str, str | None] = {
    "notBreaching": "OK",
    "breaching": "ALARM",
    "ignore": None,
    "missing": "INSUFFICIENT_DATA",
}
_ACTIONS_OF_STATE = {
    "ALARM": "AlarmActions",
    "OK": "OKActions",
    "INSUFFICIENT_DATA": "InsufficientDataActions",
}


def breaching_state(alarm: dict[str, Any], datapoints: list[dict[str, Any]]) -> str | None:
    """The state the datapoints put the alarm in: ALARM, OK, or, with no data, what its
    ``TreatMissingData`` says (None: unchanged)."""
    compare = _COMPARE.get(alarm["ComparisonOperator"])
    if compare is None:
        return None
    periods = int(alarm.get("EvaluationPeriods", 1))
    needed = int(alarm.get("DatapointsToAlarm") or periods)
    recent = sorted(datapoints, key=lambda p: p["Timestamp"])[-periods:]
    values = [v for v in (_datapoint_value(p, alarm) for p in recent) if v is not None]
    if not values:
        return _MISSING_DATA_STATE.get(str(alarm.get("TreatMissingData") or "missing"))
    breaching = sum(1 for value in values if compare(float(value), float(alarm["Threshold"])))
    return "ALARM" if breaching >= needed else "OK"


class AlarmEvaluator:
    def __init__(
        self, interval_seconds: float = 1.0, *, credentials: CredentialRegistry | None = None
    ) -> None:
        self._interval = interval_seconds
        self._credentials = credentials
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.fired: list[dict[str, Any]] = []  # alarm messages of transitions to ALARM
        self._listeners: list[AlarmListener] = []
        self._passes = threading.Condition()
        self._passes_started = 0
        self._passes_running: set[int] = set()
        self._queue_metrics = QueueMetrics()

    def add_listener(self, listener: AlarmListener) -> None:
        with self._passes:
            self._listeners.append(listener)

    def remove_listener(self, listener: AlarmListener) -> None:
        with self._passes:
            if listener in self._listeners:
                self._listeners.remove(listener)

    def wait_for_actions(self, timeout: float = 120.0) -> bool:
        """Block until the evaluation pass under way (if any) has delivered its actions."""
        with self._passes:
            target = self._passes_started
            return self._passes.wait_for(
                lambda: all(number > target for number in self._passes_running), timeout
            )

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="alarm-evaluator", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self.evaluate_once()
            except Exception as exc:  # keep evaluating; report what broke
                print(f"[local] alarm evaluation failed: {exc}", flush=True)

    def evaluate_once(self) -> list[str]:
        """Evaluate every metric alarm once; return the names that moved to ALARM."""
        with self._passes:
            self._passes_started += 1
            number = self._passes_started
            self._passes_running.add(number)
        try:
            return self._evaluate()
        finally:
            with self._passes:
                self._passes_running.discard(number)
                self._passes.notify_all()

    def _evaluate(self) -> list[str]:
        cloudwatch: Any = self._client("cloudwatch")
        moved = []
        alarms = cloudwatch.describe_alarms(AlarmTypes=["MetricAlarm"])["MetricAlarms"]
        # Gap: SQS publishes its queue metrics itself on AWS (tuneloop/local/sqs_metrics.py).
        self._queue_metrics.publish(cloudwatch, self._client("sqs"), alarms)
        for alarm in alarms:
            if not alarm.get("MetricName"):
                continue  # metric-math alarms are not evaluated locally
            new_state = breaching_state(alarm, self._datapoints(cloudwatch, alarm))
            if new_state is None or new_state == alarm["StateValue"]:
                continue
            reason = f"Threshold Crossed: local evaluation moved the alarm to {new_state}"
            cloudwatch.set_alarm_state(
                AlarmName=alarm["AlarmName"], StateValue=new_state, StateReason=reason
            )
            self._tell_listeners(alarm["AlarmName"], new_state)
            actions = alarm.get(_ACTIONS_OF_STATE[new_state], [])
            self._notify(alarm, alarm["StateValue"], new_state, reason, actions)
            if new_state == "ALARM":
                moved.append(alarm["AlarmName"])
        return moved

    def _tell_listeners(self, alarm_name: str, new_state: str) -> None:
        with self._passes:
            listeners = list(self._listeners)
        for listener in listeners:
            try:
                listener(alarm_name, new_state)
            except Exception as exc:  # a listener's failure must not stop the evaluation
                print(f"[local] alarm listener failed on {alarm_name}: {exc}", flush=True)

    def _client(self, service: str, source_arn: str | None = None) -> Any:
        """CloudWatch's own client (internal), or its delivery client for ``source_arn``."""
        if self._credentials is None:
            make: Any = boto3.client
            return make(service)
        if source_arn is None:
            credentials = self._credentials.internal
        else:
            credentials = self._credentials.for_service("cloudwatch.amazonaws.com", source_arn)
        return credentials.client(service)

    @staticmethod
    def _datapoints(cloudwatch: Any, alarm: dict[str, Any]) -> list[dict[str, Any]]:
        period = int(alarm["Period"])
        # The last EvaluationPeriods whole periods up to now (periods start at StartTime,
        # metric_periods.py); the end is after now, as moto excludes a datapoint at `end`.
        end = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
        end += datetime.timedelta(seconds=1)
        start = end - datetime.timedelta(seconds=period * int(alarm["EvaluationPeriods"]))
        query: dict[str, Any] = {
            "Namespace": alarm["Namespace"],
            "MetricName": alarm["MetricName"],
            "Dimensions": alarm.get("Dimensions", []),
            "StartTime": start,
            "EndTime": end,
            "Period": period,
        }
        if alarm.get("Statistic"):
            query["Statistics"] = [alarm["Statistic"]]
        else:
            query["ExtendedStatistics"] = [alarm["ExtendedStatistic"]]
        return list(cloudwatch.get_metric_statistics(**query)["Datapoints"])

    def _notify(
        self, alarm: dict[str, Any], old: str, new: str, reason: str, actions: list[str]
    ) -> None:
        message = {
            "AlarmName": alarm["AlarmName"],
            "AlarmDescription": alarm.get("AlarmDescription"),
            "AlarmArn": alarm["AlarmArn"],
            "NewStateValue": new,
            "OldStateValue": old,
            "NewStateReason": reason,
            "StateChangeTime": datetime.datetime.now(datetime.UTC).isoformat(),
            "Trigger": {
                "MetricName": alarm["MetricName"],
                "Namespace": alarm["Namespace"],
                "Statistic": alarm.get("Statistic") or alarm.get("ExtendedStatistic"),
                "Dimensions": [
                    {"name": d["Name"], "value": d["Value"]} for d in alarm.get("Dimensions", [])
                ],
                "Period": alarm["Period"],
                "EvaluationPeriods": alarm["EvaluationPeriods"],
                "ComparisonOperator": alarm["ComparisonOperator"],
                "Threshold": alarm["Threshold"],
            },
        }
        if new == "ALARM":
            self.fired.append(message)
        sns: Any = self._client("sns", alarm["AlarmArn"])
        for action in actions:
            if ":sns:" not in action:
                continue
            try:
                sns.publish(
                    TopicArn=action,
                    Subject=f'{new}: "{alarm["AlarmName"]}"'[:100],
                    Message=json.dumps(message),
                )
            except ClientError as exc:  # CloudWatch records a failed action and moves on
                print(
                    f"[local] alarm {alarm['AlarmName']} could not publish to {action}: {exc}",
                    flush=True,
                )
