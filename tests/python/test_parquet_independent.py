"""The Parquet files Sightline leaves behind are readable without Sightline and hold the same
rows that its SQL endpoint returns.

Layout per the contract: <data-dir>/default/spans/date=YYYY-MM-DD/hour=HH/<file>.parquet, zstd.
"""

from __future__ import annotations

import datetime as dt
import re
import time
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from conftest import reads_local_parquet
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

pytestmark = reads_local_parquet

PARTITION_RE = re.compile(r"date=(\d{4}-\d{2}-\d{2})/hour=(\d{2})/[^/]+\.parquet")
COMPARED_COLUMNS = (
    "trace_id", "span_id", "parent_span_id", "name", "start_time", "end_time", "attributes",
)  # fmt: skip


def spans_dir(data_dir: Path) -> Path:
    return data_dir / "default" / "spans"


def span_files(data_dir: Path) -> list[Path]:
    return sorted(spans_dir(data_dir).glob("date=*/hour=*/*.parquet"))


def partition_of(data_dir: Path, path: Path) -> tuple[str, int]:
    """(date, hour) of a span file, asserting the date=YYYY-MM-DD/hour=HH/<file> layout."""
    relative = path.relative_to(spans_dir(data_dir)).as_posix()
    match = PARTITION_RE.fullmatch(relative)
    assert match, f"{relative} is not date=YYYY-MM-DD/hour=HH/<file>.parquet"
    date, hour = match.groups()
    dt.date.fromisoformat(date)  # a real calendar date
    assert 0 <= int(hour) <= 23, relative
    return date, int(hour)


def send_trace(otel) -> list:
    """Send a root span with a child through the SDK (gRPC); return both SDK spans."""
    provider = otel.tracer_provider("grpc")
    tracer = provider.get_tracer("e2e.parquet", "0.1.0")
    with tracer.start_as_current_span(
        "GET /orders/{id}",
        kind=SpanKind.SERVER,
        attributes={"order.id": 7, "region": "eu-west", "ratio": 0.5, "cached": False},
    ) as root:
        with tracer.start_as_current_span("SELECT orders", attributes={"db.rows": 3}) as child:
            pass
    assert provider.force_flush(timeout_millis=15_000)
    return [root, child]


def sql_rows(server, service_name: str, expected_count: int) -> list[dict]:
    rows = server.wait_for_rows(
        f"""
        SELECT trace_id, span_id, parent_span_id, name,
          CAST(start_time AS BIGINT) AS start_time, CAST(end_time AS BIGINT) AS end_time,
          attributes
        FROM spans WHERE service_name = {server.quote(service_name)}
        ORDER BY span_id
        """,
        until=lambda rows: len(rows) >= expected_count,
    )
    assert len(rows) == expected_count, rows
    return rows


def _plain(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """Undo storage details that do not change values: dictionary encoding, timestamps."""
    if pa.types.is_dictionary(column.type):
        column = column.cast(column.type.value_type)
    if pa.types.is_timestamp(column.type):
        column = column.cast(pa.int64())  # nanoseconds since the epoch for timestamp[ns]
    return column


def _hex(value):
    return value.hex() if isinstance(value, (bytes, bytearray)) else value


def arrow_rows(table: pa.Table, service_name: str) -> list[dict]:
    """Rows of `table` for `service_name`, in the shape SQL returns them, sorted by span_id."""
    table = table.filter(pc.equal(_plain(table["service_name"]), service_name))
    columns = {name: _plain(table[name]).to_pylist() for name in COMPARED_COLUMNS}
    rows = []
    for values in zip(*columns.values(), strict=True):
        row = dict(zip(COMPARED_COLUMNS, values, strict=True))
        for key in ("trace_id", "span_id", "parent_span_id"):
            row[key] = _hex(row[key])
        row["attributes"] = dict(row["attributes"] or [])
        rows.append(row)
    return sorted(rows, key=lambda row: row["span_id"])


def expected_from_sdk(spans) -> list[dict]:
    return sorted(
        (
            {
                "trace_id": format(s.context.trace_id, "032x"),
                "span_id": format(s.context.span_id, "016x"),
                "parent_span_id": format(s.parent.span_id, "016x") if s.parent else None,
                "name": s.name,
                "start_time": s.start_time,
                "end_time": s.end_time,
            }
            for s in spans
        ),
        key=lambda row: row["span_id"],
    )


def without_attributes(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if k != "attributes"} for row in rows]


