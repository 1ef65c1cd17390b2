"""Hand-made OTLP/HTTP requests and hostile SQL: encodings, partial success, error statuses.

No SDK here: every request body is built by hand, either as OTLP JSON or with the protobuf
classes from opentelemetry-proto.
"""

from __future__ import annotations

import gzip
import json
import os
import time

import pytest
import requests
from google.protobuf.message import DecodeError
from google.rpc import status_pb2
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

TIMEOUT = 10
JSON = "application/json"
PROTOBUF = "application/x-protobuf"


def new_trace_id() -> str:
    return os.urandom(16).hex()


def new_span_id() -> str:
    return os.urandom(8).hex()


def post_otlp(server, path: str, body: bytes, content_type: str, **headers) -> requests.Response:
    return requests.post(
        f"{server.otlp_http_url}{path}",
        data=body,
        headers={"Content-Type": content_type, **headers},
        timeout=TIMEOUT,
    )


def post_json(server, path: str, payload: dict) -> requests.Response:
    return post_otlp(server, path, json.dumps(payload).encode(), JSON)


def assert_json_success(resp: requests.Response) -> dict:
    assert resp.status_code == 200, f"{resp.status_code}: {resp.text}"
    assert resp.headers.get("Content-Type", "").startswith(JSON), resp.headers
    body = resp.json()
    assert isinstance(body, dict), body
    return body


def kv(key: str, value: dict) -> dict:
    return {"key": key, "value": value}


def string_array(*values: str) -> dict:
    return {"arrayValue": {"values": [{"stringValue": value} for value in values]}}


def json_resource(service_name: str, *extra: dict) -> dict:
    return {"attributes": [kv("service.name", {"stringValue": service_name}), *extra]}


# -- protobuf builders ------------------------------------------------------------------------


def pb_span(trace_id: bytes, span_id: bytes, name: str, start_ns: int, **int_attributes) -> Span:
    return Span(
        trace_id=trace_id,
        span_id=span_id,
        name=name,
        kind=Span.SPAN_KIND_SERVER,
        start_time_unix_nano=start_ns,
        end_time_unix_nano=start_ns + 2_000,
        attributes=[
            KeyValue(key=key, value=AnyValue(int_value=value))
            for key, value in int_attributes.items()
        ],
    )


def pb_request(service_name: str, spans: list[Span]) -> ExportTraceServiceRequest:
    return ExportTraceServiceRequest(
        resource_spans=[
            ResourceSpans(
                resource=Resource(
                    attributes=[
                        KeyValue(key="service.name", value=AnyValue(string_value=service_name))
                    ]
                ),
                scope_spans=[
                    ScopeSpans(scope=InstrumentationScope(name="e2e.protobuf"), spans=spans)
                ],
            )
        ]
    )


def spans_of(server, service_name: str, count: int, columns: str = "*") -> list[dict]:
    rows = server.wait_for_rows(
        f"SELECT {columns} FROM spans WHERE service_name = {server.quote(service_name)} "
        "ORDER BY start_time",
        until=lambda rows: len(rows) >= count,
    )
    assert len(rows) == count, rows
    return rows


SPAN_COLUMNS = """trace_id, span_id, parent_span_id, name, kind, status_code, status_message,
    CAST(start_time AS BIGINT) AS start_ns, CAST(end_time AS BIGINT) AS end_ns, duration_ns,
    scope_name, scope_version, attributes, attribute_types, resource_attributes,
    resource_attribute_types"""


# --------------------------------------------------------------------------------------------
# OTLP JSON


