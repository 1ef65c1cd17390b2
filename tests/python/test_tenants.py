"""Two tenants on one server, sending the same service name and the same trace id through the
OpenTelemetry Python SDK (gRPC and HTTP, keys in OTEL-style headers): neither sees a row, a
trace, an SLO, a silence, an audit row, a table or a file of the other — through SQL, the
APIs or information_schema — and SQL that names the other's paths fails. Each tenant's data
is in its own directory (`<data>/<tenant>/`, its own write-ahead log) and comes back after a
SIGKILL."""

from __future__ import annotations

import datetime
import signal

import pytest
import requests
from alerting import slo_spec
from conftest import create_key, launch_server, poll, reads_local_parquet
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpanExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator

TRACE_ID = 0x5EED0000000000000000000000000001
TRACE_HEX = f"{TRACE_ID:032x}"
SERVICE = "checkout"
TENANTS = ("team-a", "team-b")


class FixedTrace(RandomIdGenerator):
    def generate_trace_id(self) -> int:
        return TRACE_ID


def auth(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}


def send(srv, protocol: str, key: str, span_name: str) -> None:
    headers = {"authorization": f"Bearer {key}"}
    if protocol == "grpc":
        exporter = GrpcSpanExporter(endpoint=srv.otlp_grpc, insecure=True, timeout=5, headers=headers)
    else:
        exporter = HttpSpanExporter(endpoint=f"http://{srv.otlp_http}/v1/traces", timeout=5, headers=headers)
    provider = TracerProvider(resource=Resource.create({"service.name": SERVICE}), id_generator=FixedTrace())
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    provider.get_tracer("tenants").start_span(span_name, kind=trace.SpanKind.SERVER).end()
    provider.shutdown()


def sql(srv, key: str, query: str) -> requests.Response:
    return requests.post(f"{srv.api_url}/api/v1/sql", json={"sql": query}, headers=auth(key), timeout=30)


def rows(srv, key: str, query: str) -> list:
    r = sql(srv, key, query)
    assert r.status_code == 200, r.text
    return r.json()["rows"]


@pytest.fixture(scope="module")
def two(tmp_path_factory):
    work = tmp_path_factory.mktemp("sightline-tenants")
    data = work / "data"
    data.mkdir()
    slos = work / "slos"
    # The same SLO name in both tenants, told apart by their objectives.
    for tenant, objective in (("team-a", "99"), ("team-b", "95")):
        (slos / tenant).mkdir(parents=True)
        spec = slo_spec(SERVICE, name="checkout-availability").replace("objective: 99", f"objective: {objective}")
        (slos / tenant / "checkout.yaml").write_text(spec)
    keys = {t: {r: create_key(data, t, r) for r in ("ingest", "read", "admin")} for t in TENANTS}
    config = f'[slo]\ndir = "{slos}"\ntick = "1s"\n'
    srv = launch_server(work, config)
    send(srv, "grpc", keys["team-a"]["ingest"], "op-a")
    send(srv, "http", keys["team-b"]["ingest"], "op-b")
    yield srv, keys, data, work, config
    if srv.process.poll() is None:
        assert srv.stop() == 0, srv.log_tail()


def test_each_tenant_sees_only_its_rows_and_its_trace(two):
    srv, keys, _, _, _ = two
    for tenant, mine in (("team-a", "op-a"), ("team-b", "op-b")):
        read = keys[tenant]["read"]
        got = poll(
            lambda read=read: rows(srv, read, f"SELECT name FROM spans WHERE trace_id = '{TRACE_HEX}'") or None,
            what=f"{tenant}'s span",
        )
        assert got == [[mine]], f"{tenant} sees {got}"
        assert rows(srv, read, "SELECT count(*) FROM spans") == [[1]]
        assert rows(srv, read, "SELECT span_count FROM traces") == [[1]]
        trace = requests.get(f"{srv.api_url}/api/v1/traces/{TRACE_HEX}", headers=auth(read), timeout=10)
        assert trace.status_code == 200, trace.text
        assert [s["name"] for s in trace.json()["spans"]] == [mine]


@reads_local_parquet
def test_information_schema_and_paths_name_nothing_of_the_other_tenant(two):
    srv, keys, data, _, _ = two
    a = keys["team-a"]["admin"]
    srv_flush = requests.post(f"{srv.api_url}/api/v1/flush", headers=auth(a), timeout=30)
    assert srv_flush.status_code == 200, srv_flush.text
    # team-a's flush wrote team-a's files only; team-b's rows are still in its buffer.
    assert list((data / "team-a" / "spans").rglob("*.parquet")), "team-a's spans are in its directory"
    assert not list((data / "team-b" / "spans").rglob("*.parquet")), "team-a's flush wrote team-b's files"
    assert (data / "team-b" / "_wal").is_dir(), "team-b has a write-ahead log of its own"
    tables = {r[0] for r in rows(srv, a, "SELECT table_name FROM information_schema.tables")}
    assert "spans" in tables and not any("team" in t for t in tables), tables
    b = keys["team-b"]["read"]
    other = data / "team-a" / "spans"
    for attempt in (
        f"SELECT * FROM '{other}'",
        f"SELECT * FROM '{next(other.rglob('*.parquet'))}'",
        f"CREATE EXTERNAL TABLE x STORED AS PARQUET LOCATION '{other}'",
        "SELECT * FROM \"team-a\".spans",
        "SELECT * FROM datafusion.\"team-a\".spans",
    ):
        r = sql(srv, b, attempt)
        assert r.status_code == 400, f"{attempt}: {r.status_code} {r.text}"
        assert "team-a" not in r.text.replace(attempt, "") or "not found" in r.text.lower(), r.text
    # What a plan shows of files is the tenant's own, and never a path.
    plan = rows(srv, a, "EXPLAIN SELECT * FROM spans")
    assert "team-b" not in str(plan) and str(data) not in str(plan), plan


