"""Hostile ingest and connections: requests that are small on the wire but costly to decode or
store, clients that never finish, and clients that open more than their share — on the
OTLP/HTTP, OTLP/gRPC and API ports of the real server.

After each case the server must answer /healthz and `SELECT 1` within 2 s, the spans stored
before must all be there, and its resident memory must have stayed under its ceiling.
"""

from __future__ import annotations

import gzip
import json
import socket
import threading
import time

import grpc
import pytest
import requests
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

from conftest import sql_quote

CHECK_TIMEOUT_S = 2.0
ROWS = 40
PER_CLIENT = 24
RESIDENT_CEILING = 1024 * 1024 * 1024  # the default limits.max_resident_bytes

CONFIG = f"""
[listen]
max_connections_per_client = {PER_CLIENT}
header_read_timeout = "1s"
idle_timeout = "3s"

[limits]
body_timeout = "2s"
"""

TRACES_METHOD = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"


class Peak:
    """Samples the server's resident memory while a case runs."""

    def __init__(self, pid: int):
        self.pid, self.peak, self._stop = pid, 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def rss(self) -> int:
        for line in open(f"/proc/{self.pid}/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise AssertionError("no VmRSS")

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self.rss())
            time.sleep(0.01)

    def __enter__(self):
        self.before = self.rss()
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.rss())

    @property
    def growth_mib(self) -> float:
        return (self.peak - self.before) / 2**20


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    from conftest import launch_server

    srv = launch_server(tmp_path_factory.mktemp("hostile-ingest"), CONFIG)
    service = "hostile-ingest-before"
    now = time.time_ns()
    spans = [
        Span(
            trace_id=(7 << 64 | i).to_bytes(16, "big"),
            span_id=(7 << 32 | i).to_bytes(8, "big"),
            name=f"op-{i}",
            start_time_unix_nano=now,
            end_time_unix_nano=now + 1000,
        )
        for i in range(ROWS)
    ]
    body = request_with(resource_attrs=[kv("service.name", service)], spans=spans)
    r = post(srv, body.SerializeToString())
    assert r.status_code == 200, r.text
    query = f"SELECT count(*) AS n FROM spans WHERE service_name = {sql_quote(service)}"
    srv.wait_for_rows(query, until=lambda rows: rows[0]["n"] == ROWS)
    yield srv, query
    code = srv.stop()
    assert code == 0, srv.log_tail()


def kv(key: str, value: str) -> KeyValue:
    return KeyValue(key=key, value=AnyValue(string_value=value))


def request_with(resource_attrs, spans) -> ExportTraceServiceRequest:
    return ExportTraceServiceRequest(
        resource_spans=[
            ResourceSpans(
                resource=Resource(attributes=resource_attrs), scope_spans=[ScopeSpans(spans=spans)]
            )
        ]
    )


def post(server, body: bytes, content_type="application/x-protobuf", encoding=None, timeout=30):
    headers = {"content-type": content_type}
    if encoding:
        headers["content-encoding"] = encoding
    return requests.post(
        f"{server.otlp_http_url}/v1/traces", data=body, headers=headers, timeout=timeout
    )


def assert_still_serving(server, stored_query: str) -> None:
    assert server.process.poll() is None, f"the server died:\n{server.log_tail()}"
    health = requests.get(f"{server.api_url}/healthz", timeout=CHECK_TIMEOUT_S)
    assert health.status_code == 200
    one = requests.post(
        f"{server.api_url}/api/v1/sql", json={"sql": "SELECT 1 AS one"}, timeout=CHECK_TIMEOUT_S
    )
    assert one.status_code == 200 and one.json()["rows"] == [[1]], one.text
    assert server.sql(stored_query)[0]["n"] == ROWS, "spans stored before are intact"


def span(i: int) -> Span:
    now = time.time_ns()
    return Span(
        trace_id=(9 << 64 | i).to_bytes(16, "big"),
        span_id=(9 << 32 | i).to_bytes(8, "big"),
        name="s",
        start_time_unix_nano=now,
        end_time_unix_nano=now + 1,
    )


# -- requests that are small on the wire and costly in memory -------------------------------


