"""Write path: records/second into DynamoDB (local emulator), the store against a put loop.

The same N generated records (text, features, MinHash signature: the shape ingestion
writes) go into a fresh Records table of a moto server, by

- baseline: one conditional ``put_item`` per record (``attribute_not_exists(record_id)``),
  in a loop;
- store: ``DynamoRecordStore.insert_new``: conditional puts batched 100 per
  ``TransactWriteItems``, with 1 and with ``--in-flight`` transactions at a time.

Runs are interleaved (baseline, store x1, store xK, then again) and the ratio is the median
of the per-repeat ratios. Every run ends by counting the table: all N records must be there.

The emulator's own CPU time per record is read from ``/proc`` for every run (Linux). It
bounds what any client can reach: moto is one Python process that spends that CPU time on
every record however the records are batched, so no client writes faster than one record
per that many milliseconds. The ceiling printed at the end is the baseline's time per
record divided by the store's emulator CPU time per record.

The emulator runs in its own process (started here, on a free port): the client's threads
then overlap their requests with the server's work as they would against DynamoDB, instead
of sharing one interpreter lock with it. Two shims are applied in that process, because
moto's TransactWriteItems differs from DynamoDB in ways that would otherwise dominate:

- moto deep-copies the whole table once per item of a transaction (its rollback copy), so a
  transaction's cost grows with the table (at 5,000 items, ~60x a put_item per record);
  the shim takes a shallow copy, which rolls back puts just as well (a put replaces an
  item, it never changes one in place);
- moto does not isolate transactions (two at once fail with "dictionary changed size
  during iteration"); the shim applies them one at a time, as DynamoDB's isolation does.

``--plain`` runs without the shims (one transaction in flight; keep N small: the copy makes
the store quadratic in N there)::

    .venv/bin/python benchmarks/ingest_write_path.py                     # 20,000 records, 3 repeats
    .venv/bin/python benchmarks/ingest_write_path.py --records 5000 --repeats 3
    .venv/bin/python benchmarks/ingest_write_path.py --records 1000 --repeats 1 --plain
"""

from __future__ import annotations

import argparse
import os
import random
import socket
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SENTENCE = (
    "customer asked about the reset procedure for the camera after the firmware update and "
    "support explained how to pair it again with the app while keeping the saved settings"
)
WORDS = SENTENCE.split()


def serve(port: int, plain: bool) -> None:
    """The emulator process: a moto server on ``port``, with the shims unless ``plain``."""
    import copy
    import threading

    from moto.dynamodb.models import DynamoDBBackend
    from moto.dynamodb.models.table import Table
    from moto.server import ThreadedMotoServer

    if not plain:
        lock = threading.Lock()
        transact = DynamoDBBackend.transact_write_items

        def isolated(self: Any, transact_items: list[dict[str, Any]]) -> None:
            with lock:
                transact(self, transact_items)

        def shallow_snapshot(self: Any, memo: dict[int, Any]) -> Any:
            clone = copy.copy(self)
            clone.items = copy.copy(self.items)
            return clone

        DynamoDBBackend.transact_write_items = isolated  # type: ignore[method-assign]
        Table.__deepcopy__ = shallow_snapshot  # type: ignore[attr-defined]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    threading.Event().wait()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_emulator(plain: bool) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    command = [sys.executable, __file__, "--serve", str(port)] + (["--plain"] if plain else [])
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return process, f"http://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("the moto server did not start within 60 s")


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a process so far (Linux ``/proc``); None elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    # After the command name: state is field 3, utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def make_candidates(count: int, seed: int = 11) -> list[Any]:
    from tuneloop.ingest.model import Candidate, Content

    rng = random.Random(seed)
    records = []
    for line in range(1, count + 1):
        words = rng.choices(WORDS, k=rng.randint(30, 70))
        text = f"Ticket {line}: " + " ".join(words)
        records.append(
            Candidate(
                line=line,
                content=Content(text=text),
                features={
                    "tokens": len(words) + 3,
                    "chars": len(text),
                    "language": "en",
                    "tags": ["dataset:bench", "format:jsonl", "shape:text"],
                },
                minhash=rng.randbytes(512),
            )
        )
    return records


def create_table(client: Any, name: str) -> None:
    client.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "record_id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "record_id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )


