"""GET /api/v1/services/map: the calls between services, from the OpenTelemetry Python SDK's
spans of three services (a frontend calling payment and catalog over "HTTP", payment failing a
quarter of its charges), with calls, error rates and latencies per edge; bad ranges refused."""

from __future__ import annotations

import time
from pathlib import Path
from datetime import datetime, timedelta, timezone

import requests
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode, set_span_in_context


def test_the_map_has_an_edge_per_pair_of_services_with_their_figures(server, otel, service_name):
    names = {role: f"{service_name}-{role}" for role in ("frontend", "payment", "catalog")}
    tracers = {}
    for role, name in names.items():
        provider = TracerProvider(resource=Resource({"service.name": name}))
        provider.add_span_processor(BatchSpanProcessor(otel.span_exporter("http")))
        otel._to_shutdown.append(provider)
        tracers[role] = provider.get_tracer("service-map")
    front, pay, cat = tracers["frontend"], tracers["payment"], tracers["catalog"]
    for i in range(20):
        with front.start_as_current_span("POST /checkout", kind=SpanKind.SERVER):
            with front.start_as_current_span("GET", kind=SpanKind.CLIENT) as call:
                with cat.start_as_current_span(
                    "GET /item", kind=SpanKind.SERVER, context=set_span_in_context(call)
                ):
                    pass
            with front.start_as_current_span("POST", kind=SpanKind.CLIENT) as call:
                with pay.start_as_current_span(
                    "POST /charge", kind=SpanKind.SERVER, context=set_span_in_context(call)
                ) as charge:
                    time.sleep(0.002)
                    if i % 4 == 0:
                        charge.set_status(Status(StatusCode.ERROR, "declined"))
    for provider in otel._to_shutdown:
        if hasattr(provider, "force_flush"):
            provider.force_flush()
    ours = f"service_name LIKE '{service_name}-%'"
    server.wait_for_rows(f"SELECT 1 FROM spans WHERE {ours}", until=lambda rows: len(rows) == 100)

    def edges(**params):
        r = requests.get(f"{server.api_url}/api/v1/services/map", params=params, timeout=30)
        assert r.status_code == 200, r.text
        return {
            (e["caller"], e["callee"]): e
            for e in r.json()["edges"]
            if e["caller"].startswith(service_name)
        }

    for flushed in (False, True):
        if flushed:
            server.flush()
        got = edges()
        assert set(got) == {
            (names["frontend"], names["payment"]),
            (names["frontend"], names["catalog"]),
        }, got
        payment = got[(names["frontend"], names["payment"])]
        assert payment["calls"] == 20 and payment["errors"] == 5
        assert abs(payment["error_rate"] - 0.25) < 1e-9
        assert payment["p50_ms"] >= 2 and payment["p99_ms"] >= payment["p50_ms"]
        assert abs(payment["rate_per_s"] - 20 / 3600) < 1e-9
        catalog = got[(names["frontend"], names["catalog"])]
        assert catalog["calls"] == 20 and catalog["errors"] == 0 and catalog["error_rate"] == 0

    # docs/sql.md's example gives the same calls.
    example = (Path(__file__).resolve().parents[2] / "docs" / "sql.md").read_text()
    query = example.split("SELECT p.service_name AS caller", 1)[1].split("```", 1)[0]
    rows = server.sql("SELECT p.service_name AS caller" + query)
    calls = {(r["caller"], r["callee"]): r["calls"] for r in rows if r["caller"].startswith(service_name)}
    assert calls == {k: e["calls"] for k, e in got.items()}, calls

    # A range that does not hold the calls has none of them.
    old = datetime.now(timezone.utc) - timedelta(days=2)
    assert edges(**{"from": old.isoformat(), "to": (old + timedelta(hours=1)).isoformat()}) == {}

    # Ranges the map refuses, with a message.
    now = int(time.time())
    for params, needle in [
        ({"from": now - 2 * 86400, "to": now}, "at most 86400"),
        ({"from": now, "to": now - 60}, "before"),
        ({"from": "yesterday"}, "not a time"),
        # Far apart on both sides of 1970: the span must not wrap around.
        ({"from": -9_000_000_000, "to": 9_000_000_000}, "at most 86400"),
    ]:
        r = requests.get(f"{server.api_url}/api/v1/services/map", params=params, timeout=10)
        assert r.status_code == 400 and needle in r.text, (params, r.status_code, r.text)