def rich_resource_json(spans: int) -> bytes:
    """One resource with 16 attributes of 64 KiB, copied into every span's row."""
    attrs = [{"key": f"big{i}", "value": {"stringValue": "x" * 65536}} for i in range(16)]
    now = time.time_ns()
    body = {
        "resourceSpans": [
            {
                "resource": {"attributes": attrs},
                "scopeSpans": [
                    {
                        "spans": [
                            {
                                "traceId": f"{i + 1:032x}",
                                "spanId": f"{i + 1:016x}",
                                "name": "s",
                                "startTimeUnixNano": str(now),
                                "endTimeUnixNano": str(now + 1),
                            }
                            for i in range(spans)
                        ]
                    }
                ],
            }
        ]
    }
    return gzip.compress(json.dumps(body).encode())


COSTLY = {
    # The case: 2.7 KB gzip'd, 1 MB decoded, 300 MB once every row holds the resource.
    "rich resource copied into 150 rows (JSON, gzip)": (
        lambda: rich_resource_json(150),
        "application/json",
    ),
    # Two million empty ResourceSpans: 4 MB of protobuf (a few KB gzip'd), ~375 MB of structs.
    "empty ResourceSpans (protobuf, gzip)": (
        lambda: gzip.compress(b"\x0a\x00" * 2_000_000),
        "application/x-protobuf",
    ),
    "empty ResourceSpans (JSON, gzip)": (
        lambda: gzip.compress(b'{"resourceSpans":[' + b"{}," * 1_500_000 + b"{}]}"),
        "application/json",
    ),
}


def million_empty_attributes() -> bytes:
    """One span with a million empty attributes (span field 9): 2 MB of protobuf, each a
    KeyValue struct once decoded."""
    inner = b"\x4a\x00" * 1_000_000
    s = span(1).SerializeToString() + inner
    scope = b"\x12" + varint(len(s)) + s
    rs = b"\x12" + varint(len(scope)) + scope
    return gzip.compress(b"\x0a" + varint(len(rs)) + rs)


COSTLY["a million empty attributes in one span (protobuf, gzip)"] = (
    million_empty_attributes,
    "application/x-protobuf",
)


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


@pytest.mark.parametrize("case", list(COSTLY))
def test_small_requests_that_would_cost_hundreds_of_megabytes_are_refused(hostile, case):
    server, stored = hostile
    make, content_type = COSTLY[case]
    body = make()
    assert len(body) < 64 * 1024, f"{case}: {len(body)} bytes on the wire"
    with Peak(server.process.pid) as peak:
        r = post(server, body, content_type=content_type, encoding="gzip")
    assert r.status_code == 413, f"{case}: {r.status_code} {r.text[:300]}"
    assert "send smaller batches" in r.text, r.text[:300]
    assert r.headers.get("retry-after") is None, "not retryable: the same request costs the same"
    assert peak.growth_mib < 100, f"{case}: resident memory grew {peak.growth_mib:.0f} MiB"
    assert peak.peak < RESIDENT_CEILING
    assert_still_serving(server, stored)


def test_the_same_costly_requests_sent_at_once_stay_under_the_ceiling(hostile):
    from concurrent.futures import ThreadPoolExecutor

    server, stored = hostile
    body = rich_resource_json(150)
    with Peak(server.process.pid) as peak, ThreadPoolExecutor(16) as pool:
        codes = list(
            pool.map(
                lambda _: post(server, body, "application/json", "gzip").status_code, range(48)
            )
        )
    assert set(codes) <= {413, 503}, codes
    assert peak.peak < RESIDENT_CEILING, f"peak {peak.peak >> 20} MiB"
    assert_still_serving(server, stored)


def test_a_rich_resource_shared_by_a_few_spans_is_stored(hostile):
    """Refusing is for requests whose rows would be huge, not for rich resources."""
    server, _ = hostile
    attrs = [kv(f"attr.{i}", "v" * 1000) for i in range(64)] + [kv("service.name", "rich")]
    r = post(server, request_with(attrs, [span(100 + i) for i in range(20)]).SerializeToString())
    assert r.status_code == 200, r.text
    server.wait_for_rows(
        "SELECT count(*) AS n FROM spans WHERE service_name = 'rich'",
        until=lambda rows: rows[0]["n"] == 20,
    )


