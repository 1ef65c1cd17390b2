"""The sample shop on its own against a real server: the standard OTEL_EXPORTER_OTLP_*
variables (gRPC and HTTP/protobuf), fault injection through flags and the admin API (with its
bad-input answers), retries, graceful degradation and rate limiting, each visible in the
telemetry Sightline stores.
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
    service = f"shop-{protocol.replace('/', '-')}-{time.time_ns()}"
    shop, url = start_shop(
        server, tmp_path, protocol,
        "--service-name", service, "--load-rate", "30", "--fault", "recommendations=1",
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


def test_admin_api_retries_and_rate_limiting(server, tmp_path):
    service = f"shop-admin-{time.time_ns()}"
    shop, url = start_shop(server, tmp_path, "grpc", "--service-name", service, "--rate-limit", "5")
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
