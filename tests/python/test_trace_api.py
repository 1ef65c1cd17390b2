"""GET /api/v1/traces/{trace_id}: a trace's spans and logs, found without a time range, from
the buffer and from Parquet alike."""

from __future__ import annotations

import logging

import pytest
import requests
from opentelemetry.trace import format_trace_id


def test_trace_by_id_returns_spans_and_logs(server, otel, service_name):
    tracer = otel.tracer_provider("http").get_tracer("trace-api")
    logger_provider = otel.logger_provider("http")
    log = logging.getLogger(f"trace-api-{service_name}")
    log.addHandler(otel.logging_handler(logger_provider))
    log.setLevel(logging.INFO)
    with tracer.start_as_current_span("checkout") as root:
        with tracer.start_as_current_span("charge"):
            log.warning("card declined")
        trace_id = format_trace_id(root.get_span_context().trace_id)
    for provider in otel._to_shutdown:
        if hasattr(provider, "force_flush"):
            provider.force_flush()
    server.wait_for_rows(
        f"SELECT 1 FROM logs WHERE trace_id = '{trace_id}'", until=lambda rows: len(rows) == 1
    )

    for flushed in (False, True):
        if flushed:
            server.flush()
        r = requests.get(f"{server.api_url}/api/v1/traces/{trace_id}", timeout=10)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["trace_id"] == trace_id
        assert [s["name"] for s in body["spans"]] == ["checkout", "charge"]
        assert body["span_count"] == 2 and body["root_span_name"] == "checkout"
        assert [entry["body"] for entry in body["logs"]] == ["card declined"]
        # Upper-case ids are accepted too.
        assert requests.get(f"{server.api_url}/api/v1/traces/{trace_id.upper()}", timeout=10).status_code == 200


@pytest.mark.parametrize(
    "trace_id, status",
    [("0" * 31 + "1", 404), ("xyz", 400), ("0" * 33, 400), ("'; DROP TABLE spans; --", 400)],
)
def test_trace_by_id_errors(server, trace_id, status):
    r = requests.get(f"{server.api_url}/api/v1/traces/{requests.utils.quote(trace_id)}", timeout=10)
    assert r.status_code == status, r.text
    assert r.json()["error"]
