"""No noisy neighbour: each tenant has its own ingest rate (items and bytes per second), its
share of the memory ceiling, of the query places and of the query memory. One tenant flooding
at ten times its rate is refused (HTTP 429 + Retry-After, gRPC RESOURCE_EXHAUSTED + RetryInfo)
while another, sending at its normal rate beside it, sees no refusal; the flood is held to its
rate; one tenant's queries filling its places leave another's free."""

from __future__ import annotations

import os
import statistics
import threading
import time

import grpc
import pytest
import requests
from conftest import create_key, launch_server
from google.rpc import error_details_pb2, status_pb2
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

FLOOD_RATE = 400  # items per second: the flooding tenant's limit
FLOOD_SECONDS = 6.0
SPANS_PER_REQUEST = 100

CONFIG = f"""
[query]
max_running = 2
max_queued = 0
timeout = "8s"

[tenants.overrides.flood]
ingest_items_per_second = {FLOOD_RATE}
ingest_burst = "1s"
"""


def spans_request(tenant: str, seq: int, n: int, at: int | None = None, pad: int = 0) -> bytes:
    """`n` spans of `tenant` (its service), started at `at` (now when not given), each
    carrying `pad` random (incompressible) bytes as an attribute."""
    now = time.time_ns() if at is None else at

    def attributes():
        return [KeyValue(key="pad", value=AnyValue(bytes_value=os.urandom(pad)))] if pad else []

    spans = [
        Span(
            trace_id=(seq << 32 | i | 1 << 100).to_bytes(16, "big"),
            span_id=(seq << 16 | i | 1 << 60).to_bytes(8, "big"),
            name=f"{tenant}-op",
            kind=Span.SPAN_KIND_SERVER,
            start_time_unix_nano=now,
            end_time_unix_nano=now + 1_000,
            attributes=attributes(),
        )
        for i in range(n)
    ]
    resource = Resource(attributes=[KeyValue(key="service.name", value=AnyValue(string_value=tenant))])
    return ExportTraceServiceRequest(
        resource_spans=[ResourceSpans(resource=resource, scope_spans=[ScopeSpans(spans=spans)])]
    ).SerializeToString()


def post_spans(srv, key: str, body: bytes, session=requests) -> requests.Response:
    return session.post(
        f"http://{srv.otlp_http}/v1/traces", data=body, timeout=30,
        headers={"Content-Type": "application/x-protobuf", "Authorization": f"Bearer {key}"},
    )  # fmt: skip


def sql(srv, key: str, query: str, timeout: float = 30) -> requests.Response:
    return requests.post(
        f"{srv.api_url}/api/v1/sql", json={"sql": query}, headers={"Authorization": f"Bearer {key}"}, timeout=timeout
    )


@pytest.fixture(scope="module")
def limited(tmp_path_factory):
    work = tmp_path_factory.mktemp("sightline-tenant-limits")
    data = work / "data"
    data.mkdir()
    keys = {t: {r: create_key(data, t, r) for r in ("ingest", "read")} for t in ("flood", "quiet")}
    keys["default"] = {"admin": create_key(data, "default", "admin")}
    srv = launch_server(work, CONFIG)
    yield srv, keys
    assert srv.stop() == 0, srv.log_tail()


class Sender(threading.Thread):
    """Sends `per_request` spans every `every` seconds until told to stop, on one kept-alive
    connection as an exporter does, keeping each answer's status, latency, text and
    Retry-After."""

    def __init__(self, srv, tenant: str, key: str, per_request: int, every: float, seq_base: int):
        super().__init__(daemon=True)
        self.srv, self.tenant, self.key = srv, tenant, key
        self.per_request, self.every, self.seq = per_request, every, seq_base
        self.stop = threading.Event()
        self.answers: list[tuple[int, float, str, str | None]] = []
        # Connections that broke instead of answering: a refusal must be an answer.
        self.broken: list[str] = []

    def run(self):
        next_at = time.monotonic()
        with requests.Session() as session:
            while not self.stop.is_set():
                self.seq += 1
                body = spans_request(self.tenant, self.seq, self.per_request)
                started = time.monotonic()
                try:
                    r = post_spans(self.srv, self.key, body, session)
                    self.answers.append(
                        (r.status_code, time.monotonic() - started, r.text, r.headers.get("Retry-After"))
                    )
                except requests.ConnectionError as e:
                    self.broken.append(str(e))
                next_at += self.every
                time.sleep(max(0.0, next_at - time.monotonic()))

    def accepted(self) -> int:
        return sum(self.per_request for code, *_ in self.answers if code == 200)