def count_items(client: Any, table: str) -> int:
    pages = client.get_paginator("scan").paginate(TableName=table, Select="COUNT")
    return sum(int(page["Count"]) for page in pages)


def put_loop(client: Any, table: str, candidates: list[Any]) -> None:
    from boto3.dynamodb.types import TypeSerializer
    from botocore.exceptions import ClientError

    from tuneloop.ingest.store import DynamoRecordStore

    serialize = TypeSerializer().serialize
    store = DynamoRecordStore(table, dataset="bench", source_key="drops/bench/x.jsonl")
    ingested_at = datetime.now(UTC).isoformat()
    for candidate in candidates:
        item = store.item("bench", candidate, ingested_at)
        try:
            client.put_item(
                TableName=table,
                Item={name: serialize(value) for name, value in item.items()},
                ConditionExpression="attribute_not_exists(record_id)",
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise


def store_write(client: Any, table: str, candidates: list[Any], in_flight: int) -> None:
    from tuneloop.ingest.store import DynamoRecordStore

    store = DynamoRecordStore(
        table,
        dataset="bench",
        source_key="drops/bench/x.jsonl",
        client=client,
        max_in_flight=in_flight,
    )
    existing = store.insert_new("bench", candidates)
    assert not existing, f"{len(existing)} records reported as duplicates"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--in-flight", type=int, default=4, help="transactions at a time")
    parser.add_argument("--plain", action="store_true", help="moto without the shims")
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve(args.serve, args.plain)
        return 0

    import boto3
    from botocore.config import Config

    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        os.environ.setdefault(name, value)
    in_flight = 1 if args.plain else args.in_flight
    candidates = make_candidates(args.records)
    process, endpoint = start_emulator(args.plain)
    print(f"moto server {endpoint} ({'plain' if args.plain else 'with shims'}, own process)")
    try:
        client = boto3.client(
            "dynamodb",
            endpoint_url=endpoint,
            region_name="us-east-1",
            config=Config(max_pool_connections=max(10, in_flight)),
        )
        runs: dict[str, Any] = {
            "baseline: put_item loop": lambda table: put_loop(client, table, candidates),
            "store, 1 transaction in flight": lambda table: store_write(
                client, table, candidates, 1
            ),
        }
        if in_flight > 1:
            runs[f"store, {in_flight} transactions in flight"] = lambda table: store_write(
                client, table, candidates, in_flight
            )
        rates: dict[str, list[float]] = {name: [] for name in runs}
        emulator_ms: dict[str, list[float]] = {name: [] for name in runs}
        for repeat in range(args.repeats):
            for index, (name, run) in enumerate(runs.items()):
                table = f"records-{repeat}-{index}"
                create_table(client, table)
                cpu_before = cpu_seconds(process.pid)
                started = time.perf_counter()
                run(table)
                seconds = time.perf_counter() - started
                cpu_after = cpu_seconds(process.pid)
                cpu_note = ""
                if cpu_before is not None and cpu_after is not None:
                    emulator_ms[name].append(1000 * (cpu_after - cpu_before) / args.records)
                    cpu_note = f", emulator CPU {emulator_ms[name][-1]:.2f} ms/record"
                stored = count_items(client, table)
                assert stored == args.records, f"{name}: {stored} of {args.records} stored"
                client.delete_table(TableName=table)
                rates[name].append(args.records / seconds)
                print(
                    f"  repeat {repeat + 1} {name:<36} {args.records / seconds:>8,.0f} "
                    f"records/s ({seconds:.1f} s{cpu_note})",
                    flush=True,
                )
    finally:
        process.kill()
        process.wait()

    baseline = rates["baseline: put_item loop"]
    print(f"{args.records:,} records, {args.repeats} repeats (median):")
    for name, values in rates.items():
        ratios = [value / base for value, base in zip(values, baseline, strict=True)]
        print(
            f"  {name:<36} {statistics.median(values):>8,.0f} records/s  "
            f"{statistics.median(ratios):5.1f}x baseline"
        )
    store_cpu = emulator_ms["store, 1 transaction in flight"]
    if store_cpu:
        baseline_ms = 1000 / statistics.median(baseline)
        print(
            f"ceiling on this emulator: {baseline_ms:.2f} ms/record (baseline) / "
            f"{statistics.median(store_cpu):.2f} ms/record (emulator CPU, store) = "
            f"{baseline_ms / statistics.median(store_cpu):.1f}x"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