def test_a_resource_with_sixty_thousand_keys_does_not_stall_other_requests(hostile):
    server, stored = hostile
    attrs = [kv(f"k{i}", "v") for i in range(60_000)] + [kv("service.name", "many-keys")]
    body = request_with(attrs, [span(200 + i) for i in range(200)]).SerializeToString()
    result = {}

    def send():
        result["response"] = post(server, body)

    sender = threading.Thread(target=send)
    sender.start()
    # While it is processed (conversion runs off the async threads), others are served.
    while sender.is_alive():
        assert_still_serving(server, stored)
        time.sleep(0.05)
    sender.join()
    assert result["response"].status_code == 200, result["response"].text
    [row] = server.wait_for_rows(
        "SELECT count(*) AS n, max(cardinality(resource_attributes)) AS attrs FROM spans "
        "WHERE service_name = 'many-keys'",
        until=lambda rows: rows[0]["n"] == 200,
    )
    assert row["attrs"] == 128, row  # limits.max_attributes


# -- clients that never finish ------------------------------------------------------------------


def host_port(address: str) -> tuple[str, int]:
    host, port = address.rsplit(":", 1)
    return host, int(port)


def closed_within(sock: socket.socket, seconds: float) -> bytes | None:
    """What the server sent before closing `sock` within `seconds`, or None if it kept it."""
    sock.settimeout(seconds)
    received = b""
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return received
            received += chunk
    except (ConnectionResetError, BrokenPipeError):
        return received
    except socket.timeout:
        return None


@pytest.mark.parametrize("port", ["otlp_http", "http", "otlp_grpc"])
def test_a_connection_that_says_nothing_is_closed(hostile, port):
    server, stored = hostile
    sock = socket.create_connection(host_port(getattr(server, port)))
    # header_read_timeout (HTTP) and idle_timeout (every port) are 1 s and 3 s here.
    assert closed_within(sock, 6) is not None, f"{port} kept a silent connection"
    sock.close()
    assert_still_serving(server, stored)


@pytest.mark.parametrize("port", ["otlp_http", "http"])
def test_half_a_request_header_is_timed_out(hostile, port):
    server, stored = hostile
    sock = socket.create_connection(host_port(getattr(server, port)))
    sock.sendall(b"POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: applica")
    assert closed_within(sock, 6) is not None, "half a header kept the connection"
    sock.close()
    assert_still_serving(server, stored)


def test_a_header_trickled_byte_by_byte_is_timed_out(hostile):
    server, stored = hostile
    sock = socket.create_connection(host_port(server.http))
    start = time.monotonic()
    closed = False
    try:
        for b in b"GET /healthz HTTP/1.1\r\nX-Slow: " + b"a" * 200:
            sock.sendall(bytes([b]))
            time.sleep(0.1)
            if time.monotonic() - start > 6:
                break
    except (BrokenPipeError, ConnectionResetError):
        closed = True
    closed = closed or closed_within(sock, 1) is not None
    assert closed, "a trickled header kept the connection"
    sock.close()
    assert_still_serving(server, stored)


