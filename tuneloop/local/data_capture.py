"""SageMaker endpoint data capture, written by the local endpoints.

Gap: moto stores an endpoint config's ``DataCaptureConfig`` but captures nothing. The
local endpoint writes SageMaker's layout for the sampled share of invocations:
``<DestinationS3Uri>/<endpoint>/<variant>/<yyyy>/<mm>/<dd>/<hh>/<mm-ss-SSS>-<uuid>.jsonl``,
one JSON line per invocation (``captureData.endpointInput``/``endpointOutput`` and
``eventMetadata``), encrypted with ``KmsKeyId`` and written as the model's execution role,
as SageMaker does. (SageMaker batches several invocations into one object; here each
captured invocation is its own object, which readers cannot tell apart.)
"""

from __future__ import annotations

import base64
import datetime
import json
import random
import uuid
from dataclasses import dataclass
from typing import Any

from tuneloop.local.s3util import parse_s3_uri


@dataclass(frozen=True)
class CaptureSettings:
    destination: str
    sampling_percentage: int
    kms_key_id: str
    json_content_types: tuple[str, ...]
    capture_input: bool
    capture_output: bool

    @classmethod
    def from_config(cls, config: dict[str, Any] | None) -> CaptureSettings | None:
        """From an endpoint config's ``DataCaptureConfig``; None when capture is off."""
        if not config or not config.get("EnableCapture", True):
            return None
        modes = {str(o.get("CaptureMode")) for o in config.get("CaptureOptions", [])}
        header = config.get("CaptureContentTypeHeader") or {}
        return cls(
            destination=str(config["DestinationS3Uri"]),
            sampling_percentage=int(config.get("InitialSamplingPercentage", 100)),
            kms_key_id=str(config.get("KmsKeyId") or ""),
            json_content_types=tuple(header.get("JsonContentTypes") or ()),
            capture_input="Input" in modes,
            capture_output="Output" in modes,
        )

    def sampled(self, rng: random.Random) -> bool:
        return rng.random() * 100 < self.sampling_percentage


def _payload(
    body: bytes, content_type: str, mode: str, json_types: tuple[str, ...]
) -> dict[str, str]:
    base = content_type.split(";")[0].strip().lower()
    if base in json_types:
        try:
            return {
                "observedContentType": content_type,
                "mode": mode,
                "data": body.decode("utf-8"),
                "encoding": "JSON",
            }
        except UnicodeDecodeError:
            pass
    return {
        "observedContentType": content_type,
        "mode": mode,
        "data": base64.b64encode(body).decode("ascii"),
        "encoding": "BASE64",
    }


def capture_record(
    settings: CaptureSettings,
    *,
    request: bytes,
    request_type: str,
    response: bytes,
    response_type: str,
    at: datetime.datetime,
    event_id: str,
) -> dict[str, Any]:
    data: dict[str, Any] = {}
    if settings.capture_input:
        data["endpointInput"] = _payload(
            request, request_type, "INPUT", settings.json_content_types
        )
    if settings.capture_output:
        data["endpointOutput"] = _payload(
            response, response_type, "OUTPUT", settings.json_content_types
        )
    return {
        "captureData": data,
        "eventMetadata": {
            "eventId": event_id,
            "inferenceTime": at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        },
        "eventVersion": "0",
    }


def capture_key(
    settings: CaptureSettings, endpoint_name: str, variant_name: str, at: datetime.datetime
) -> tuple[str, str]:
    """The bucket and key of one capture object."""
    bucket, prefix = parse_s3_uri(settings.destination)
    prefix = prefix.rstrip("/")
    stamp = (
        at.strftime("%Y/%m/%d/%H") + "/" + at.strftime("%M-%S-") + f"{at.microsecond // 1000:03d}"
    )
    key = f"{endpoint_name}/{variant_name}/{stamp}-{uuid.uuid4()}.jsonl"
    return bucket, f"{prefix}/{key}" if prefix else key


def write_capture(
    s3: Any,
    settings: CaptureSettings,
    *,
    endpoint_name: str,
    variant_name: str,
    request: bytes,
    request_type: str,
    response: bytes,
    response_type: str,
) -> str:
    """Write one invocation's capture object; return its key."""
    at = datetime.datetime.now(datetime.UTC)
    record = capture_record(
        settings,
        request=request,
        request_type=request_type,
        response=response,
        response_type=response_type,
        at=at,
        event_id=str(uuid.uuid4()),
    )
    bucket, key = capture_key(settings, endpoint_name, variant_name, at)
    extra: dict[str, str] = {}
    if settings.kms_key_id:
        extra = {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": settings.kms_key_id}
    s3.put_object(Bucket=bucket, Key=key, Body=(json.dumps(record) + "\n").encode(), **extra)
    return key
