"""Overload: past the memory ceiling the server refuses with retryable errors (HTTP 503 +
Retry-After, gRPC UNAVAILABLE), keeps its buffers bounded, and real SDK exporters — which retry
such refusals — end up delivering everything they report as sent."""

from __future__ import annotations

import threading
import time

import requests
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

# Small ceilings so that a handful of clients overloads the server.
CONFIG = """
[storage]
flush_max_bytes = "2MiB"
flush_interval = "1s"

[limits]
max_body_bytes = "2MiB"
max_decoded_bytes = "4MiB"
max_memory_bytes = "16MiB"
"""


class Recording(SpanExporter):
    """Passes spans to a real OTLP exporter and remembers those it reported as exported."""

    def __init__(self, inner):
        self.inner = inner
        self.sent: list[str] = []
        self.failed = 0

    def export(self, spans):
        result = self.inner.export(spans)
        if result == SpanExportResult.SUCCESS:
            self.sent.extend(format(s.context.span_id, "016x") for s in spans)
        else:
            self.failed += 1
        return result

    def shutdown(self):
        self.inner.shutdown()


def big_request(n: int, seq: int) -> bytes:
    now = time.time_ns()
    spans = [
        Span(
            trace_id=(1 << 100 | seq << 20 | i).to_bytes(16, "big"),
            span_id=(1 << 60 | seq << 20 | i).to_bytes(8, "big"),
            name="blast",
            start_time_unix_nano=now,
            end_time_unix_nano=now + 1,
            attributes=[KeyValue(key="pad", value=AnyValue(string_value="x" * 200))],
        )
        for i in range(n)
    ]
    return ExportTraceServiceRequest(
        resource_spans=[ResourceSpans(scope_spans=[ScopeSpans(spans=spans)])]
    ).SerializeToString()


def rss_bytes(pid: int) -> int:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def blast(server, stop: threading.Event, blasters: int) -> tuple[list, list[threading.Thread]]:
    """Sends large requests from `blasters` threads until `stop` is set; returns the list the
    threads append (status, retry-after, body, spans) to, and the threads."""
    statuses: list[tuple[int, str | None, str, int]] = []
    lock = threading.Lock()

    def run(worker: int):
        session = requests.Session()
        seq = worker << 16
        while not stop.is_set():
            body = big_request(5000, seq)  # ~1.4 MB
            seq += 1
            r = session.post(
                f"{server.otlp_http_url}/v1/traces",
                data=body,
                headers={"content-type": "application/x-protobuf"},
                timeout=30,
            )
            with lock:
                statuses.append((r.status_code, r.headers.get("retry-after"), r.text[:300], 5000))

    threads = [threading.Thread(target=run, args=(w,), daemon=True) for w in range(blasters)]
    for t in threads:
        t.start()
    return statuses, threads


def test_overload_is_refused_retryably_and_sdk_exporters_deliver_everything(start_server, otel):
    server = start_server(CONFIG)
    otel.server = server
    stop = threading.Event()
    statuses, blasters = blast(server, stop, 8)

    # Real SDK exporters, over both transports, while the server is overloaded.
    recorders = []
    for protocol in ("grpc", "http"):
        rec = Recording(otel._new_span_exporter(protocol, server))
        provider = TracerProvider(resource=otel.resource({"transport": protocol}))
        provider.add_span_processor(SimpleSpanProcessor(rec))
        recorders.append((protocol, rec, provider))

    def use(provider, protocol):
        tracer = provider.get_tracer("overload")
        for i in range(40):
            with tracer.start_as_current_span(f"sdk-{protocol}-{i}"):
                pass

    users = [threading.Thread(target=use, args=(p, proto)) for proto, _, p in recorders]
    for t in users:
        t.start()
    # A burst of several times what the server can take, then the load drops.
    time.sleep(3)
    stop.set()
    for t in blasters:
        t.join(timeout=60)
    for t in users:
        t.join(timeout=120)

    refused = [s for s in statuses if s[0] != 200]
    assert refused, f"the server was never overloaded ({len(statuses)} requests all accepted)"
    assert all(code == 503 and after == "1" for code, after, _, _ in refused), set(refused)
    assert any(s[0] == 200 for s in statuses), "the server accepted nothing at all"

    for protocol, rec, provider in recorders:
        provider.shutdown()
        # The exporters retried the refusals (within their 10 s deadline) and delivered all.
        assert len(rec.sent) == 40, f"{protocol}: exporter gave up on {rec.failed} exports"
        rows = server.wait_for_rows(
            f"SELECT span_id FROM spans WHERE service_name = {server.quote(otel.service_name)} "
            f"AND resource_attributes['transport'] = '{protocol}'",
            until=lambda rows: len(rows) >= 40,
        )
        assert sorted(r["span_id"] for r in rows) == sorted(rec.sent)

    metrics = requests.get(f"{server.api_url}/metrics", timeout=10).text
    assert 'outcome="unavailable"' in metrics


def test_the_resident_memory_ceiling_refuses_what_the_accounting_cannot_see(start_server):
    """The accounted ceiling is set high, so only the process's resident-memory ceiling (a
    little above the idle server's footprint) stands between the blast and unbounded growth:
    it refuses with a retryable 503 naming resident memory, every accepted span is stored, and
    the server accepts requests again by itself once the load drops."""
    probe = start_server(None)
    idle = rss_bytes(probe.process.pid)
    probe.stop()
    ceiling_mib = int(idle / 0.75 / 2**20) + 48
    server = start_server(
        f"""
[storage]
flush_max_bytes = "16MiB"
flush_interval = "1s"

[limits]
max_body_bytes = "2MiB"
max_decoded_bytes = "4MiB"
max_memory_bytes = "{ceiling_mib - 80}MiB"
max_resident_bytes = "{ceiling_mib}MiB"

[query]
memory_limit = "16MiB"
max_query_memory_bytes = "16MiB"
"""
    )
    stop = threading.Event()
    statuses, blasters = blast(server, stop, 12)
    time.sleep(4)
    stop.set()
    for t in blasters:
        t.join(timeout=60)
    refused = [s for s in statuses if s[0] != 200]
    assert refused, f"never refused ({len(statuses)} requests, ceiling {ceiling_mib} MiB)"
    assert all(code == 503 and after == "1" for code, after, _, _ in refused), set(refused)
    assert any("resident memory" in text for _, _, text, _ in refused), refused[:3]

    # Recovered: a small request is accepted again once the blast is over.
    deadline = time.time() + 30
    while True:
        r = requests.post(
            f"{server.otlp_http_url}/v1/traces",
            data=big_request(10, 1 << 40),
            headers={"content-type": "application/x-protobuf"},
            timeout=10,
        )
        if r.status_code == 200 or time.time() > deadline:
            break
        time.sleep(0.5)
    assert r.status_code == 200, (r.status_code, r.text, rss_bytes(server.process.pid))

    accepted = sum(n for code, _, _, n in statuses if code == 200) + 10
    rows = server.wait_for_rows(
        "SELECT count(*) AS n FROM spans WHERE name = 'blast'",
        until=lambda rows: rows and rows[0]["n"] >= accepted,
    )
    assert rows[0]["n"] == accepted
