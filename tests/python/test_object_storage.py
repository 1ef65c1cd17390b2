"""Parquet files in a real S3 server (SeaweedFS, started by scripts/test.sh): the server keeps
its files under `storage.url`, pyarrow reads them straight from the bucket and gets SQL's rows,
nothing of them lands in the data directory, and a SIGKILL with rows only in the write-ahead
log loses and doubles nothing."""

from __future__ import annotations

import os
import uuid
from urllib.parse import urlparse

import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest
from conftest import Otel, launch_server, s3_storage_section, sql_quote


def s3_or_skip():
    if "SIGHTLINE_S3_ENDPOINT" not in os.environ:
        if os.environ.get("SIGHTLINE_REQUIRE_S3"):
            pytest.fail("SIGHTLINE_REQUIRE_S3 is set but SIGHTLINE_S3_ENDPOINT is not")
        pytest.skip("no S3 server (scripts/test.sh starts one)")


def bucket_fs() -> pafs.S3FileSystem:
    endpoint = urlparse(os.environ["SIGHTLINE_S3_ENDPOINT"])
    return pafs.S3FileSystem(
        access_key=os.environ["SIGHTLINE_S3_ACCESS_KEY_ID"],
        secret_key=os.environ["SIGHTLINE_S3_SECRET_ACCESS_KEY"],
        endpoint_override=endpoint.netloc,
        scheme=endpoint.scheme,
        region="us-east-1",
    )


def send_spans(srv, service: str, n: int) -> None:
    otel = Otel(srv, service)
    provider = otel.tracer_provider("grpc")
    tracer = provider.get_tracer("object-storage")
    for i in range(n):
        with tracer.start_as_current_span(f"op-{i % 7}"):
            pass
    provider.shutdown()


def test_the_files_are_in_the_bucket_pyarrow_reads_sql_s_rows_and_a_kill_loses_nothing(tmp_path):
    s3_or_skip()
    prefix = f"e2e-object-storage/{uuid.uuid4().hex}"
    config = "[storage]\n" + s3_storage_section(prefix)
    srv = launch_server(tmp_path, config)
    service = f"s3-{uuid.uuid4().hex[:8]}"
    count = f"SELECT count(*) AS n FROM spans WHERE service_name = {sql_quote(service)}"
    try:
        send_spans(srv, service, 300)
        srv.wait_for_rows(count, until=lambda rows: rows[0]["n"] == 300)
        srv.flush()

        # Straight from the bucket, without Sightline: the rows SQL returns.
        fs = bucket_fs()
        bucket = os.environ.get("SIGHTLINE_S3_BUCKET", "sightline")
        listed = fs.get_file_info(pafs.FileSelector(f"{bucket}/{prefix}/default/spans", recursive=True))
        files = [f.path for f in listed if f.path.endswith(".parquet")]
        assert files, [f.path for f in listed]
        assert all("/date=" in f and "/hour=" in f for f in files), files
        rows = 0
        for path in files:
            table = pq.read_table(path, filesystem=fs, columns=["service_name", "name"])
            rows += pc.sum(pc.equal(table["service_name"], service)).as_py() or 0
        assert rows == 300
        names = srv.sql(
            f"SELECT name, count(*) AS n FROM spans WHERE service_name = {sql_quote(service)} "
            "GROUP BY name ORDER BY name"
        )
        assert sum(r["n"] for r in names) == 300 and len(names) == 7, names

        # No Parquet file in the data directory: the write-ahead log and locks only.
        local = [p for p in (tmp_path / "data").rglob("*.parquet")]
        assert local == [], local

        # Rows acknowledged but only in the write-ahead log when the process is killed.
        send_spans(srv, service, 50)
        srv.wait_for_rows(count, until=lambda rows: rows[0]["n"] == 350)
    finally:
        srv.process.kill()
        srv.process.wait()
    srv = launch_server(tmp_path, config)
    try:
        assert srv.sql(count)[0]["n"] == 350, "every acknowledged span once"
        srv.flush()
        assert srv.sql(count)[0]["n"] == 350
    finally:
        assert srv.stop() == 0, srv.log_tail()