def test_json_traces_round_trip(server, service_name):
    trace_id, root_id, child_id = new_trace_id(), new_span_id(), new_span_id()
    now = time.time_ns()
    payload = {
        "resourceSpans": [
            {
                "resource": {
                    **json_resource(service_name, kv("host.cores", {"intValue": "8"})),
                    "futureResourceField": {"anything": True},
                },
                "scopeSpans": [
                    {
                        "scope": {"name": "e2e.json", "version": "0.0.1"},
                        "spans": [
                            {
                                "traceId": trace_id,
                                "spanId": root_id,
                                "name": "json root",
                                "kind": 2,  # SPAN_KIND_SERVER
                                "startTimeUnixNano": str(now),  # 64-bit ints as strings ...
                                "endTimeUnixNano": str(now + 1_500_000),
                                "attributes": [
                                    kv("count.as_string", {"intValue": "42"}),
                                    kv("count.as_number", {"intValue": 42}),
                                    kv("ratio", {"doubleValue": 0.5}),
                                    kv("ok", {"boolValue": True}),
                                    kv("tags", string_array("x", "y")),
                                ],
                                "status": {"code": 2, "message": "json failure"},
                                "someFutureSpanField": {"nested": [1, 2, 3]},
                            },
                            {
                                "traceId": trace_id,
                                "spanId": child_id,
                                "parentSpanId": root_id,
                                "name": "json child",
                                # no kind: unspecified, stored as 'internal'
                                "startTimeUnixNano": now + 100,  # ... and as numbers
                                "endTimeUnixNano": now + 900,
                            },
                        ],
                        "unknownScopeSpansField": "ignored",
                    }
                ],
            }
        ],
        "unknownTopLevelField": 1,
    }
    body = assert_json_success(post_json(server, "/v1/traces", payload))
    assert int(body.get("partialSuccess", {}).get("rejectedSpans", 0)) == 0, body

    root, child = spans_of(server, service_name, 2, SPAN_COLUMNS)
    assert (root["trace_id"], root["span_id"]) == (trace_id, root_id)
    assert root["parent_span_id"] is None
    assert root["name"] == "json root"
    assert root["kind"] == "server"
    assert (root["start_ns"], root["end_ns"], root["duration_ns"]) == (
        now,
        now + 1_500_000,
        1_500_000,
    )
    assert root["status_code"] == "error"
    assert root["status_message"] == "json failure"
    assert (root["scope_name"], root["scope_version"]) == ("e2e.json", "0.0.1")
    assert {k: v for k, v in root["attributes"].items() if k != "tags"} == {
        "count.as_string": "42",
        "count.as_number": "42",
        "ratio": "0.5",
        "ok": "true",
    }
    assert json.loads(root["attributes"]["tags"]) == ["x", "y"]
    assert root["attribute_types"] == {
        "count.as_string": "int",
        "count.as_number": "int",
        "ratio": "double",
        "ok": "bool",
        "tags": "array",
    }
    assert root["resource_attributes"] == {"service.name": service_name, "host.cores": "8"}
    assert root["resource_attribute_types"] == {"host.cores": "int"}

    assert (child["trace_id"], child["span_id"]) == (trace_id, child_id)
    assert child["parent_span_id"] == root_id
    assert child["kind"] == "internal"
    assert child["status_code"] == "unset"
    assert child["status_message"] is None
    assert (child["start_ns"], child["end_ns"]) == (now + 100, now + 900)

    # The attribute lookup the contract documents gives the same text.
    (lookup,) = server.sql(
        "SELECT attributes['count.as_string'] AS s, attributes['count.as_number'] AS n "
        f"FROM spans WHERE span_id = {server.quote(root_id)}"
    )
    assert lookup == {"s": "42", "n": "42"}