def p99(latencies: list[float]) -> float:
    return statistics.quantiles(latencies, n=100)[98] if len(latencies) >= 2 else latencies[0]


def test_a_flood_at_ten_times_its_rate_is_held_to_it_and_refuses_no_one_else(limited):
    srv, keys = limited
    # The quiet tenant alone first: its latencies without a neighbour.
    solo = Sender(srv, "quiet", keys["quiet"]["ingest"], 50, 0.1, 0)
    solo.start()
    time.sleep(3)
    solo.stop.set()
    solo.join()
    # Then beside the flood: four senders of 100 spans at 10 requests a second each,
    # 4,000 spans a second, ten times the flood tenant's rate.
    quiet = Sender(srv, "quiet", keys["quiet"]["ingest"], 50, 0.1, 10_000)
    floods = [
        Sender(srv, "flood", keys["flood"]["ingest"], SPANS_PER_REQUEST, 0.1, 100_000 * (i + 1))
        for i in range(4)
    ]
    started = time.monotonic()
    for s in [quiet, *floods]:
        s.start()
    time.sleep(FLOOD_SECONDS)
    for s in [quiet, *floods]:
        s.stop.set()
    for s in [quiet, *floods]:
        s.join()
    elapsed = time.monotonic() - started

    broken = [(s.tenant, b) for s in [solo, quiet, *floods] for b in s.broken]
    assert broken == [], f"{len(broken)} requests got no answer: {broken[:3]}"
    refused_quiet = [(c, text) for c, _, text, _ in solo.answers + quiet.answers if c != 200]
    assert refused_quiet == [], f"the quiet tenant was refused: {refused_quiet[:3]}"
    flood_answers = [a for s in floods for a in s.answers]
    sent = len(flood_answers) * SPANS_PER_REQUEST
    assert sent >= 8 * FLOOD_RATE * FLOOD_SECONDS, f"the flood sent only {sent} spans"
    limited_answers = [(text, after) for c, _, text, after in flood_answers if c == 429]
    assert limited_answers, "the flood was never refused"
    assert {a[0] for a in flood_answers} <= {200, 429}, {a[0] for a in flood_answers}
    text, after = limited_answers[0]
    assert after is not None and int(after) >= 1, after
    assert "ingest_items_per_second" in text and "flood" in text, text
    # Held to its rate: one burst, the rate over the run, and what the senders had in flight
    # when the bucket ran dry (each request is let in while there is any token).
    accepted = sum(s.accepted() for s in floods)
    most = FLOOD_RATE * (elapsed + 1.0) + len(floods) * SPANS_PER_REQUEST
    assert 0.5 * FLOOD_RATE * elapsed <= accepted <= most, f"{accepted} spans accepted in {elapsed:.1f} s"
    # What was acknowledged is what is stored, and the quiet tenant's is all there.
    count = sql(srv, keys["flood"]["read"], "SELECT count(*) FROM spans").json()["rows"]
    assert count == [[accepted]]
    quiet_sent = (len(solo.answers) + len(quiet.answers)) * 50
    assert sql(srv, keys["quiet"]["read"], "SELECT count(*) FROM spans").json()["rows"] == [[quiet_sent]]
    # The operator sees who was held back, and for what.
    metrics = requests.get(
        f"{srv.api_url}/metrics", headers={"Authorization": f"Bearer {keys['default']['admin']}"}, timeout=10
    ).text
    over = {
        line.split("{")[1].split("}")[0]: float(line.split()[-1])
        for line in metrics.splitlines()
        if line.startswith("sightline_ingest_over_quota_total{")
    }
    assert over.get('tenant="flood",limit="rate"', 0) == len(limited_answers), over
    assert not any("quiet" in labels for labels in over), over
    solo_p99 = p99([a[1] for a in solo.answers])
    beside_p99 = p99([a[1] for a in quiet.answers])
    print(
        f"quiet tenant p99: solo {solo_p99 * 1000:.1f} ms, beside the flood {beside_p99 * 1000:.1f} ms; "
        f"flood: {sent} spans sent, {accepted} accepted in {elapsed:.1f} s"
    )


