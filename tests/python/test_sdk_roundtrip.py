"""Traces, metrics and logs sent by the real OpenTelemetry Python SDK come back exactly via SQL.

Every test runs twice: once through the OTLP/gRPC exporters and once through OTLP/HTTP
(protobuf). Expected values come from the SDK's own objects (ids, timestamps), never from the
server.
"""

from __future__ import annotations

import calendar
import json
import logging
import re

import pytest
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.trace import Link, SpanKind, Status, StatusCode


@pytest.fixture(params=["grpc", "http"])
def protocol(request) -> str:
    return request.param


def trace_hex(trace_id: int) -> str:
    return format(trace_id, "032x")


def span_hex(span_id: int) -> str:
    return format(span_id, "016x")


def force_flush(provider) -> None:
    assert provider.force_flush(timeout_millis=15_000), "the SDK could not flush in time"


def rfc3339_to_ns(text: str) -> int:
    """Nanoseconds since the epoch for an RFC 3339 UTC timestamp (any fraction length)."""
    match = re.fullmatch(
        r"(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(Z|[+-]00:?00)",
        text,
    )
    assert match, f"not an RFC 3339 UTC timestamp: {text!r}"

    year, month, day, hour, minute, second = (int(g) for g in match.groups()[:6])
    seconds = calendar.timegm((year, month, day, hour, minute, second))
    fraction = (match.group(7) or "").ljust(9, "0")
    return seconds * 1_000_000_000 + int(fraction or 0)


# --------------------------------------------------------------------------------------------
# traces

SPAN_ATTRIBUTES = {
    "attr.str": "hello",
    "attr.int": 42,
    "attr.negative_int": -7,
    "attr.float": 0.25,
    "attr.whole_float": 3.0,
    "attr.bool": True,
    "attr.str_list": ["a", "b c"],
    "attr.int_list": [1, 2, 3],
    "http.route": "/checkout/{id}",
    "http.request.method": "POST",
    "http.response.status_code": 503,
}
# The text form the contract prescribes for each scalar attribute ...
SPAN_ATTRIBUTE_TEXT = {
    "attr.str": "hello",
    "attr.int": "42",
    "attr.negative_int": "-7",
    "attr.float": "0.25",
    "attr.whole_float": "3",
    "attr.bool": "true",
    "http.route": "/checkout/{id}",
    "http.request.method": "POST",
    "http.response.status_code": "503",
}
# ... and arrays, which are stored as JSON text (compared after decoding).
SPAN_ATTRIBUTE_JSON = {"attr.str_list": ["a", "b c"], "attr.int_list": [1, 2, 3]}
SPAN_ATTRIBUTE_TYPES = {
    "attr.int": "int",
    "attr.negative_int": "int",
    "attr.float": "double",
    "attr.whole_float": "double",
    "attr.bool": "bool",
    "attr.str_list": "array",
    "attr.int_list": "array",
    "http.response.status_code": "int",
}


def decode_attributes(attributes: dict[str, str]) -> dict[str, object]:
    """Attribute map text, with the JSON-encoded arrays decoded."""
    return {
        key: json.loads(value) if key in SPAN_ATTRIBUTE_JSON else value
        for key, value in attributes.items()
    }