def test_json_logs_round_trip(server, service_name):
    trace_id, span_id = new_trace_id(), new_span_id()
    now = time.time_ns()
    payload = {
        "resourceLogs": [
            {
                "resource": json_resource(service_name),
                "scopeLogs": [
                    {
                        "scope": {"name": "e2e.json.logs", "version": "3"},
                        "logRecords": [
                            {
                                "timeUnixNano": str(now),
                                "observedTimeUnixNano": str(now + 10),
                                "severityNumber": 17,  # ERROR
                                "severityText": "ERROR",
                                "body": {"stringValue": "disk full"},
                                "attributes": [
                                    kv("attempt.as_string", {"intValue": "42"}),
                                    kv("attempt.as_number", {"intValue": 42}),
                                ],
                                "traceId": trace_id,
                                "spanId": span_id,
                                "eventName": "disk.full",
                                "notAnOtlpField": True,
                            },
                            {
                                "timeUnixNano": "0",  # unset: the observed time is used
                                "observedTimeUnixNano": str(now + 20),
                                "severityNumber": 9,  # INFO
                                "body": {"intValue": "7"},
                            },
                        ],
                    }
                ],
            }
        ]
    }
    body = assert_json_success(post_json(server, "/v1/logs", payload))
    assert int(body.get("partialSuccess", {}).get("rejectedLogRecords", 0)) == 0, body

    rows = server.wait_for_rows(
        f"""
        SELECT CAST(time AS BIGINT) AS time_ns, CAST(observed_time AS BIGINT) AS observed_ns,
          severity_number, severity_text, body, body_type, trace_id, span_id, event_name,
          scope_name, scope_version, attributes, attribute_types
        FROM logs WHERE service_name = {server.quote(service_name)} ORDER BY observed_time
        """,
        until=lambda rows: len(rows) >= 2,
    )
    assert len(rows) == 2, rows
    error, info = rows

    assert (error["time_ns"], error["observed_ns"]) == (now, now + 10)
    assert (error["severity_number"], error["severity_text"]) == (17, "ERROR")
    assert (error["body"], error["body_type"]) == ("disk full", None)
    assert (error["trace_id"], error["span_id"]) == (trace_id, span_id)
    assert error["event_name"] == "disk.full"
    assert (error["scope_name"], error["scope_version"]) == ("e2e.json.logs", "3")
    assert error["attributes"] == {"attempt.as_string": "42", "attempt.as_number": "42"}
    assert error["attribute_types"] == {"attempt.as_string": "int", "attempt.as_number": "int"}

    assert info["time_ns"] == info["observed_ns"] == now + 20
    assert (info["severity_number"], info["severity_text"]) == (9, None)
    assert (info["body"], info["body_type"]) == ("7", "int")
    assert (info["trace_id"], info["span_id"], info["event_name"]) == (None, None, None)


def test_json_metrics_round_trip(server, service_name):
    now = time.time_ns()
    start = now - 1_000_000_000
    payload = {
        "resourceMetrics": [
            {
                "resource": json_resource(service_name),
                "scopeMetrics": [
                    {
                        "scope": {"name": "e2e.json.metrics"},
                        "metrics": [
                            {
                                "name": "json.gauge",
                                "unit": "By",
                                "description": "bytes in use",
                                "gauge": {
                                    "dataPoints": [
                                        {
                                            "timeUnixNano": str(now),
                                            "asInt": "42",
                                            "attributes": [kv("pool", {"stringValue": "main"})],
                                            "unknownPointField": 0,
                                        }
                                    ]
                                },
                            },
                            {
                                "name": "json.sum",
                                "sum": {
                                    "aggregationTemporality": 1,  # DELTA
                                    "isMonotonic": True,
                                    "dataPoints": [
                                        {
                                            "startTimeUnixNano": str(start),
                                            "timeUnixNano": str(now),
                                            "asDouble": 1.5,
                                        }
                                    ],
                                },
                            },
                            {
                                "name": "json.histogram",
                                "histogram": {
                                    "aggregationTemporality": 2,  # CUMULATIVE
                                    "dataPoints": [
                                        {
                                            "startTimeUnixNano": str(start),
                                            "timeUnixNano": str(now),
                                            "count": "3",
                                            "sum": 6.0,
                                            "min": 1.0,
                                            "max": 3.0,
                                            "bucketCounts": ["2", 1],
                                            "explicitBounds": [2.5],
                                        }
                                    ],
                                },
                            },
                        ],
                    }
                ],
            }
        ]
    }
    body = assert_json_success(post_json(server, "/v1/metrics", payload))
    assert int(body.get("partialSuccess", {}).get("rejectedDataPoints", 0)) == 0, body

    rows = server.wait_for_rows(
        f"""
        SELECT metric_name, metric_type, unit, description, temporality, is_monotonic, value,
          "count", "sum", "min", "max", bucket_counts, explicit_bounds, attributes,
          CAST(time AS BIGINT) AS time_ns, CAST(start_time AS BIGINT) AS start_ns
        FROM metrics WHERE service_name = {server.quote(service_name)} ORDER BY metric_name
        """,
        until=lambda rows: len(rows) >= 3,
    )
    assert [row["metric_name"] for row in rows] == ["json.gauge", "json.histogram", "json.sum"]
    gauge, histogram, total = rows

    assert gauge["metric_type"] == "gauge"
    assert (gauge["unit"], gauge["description"]) == ("By", "bytes in use")
    assert gauge["value"] == 42.0
    assert (gauge["temporality"], gauge["is_monotonic"]) == (None, None)
    assert gauge["attributes"] == {"pool": "main"}
    assert (gauge["time_ns"], gauge["start_ns"]) == (now, None)

    assert total["metric_type"] == "sum"
    assert (total["temporality"], total["is_monotonic"]) == ("delta", True)
    assert total["value"] == 1.5
    assert (total["time_ns"], total["start_ns"]) == (now, start)

    assert histogram["metric_type"] == "histogram"
    assert histogram["temporality"] == "cumulative"
    assert histogram["value"] is None
    assert (histogram["count"], histogram["sum"]) == (3, 6.0)
    assert (histogram["min"], histogram["max"]) == (1.0, 3.0)
    assert histogram["bucket_counts"] == [2, 1]
    assert histogram["explicit_bounds"] == [2.5]