def test_grpc_refusals_carry_retry_info(limited):
    srv, keys = limited
    body = spans_request("flood", 900_000, 2 * FLOOD_RATE)
    metadata = (("authorization", f"Bearer {keys['flood']['ingest']}"),)
    with grpc.insecure_channel(srv.otlp_grpc) as channel:
        export = channel.unary_unary("/opentelemetry.proto.collector.trace.v1.TraceService/Export")
        codes = []
        for _ in range(3):
            try:
                export(body, metadata=metadata, timeout=30)
                codes.append(grpc.StatusCode.OK)
            except grpc.RpcError as e:
                codes.append(e.code())
                refused = e
        assert grpc.StatusCode.RESOURCE_EXHAUSTED in codes, codes
    details = dict(refused.trailing_metadata())["grpc-status-details-bin"]
    status = status_pb2.Status.FromString(details)
    infos = [d for d in status.details if d.Is(error_details_pb2.RetryInfo.DESCRIPTOR)]
    assert infos, status
    info = error_details_pb2.RetryInfo()
    infos[0].Unpack(info)
    assert info.retry_delay.seconds >= 1, info


def test_one_tenant_filling_its_query_places_leaves_the_other_s_free(limited):
    srv, keys = limited
    # max_running = 2 and a tenant's share is half: one place each while both are open.
    slow = "SELECT count(*) FROM range(3000000000) t(x) WHERE CAST(x AS VARCHAR) LIKE '%99999999999%'"
    answers = []
    running = threading.Thread(
        target=lambda: answers.append(sql(srv, keys["flood"]["read"], slow, timeout=60)), daemon=True
    )
    running.start()
    time.sleep(1.0)  # the slow query takes the tenant's place first
    deadline = time.monotonic() + 5
    busy = None
    while time.monotonic() < deadline:
        r = sql(srv, keys["flood"]["read"], "SELECT 1")
        if r.status_code == 429:
            busy = r
            break
        time.sleep(0.05)
    assert busy is not None, f"the flood tenant's second query was never refused: {[a.text for a in answers]}"
    assert "flood" in busy.text and "query_share" in busy.text, busy.text
    other = sql(srv, keys["quiet"]["read"], "SELECT 1 AS one")
    assert other.status_code == 200 and other.json()["rows"] == [[1]], other.text
    running.join(timeout=60)
    assert [a.status_code for a in answers] == [408], "the slow query held its place to its timeout"


SHARE_CONFIG = """
[storage]
flush_max_bytes = "8MiB"
flush_interval = "1h"

[limits]
max_body_bytes = "2MiB"
max_decoded_bytes = "4MiB"
max_memory_bytes = "32MiB"

[tenants.defaults]
memory_share = 0.25
"""


def padded_request(tenant: str, seq: int, n: int) -> bytes:
    now = time.time_ns()
    pad = [KeyValue(key="pad", value=AnyValue(string_value="x" * 200))]
    spans = [
        Span(
            trace_id=(seq << 32 | i | 1 << 100).to_bytes(16, "big"),
            span_id=(seq << 16 | i | 1 << 60).to_bytes(8, "big"),
            name="big",
            start_time_unix_nano=now,
            end_time_unix_nano=now + 1,
            attributes=pad,
        )
        for i in range(n)
    ]
    resource = Resource(attributes=[KeyValue(key="service.name", value=AnyValue(string_value=tenant))])
    return ExportTraceServiceRequest(
        resource_spans=[ResourceSpans(resource=resource, scope_spans=[ScopeSpans(spans=spans)])]
    ).SerializeToString()


