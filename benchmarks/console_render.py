"""p95 render time of each console page over a seeded platform (moto, in process).

    .venv/bin/python benchmarks/console_render.py [--repeat 20]

Seeds 200 model versions (with scores), 2,000 drops and 50 benchmark versions (5 suites x 10)
into moto, signs in as an admin through the login form and times each page through
FastAPI's TestClient: the whole request (views' DynamoDB/S3 reads, templates, plots). The
goal is an absolute one: p95 < 200 ms per page. Moto answers in process, so the figures
measure the console's own work plus moto's, not network latency to AWS.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import os
import re
import statistics
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

MODELS, DROPS, SUITES, VERSIONS_PER_SUITE = 200, 2000, 5, 10
GOAL_MS = 200.0


class EmulatorClock:
    """Time spent in AWS calls (boto3 to the in-process emulator), to tell the console's own
    work from what DynamoDB, S3 and Step Functions would answer over the network."""

    def __init__(self) -> None:
        from botocore.client import BaseClient

        self.calls, self.seconds = 0, 0.0
        self._original = original = BaseClient._make_api_call
        clock = self

        def timed(client: object, operation: str, params: object) -> object:
            start = time.perf_counter()
            try:
                return original(client, operation, params)  # type: ignore[arg-type]
            finally:
                clock.calls += 1
                clock.seconds += time.perf_counter() - start

        BaseClient._make_api_call = timed  # type: ignore[method-assign,assignment]

    def reset(self) -> None:
        self.calls, self.seconds = 0, 0.0

    def stop(self) -> None:
        from botocore.client import BaseClient

        BaseClient._make_api_call = self._original  # type: ignore[method-assign]


def stamp(hours_ago: int) -> str:
    return (datetime.now(UTC) - timedelta(hours=hours_ago)).isoformat()


def seed(names: object) -> str:
    from tuneloop import aws
    from tuneloop.benchmarks.store import BenchmarkStore
    from tuneloop.ingest.drops import day_counter_key

    versions = aws.table(names.model_versions_table)  # type: ignore[attr-defined]
    with versions.batch_writer() as batch:
        for i in range(MODELS):
            score = Decimal(str(round(0.5 + i / 1000, 3)))
            batch.put_item(
                Item={
                    "model_version": f"v{i:04d}",
                    "status": "production" if i == MODELS - 1 else "superseded",
                    # As start_training writes them: on ModelVersions' by_month index.
                    "created_at": (created := stamp(MODELS - i)),
                    "created_month": created[:7],
                    **({"promoted_at": created} if i == MODELS - 1 else {}),
                    "record_count": 1000 + i,
                    "parent_version": f"v{i - 1:04d}" if i else "",
                    # As the gate writes it (tuneloop/gating/scores.py): one JSON string.
                    "scores": json.dumps(
                        {
                            f"suite{s}": {
                                "metric": "acc",
                                "value": float(score),
                                "ci_low": float(score - Decimal("0.02")),
                                "ci_high": float(score + Decimal("0.02")),
                                "n_items": 100,
                            }
                            for s in range(SUITES)
                        }
                    ),
                }
            )
    # Drops as ingestion leaves them (tuneloop/ingest/drops.py): spread over the last 60
    # days, each counted on its day's counter in Control.
    drops = aws.table(names.drops_table)  # type: ignore[attr-defined]
    per_day: Counter[str] = Counter()
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    with drops.batch_writer() as batch:
        for i in range(DROPS):
            started = (today - timedelta(days=i % 60, minutes=i)).isoformat()
            per_day[started[:10]] += 95
            batch.put_item(
                Item={
                    "drop_id": hashlib.sha256(f"drop-{i}".encode()).hexdigest(),
                    "key": f"drops/support/drop-{i:05d}.jsonl",
                    "dataset": "support",
                    "status": "complete",
                    "received": 100,
                    "stored": 95,
                    "duplicate": 3,
                    "near_duplicate": 0,
                    "quarantined": 2,
                    "reasons": {"schema": 2},
                    "started_at": started,
                    "started_month": started[:7],
                    "completed_at": started,
                }
            )
    control = aws.table(names.control_table)  # type: ignore[attr-defined]
    for day, stored in per_day.items():
        control.put_item(Item={"key": day_counter_key(day), "received": stored, "stored": stored})
    store = BenchmarkStore(
        table=names.benchmarks_table,  # type: ignore[attr-defined]
        bucket=names.artifacts_bucket,  # type: ignore[attr-defined]
    )
    for s in range(SUITES):
        for v in range(VERSIONS_PER_SUITE):
            lines = "".join(
                f'{{"id": "q{j}", "prompt": "Question {j} of {v}?", '
                f'"choices": [" yes", " no"], "answer": {j % 2}}}\n'
                for j in range(10 + v)
            )
            store.create_from_bytes(f"suite{s}", lines.encode(), source=f"suite{s}.jsonl")
    return "suite0"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args(argv)
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
    }.items():
        os.environ[name] = value
    os.environ.pop("AWS_ENDPOINT_URL", None)

    from fastapi.testclient import TestClient
    from moto import mock_aws

    from tests.integration.aws_fixtures import create_platform
    from tests.integration.test_console_app import names_of
    from tuneloop import aws
    from tuneloop.console.app import create_app
    from tuneloop.console.auth_local import LocalUsers

    aws.reset()
    with mock_aws():
        platform = create_platform()
        names = names_of(platform)
        suite = seed(names)
        # The seeded tables live in this process only because the emulator does; keep the
        # collector from walking them on every page (on AWS they are not in the heap at all).
        gc.collect()
        gc.freeze()
        app = create_app(
            names,
            LocalUsers.from_passwords({"admin": ("admin", "pw")}),
            secret_key="bench",
            secure_cookies=False,
        )
        newest_drop = hashlib.sha256(b"drop-0").hexdigest()
        # (path, text the page must show: a page that renders empty is not a fast page)
        pages = {
            "/": ("/", f"{datetime.now(UTC).date().isoformat()}: "),  # today's bar
            "/data": ("/data", newest_drop),
            "/data/{drop}": ("/data/" + hashlib.sha256(b"drop-42").hexdigest(), "schema"),
            "/benchmarks": (f"/benchmarks?suite={suite}", "v0199"),
            "/models": ("/models", "v0199"),
            "/models/{v}": ("/models/v0150", "v0149"),
            "/models/compare": ("/models/compare?a=v0150&b=v0199", "suite4"),
            "/deployments": ("/deployments", "v0199"),
            "/runs": ("/runs", "No runs"),
            "/audit": ("/audit", "Audit"),
        }
        with TestClient(app) as client:
            login = client.get("/login").text
            token = re.search(r'name="csrf-token" content="([^"]+)"', login)
            assert token
            client.post(
                "/login", data={"username": "admin", "password": "pw", "csrf_token": token[1]}
            )
            emulator = EmulatorClock()
            print(
                f"{'page':<18}{'status':>7}{'p50 ms':>9}{'p95 ms':>9}{'AWS calls':>10}"
                f"{'in emulator':>13}  goal {GOAL_MS:.0f} ms"
            )
            failed = False
            for label, (path, expected) in pages.items():
                body = client.get(path).text  # warm-up
                if expected not in body:
                    print(f"{label}: the page does not show {expected!r}")
                    failed = True
                times = []
                status = 0
                emulator.reset()
                for _ in range(args.repeat):
                    start = time.perf_counter()
                    status = client.get(path).status_code
                    times.append((time.perf_counter() - start) * 1000)
                p95 = statistics.quantiles(times, n=20)[-1]
                ok = p95 < GOAL_MS and status == 200
                failed |= not ok
                share = emulator.seconds * 1000 / sum(times)
                print(
                    f"{label:<18}{status:>7}{statistics.median(times):>9.1f}{p95:>9.1f}"
                    f"{emulator.calls / args.repeat:>10.1f}{share:>12.0%}"
                    f"  {'ok' if ok else 'OVER'}"
                )
            emulator.stop()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