# --------------------------------------------------------------------------------------------
# protobuf


def test_gzip_protobuf_traces_round_trip(server, service_name):
    trace_id, span_id = os.urandom(16), os.urandom(8)
    now = time.time_ns()
    request = pb_request(service_name, [pb_span(trace_id, span_id, "gzipped", now, answer=42)])

    resp = post_otlp(
        server,
        "/v1/traces",
        gzip.compress(request.SerializeToString()),
        PROTOBUF,
        **{"Content-Encoding": "gzip"},
    )
    assert resp.status_code == 200, f"{resp.status_code}: {resp.content!r}"
    assert resp.headers.get("Content-Type", "").startswith(PROTOBUF), resp.headers
    answer = ExportTraceServiceResponse.FromString(resp.content)
    assert answer.partial_success.rejected_spans == 0

    (row,) = spans_of(server, service_name, 1, SPAN_COLUMNS)
    assert (row["trace_id"], row["span_id"]) == (trace_id.hex(), span_id.hex())
    assert (row["name"], row["kind"]) == ("gzipped", "server")
    assert (row["start_ns"], row["end_ns"]) == (now, now + 2_000)
    assert row["scope_name"] == "e2e.protobuf"
    assert row["attributes"] == {"answer": "42"}
    assert row["attribute_types"] == {"answer": "int"}