def test_a_tenant_past_its_share_of_the_memory_ceiling_is_refused_and_the_other_is_not(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    keys = {t: create_key(data, t, "ingest") for t in ("big", "small")}
    srv = launch_server(tmp_path, SHARE_CONFIG)
    try:
        refusals = []
        small = []
        with requests.Session() as session:
            for seq in range(40):
                r = post_spans(srv, keys["big"], padded_request("big", seq, 4000), session)
                assert r.status_code in (200, 429), (r.status_code, r.text)
                if r.status_code == 429:
                    refusals.append((r.text, r.headers.get("Retry-After")))
                small.append(post_spans(srv, keys["small"], spans_request("small", seq, 20), session).status_code)
        assert refusals, "the big tenant never reached its share (8 MiB of 32 MiB)"
        text, after = refusals[0]
        assert "memory_share" in text and "big" in text, text
        assert after is not None and int(after) >= 1
        assert set(small) == {200}, small
    finally:
        assert srv.stop() == 0, srv.log_tail()


STORED_CONFIG = """
[compaction]
interval = "1s"

[retention]
spans = "4h"

[tenants.overrides.brief]
max_stored_bytes = "256KiB"
retention = { spans = "1h" }

[tenants.overrides.keeper]
retention = { spans = "0" }
"""


def test_each_tenant_keeps_its_data_as_long_as_it_may_and_fills_no_more_disk_than_it_may(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    keys = {t: {r: create_key(data, t, r) for r in ("ingest", "admin")} for t in ("brief", "keeper", "plain")}
    admin = create_key(data, "default", "admin")
    srv = launch_server(tmp_path, STORED_CONFIG)
    try:
        hours_ago = lambda h: time.time_ns() - h * 3600 * 10**9  # noqa: E731
        for t in ("brief", "keeper", "plain"):
            assert post_spans(srv, keys[t]["ingest"], spans_request(t, 1, 300, at=hours_ago(6))).status_code == 200
            assert post_spans(srv, keys[t]["ingest"], spans_request(t, 4, 200, at=hours_ago(3))).status_code == 200
            assert post_spans(srv, keys[t]["ingest"], spans_request(t, 2, 100)).status_code == 200
            flushed = requests.post(f"{srv.api_url}/api/v1/flush", headers=auth_header(keys[t]["admin"]), timeout=30)
            assert flushed.status_code == 200, flushed.text

        # Retention, at the next maintenance pass: the brief tenant (1 h) keeps only the spans
        # of now; a tenant without its own keeps 4 h ([retention]), so its hour of 3 h ago
        # stays and that of 6 h ago goes; the keeper ("0") keeps the same hours for ever.
        def count(t: str) -> int:
            r = sql(srv, keys[t]["admin"], "SELECT count(*) FROM spans")
            assert r.status_code == 200, r.text
            return r.json()["rows"][0][0]

        deadline = time.monotonic() + 30
        while count("brief") != 100 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert count("brief") == 100, "the brief tenant's old hours were not dropped"
        while count("plain") != 300 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert count("plain") == 300, "[retention] did not hold for a tenant without its own"
        assert count("keeper") == 600

        # Stored bytes: the brief tenant may fill 256 KiB. Incompressible padding passes it
        # in a few requests; then it is refused before its body is read, and the keeper is not.
        answers = []
        for seq in range(3, 40):
            r = post_spans(srv, keys["brief"]["ingest"], spans_request("brief", seq, 50, pad=2048))
            assert r.status_code in (200, 429), (r.status_code, r.text)
            answers.append(r)
            if r.status_code == 429:
                break
        refused = answers[-1]
        assert refused.status_code == 429, f"never refused after {len(answers)} requests of 100 KiB"
        assert "max_stored_bytes" in refused.text and "brief" in refused.text, refused.text
        assert int(refused.headers["Retry-After"]) >= 1
        accepted = 100 + 50 * (len(answers) - 1)
        assert count("brief") == accepted, "a refused request stored nothing, an accepted one all"
        keeper = post_spans(srv, keys["keeper"]["ingest"], spans_request("keeper", 99, 50, pad=2048))
        assert keeper.status_code == 200, keeper.text
        metrics = requests.get(f"{srv.api_url}/metrics", headers=auth_header(admin), timeout=10).text
        assert 'sightline_ingest_over_quota_total{tenant="brief",limit="stored"} 1' in metrics
    finally:
        assert srv.stop() == 0, srv.log_tail()


def auth_header(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}
