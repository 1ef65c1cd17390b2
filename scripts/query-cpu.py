#!/usr/bin/env python3
"""What heavy queries cost after their timeout, and what they cost everyone else.

    scripts/query-cpu.py BINARY [TIMEOUT]      e.g. scripts/query-cpu.py target/release/sightline 3s

Starts BINARY on a fresh data directory with query.timeout = TIMEOUT (default 3s), then:
1. sends each CPU-bound query of tests/python/test_hostile_queries.py (and a nested-loop join)
   alone and prints the CPU the server uses in each half second after the 408, and when it is
   idle again;
2. runs 8 of them at once and prints the latency of `SELECT 1`, `/healthz` and an OTLP/HTTP
   export while they run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "python"))
from test_hostile_queries import HEAVY  # noqa: E402

HEAVY = dict(HEAVY)
HEAVY["nested-loop join"] = (
    "SELECT count(*) FROM range(1000000) a, range(1000000) b WHERE a.value + b.value = -1"
)


def main():
    binary = sys.argv[1]
    timeout = sys.argv[2] if len(sys.argv) > 2 else "3s"
    work = Path(tempfile.mkdtemp(prefix="sightline-query-cpu-"))
    (work / "data").mkdir()
    (work / "sightline.toml").write_text(f'[query]\ntimeout = "{timeout}"\n')
    ready = work / "ready.json"
    server = subprocess.Popen(
        [
            binary, "serve", "--config", str(work / "sightline.toml"),
            "--data-dir", str(work / "data"), "--otlp-grpc-listen", "127.0.0.1:0",
            "--otlp-http-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0",
            "--ready-file", str(ready),
        ],  # fmt: skip
        stdout=open(work / "server.log", "wb"),
        stderr=subprocess.STDOUT,
    )
    try:
        for _ in range(600):
            if ready.exists():
                break
            time.sleep(0.1)
        addresses = json.loads(ready.read_text())
        api, otlp = f"http://{addresses['http']}", f"http://{addresses['otlp_http']}"
        time.sleep(1)

        def cpu():
            fields = open(f"/proc/{server.pid}/stat").read().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

        def sql(query, timeout_s=120):
            start = time.monotonic()
            r = requests.post(f"{api}/api/v1/sql", json={"sql": query}, timeout=timeout_s)
            return r.status_code, time.monotonic() - start

        for name, query in HEAVY.items():
            code, elapsed = sql(query)
            samples = []
            for _ in range(12):
                before = cpu()
                time.sleep(0.5)
                samples.append(round((cpu() - before) / 0.5, 2))
            idle = next((i * 0.5 for i, s in enumerate(samples) if s < 0.1), None)
            print(
                f"{name}: {code} after {elapsed:.1f} s; cores busy per half second after: "
                f"{samples}; idle after {idle if idle is not None else '> 6'} s"
            )

        heavy = [
            threading.Thread(target=sql, args=(HEAVY["regex compiled per row"],))
            for _ in range(8)
        ]
        for t in heavy:
            t.start()
        time.sleep(1)
        one, health, export = [], [], []
        for _ in range(10):
            one.append(round(sql("SELECT 1", 30)[1] * 1000))
            start = time.monotonic()
            requests.get(f"{api}/healthz", timeout=30)
            health.append(round((time.monotonic() - start) * 1000))
            start = time.monotonic()
            requests.post(
                f"{otlp}/v1/traces", data=b"", headers={"content-type": "application/x-protobuf"}
            )
            export.append(round((time.monotonic() - start) * 1000))
            time.sleep(0.1)
        for t in heavy:
            t.join()
        print(f"while 8 heavy queries run: SELECT 1 ms {one}")
        print(f"                           /healthz ms {health}")
        print(f"                           OTLP export ms {export}")
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    main()
