"""A minimal client for the serving tests: POST /invocations to an in-process server."""

from __future__ import annotations

import http.client
import json
from typing import Any

from tuneloop.serving.http import InferenceServer


def post(httpd: InferenceServer, body: bytes) -> tuple[int, dict[str, Any]]:
    conn = http.client.HTTPConnection("127.0.0.1", httpd.server_address[1], timeout=60)
    try:
        conn.request("POST", "/invocations", body=body)
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()
