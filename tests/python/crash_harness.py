"""Crash-safety harness: sustained OTLP load from several clients, SIGKILL at random moments
(flushes run all the time, so kills land in the middle of them too), restart, and a check that
every acknowledged span is stored exactly once and no unacknowledged request is half-visible.

Used by test_crash_safety.py (a few cycles) and scripts/crash-test.py (as many as you like).
Each request carries spans with ids never sent before, and is never retried, so:

  - a span whose request was answered 200 must be present exactly once;
  - the spans of a request that got no answer (the server died) are all present or all absent;
  - no span is present twice.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

CONFIG = """
[query]
max_rows = 100000000
max_result_bytes = "1GiB"

[storage]
flush_interval = "300ms"
flush_max_bytes = "256KiB"
durability = "fsync"
wal_segment_bytes = "1MiB"
"""


def _request(client: int, seq: int, spans_per_request: int) -> tuple[bytes, list[str]]:
    now = time.time_ns()
    span_ids: list[str] = []
    spans = []
    for i in range(spans_per_request):
        # Unique, never zero, and decodable: client, request and span index.
        sid = ((client + 1) << 48) | (seq << 8) | i
        trace = ((client + 1) << 96) | (seq << 8) | 1
        spans.append(
            Span(
                trace_id=trace.to_bytes(16, "big"),
                span_id=sid.to_bytes(8, "big"),
                name=f"crash-{client}",
                kind=Span.SPAN_KIND_SERVER,
                start_time_unix_nano=now,
                end_time_unix_nano=now + 1000,
                attributes=[KeyValue(key="seq", value=AnyValue(int_value=seq))],
            )
        )
        span_ids.append(sid.to_bytes(8, "big").hex())
    req = ExportTraceServiceRequest(
        resource_spans=[
            ResourceSpans(
                resource={"attributes": [KeyValue(key="service.name", value=AnyValue(string_value="crash"))]},
                scope_spans=[ScopeSpans(spans=spans)],
            )
        ]
    )
    return req.SerializeToString(), span_ids


@dataclass
class Ledger:
    acked: list[str] = field(default_factory=list)
    # Requests without an answer: each a list of span ids.
    unknown: list[list[str]] = field(default_factory=list)
    refused: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


class Server:
    def __init__(self, binary: str, workdir: Path):
        self.binary = binary
        self.workdir = workdir
        self.data = workdir / "data"
        self.config = workdir / "sightline.toml"
        self.config.write_text(CONFIG)
        self.proc: subprocess.Popen | None = None
        self.addrs: dict[str, str] = {}

    def start(self, timeout: float = 60) -> None:
        ready = self.workdir / "ready.json"
        ready.unlink(missing_ok=True)
        log = open(self.workdir / "server.log", "ab")
        self.proc = subprocess.Popen(
            [
                self.binary, "serve", "--config", str(self.config), "--data-dir", str(self.data),
                "--otlp-grpc-listen", "127.0.0.1:0", "--otlp-http-listen", "127.0.0.1:0",
                "--http-listen", "127.0.0.1:0", "--ready-file", str(ready),
            ],
            stdout=log, stderr=log,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}; see {self.workdir}/server.log")
            if ready.exists():
                self.addrs = json.loads(ready.read_text())
                return
            time.sleep(0.02)
        raise TimeoutError("server did not become ready")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=60)

    def sql(self, query: str) -> list[list]:
        r = requests.post(f"http://{self.addrs['http']}/api/v1/sql", json={"sql": query}, timeout=60)
        r.raise_for_status()
        answer = r.json()
        assert not answer["truncated"], "the check needs every row: raise the query limits"
        return answer["rows"]


def _client(server: Server, client: int, stop: threading.Event, ledger: Ledger, spans_per_request: int, seq0: int) -> None:
    session = requests.Session()
    seq = seq0
    url = f"http://{server.addrs['otlp_http']}/v1/traces"
    while not stop.is_set():
        body, ids = _request(client, seq, spans_per_request)
        seq += 1
        try:
            r = session.post(url, data=body, headers={"content-type": "application/x-protobuf"}, timeout=10)
        except requests.RequestException:
            with ledger.lock:
                ledger.unknown.append(ids)
            return  # the server is gone; this client is done for the cycle
        with ledger.lock:
            if r.status_code == 200:
                rejected = ExportTraceServiceResponse.FromString(r.content).partial_success.rejected_spans
                assert rejected == 0, f"the server rejected {rejected} valid spans"
                ledger.acked.extend(ids)
            else:
                # A refusal (e.g. 503 while shutting down) means "not stored".
                ledger.refused += 1
                ledger.unknown.append(ids)


def run(binary: str, workdir: Path, cycles: int, clients: int = 4, spans_per_request: int = 50,
        min_run: float = 0.3, max_run: float = 1.5, seed: int | None = None) -> dict:
    """Runs `cycles` load-and-SIGKILL cycles, then checks the stored spans. Returns a summary;
    raises AssertionError on any lost, duplicated or half-visible span."""
    rng = random.Random(seed)
    server = Server(binary, workdir)
    ledger = Ledger()
    seq_base = 0
    for cycle in range(cycles):
        server.start()
        stop = threading.Event()
        threads = [
            threading.Thread(target=_client, args=(server, c, stop, ledger, spans_per_request, seq_base), daemon=True)
            for c in range(clients)
        ]
        for t in threads:
            t.start()
        time.sleep(rng.uniform(min_run, max_run))
        server.kill()
        stop.set()
        for t in threads:
            t.join(timeout=30)
        seq_base += 1 << 20  # fresh ids for the next cycle
    server.start()
    rows = server.sql("SELECT span_id, count(*) FROM spans GROUP BY span_id HAVING count(*) > 0")
    counts = {r[0]: r[1] for r in rows}
    duplicated = {k: v for k, v in counts.items() if v > 1}
    lost = [s for s in ledger.acked if counts.get(s, 0) != 1]
    half = [ids for ids in ledger.unknown if 0 < sum(1 for s in ids if s in counts) < len(ids)]
    unknown_stored = sum(1 for ids in ledger.unknown if ids and ids[0] in counts)
    assert server.stop() == 0, "clean shutdown after the check"
    summary = {
        "cycles": cycles,
        "acked_spans": len(ledger.acked),
        "stored_spans": len(counts),
        "unacked_requests": len(ledger.unknown),
        "unacked_requests_stored": unknown_stored,
        "lost": len(lost),
        "duplicated": len(duplicated),
        "half_visible_requests": len(half),
    }
    assert not lost, f"acknowledged spans lost: {lost[:10]} ... {summary}"
    assert not duplicated, f"spans stored twice: {list(duplicated.items())[:10]} ... {summary}"
    assert not half, f"requests partly stored: {half[:3]} ... {summary}"
    assert len(counts) == len(ledger.acked) + sum(len(ids) for ids in ledger.unknown if ids[0] in counts)
    return summary


if __name__ == "__main__":
    import argparse
    import tempfile

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cycles", type=int, default=50)
    p.add_argument("--clients", type=int, default=4)
    p.add_argument("--binary", default=os.environ.get("SIGHTLINE_BIN"))
    p.add_argument("--seed", type=int)
    a = p.parse_args()
    if not a.binary:
        raise SystemExit("pass --binary or set SIGHTLINE_BIN")
    with tempfile.TemporaryDirectory(prefix="sightline-crash-") as d:
        print(json.dumps(run(a.binary, Path(d), a.cycles, a.clients, seed=a.seed)))