def test_spans_round_trip(server, otel, service_name, protocol):
    provider = otel.tracer_provider(
        protocol,
        resource_attributes={"deployment.environment.name": "e2e", "e2e.resource.int": 7},
    )
    tracer = provider.get_tracer("e2e.sdk-roundtrip", "1.2.3")

    # A span in a trace of its own, for the main span to link to.
    with tracer.start_as_current_span("enqueue job", kind=SpanKind.PRODUCER) as other:
        pass
    link = Link(other.get_span_context(), {"link.reason": "retry-of"})

    with tracer.start_as_current_span(
        "POST /checkout/{id}", kind=SpanKind.SERVER, attributes=SPAN_ATTRIBUTES, links=[link]
    ) as parent:
        parent.add_event("cart.validated", {"cart.items": 3, "cart.currency": "EUR"})
        with tracer.start_as_current_span(
            "GET inventory",
            kind=SpanKind.CLIENT,
            attributes={"http.method": "GET", "http.status_code": 200},
        ) as child:
            pass
        parent.set_status(Status(StatusCode.ERROR, "payment declined"))
    force_flush(provider)

    attribute_columns = ",\n  ".join(
        f"attributes[{server.quote(key)}] AS attr_{i}" for i, key in enumerate(SPAN_ATTRIBUTES)
    )
    rows = server.wait_for_rows(
        f"""
        SELECT trace_id, span_id, parent_span_id, trace_state, name, kind,
          CAST(start_time AS BIGINT) AS start_ns, CAST(end_time AS BIGINT) AS end_ns,
          duration_ns, status_code, status_message, service_name, scope_name, scope_version,
          http_route, http_request_method, http_response_status_code,
          attributes, attribute_types, resource_attributes, resource_attribute_types,
          events, links,
          {attribute_columns}
        FROM spans WHERE service_name = {server.quote(service_name)}
        ORDER BY start_time
        """,
        until=lambda rows: len(rows) >= 3,
    )
    by_id = {row["span_id"]: row for row in rows}
    assert len(rows) == 3 and len(by_id) == 3, rows

    # -- the server span (root) ---------------------------------------------------------
    p = by_id[span_hex(parent.context.span_id)]
    assert p["trace_id"] == trace_hex(parent.context.trace_id)
    assert p["parent_span_id"] is None
    assert p["trace_state"] is None
    assert p["name"] == "POST /checkout/{id}"
    assert p["kind"] == "server"
    assert p["start_ns"] == parent.start_time
    assert p["end_ns"] == parent.end_time
    assert p["duration_ns"] == parent.end_time - parent.start_time
    assert p["status_code"] == "error"
    assert p["status_message"] == "payment declined"
    assert p["service_name"] == service_name
    assert (p["scope_name"], p["scope_version"]) == ("e2e.sdk-roundtrip", "1.2.3")

    for i, key in enumerate(SPAN_ATTRIBUTES):
        text = p[f"attr_{i}"]
        if key in SPAN_ATTRIBUTE_JSON:
            assert json.loads(text) == SPAN_ATTRIBUTE_JSON[key], f"attributes[{key!r}] = {text!r}"
        else:
            assert text == SPAN_ATTRIBUTE_TEXT[key], f"attributes[{key!r}]"
    assert decode_attributes(p["attributes"]) == {**SPAN_ATTRIBUTE_TEXT, **SPAN_ATTRIBUTE_JSON}
    assert p["attribute_types"] == SPAN_ATTRIBUTE_TYPES

    assert p["http_route"] == "/checkout/{id}"
    assert p["http_request_method"] == "POST"
    assert p["http_response_status_code"] == 503

    assert p["resource_attributes"] == {
        "service.name": service_name,
        "deployment.environment.name": "e2e",
        "e2e.resource.int": "7",
    }
    assert p["resource_attribute_types"] == {"e2e.resource.int": "int"}

    (sdk_event,) = parent.events
    assert len(p["events"]) == 1, p["events"]
    event = p["events"][0]
    assert event["name"] == "cart.validated"
    assert event["attributes"] == {"cart.items": "3", "cart.currency": "EUR"}
    assert event["attribute_types"] == {"cart.items": "int"}
    # Timestamps inside JSON are RFC 3339 strings; exact comparison goes through SQL below.
    assert abs(rfc3339_to_ns(event["time"]) - sdk_event.timestamp) < 1_000

    assert len(p["links"]) == 1, p["links"]
    (row_link,) = p["links"]
    assert row_link["trace_id"] == trace_hex(other.context.trace_id)
    assert row_link["span_id"] == span_hex(other.context.span_id)
    assert row_link["attributes"] == {"link.reason": "retry-of"}

    (event_time,) = server.sql(
        "SELECT CAST(events[1]['time'] AS BIGINT) AS time_ns FROM spans "
        f"WHERE span_id = {server.quote(p['span_id'])} "
        f"AND service_name = {server.quote(service_name)}"
    )
    assert event_time["time_ns"] == sdk_event.timestamp

    # -- the client span (child) --------------------------------------------------------
    c = by_id[span_hex(child.context.span_id)]
    assert c["trace_id"] == trace_hex(parent.context.trace_id)
    assert c["parent_span_id"] == span_hex(parent.context.span_id)
    assert c["name"] == "GET inventory"
    assert c["kind"] == "client"
    assert c["start_ns"] == child.start_time
    assert c["end_ns"] == child.end_time
    assert c["duration_ns"] == child.end_time - child.start_time
    assert c["status_code"] == "unset"
    assert c["status_message"] is None
    # Legacy semconv names are promoted too.
    assert c["http_request_method"] == "GET"
    assert c["http_response_status_code"] == 200
    assert c["http_route"] is None
    assert c["attributes"] == {"http.method": "GET", "http.status_code": "200"}
    assert c["attribute_types"] == {"http.status_code": "int"}
    assert not c["events"]
    assert not c["links"]

    # -- the linked span, alone in its trace ---------------------------------------------
    o = by_id[span_hex(other.context.span_id)]
    assert o["trace_id"] == trace_hex(other.context.trace_id) != p["trace_id"]
    assert o["parent_span_id"] is None
    assert o["kind"] == "producer"

    # -- the traces table -------------------------------------------------------------
    trace_rows = server.wait_for_rows(
        f"""
        SELECT trace_id, CAST(start_time AS BIGINT) AS start_ns,
          CAST(end_time AS BIGINT) AS end_ns, duration_ns, root_service_name, root_span_name,
          span_count, error_count
        FROM traces WHERE trace_id = {server.quote(trace_hex(parent.context.trace_id))}
        """,
        until=lambda rows: bool(rows) and rows[0]["span_count"] == 2,
    )
    assert len(trace_rows) == 1, trace_rows
    (t,) = trace_rows
    assert t["span_count"] == 2
    assert t["error_count"] >= 1
    assert t["root_span_name"] == "POST /checkout/{id}"
    assert t["root_service_name"] == service_name
    # The child lies inside the parent, so the trace spans exactly the parent.
    assert t["start_ns"] == parent.start_time
    assert t["end_ns"] == parent.end_time
    assert t["duration_ns"] == parent.end_time - parent.start_time