@pytest.mark.parametrize("encoding", ["protobuf", "json"])
def test_span_with_bad_trace_id_is_rejected_alone(server, service_name, encoding):
    trace_id = os.urandom(16)
    good_ids = [os.urandom(8), os.urandom(8)]
    bad_trace_id = os.urandom(8)  # 8 bytes instead of 16
    now = time.time_ns()
    spans = [
        pb_span(trace_id, good_ids[0], "good one", now),
        pb_span(bad_trace_id, os.urandom(8), "bad trace id", now + 1),
        pb_span(trace_id, good_ids[1], "good two", now + 2),
    ]

    if encoding == "protobuf":
        resp = post_otlp(
            server, "/v1/traces", pb_request(service_name, spans).SerializeToString(), PROTOBUF
        )
        assert resp.status_code == 200, f"{resp.status_code}: {resp.content!r}"
        answer = ExportTraceServiceResponse.FromString(resp.content)
        rejected = answer.partial_success.rejected_spans
    else:
        payload = {
            "resourceSpans": [
                {
                    "resource": json_resource(service_name),
                    "scopeSpans": [
                        {
                            "scope": {"name": "e2e.json"},
                            "spans": [
                                {
                                    "traceId": span.trace_id.hex(),
                                    "spanId": span.span_id.hex(),
                                    "name": span.name,
                                    "kind": 2,
                                    "startTimeUnixNano": str(span.start_time_unix_nano),
                                    "endTimeUnixNano": str(span.end_time_unix_nano),
                                }
                                for span in spans
                            ],
                        }
                    ],
                }
            ]
        }
        body = assert_json_success(post_json(server, "/v1/traces", payload))
        # proto3 JSON writes int64 as a string; accept a number too.
        rejected = int(body.get("partialSuccess", {}).get("rejectedSpans", 0))
    assert rejected == 1

    rows = spans_of(server, service_name, 2, "trace_id, span_id, name")
    assert [row["name"] for row in rows] == ["good one", "good two"]
    assert [row["span_id"] for row in rows] == [span_id.hex() for span_id in good_ids]
    assert {row["trace_id"] for row in rows} == {trace_id.hex()}


# --------------------------------------------------------------------------------------------
# refusals


def test_malformed_protobuf_is_400_with_status(server):
    # Field 1 (resource_spans), length-delimited, claiming far more bytes than follow.
    garbage = b"\x0a\xff\xff\xff\x0f\x01\x02"
    with pytest.raises(DecodeError):
        ExportTraceServiceRequest.FromString(garbage)  # the body is really malformed

    resp = post_otlp(server, "/v1/traces", garbage, PROTOBUF)
    assert resp.status_code == 400, f"{resp.status_code}: {resp.content!r}"
    assert resp.headers.get("Content-Type", "").startswith(PROTOBUF), resp.headers
    status = status_pb2.Status.FromString(resp.content)
    assert status.message, f"google.rpc.Status without a message: {status}"


def test_malformed_json_is_400_with_message(server):
    resp = post_otlp(server, "/v1/traces", b'{"resourceSpans": [{"scopeSpans": [', JSON)
    assert resp.status_code == 400, f"{resp.status_code}: {resp.text}"
    assert resp.headers.get("Content-Type", "").startswith(JSON), resp.headers
    body = resp.json()
    assert isinstance(body.get("message"), str) and body["message"], body


def test_corrupt_gzip_is_400(server):
    resp = post_otlp(
        server, "/v1/traces", b"definitely not gzip", PROTOBUF, **{"Content-Encoding": "gzip"}
    )
    assert resp.status_code == 400, f"{resp.status_code}: {resp.content!r}"


def test_unsupported_content_type_is_415(server):
    resp = post_otlp(server, "/v1/traces", b"hello", "text/plain")
    assert resp.status_code == 415, f"{resp.status_code}: {resp.text}"


def test_get_on_signal_path_is_405(server):
    resp = requests.get(f"{server.otlp_http_url}/v1/traces", timeout=TIMEOUT)
    assert resp.status_code == 405, f"{resp.status_code}: {resp.text}"


def test_unknown_otlp_path_is_404(server):
    resp = post_otlp(server, "/v1/nope", ExportTraceServiceRequest().SerializeToString(), PROTOBUF)
    assert resp.status_code == 404, f"{resp.status_code}: {resp.text}"


def post_sql(server, query: str) -> requests.Response:
    return requests.post(f"{server.api_url}/api/v1/sql", json={"sql": query}, timeout=TIMEOUT)


def assert_sql_refused(resp: requests.Response) -> str:
    assert resp.status_code == 400, f"{resp.status_code}: {resp.text}"
    error = resp.json().get("error")
    assert isinstance(error, str) and error.strip(), resp.text
    assert "panicked" not in error, error
    return error


