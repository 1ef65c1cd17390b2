"""Trusted-proxy mode: a gateway that authenticates its clients itself names their tenant in
`X-Scope-OrgID`. Sightline believes the header only from the peers in `[trusted_proxy]`
(here 127.0.0.1; the untrusted peer connects from 127.0.0.2, another loopback address), gives
such requests the configured roles, and from anyone else takes the header only when it
repeats the tenant of the key sent with it."""

from __future__ import annotations

import http.client
import json
import time

import pytest
from conftest import create_key, launch_server
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpanExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

CONFIG = """
[trusted_proxy]
addresses = ["127.0.0.1/32"]
roles = ["ingest", "read"]
"""


@pytest.fixture(scope="module")
def proxied(tmp_path_factory):
    work = tmp_path_factory.mktemp("sightline-trusted-proxy")
    data = work / "data"
    data.mkdir()
    key_a = create_key(data, "team-a", "read")
    srv = launch_server(work, CONFIG)
    yield srv, key_a
    assert srv.stop() == 0, srv.log_tail()


def request(srv, method: str, path: str, headers: dict, body: dict | None = None, source: str = "127.0.0.1"):
    """One HTTP request to the API from `source` (a loopback address): (status, text)."""
    host, port = srv.http.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=30, source_address=(source, 0))
    try:
        payload = json.dumps(body).encode() if body is not None else None
        conn.request(method, path, body=payload, headers={"Content-Type": "application/json", **headers})
        r = conn.getresponse()
        return r.status, r.read().decode()
    finally:
        conn.close()


def sql(srv, query: str, headers: dict, source: str = "127.0.0.1"):
    return request(srv, "POST", "/api/v1/sql", headers, {"sql": query}, source)