# --------------------------------------------------------------------------------------------
# metrics

HISTOGRAM_BOUNDS = [0.0, 5.0, 10.0, 25.0]
HISTOGRAM_VALUES = [0.5, 3.0, 7.25, 30.0, 0.0]
# Buckets are (-inf, 0], (0, 5], (5, 10], (10, 25], (25, +inf).
HISTOGRAM_BUCKETS = [1, 2, 1, 0, 1]


def test_metrics_round_trip(server, otel, service_name, protocol):
    provider = otel.meter_provider(protocol)
    meter = provider.get_meter("e2e.metrics", "2.0.0")
    attributes = {"route": "/checkout", "http.code": 200}

    counter = meter.create_counter("e2e.requests", unit="{request}", description="Requests")
    for amount in (3, 4, 5):
        counter.add(amount, attributes)

    up_down = meter.create_up_down_counter("e2e.queue.depth", unit="{item}")
    up_down.add(10, attributes)
    up_down.add(-3, attributes)

    histogram = meter.create_histogram(
        "e2e.latency", unit="ms", explicit_bucket_boundaries_advisory=HISTOGRAM_BOUNDS
    )
    for value in HISTOGRAM_VALUES:
        histogram.record(value, attributes)

    def read_temperature(_options: CallbackOptions):
        yield Observation(21.5, {"sensor": "a"})

    meter.create_observable_gauge("e2e.temperature", callbacks=[read_temperature], unit="Cel")

    force_flush(provider)

    names = {"e2e.requests", "e2e.queue.depth", "e2e.latency", "e2e.temperature"}
    rows = server.wait_for_rows(
        f"""
        SELECT metric_name, metric_type, unit, description, temporality, is_monotonic, value,
          "count", "sum", "min", "max", bucket_counts, explicit_bounds, attributes, attribute_types,
          scope_name, scope_version, service_name,
          CAST(time AS BIGINT) AS time_ns, CAST(start_time AS BIGINT) AS start_ns
        FROM metrics WHERE service_name = {server.quote(service_name)}
        ORDER BY metric_name, time
        """,
        until=lambda rows: {row["metric_name"] for row in rows} >= names,
    )
    assert {row["metric_name"] for row in rows} == names
    # One export per force_flush; with cumulative temporality a repeated export would carry
    # the same values, so the latest point of each metric is what is checked.
    latest = {row["metric_name"]: row for row in rows}

    for row in latest.values():
        assert (row["scope_name"], row["scope_version"]) == ("e2e.metrics", "2.0.0")
        assert row["service_name"] == service_name
        assert row["time_ns"] > 0

    # No OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE (conftest clears OTEL_*): the OTLP
    # exporters then ask for cumulative temporality for every instrument.
    requests_row = latest["e2e.requests"]
    assert requests_row["metric_type"] == "sum"
    assert requests_row["temporality"] == "cumulative"
    assert requests_row["is_monotonic"] is True
    assert requests_row["value"] == 12.0
    assert requests_row["unit"] == "{request}"
    assert requests_row["description"] == "Requests"
    assert requests_row["attributes"] == {"route": "/checkout", "http.code": "200"}
    assert requests_row["attribute_types"] == {"http.code": "int"}
    assert requests_row["start_ns"] is not None
    assert requests_row["start_ns"] <= requests_row["time_ns"]

    depth = latest["e2e.queue.depth"]
    assert depth["metric_type"] == "sum"
    assert depth["temporality"] == "cumulative"
    assert depth["is_monotonic"] is False
    assert depth["value"] == 7.0
    assert depth["attributes"] == {"route": "/checkout", "http.code": "200"}

    latency = latest["e2e.latency"]
    assert latency["metric_type"] == "histogram"
    assert latency["temporality"] == "cumulative"
    assert latency["is_monotonic"] is None
    assert latency["value"] is None
    assert latency["unit"] == "ms"
    assert latency["count"] == len(HISTOGRAM_VALUES)
    assert latency["sum"] == sum(HISTOGRAM_VALUES)
    assert latency["min"] == min(HISTOGRAM_VALUES)
    assert latency["max"] == max(HISTOGRAM_VALUES)
    assert latency["bucket_counts"] == HISTOGRAM_BUCKETS
    assert latency["explicit_bounds"] == HISTOGRAM_BOUNDS
    assert latency["attributes"] == {"route": "/checkout", "http.code": "200"}

    temperature = latest["e2e.temperature"]
    assert temperature["metric_type"] == "gauge"
    assert temperature["temporality"] is None
    assert temperature["is_monotonic"] is None
    assert temperature["value"] == 21.5
    assert temperature["unit"] == "Cel"
    assert temperature["attributes"] == {"sensor": "a"}
    assert (temperature["attribute_types"] or {}) == {}