def test_announced_bodies_that_never_arrive_hold_no_memory_and_time_out(hostile):
    server, stored = hostile
    socks = []
    for _ in range(PER_CLIENT // 2):
        sock = socket.create_connection(host_port(server.otlp_http))
        sock.sendall(
            b"POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\n"
            b"Content-Length: 16000000\r\n\r\n"
        )
        socks.append(sock)
    # Real exporters are not refused for the memory those bodies announced.
    r = post(server, request_with([kv("service.name", "while-waiting")], [span(300)]).SerializeToString())
    assert r.status_code == 200, r.text
    # Each waiting body is answered 408 once limits.body_timeout (2 s) has passed.
    for sock in socks:
        answer = closed_within(sock, 8)
        assert answer is not None and answer.startswith(b"HTTP/1.1 408"), answer
        sock.close()
    assert_still_serving(server, stored)


def test_a_body_trickled_slowly_is_timed_out(hostile):
    server, stored = hostile
    sock = socket.create_connection(host_port(server.otlp_http))
    sock.sendall(
        b"POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\n"
        b"Content-Length: 1000\r\n\r\n"
    )
    answer = b""
    sock.settimeout(0.3)
    start = time.monotonic()
    while time.monotonic() - start < 8:
        try:
            sock.sendall(b"\x0a")
            chunk = sock.recv(4096)
            if not chunk:
                break
            answer += chunk
            if b"\r\n\r\n" in answer:
                break
        except socket.timeout:
            continue
        except (BrokenPipeError, ConnectionResetError):
            break
    sock.close()
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert_still_serving(server, stored)


def test_huge_request_headers_are_refused(hostile):
    server, stored = hostile
    for url in (f"{server.api_url}/healthz", f"{server.otlp_http_url}/v1/traces"):
        try:
            r = requests.get(url, headers={"X-Big": "a" * 256 * 1024}, timeout=5)
            assert r.status_code == 431, (url, r.status_code)
        except requests.ConnectionError:
            pass  # closed without an answer: refused too
    assert_still_serving(server, stored)


# -- clients that take more than their share ------------------------------------------------


def metric(server, name: str, listener: str) -> float:
    text = requests.get(f"{server.api_url}/metrics", timeout=5).text
    for line in text.splitlines():
        if line.startswith(name) and f'listener="{listener}"' in line:
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no {name}{{listener={listener}}} in /metrics")


@pytest.mark.parametrize("port", ["otlp_http", "otlp_grpc"])
def test_one_client_cannot_take_every_connection(hostile, port):
    server, stored = hostile
    listener = {"otlp_http": "otlp_http", "otlp_grpc": "otlp_grpc"}[port]
    refused_before = metric(server, "sightline_connections_refused_per_client_total", listener)
    socks = [socket.create_connection(host_port(getattr(server, port))) for _ in range(PER_CLIENT + 8)]
    try:
        # The ones past the cap are closed at once (the others wait for their timeouts).
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            refused = metric(server, "sightline_connections_refused_per_client_total", listener)
            if refused - refused_before >= 8:
                break
            time.sleep(0.1)
        assert refused - refused_before >= 8, (refused, refused_before)
    finally:
        for s in socks:
            s.close()
    # The client gets its connections back once it closes them.
    assert_still_serving(server, stored)
    r = post(server, request_with([kv("service.name", "after-cap")], [span(400)]).SerializeToString())
    assert r.status_code == 200, r.text


# -- the gRPC port --------------------------------------------------------------------------


def grpc_export(server, body: bytes, compression=None, method=TRACES_METHOD, timeout=30):
    with grpc.insecure_channel(server.otlp_grpc) as channel:
        call = channel.unary_unary(method)
        return call(body, compression=compression, timeout=timeout)


@pytest.mark.parametrize(
    "case",
    ["empty ResourceSpans", "a million empty attributes"],
)
def test_grpc_gets_the_same_admission_before_decoding(hostile, case):
    server, stored = hostile
    body = (
        b"\x0a\x00" * 2_000_000
        if case == "empty ResourceSpans"
        else gzip.decompress(million_empty_attributes())
    )
    with Peak(server.process.pid) as peak:
        with pytest.raises(grpc.RpcError) as err:
            grpc_export(server, body, compression=grpc.Compression.Gzip)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, err.value
    assert "send smaller batches" in err.value.details()
    assert peak.growth_mib < 100, f"resident memory grew {peak.growth_mib:.0f} MiB"
    assert_still_serving(server, stored)


def test_grpc_refuses_what_is_not_an_export(hostile):
    server, stored = hostile
    with pytest.raises(grpc.RpcError) as err:
        grpc_export(server, b"", method="/opentelemetry.proto.collector.trace.v1.TraceService/Nope")
    assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED
    with pytest.raises(grpc.RpcError) as err:
        grpc_export(server, b"\xff\xff\xff")
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    # A valid export through the same path is stored.
    body = request_with([kv("service.name", "grpc-raw")], [span(500)]).SerializeToString()
    grpc_export(server, body, compression=grpc.Compression.Gzip)
    server.wait_for_rows(
        "SELECT count(*) AS n FROM spans WHERE service_name = 'grpc-raw'",
        until=lambda rows: rows[0]["n"] == 1,
    )
    assert_still_serving(server, stored)