def test_slos_and_silences_are_per_tenant(two):
    srv, keys, _, _, _ = two
    for tenant, objective in (("team-a", 0.99), ("team-b", 0.95)):
        r = requests.get(f"{srv.api_url}/api/v1/slos", headers=auth(keys[tenant]["read"]), timeout=10)
        assert r.status_code == 200, r.text
        assert [(s["name"], s["objective"]) for s in r.json()["slos"]] == [("checkout-availability", objective)]
    now = datetime.datetime.now(datetime.timezone.utc)
    silence = {
        "matchers": [{"name": "slo", "value": "checkout-availability", "isRegex": False}],
        "startsAt": now.isoformat(),
        "endsAt": (now + datetime.timedelta(days=1)).isoformat(),
        "createdBy": "team-a",
        "comment": "team-a only",
    }
    r = requests.post(f"{srv.api_url}/api/v1/silences", json=silence, headers=auth(keys["team-a"]["admin"]), timeout=10)
    assert r.status_code == 200, r.text
    sid = r.json()["silenceID"]
    listed = lambda t: requests.get(f"{srv.api_url}/api/v1/silences", headers=auth(keys[t]["read"]), timeout=10).json()  # noqa: E731
    assert [s["id"] for s in listed("team-a")] == [sid]
    assert listed("team-b") == [], "team-b sees team-a's silence"
    gone = requests.delete(f"{srv.api_url}/api/v1/silences/{sid}", headers=auth(keys["team-b"]["admin"]), timeout=10)
    assert gone.status_code == 404, gone.text
    assert [s["status"]["state"] for s in listed("team-a")] == ["active"], "team-b ended team-a's silence"
    # The audit: team-a's admin sees its silence; team-b's audit has no row of it.
    audit_a = poll(
        lambda: rows(srv, keys["team-a"]["admin"], "SELECT tenant, action FROM audit WHERE action = 'silence.create'") or None,
        what="team-a's audit row",
    )
    assert audit_a == [["team-a", "silence.create"]]
    assert rows(srv, keys["team-b"]["admin"], "SELECT count(*) FROM audit WHERE action = 'silence.create'") == [[0]]


def test_a_tenant_key_reaches_only_its_tenant_whatever_basic_says(two):
    srv, keys, _, _, _ = two
    import base64

    token = base64.b64encode(f"team-b:{keys['team-a']['read']}".encode()).decode()
    r = requests.post(
        f"{srv.api_url}/api/v1/sql", json={"sql": "SELECT name FROM spans"},
        headers={"Authorization": f"Basic {token}"}, timeout=10,
    )  # fmt: skip
    assert r.status_code == 401, r.text


def test_metrics_are_the_operator_s_and_label_every_other_tenant(two):
    srv, keys, data, _, _ = two
    r = requests.get(f"{srv.api_url}/metrics", headers=auth(keys["team-a"]["admin"]), timeout=10)
    assert r.status_code == 403, "a tenant's admin must not read every tenant's metrics"
    operator = create_key(data, "default", "admin")
    text = poll(
        lambda: (r := requests.get(f"{srv.api_url}/metrics", headers=auth(operator), timeout=10)).status_code == 200
        and r.text,
        what="/metrics with the operator's key (keys are read again within a second)",
    )
    assert 'tenant="team-a"' in text and 'tenant="team-b"' in text
    families = [line.split(" ")[2] for line in text.splitlines() if line.startswith("# TYPE ")]
    assert len(families) == len(set(families)), "a metric family appears twice"


# Last: it kills the module's server.
def test_every_tenant_s_unflushed_rows_come_back_after_sigkill(two):
    srv, keys, _, work, config = two
    send(srv, "grpc", keys["team-b"]["ingest"], "op-b2")
    srv.process.send_signal(signal.SIGKILL)
    srv.process.wait(timeout=30)
    again = launch_server(work, config)
    try:
        for tenant, names in (("team-a", ["op-a"]), ("team-b", ["op-b", "op-b2"])):
            got = rows(again, keys[tenant]["read"], "SELECT name FROM spans ORDER BY name")
            assert got == [[n] for n in names], f"{tenant} after the crash: {got}"
    finally:
        assert again.stop() == 0, again.log_tail()
