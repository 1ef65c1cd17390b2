"""Bad input gets a precise error, harms nothing, and the server keeps serving.

Every case is sent to one server that already holds data; the last test checks that data is
intact and the server healthy. Item limits (attributes, events, time window) are enforced by
truncation with dropped counts, or by partial-success rejection, as docs/ingest.md describes."""

from __future__ import annotations

import gzip
import time

import pytest
import requests
from google.rpc import status_pb2
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import (
    AnyValue,
    ArrayValue,
    KeyValue,
    KeyValueList,
)
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

PROTOBUF = {"content-type": "application/x-protobuf"}
HOUR_NS = 3_600 * 10**9
_ids = iter(range(1, 1 << 30))


def span(name: str, start_ns: int | None = None, **fields) -> Span:
    n = next(_ids)
    start = time.time_ns() if start_ns is None else start_ns
    return Span(
        trace_id=(0xBAD << 64 | n).to_bytes(16, "big"),
        span_id=(0xBAD << 32 | n).to_bytes(8, "big"),
        name=name,
        kind=fields.pop("kind", Span.SPAN_KIND_SERVER),
        start_time_unix_nano=start,
        end_time_unix_nano=start + 1_000,
        **fields,
    )


def traces(service: str, *spans: Span) -> ExportTraceServiceRequest:
    return ExportTraceServiceRequest(
        resource_spans=[
            ResourceSpans(
                resource={"attributes": [KeyValue(key="service.name", value=AnyValue(string_value=service))]},
                scope_spans=[ScopeSpans(spans=list(spans))],
            )
        ]
    )


def post(server, body: bytes, path: str = "/v1/traces", headers=None) -> requests.Response:
    return requests.post(
        f"{server.otlp_http_url}{path}", data=body, headers=headers or PROTOBUF, timeout=30
    )


def export(server, request) -> ExportTraceServiceResponse:
    r = post(server, request.SerializeToString())
    assert r.status_code == 200, r.text
    return ExportTraceServiceResponse.FromString(r.content)


def status_of(r: requests.Response) -> status_pb2.Status:
    assert r.headers["content-type"].startswith("application/x-protobuf"), r.headers
    return status_pb2.Status.FromString(r.content)


@pytest.fixture(scope="module")
def loaded(server):
    """The server with a few spans stored before any bad input arrives."""
    service = f"bad-input-baseline-{time.time_ns()}"
    export(server, traces(service, *(span(f"good-{i}") for i in range(5))))
    return server, service


def test_gzip_bomb_is_413_after_bounded_decompression(loaded):
    server, _ = loaded
    bomb = gzip.compress(b"\0" * (200 * 1024 * 1024), compresslevel=9)
    assert len(bomb) < 1024 * 1024
    r = post(server, bomb, headers={**PROTOBUF, "content-encoding": "gzip"})
    assert r.status_code == 413, r.text
    assert "after decompression" in status_of(r).message


def test_oversize_body_is_413_with_and_without_content_length(loaded):
    server, _ = loaded
    body = b"\x0a" * (16 * 1024 * 1024 + 1)
    r = post(server, body)
    assert r.status_code == 413
    assert "exceeds the limit" in status_of(r).message

    def chunks():
        for _ in range(17):
            yield b"\x0a" * (1024 * 1024)

    r = requests.post(f"{server.otlp_http_url}/v1/traces", data=chunks(), headers=PROTOBUF, timeout=30)
    assert r.status_code == 413


