#!/usr/bin/env python3
"""Trace-by-id latency on a loaded server: picks random trace ids from the `traces` view and
times GET /api/v1/traces/{id} for each. Prints p50/p90/p99/max in milliseconds.

    scripts/bench-trace-lookup.py --api 127.0.0.1:8080 [--lookups 100]
"""

import argparse
import json
import random
import time
import urllib.request


def post_sql(api: str, sql: str):
    req = urllib.request.Request(
        f"http://{api}/api/v1/sql", data=json.dumps({"sql": sql}).encode(), method="POST"
    )
    with urllib.request.urlopen(req, timeout=300) as r:
        return json.load(r)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--api", required=True)
    p.add_argument("--lookups", type=int, default=100)
    a = p.parse_args()
    total = post_sql(a.api, "SELECT count(*) FROM spans")["rows"][0][0]
    ids = [r[0] for r in post_sql(a.api, "SELECT trace_id FROM trace_fragments LIMIT 10000")["rows"]]
    random.shuffle(ids)
    times, spans = [], []
    for tid in ids[: a.lookups]:
        t0 = time.perf_counter()
        with urllib.request.urlopen(f"http://{a.api}/api/v1/traces/{tid}", timeout=60) as r:
            body = json.load(r)
        times.append((time.perf_counter() - t0) * 1000)
        spans.append(len(body["spans"]))
    times.sort()
    q = lambda f: times[min(len(times) - 1, int(f * len(times)))]
    print(json.dumps({
        "spans_stored": total, "lookups": len(times),
        "p50_ms": round(q(0.5), 1), "p90_ms": round(q(0.9), 1), "p99_ms": round(q(0.99), 1),
        "max_ms": round(times[-1], 1), "mean_spans_per_trace": round(sum(spans) / len(spans), 1),
    }))


if __name__ == "__main__":
    main()