@pytest.mark.parametrize(
    "query",
    [
        "DROP TABLE spans",
        "INSERT INTO spans (name) VALUES ('intruder')",
        "DELETE FROM spans",
        "CREATE TABLE e2e_copy AS SELECT 1 AS x",
        "CREATE VIEW e2e_view AS SELECT 1 AS x",
    ],
    ids=["drop", "insert", "delete", "create-table-as", "create-view"],
)
def test_ddl_and_dml_are_refused(server, query):
    assert_sql_refused(post_sql(server, query))


def test_copy_is_refused_and_writes_nothing(server, tmp_path):
    target = tmp_path / "copy-out.csv"
    assert_sql_refused(post_sql(server, f"COPY (SELECT 1 AS x) TO {server.quote(str(target))}"))
    assert not target.exists(), "COPY was refused but still wrote a file"


def test_create_external_table_is_refused(server, tmp_path):
    source = tmp_path / "external.csv"
    source.write_text("x\n1\n")
    assert_sql_refused(
        post_sql(
            server,
            f"CREATE EXTERNAL TABLE e2e_external STORED AS CSV "
            f"LOCATION {server.quote(str(source))} OPTIONS ('format.has_header' 'true')",
        )
    )
    # Nothing was registered.
    assert_sql_refused(post_sql(server, "SELECT * FROM e2e_external"))


@pytest.mark.parametrize(
    "query",
    [
        "SELEC 1",
        "SELECT * FROM spans WHERE",
        "SELECT * FROM no_such_table",
        "SELECT no_such_column FROM spans",
    ],
    ids=["typo", "truncated", "unknown-table", "unknown-column"],
)
def test_bad_sql_is_400_never_500(server, query):
    assert_sql_refused(post_sql(server, query))


# --------------------------------------------------------------------------------------------
# survival


def test_server_survives_bad_input_and_keeps_data(server, service_name, tmp_path):
    before_id = os.urandom(8)
    now = time.time_ns()
    request = pb_request(service_name, [pb_span(os.urandom(16), before_id, "before", now)])
    assert post_otlp(server, "/v1/traces", request.SerializeToString(), PROTOBUF).status_code == 200
    (before,) = spans_of(server, service_name, 1, "span_id, name, CAST(start_time AS BIGINT) t")

    abuse = [
        post_otlp(server, "/v1/traces", b"\x0a\xff\xff\xff\x0f", PROTOBUF),
        post_otlp(server, "/v1/traces", b"{not json", JSON),
        post_otlp(server, "/v1/logs", b"\x1f\x8b junk", PROTOBUF, **{"Content-Encoding": "gzip"}),
        post_otlp(server, "/v1/metrics", b"hello", "text/plain"),
        post_sql(server, "DROP TABLE spans"),
        post_sql(server, "DELETE FROM spans"),
        post_sql(server, f"COPY (SELECT * FROM spans) TO {server.quote(str(tmp_path / 'x'))}"),
        post_sql(server, "SELECT FROM WHERE"),
    ]
    assert all(400 <= resp.status_code < 500 for resp in abuse), [
        (resp.request.url, resp.status_code) for resp in abuse
    ]

    assert requests.get(f"{server.api_url}/healthz", timeout=TIMEOUT).status_code == 200
    assert server.sql("SELECT 1 AS one") == [{"one": 1}]
    assert server.sql(
        f"SELECT span_id, name, CAST(start_time AS BIGINT) t FROM spans "
        f"WHERE service_name = {server.quote(service_name)}"
    ) == [before]
    assert before == {"span_id": before_id.hex(), "name": "before", "t": now}

    # ... and it still ingests.
    after_id = os.urandom(8)
    request = pb_request(service_name, [pb_span(os.urandom(16), after_id, "after", now + 1)])
    assert post_otlp(server, "/v1/traces", request.SerializeToString(), PROTOBUF).status_code == 200
    rows = spans_of(server, service_name, 2, "span_id")
    assert [row["span_id"] for row in rows] == [before_id.hex(), after_id.hex()]