def send_span(srv, protocol: str, tenant: str, name: str) -> None:
    headers = {"x-scope-orgid": tenant}
    if protocol == "grpc":
        exporter = GrpcSpanExporter(endpoint=srv.otlp_grpc, insecure=True, timeout=5, headers=headers)
    else:
        exporter = HttpSpanExporter(endpoint=f"http://{srv.otlp_http}/v1/traces", timeout=5, headers=headers)
    provider = TracerProvider(resource=Resource.create({"service.name": "checkout"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    provider.get_tracer("proxy").start_span(name, kind=trace.SpanKind.SERVER).end()
    provider.shutdown()


def test_the_proxy_names_each_requests_tenant_over_grpc_http_and_sql(proxied):
    srv, _ = proxied
    send_span(srv, "grpc", "team-b", "b-grpc")
    send_span(srv, "http", "team-b", "b-http")
    send_span(srv, "http", "team-c", "c-http")
    for tenant, names in {"team-b": ["b-grpc", "b-http"], "team-c": ["c-http"]}.items():
        status, text = sql(srv, "SELECT name FROM spans ORDER BY name", {"X-Scope-OrgID": tenant})
        assert status == 200, text
        assert json.loads(text)["rows"] == [[n] for n in names], (tenant, text)
    # The tenant a proxied request is, and what it may do.
    status, text = request(srv, "GET", "/api/v1/whoami", {"X-Scope-OrgID": "team-b"})
    assert status == 200 and json.loads(text)["tenant"] == "team-b", text
    status, text = request(srv, "POST", "/api/v1/flush", {"X-Scope-OrgID": "team-b"})
    assert status == 403, (status, text)


def test_a_header_sent_twice_or_naming_the_operator_s_tenant_is_refused(proxied):
    srv, _ = proxied
    # A gateway that adds its header beside the client's: neither copy is believed.
    host, port = srv.http.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    body = json.dumps({"sql": "SELECT 1"}).encode()
    conn.putrequest("POST", "/api/v1/sql")
    for header, value in [("Content-Type", "application/json"), ("Content-Length", str(len(body))),
                          ("X-Scope-OrgID", "team-b"), ("X-Scope-OrgID", "team-c")]:  # fmt: skip
        conn.putheader(header, value)
    conn.endheaders(body)
    r = conn.getresponse()
    text = r.read().decode()
    conn.close()
    assert r.status == 401 and "once" in text, (r.status, text)
    # The same over gRPC metadata, with the OpenTelemetry SDK's exporter.
    exporter = GrpcSpanExporter(
        endpoint=srv.otlp_grpc, insecure=True, timeout=5,
        headers=(("x-scope-orgid", "team-b"), ("x-scope-orgid", "team-c")),
    )  # fmt: skip
    provider = TracerProvider(resource=Resource.create({"service.name": "checkout"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    provider.get_tracer("proxy").start_span("twice", kind=trace.SpanKind.SERVER).end()
    provider.shutdown()
    for tenant in ("team-b", "team-c"):
        status, text = sql(srv, "SELECT count(*) FROM spans WHERE name = 'twice'", {"X-Scope-OrgID": tenant})
        assert status == 200 and json.loads(text)["rows"] == [[0]], (tenant, text)
    # The operator's tenant is not the gateway's to name.
    status, text = sql(srv, "SELECT count(*) FROM audit", {"X-Scope-OrgID": "default"})
    assert status == 401 and "allow_default_tenant" in text, (status, text)


def test_no_one_but_the_proxy_can_name_a_tenant(proxied):
    srv, key_a = proxied
    send_span(srv, "http", "team-b", "secret")
    # From another address, the header alone is refused, and names nothing.
    status, text = sql(srv, "SELECT count(*) FROM spans", {"X-Scope-OrgID": "team-b"}, source="127.0.0.2")
    assert status == 401 and "trusted_proxy" in text, (status, text)
    # With a key, it may only repeat the key's tenant.
    bearer = {"Authorization": f"Bearer {key_a}"}
    status, text = sql(srv, "SELECT count(*) FROM spans", {**bearer, "X-Scope-OrgID": "team-b"}, source="127.0.0.2")
    assert status == 401, (status, text)
    status, text = sql(srv, "SELECT count(*) FROM spans", {**bearer, "X-Scope-OrgID": "team-a"}, source="127.0.0.2")
    assert status == 200 and json.loads(text)["rows"] == [[0]], text
    status, text = sql(srv, "SELECT count(*) FROM spans", bearer, source="127.0.0.2")
    assert status == 200 and json.loads(text)["rows"] == [[0]], text
    # Even the proxy's address needs credentials without the header: keys are on.
    status, text = sql(srv, "SELECT 1", {})
    assert status == 401, (status, text)
    # A header that is no tenant name is refused, not turned into a directory.
    for bad in ["../keys", "Team-B", "a|b", "wal"]:
        status, text = sql(srv, "SELECT 1", {"X-Scope-OrgID": bad})
        assert status == 401 and "X-Scope-OrgID" in text, (bad, status, text)
    for bad in ["Team-B", "a|b"]:
        assert not (srv.data_dir / bad).exists(), bad


ONE_SPAN = {
    "resourceSpans": [{"scopeSpans": [{"spans": [{
        "traceId": "5b8efff798038103d269b633813fc60c", "spanId": "eee19b7ec3c1b174", "name": "c",
        "startTimeUnixNano": str(time.time_ns()), "endTimeUnixNano": str(time.time_ns() + 1000),
    }]}]}]
}  # fmt: skip


def test_a_proxy_naming_ever_new_tenants_is_held_to_max_tenants(tmp_path):
    # The default tenant and two more may be open; a fourth is refused retryably, and those
    # open go on.
    srv = launch_server(tmp_path, CONFIG + "\n[tenants]\nmax_tenants = 3\n")
    try:
        send_span(srv, "http", "one", "a")
        send_span(srv, "grpc", "two", "b")
        status, text = sql(srv, "SELECT count(*) FROM spans", {"X-Scope-OrgID": "three"})
        assert status == 503 and "cannot be served" in text, (status, text)
        host, port = srv.otlp_http.rsplit(":", 1)
        conn = http.client.HTTPConnection(host, int(port), timeout=30)
        conn.request(
            "POST", "/v1/traces", body=json.dumps(ONE_SPAN).encode(),
            headers={"Content-Type": "application/json", "X-Scope-OrgID": "three"},
        )  # fmt: skip
        r = conn.getresponse()
        assert r.status == 503 and r.getheader("Retry-After"), (r.status, r.read())
        conn.close()
        assert not (srv.data_dir / "three").exists()
        for tenant in ("one", "two"):
            status, text = sql(srv, "SELECT count(*) FROM spans", {"X-Scope-OrgID": tenant})
            assert status == 200 and json.loads(text)["rows"] == [[1]], text
    finally:
        assert srv.stop() == 0, srv.log_tail()


def test_tenants_known_at_start_open_whatever_max_tenants_says(tmp_path):
    # Three tenants with data, then a restart with room for two: the known ones all open,
    # a new one is refused.
    srv = launch_server(tmp_path, CONFIG)
    try:
        for tenant in ("one", "two", "three"):
            send_span(srv, "http", tenant, "a")
    finally:
        assert srv.stop() == 0, srv.log_tail()
    srv = launch_server(tmp_path, CONFIG + "\n[tenants]\nmax_tenants = 2\n")
    try:
        for tenant in ("one", "two", "three"):
            status, text = sql(srv, "SELECT count(*) FROM spans", {"X-Scope-OrgID": tenant})
            assert status == 200 and json.loads(text)["rows"] == [[1]], (tenant, text)
        status, text = sql(srv, "SELECT 1", {"X-Scope-OrgID": "four"})
        assert status == 503, (status, text)
    finally:
        assert srv.stop() == 0, srv.log_tail()