def test_truncated_protobuf_is_400(loaded):
    server, service = loaded
    body = traces(service, span("cut")).SerializeToString()
    r = post(server, body[: len(body) // 2])
    assert r.status_code == 400
    assert "invalid protobuf" in status_of(r).message


def test_invalid_utf8_in_a_protobuf_string_is_400(loaded):
    server, service = loaded
    body = traces(service, span("MARKERMARKER")).SerializeToString()
    bad = body.replace(b"MARKERMARKER", b"\xff\xfe\xfd" * 4)
    assert len(bad) == len(body)
    r = post(server, bad)
    assert r.status_code == 400
    assert "invalid protobuf" in status_of(r).message


@pytest.mark.parametrize(
    "payload, fragment",
    [
        ('{"resourceSpans": [{"scopeSpans": [{"spans": [{"name": 5}]}]}]}', "invalid OTLP/JSON"),
        ('{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "zz"}]}]}]}', "invalid OTLP/JSON"),
        ('{"resourceSpans": "nope"}', "invalid OTLP/JSON"),
        ("[1, 2", "invalid OTLP/JSON"),
    ],
)
def test_json_of_the_wrong_shape_is_400(loaded, payload, fragment):
    server, _ = loaded
    r = post(server, payload.encode(), headers={"content-type": "application/json"})
    assert r.status_code == 400, r.text
    assert fragment in r.json()["message"]


def test_items_outside_the_time_window_are_rejected_alone(loaded):
    server, service = loaded
    now = time.time_ns()
    resp = export(
        server,
        traces(
            service,
            span("in-window"),
            span("a-year-ago", start_ns=now - 365 * 24 * HOUR_NS),
            span("tomorrow", start_ns=now + 24 * HOUR_NS),
        ),
    )
    assert resp.partial_success.rejected_spans == 2
    assert "past" in resp.partial_success.error_message
    names = {r["name"] for r in server.sql(f"SELECT name FROM spans WHERE service_name = {server.quote(service)}")}
    assert "in-window" in names and not names & {"a-year-ago", "tomorrow"}


def test_attribute_and_event_limits_truncate_and_count(loaded):
    server, service = loaded
    many = [KeyValue(key=f"k{i}", value=AnyValue(int_value=i)) for i in range(300)]
    huge = KeyValue(key="huge", value=AnyValue(string_value="é" * 100_000))
    long_key = KeyValue(key="x" * 1000, value=AnyValue(string_value="v"))
    deep: AnyValue = AnyValue(string_value="bottom")
    for _ in range(20):
        deep = AnyValue(kvlist_value=KeyValueList(values=[KeyValue(key="d", value=deep)]))
    events = [Span.Event(time_unix_nano=time.time_ns(), name=f"e{i}") for i in range(1000)]
    s = span(
        "limited",
        attributes=[huge, long_key, KeyValue(key="deep", value=deep), *many],
        events=events,
        dropped_attributes_count=2,
    )
    export(server, traces(service, s))
    [row] = server.sql(
        "SELECT length(attributes['huge']) AS huge_len, octet_length(attributes['huge']) AS huge_bytes, "
        "attributes['deep'] AS deep, cardinality(attributes) AS n, dropped_attributes_count, "
        "cardinality(events) AS events, dropped_events_count "
        f"FROM spans WHERE service_name = {server.quote(service)} AND name = 'limited'"
    )
    assert row["huge_bytes"] <= 64 * 1024 and row["huge_len"] == 64 * 1024 // 2, row
    assert row["deep"] is None
    assert row["n"] == 128
    # Sender's 2, plus the long key, the deep value and every attribute past the 128th.
    assert row["dropped_attributes_count"] == 2 + 1 + 1 + (300 + 1 - 128), row
    assert row["events"] == 256 and row["dropped_events_count"] == 1000 - 256


def test_invalid_enum_values_are_handled(loaded):
    server, service = loaded
    s = span("odd-enums", kind=42, status={"code": 7, "message": "?"})
    export(server, traces(service, s))
    [row] = server.sql(
        f"SELECT kind, status_code FROM spans WHERE service_name = {server.quote(service)} AND name = 'odd-enums'"
    )
    assert row == {"kind": "internal", "status_code": "unset"}

    logs = ExportLogsServiceRequest(
        resource_logs=[
            ResourceLogs(
                scope_logs=[
                    ScopeLogs(
                        log_records=[
                            LogRecord(time_unix_nano=time.time_ns(), severity_number=99, body=AnyValue(string_value="x")),
                            LogRecord(time_unix_nano=time.time_ns(), severity_number=9, body=AnyValue(string_value=service)),
                        ]
                    )
                ]
            )
        ]
    )
    r = post(server, logs.SerializeToString(), path="/v1/logs")
    assert r.status_code == 200
    resp = ExportLogsServiceResponse.FromString(r.content)
    assert resp.partial_success.rejected_log_records == 1
    assert "severity_number" in resp.partial_success.error_message


def test_array_attributes_survive_with_their_type(loaded):
    server, service = loaded
    arr = AnyValue(array_value=ArrayValue(values=[AnyValue(int_value=1), AnyValue(bool_value=True)]))
    export(server, traces(service, span("typed", attributes=[KeyValue(key="a", value=arr)])))
    [row] = server.sql(
        "SELECT attributes['a'] AS a, attribute_types['a'] AS t "
        f"FROM spans WHERE service_name = {server.quote(service)} AND name = 'typed'"
    )
    assert row == {"a": "[1,true]", "t": "array"}


def test_after_all_that_the_server_is_healthy_and_earlier_data_intact(loaded):
    server, service = loaded
    assert requests.get(f"{server.api_url}/healthz", timeout=5).status_code == 200
    rows = server.sql(f"SELECT name FROM spans WHERE service_name = {server.quote(service)} AND name LIKE 'good-%'")
    assert sorted(r["name"] for r in rows) == [f"good-{i}" for i in range(5)]