# --------------------------------------------------------------------------------------------
# logs


def test_logs_round_trip(server, otel, service_name, protocol):
    logger_provider = otel.logger_provider(protocol)
    tracer = otel.tracer_provider(protocol).get_tracer("e2e.logs")

    handler = otel.logging_handler(logger_provider)
    records: list[logging.LogRecord] = []
    handler.addFilter(lambda record: records.append(record) or True)
    logger = logging.getLogger(f"e2e.logs.{service_name}")
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    logger.addHandler(handler)
    try:
        with tracer.start_as_current_span("checkout") as span:
            logger.warning(
                "order %s failed: %s",
                42,
                "card declined",
                extra={"order.id": 42, "customer": "acme", "amount": 9.5, "retry": True},
            )
    finally:
        logger.removeHandler(handler)
    force_flush(logger_provider)
    (record,) = records

    rows = server.wait_for_rows(
        f"""
        SELECT CAST(time AS BIGINT) AS time_ns, CAST(observed_time AS BIGINT) AS observed_ns,
          severity_number, severity_text, body, body_type, trace_id, span_id, event_name,
          service_name, scope_name, attributes, attribute_types,
          attributes['order.id'] AS order_id
        FROM logs WHERE service_name = {server.quote(service_name)}
        """
    )
    assert len(rows) == 1, rows
    (row,) = rows

    assert row["time_ns"] == int(record.created * 1e9)  # what the SDK's handler sends
    assert row["observed_ns"] is not None and row["observed_ns"] > 0
    assert row["severity_number"] == 13  # SeverityNumber.WARN
    assert row["severity_text"] == "WARN"
    assert row["body"] == "order 42 failed: card declined"
    assert row["body_type"] is None  # string body
    assert row["trace_id"] == trace_hex(span.context.trace_id)
    assert row["span_id"] == span_hex(span.context.span_id)
    assert row["event_name"] is None
    assert row["service_name"] == service_name
    assert row["scope_name"] == logger.name

    assert row["order_id"] == "42"
    expected_attributes = {
        "order.id": "42",
        "customer": "acme",
        "amount": "9.5",
        "retry": "true",
        "code.file.path": record.pathname,
        "code.function.name": record.funcName,
        "code.line.number": str(record.lineno),
    }
    assert {k: row["attributes"].get(k) for k in expected_attributes} == expected_attributes
    expected_types = {"order.id": "int", "amount": "double", "retry": "bool"}
    expected_types["code.line.number"] = "int"
    assert {k: row["attribute_types"].get(k) for k in expected_types} == expected_types
    assert "customer" not in row["attribute_types"]