def hour_floor(ns: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(ns / 1e9, dt.UTC).replace(minute=0, second=0, microsecond=0)


def assert_partition_plausible(date: str, hour: int, start_times: list[int]) -> None:
    """Rows sit in the UTC hour of their start time, or at latest the hour they were written."""
    partition = dt.datetime.fromisoformat(date).replace(hour=hour, tzinfo=dt.UTC)
    assert hour_floor(min(start_times)) <= partition <= hour_floor(time.time_ns()), (
        f"partition date={date}/hour={hour:02d} does not fit spans starting at {start_times}"
    )


def test_pyarrow_reads_the_rows_sql_returns(server, otel, service_name):
    sdk_spans = send_trace(otel)
    from_sql = sql_rows(server, service_name, expected_count=2)
    assert without_attributes(from_sql) == expected_from_sdk(sdk_spans)
    server.flush()

    files = span_files(server.data_dir)
    assert files, f"no Parquet files under {spans_dir(server.data_dir)}"
    from_files = []
    for path in files:
        rows = arrow_rows(pq.ParquetFile(path).read(), service_name)
        if rows:
            date, hour = partition_of(server.data_dir, path)
            assert_partition_plausible(date, hour, [row["start_time"] for row in rows])
        from_files.extend(rows)
    from_files.sort(key=lambda row: row["span_id"])

    # Same rows, each exactly once (a second flush must not write rows again).
    assert from_files == from_sql
    root = next(row for row in from_files if row["parent_span_id"] is None)
    assert root["attributes"] == {
        "order.id": "7",
        "region": "eu-west",
        "ratio": "0.5",
        "cached": "false",
    }


def test_duckdb_reads_the_rows_sql_returns(server, otel, service_name):
    sdk_spans = send_trace(otel)
    from_sql = sql_rows(server, service_name, expected_count=2)
    server.flush()

    pattern = (spans_dir(server.data_dir) / "date=*" / "hour=*" / "*.parquet").as_posix()
    with duckdb.connect() as con:
        table = con.sql(
            f"""
            SELECT trace_id, span_id, parent_span_id, name, start_time, end_time, attributes,
              service_name,
              CAST("date" AS VARCHAR) AS part_date, CAST("hour" AS VARCHAR) AS part_hour
            FROM read_parquet({server.quote(pattern)}, hive_partitioning = true)
            WHERE service_name = ?
            """,
            params=[service_name],
        ).to_arrow_table()

    from_duckdb = arrow_rows(table, service_name)
    assert from_duckdb == from_sql
    assert without_attributes(from_duckdb) == expected_from_sdk(sdk_spans)

    start_times = [s.start_time for s in sdk_spans]
    partitions = zip(table["part_date"].to_pylist(), table["part_hour"].to_pylist(), strict=True)
    for date, hour in partitions:
        assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", date), date
        assert_partition_plausible(date, int(hour), start_times)


def test_hive_layout_and_zstd(server, otel, service_name):
    send_trace(otel)
    sql_rows(server, service_name, expected_count=2)
    server.flush()

    root = spans_dir(server.data_dir)
    parquet_files = sorted(root.rglob("*.parquet"))
    assert parquet_files, f"no Parquet files under {root}"
    for path in parquet_files:
        partition_of(server.data_dir, path)
        relative = path.relative_to(root).as_posix()

        metadata = pq.ParquetFile(path).metadata
        assert metadata.num_row_groups >= 1, f"{relative} has no row groups"
        assert metadata.num_rows > 0, f"{relative} is empty"
        for group in range(metadata.num_row_groups):
            row_group = metadata.row_group(group)
            for i in range(row_group.num_columns):
                column = row_group.column(i)
                assert column.compression == "ZSTD", (
                    f"{relative} row group {group} column {column.path_in_schema}: "
                    f"{column.compression}"
                )


def test_sigterm_flushes_buffered_spans_to_parquet(start_server, otel):
    """Rows accepted over OTLP but never explicitly flushed are in Parquet after SIGTERM."""
    own = start_server()

    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=otel.resource())
    provider.add_span_processor(SimpleSpanProcessor(memory))
    with provider.get_tracer("e2e.shutdown").start_as_current_span("flushed on SIGTERM") as span:
        pass
    provider.shutdown()

    exporter = otel.span_exporter("http", server=own)
    assert exporter.export(memory.get_finished_spans()) == SpanExportResult.SUCCESS

    assert own.stop() == 0, own.log_tail()

    files = span_files(own.data_dir)
    assert files, f"no Parquet files under {spans_dir(own.data_dir)} after SIGTERM"
    rows = [
        row for path in files for row in arrow_rows(pq.ParquetFile(path).read(), otel.service_name)
    ]
    assert without_attributes(rows) == expected_from_sdk([span])
