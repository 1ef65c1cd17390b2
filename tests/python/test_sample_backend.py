"""The sample shop on its own against a real server: the standard OTEL_EXPORTER_OTLP_*
variables (gRPC and HTTP/protobuf), its services each their own resource, fault injection
through flags and the admin API (with its bad-input answers), retries, graceful degradation,
rate limiting, and the orders queue's retries and dead letters, each visible in the telemetry
Sightline stores.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest
import requests
from conftest import _server_binary, poll

PROTOCOLS = {"grpc": "otlp_grpc", "http/protobuf": "otlp_http"}


def start_shop(server, tmp_path, protocol: str, *args: str) -> tuple[subprocess.Popen, str]:
    ready = tmp_path / f"shop-{protocol.replace('/', '-')}.json"
    endpoint = getattr(server, PROTOCOLS[protocol])
    env = dict(
        os.environ,
        OTEL_EXPORTER_OTLP_ENDPOINT=f"http://{endpoint}",
        OTEL_EXPORTER_OTLP_PROTOCOL=protocol,
        OTEL_METRIC_EXPORT_INTERVAL="1000",
        OTEL_BSP_SCHEDULE_DELAY="200",
        OTEL_BLRP_SCHEDULE_DELAY="200",
    )
    shop = subprocess.Popen(
        [_server_binary(), "sample-backend", "--listen", "127.0.0.1:0", "--ready-file", str(ready), *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=open(tmp_path / "shop.log", "wb"),  # noqa: SIM115
    )
    url = poll(
        lambda: ready.exists() and f"http://{json.loads(ready.read_text())['http']}",
        timeout=30,
        what="the shop listening",
    )
    return shop, url


def stop_shop(shop: subprocess.Popen) -> None:
    shop.send_signal(signal.SIGTERM)
    assert shop.wait(timeout=30) == 0


@pytest.mark.parametrize("protocol", list(PROTOCOLS))
def test_the_shop_exports_over_either_protocol_with_faults_from_flags(server, tmp_path, protocol):
    suffix = f"-{protocol.replace('/', '-')}-{time.time_ns()}"
    service = f"shop{suffix}"
    shop, url = start_shop(
        server, tmp_path, protocol,
        "--name-suffix", suffix, "--load-rate", "30", "--fault", "recommendations=1",
    )  # fmt: skip
    try:
        time.sleep(6)
    finally:
        stop_shop(shop)  # flushes its telemetry
    q = server.quote(service)
    spans = server.wait_for_rows(
        f"SELECT count(*) AS n FROM spans WHERE service_name = {q} AND http_route = '/api/checkout' "
        "AND attributes['shop.degraded'] = 'true' AND status_code <> 'error'",
        until=lambda rows: rows[0]["n"] > 0,
    )
    assert spans[0]["n"] > 0, "checkout answers without recommendations, marked degraded"
    logs = server.sql(
        f"SELECT count(*) AS n FROM logs WHERE service_name = {q} AND trace_id IS NOT NULL "
        "AND body LIKE 'recommendations unavailable%'"
    )
    assert logs[0]["n"] > 0
    metrics = server.sql(
        f"SELECT count(*) AS n FROM metrics WHERE service_name = {q} "
        "AND metric_name = 'http.server.request.duration'"
    )
    assert metrics[0]["n"] > 0
    # Every service is its own resource, with its own spans, metrics and logs.
    names = {f"{role}{suffix}" for role in ("shop", "catalog", "payment", "recommendations", "orders")}
    per_service = server.wait_for_rows(
        f"SELECT DISTINCT service_name FROM spans WHERE service_name LIKE '%{suffix}' "
        "AND kind IN ('server', 'consumer')",
        until=lambda rows: {r["service_name"] for r in rows} == names,
    )
    assert {r["service_name"] for r in per_service} == names
    measured = server.sql(
        f"SELECT DISTINCT service_name FROM metrics WHERE service_name LIKE '%{suffix}' "
        "AND metric_name = 'http.server.request.duration'"
    )
    assert {r["service_name"] for r in measured} == names - {f"orders{suffix}"}
    # The recommendations failures are that service's own error spans, called by the shop.
    failing = server.sql(
        f"SELECT count(*) AS n FROM spans c JOIN spans p ON c.trace_id = p.trace_id "
        "AND c.parent_span_id = p.span_id "
        f"WHERE c.service_name = 'recommendations{suffix}' AND p.service_name = {q} "
        "AND c.kind = 'server' AND p.kind = 'client' AND c.status_code = 'error'"
    )
    assert failing[0]["n"] > 0


def test_orders_go_through_the_queue_and_dead_letter_after_their_retries(server, tmp_path):
    """Every fulfilment fails (orders=1): each order is delivered four times, as four consumer
    spans under the checkout's producer span, linked to it, then dead-lettered — a producer
    span to orders.dlq and an error log in the same trace."""
    suffix = f"-queue-{time.time_ns()}"
    shop, url = start_shop(server, tmp_path, "grpc", "--name-suffix", suffix, "--fault", "orders=1")
    try:
        for i in range(3):
            user = f"q{i}"
            assert requests.post(f"{url}/api/cart/{user}/items", json={"product_id": 1}, timeout=5).ok
            assert requests.post(f"{url}/api/checkout", json={"user": user}, timeout=10).status_code == 200

        def dead() -> dict | None:
            q = requests.get(f"{url}/admin/faults", timeout=5).json()["orders_queue"]
            return q if q["dead_lettered_total"] == 3 else None

        queue = poll(dead, timeout=30, what="three orders dead-lettered")
        assert queue["ready"] == 0 and queue["retrying"] == 0 and queue["dead_letters"] == 3
        # The worker's gauge says so too (exported every second while the shop runs).
        orders = server.quote(f"orders{suffix}")
        gauge = server.wait_for_rows(
            f"SELECT max(value) AS n FROM metrics WHERE service_name = {orders} "
            "AND metric_name = 'sample_queue.messages' AND attributes['sample_queue.state'] = 'dead'",
            until=lambda rows: rows[0]["n"] == 3,
        )
        assert gauge[0]["n"] == 3, gauge
    finally:
        stop_shop(shop)
    shop_name = server.quote(f"shop{suffix}")
    deliveries = server.wait_for_rows(
        "SELECT c.trace_id, count(*) AS n, "
        "sum(CASE WHEN c.status_code = 'error' THEN 1 ELSE 0 END) AS failed, "
        "max(cardinality(c.links)) AS links, "
        "sum(CASE WHEN c.links[1]['span_id'] = p.span_id THEN 1 ELSE 0 END) AS linked "
        "FROM spans c JOIN spans p ON c.trace_id = p.trace_id AND c.parent_span_id = p.span_id "
        f"WHERE c.service_name = {orders} AND c.kind = 'consumer' AND c.name = 'process orders' "
        f"AND p.service_name = {shop_name} AND p.kind = 'producer' AND p.name = 'send orders' "
        "GROUP BY 1",
        until=lambda rows: len(rows) == 3 and all(r["n"] == 4 for r in rows),
    )
    assert len(deliveries) == 3, deliveries
    for d in deliveries:
        assert (d["n"], d["failed"], d["links"], d["linked"]) == (4, 4, 1, 4), d
    dlq = server.wait_for_rows(
        "SELECT s.trace_id FROM spans s JOIN logs l ON l.trace_id = s.trace_id "
        f"WHERE s.service_name = {orders} AND s.kind = 'producer' AND s.name = 'send orders.dlq' "
        "AND s.attributes['messaging.destination.name'] = 'orders.dlq' "
        f"AND l.service_name = {orders} AND l.severity_text = 'ERROR' AND l.body LIKE 'order dead-lettered%'",
        until=lambda rows: len(rows) == 3,
    )
    assert {r["trace_id"] for r in dlq} == {d["trace_id"] for d in deliveries}


def test_admin_api_retries_and_rate_limiting(server, tmp_path):
    suffix = f"-admin-{time.time_ns()}"
    service = f"shop{suffix}"
    shop, url = start_shop(server, tmp_path, "grpc", "--name-suffix", suffix, "--rate-limit", "5")
    try:
        # Bad input gets clear answers; the shop keeps serving.
        r = requests.put(f"{url}/admin/faults/payment", json={"error_rate": 3}, timeout=5)
        assert r.status_code == 400 and "between 0 and 1" in r.json()["error"]
        r = requests.put(f"{url}/admin/faults/warp-drive", json={"error_rate": 0.1}, timeout=5)
        assert r.status_code == 404
        r = requests.put(f"{url}/admin/faults/payment", data=b"{", headers={"content-type": "application/json"}, timeout=5)
        assert r.status_code == 400
        r = requests.put(f"{url}/admin/faults/catalog", json={"error_rate": 0.5}, timeout=5)
        assert r.status_code == 200 and r.json()["faults"]["catalog"]["error_rate"] == 0.5

        # Checkouts retry the idempotent catalog lookups (and sometimes still fail).
        for i in range(12):
            user = f"u{i}"
            requests.post(f"{url}/api/cart/{user}/items", json={"product_id": 2}, timeout=5)
            requests.post(f"{url}/api/checkout", json={"user": user}, timeout=10)
            time.sleep(0.4)  # under the rate limit
        assert requests.delete(f"{url}/admin/faults", timeout=5).json()["faults"] == {}

        # Past the rate limit: 429 with Retry-After.
        answers = [requests.get(f"{url}/api/catalog", timeout=5) for _ in range(30)]
        limited = [r for r in answers if r.status_code == 429]
        assert limited and limited[0].headers["retry-after"] == "1"
        assert requests.get(f"{url}/healthz", timeout=5).status_code == 200
    finally:
        stop_shop(shop)
    q = server.quote(service)
    retried = server.wait_for_rows(
        "SELECT count(*) AS n FROM (SELECT unnest(events) AS e FROM spans "
        f"WHERE service_name = {q} AND http_route = '/api/checkout' AND cardinality(events) > 0) "
        "WHERE e['name'] = 'retry'",
        until=lambda rows: rows[0]["n"] > 0,
    )
    assert retried[0]["n"] > 0
    limited_spans = server.sql(
        f"SELECT count(*) AS n FROM spans WHERE service_name = {q} AND http_response_status_code = 429"
    )
    assert limited_spans[0]["n"] > 0
