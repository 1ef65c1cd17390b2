#!/usr/bin/env python3
"""Peak resident memory of the server for each small-but-costly ingest request of
tests/python/test_hostile_ingest.py, each sent to a fresh server.

    scripts/hostile-memory.py target/release/sightline

Prints, per request: its size on the wire, the answer, the server's peak resident memory
and its growth over the idle server, and the time to answer.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "python"))
import test_hostile_ingest as hostile  # noqa: E402


class Started:
    def __init__(self, binary: str):
        work = Path(tempfile.mkdtemp(prefix="sightline-hostile-"))
        (work / "data").mkdir()
        ready = work / "ready.json"
        self.process = subprocess.Popen(
            [
                binary, "serve", "--data-dir", str(work / "data"),
                "--otlp-grpc-listen", "127.0.0.1:0", "--otlp-http-listen", "127.0.0.1:0",
                "--http-listen", "127.0.0.1:0", "--ready-file", str(ready),
            ],  # fmt: skip
            stdout=open(work / "server.log", "wb"),
            stderr=subprocess.STDOUT,
        )
        for _ in range(600):
            if ready.exists():
                break
            time.sleep(0.1)
        self.otlp_http_url = "http://" + json.loads(ready.read_text())["otlp_http"]
        time.sleep(1)  # settle

    def stop(self):
        self.process.terminate()
        self.process.wait()


def measure(binary: str, case: str, body: bytes, content_type: str, encoding: str | None):
    server = Started(binary)
    try:
        with hostile.Peak(server.process.pid) as peak:
            start = time.monotonic()
            r = hostile.post(server, body, content_type, encoding, timeout=300)
            elapsed = time.monotonic() - start
        print(
            f"{case}: {len(body)} B on the wire -> {r.status_code}, peak RSS "
            f"{peak.peak >> 20} MiB (+{peak.growth_mib:.0f} MiB), {elapsed:.2f} s"
        )
    finally:
        server.stop()


def main():
    binary = sys.argv[1]
    for case, (make, content_type) in hostile.COSTLY.items():
        measure(binary, case, make(), content_type, "gzip")
    attrs = [hostile.kv(f"k{i}", "v") for i in range(60_000)]
    body = hostile.request_with(attrs, [hostile.span(i) for i in range(200)]).SerializeToString()
    measure(binary, "60,000 resource keys, 200 spans (protobuf)", body, "application/x-protobuf", None)


if __name__ == "__main__":
    main()
