"""Large drops split into segments, each ingested by its own invocation.

A file larger than ``IngestSettings.segment_bytes`` is cut into byte ranges that start at
a record's first line (Parquet: runs of row groups). The invocation that receives the
file's event records the plan in the Drops table — one item per segment,
``drop_id = "<drop_id>#<n>"`` with ``segment_of = <drop_id>`` — and sends one message per
segment to the ingest queue. Each segment completes in one transaction with its counts,
the parent's ``segments_done`` counter and the retrain counter; whoever sees the last
segment done sums the segments' counts into the parent and completes it (conditioned on
``status = processing``, so once).

Line numbers stay those of the whole file: a segment knows the number of its first line.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import IO, Any

from tuneloop.ingest.events import DropObject
from tuneloop.ingest.reading import buffered, raw_lines

# Formats whose records can be found by reading forward from a line start.
LINE_FORMATS = frozenset({"jsonl", "csv", "tsv", "text", "log"})
SEGMENT_KIND = "tuneloop.ingest.segment"
# A log line that continues the entry above it (logs.py) cannot start a segment.
_LOG_CONTINUATION = re.compile(rb"^(?:\s|Traceback \(most recent call last\))")


@dataclass(frozen=True)
class Segment:
    index: int  # 0-based
    start: int  # byte offset of its first line (line formats)
    end: int  # byte offset after its last line
    first_line: int = 1
    csv_header: str | None = None  # segments after the first of a CSV/TSV: the header line
    row_groups: tuple[int, int] | None = None  # Parquet: [start, stop) row groups
    first_row: int = 1


@dataclass(frozen=True)
class SegmentMessage:
    """What the ingest queue carries for one segment of a drop."""

    obj: DropObject
    segment: Segment
    count: int

    @property
    def segment_id(self) -> str:
        return segment_id(self.obj.drop_id, self.segment.index)

    def to_json(self) -> str:
        return json.dumps(
            {
                "kind": SEGMENT_KIND,
                "object": asdict(self.obj),
                "segment": asdict(self.segment),
                "count": self.count,
            }
        )


def segment_id(drop_id: str, index: int) -> str:
    return f"{drop_id}#{index}"


def parse_segment_message(body: Any) -> SegmentMessage | None:
    """The segment a queue message describes, or None when it is not a segment message."""
    if not isinstance(body, dict) or body.get("kind") != SEGMENT_KIND:
        return None
    segment = dict(body["segment"])
    if segment.get("row_groups") is not None:
        segment["row_groups"] = tuple(segment["row_groups"])
    return SegmentMessage(DropObject(**body["object"]), Segment(**segment), int(body["count"]))


def plan_line_segments(
    stream: IO[bytes], file_format: str, segment_bytes: int, max_line_bytes: int | None = None
) -> list[Segment]:
    """Byte ranges of at most about ``segment_bytes`` each, every one starting at a line
    where a record starts (a segment holds whole records, so a cut may come later).

    CSV/TSV: a cut needs an even number of quote characters before it (not inside a quoted
    cell) and never falls on the header. Text: a cut follows a blank line. Logs: a cut
    never falls on a continuation line. Reads the stream once, line by line, never holding
    more than about ``max_line_bytes`` of a line (a longer one is read past in pieces).
    """
    segments: list[Segment] = []
    start, first_line = 0, 1
    offset, number = 0, 1
    quotes_odd = False
    previous_blank = True
    header: str | None = None
    for raw in raw_lines(buffered(stream), max_line_bytes):
        line = raw.data  # the whole line, or the start of one too long to hold
        if offset - start >= segment_bytes and _can_cut(
            file_format, line, quotes_odd, previous_blank
        ):
            segments.append(_segment(len(segments), start, offset, first_line, header))
            start, first_line = offset, number
        if number == 1 and file_format in {"csv", "tsv"}:
            header = line.removeprefix(b"\xef\xbb\xbf").rstrip(b"\r\n").decode("utf-8", "replace")
        quotes_odd ^= bool(raw.quotes % 2)
        previous_blank = raw.whole and not line.strip()
        offset += raw.length
        number += 1
    segments.append(_segment(len(segments), start, offset, first_line, header))
    return segments


def _segment(index: int, start: int, end: int, first_line: int, header: str | None) -> Segment:
    return Segment(index, start, end, first_line, header if index else None)


def _can_cut(file_format: str, line: bytes, quotes_odd: bool, previous_blank: bool) -> bool:
    if file_format in {"csv", "tsv"}:
        return not quotes_odd
    if file_format == "text":
        return previous_blank and bool(line.strip())
    if file_format == "log":
        return not _LOG_CONTINUATION.match(line)
    return True


def plan_parquet_segments(
    row_groups: Iterable[tuple[int, int]], segment_bytes: int
) -> list[Segment]:
    """Runs of row groups of about ``segment_bytes`` (compressed) each; ``row_groups`` is
    (rows, compressed bytes) per group."""
    segments: list[Segment] = []
    run_start, run_bytes, first_row, rows_before = 0, 0, 1, 0
    groups = list(row_groups)
    for group, (rows, size) in enumerate(groups):
        if run_bytes and run_bytes + size > segment_bytes:
            segments.append(
                Segment(len(segments), 0, 0, row_groups=(run_start, group), first_row=first_row)
            )
            run_start, run_bytes, first_row = group, 0, rows_before + 1
        run_bytes += size
        rows_before += rows
    segments.append(
        Segment(len(segments), 0, 0, row_groups=(run_start, len(groups)), first_row=first_row)
    )
    return segments


def parquet_row_groups(source: IO[bytes]) -> list[tuple[int, int]]:
    """(rows, compressed bytes) of each row group, from the footer."""
    import pyarrow.parquet as pq

    metadata = pq.ParquetFile(source).metadata
    groups = []
    for index in range(metadata.num_row_groups):
        group = metadata.row_group(index)
        size = sum(group.column(c).total_compressed_size for c in range(group.num_columns))
        groups.append((group.num_rows, size))
    return groups
