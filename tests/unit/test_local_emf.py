"""The local CloudWatch Logs EMF extraction and the data capture layout."""

from __future__ import annotations

import base64
import datetime
import json
import re
from typing import Any

from tuneloop.local import emf
from tuneloop.local.data_capture import CaptureSettings, capture_key, capture_record
from tuneloop.release.deployment import DataCapture
from tuneloop.watch.quality import AnswerQuality, Invocation, emf_fields


class RecordingCloudWatch:
    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def put_metric_data(self, **kwargs: Any) -> None:
        self.calls.append(kwargs)


def _line() -> str:
    invocation = Invocation(
        status=200,
        latency_ms=20.0,
        output_tokens=4,
        tokens_per_s=200.0,
        finish_reason="length",
        quality=AnswerQuality(empty=False, truncated=True, refusal=False),
    )
    fields = emf_fields(invocation, endpoint_name="ep", model_version="v1", timestamp_ms=1_000)
    return json.dumps({"event": "invocation", **fields})


def test_each_metric_is_put_once_per_dimension_set_at_the_records_time() -> None:
    cloudwatch = RecordingCloudWatch()
    count = emf.publish(cloudwatch, ["serving on http://x", "not json {", _line()])
    (call,) = cloudwatch.calls
    assert call["Namespace"] == "TuneLoop/Endpoint"
    datums = call["MetricData"]
    assert count == len(datums) == 8 * 2  # 8 metrics x ([EndpointName], [.., ModelVersion])
    truncated = [d for d in datums if d["MetricName"] == "Truncated"]
    assert [d["Dimensions"] for d in truncated] == [
        [{"Name": "EndpointName", "Value": "ep"}],
        [{"Name": "EndpointName", "Value": "ep"}, {"Name": "ModelVersion", "Value": "v1"}],
    ]
    assert {d["Value"] for d in truncated} == {1.0}
    assert all(d["Timestamp"] == datetime.datetime.fromtimestamp(1, datetime.UTC) for d in datums)
    assert {d["Unit"] for d in datums if d["MetricName"] == "Latency"} == {"Milliseconds"}


def test_lines_without_a_directive_are_plain_log_events() -> None:
    cloudwatch = RecordingCloudWatch()
    plain = json.dumps({"event": "invocation", "status": 200, "Latency": 3})
    assert emf.publish(cloudwatch, [plain, "[1, 2]"]) == 0 and cloudwatch.calls == []


def test_capture_records_and_keys_follow_sagemakers_layout() -> None:
    # Given the config Deploy writes
    settings = CaptureSettings.from_config(
        DataCapture(
            destination="s3://curated/capture/", kms_key_id="key", sampling_percentage=50
        ).config()
    )
    assert settings is not None and settings.sampling_percentage == 50
    at = datetime.datetime(2026, 12, 3, 18, 5, 7, 123_000, tzinfo=datetime.UTC)
    # When a JSON request and a binary response are captured
    record = capture_record(
        settings,
        request=b'{"prompt": "hi"}',
        request_type="application/json",
        response=b"\xff\x00",
        response_type="application/octet-stream",
        at=at,
        event_id="e-1",
    )
    bucket, key = capture_key(settings, "ep", "AllTraffic", at)
    # Then JSON is kept as text, anything else as base64, and the key is SageMaker's
    assert record["captureData"]["endpointInput"] == {
        "observedContentType": "application/json",
        "mode": "INPUT",
        "data": '{"prompt": "hi"}',
        "encoding": "JSON",
    }
    output = record["captureData"]["endpointOutput"]
    assert output["encoding"] == "BASE64" and base64.b64decode(output["data"]) == b"\xff\x00"
    assert record["eventMetadata"] == {"eventId": "e-1", "inferenceTime": "2026-12-03T18:05:07Z"}
    assert record["eventVersion"] == "0"
    assert bucket == "curated"
    assert re.fullmatch(r"capture/ep/AllTraffic/2026/12/03/18/05-07-123-[0-9a-f-]{36}\.jsonl", key)


def test_capture_off_or_absent_captures_nothing() -> None:
    assert CaptureSettings.from_config(None) is None
    assert CaptureSettings.from_config({"EnableCapture": False}) is None
