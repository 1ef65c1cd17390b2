"""`sightline demo` end to end, headless: the outage scenario runs; through the public API and
the demo receiver's output, the page alert fired after the outage began and resolved after
recovery, within the bounds the README gives; the sample shop's spans form correct traces
across its own HTTP hops, its metrics and logs arrive (logs with trace context); Ctrl-C (SIGINT)
stops everything with exit code 0.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
from datetime import datetime, timedelta

import requests
from conftest import _server_binary, poll

# The README's promise: the page fires within a minute of the outage and resolves within four
# minutes of recovery.
FIRE_BOUND = timedelta(seconds=60)
RESOLVE_BOUND = timedelta(minutes=4)


def at(line: str) -> datetime:
    m = re.search(r"\(at (\S+)\)", line)
    assert m, line
    return datetime.fromisoformat(m.group(1).replace("Z", "+00:00"))


def test_the_demo_scenario_fires_and_resolves_the_page_alert(tmp_path):
    ready_file = tmp_path / "ready.json"
    out_path = tmp_path / "demo.out"
    command = [
        _server_binary(), "demo",
        "--data-dir", str(tmp_path / "data"),
        "--warmup", "20s",
        "--http-listen", "127.0.0.1:0",
        "--otlp-grpc-listen", "127.0.0.1:0",
        "--otlp-http-listen", "127.0.0.1:0",
        "--shop-listen", "127.0.0.1:0",
        "--receiver-listen", "127.0.0.1:0",
        "--ready-file", str(ready_file),
    ]  # fmt: skip
    with open(out_path, "wb") as out:
        # A session of its own, so a failed run can stop the shop child with it.
        demo = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT,
                                env=dict(os.environ), start_new_session=True)  # fmt: skip
    try:

        def output() -> str:
            return out_path.read_text(errors="replace")

        def line(marker: str):
            return next((ln for ln in output().splitlines() if marker in ln), None)

        ready = poll(
            lambda: ready_file.exists() and json.loads(ready_file.read_text()),
            timeout=180,  # the past is sent first
            what="the demo's ready file",
            describe_last=output,
        )
        api = f"http://{ready['http']}"

        def sql(query: str) -> list[dict]:
            r = requests.post(f"{api}/api/v1/sql", json={"sql": query, "format": "json"}, timeout=10)
            assert r.status_code == 200, r.text
            body = r.json()
            names = [c["name"] for c in body["columns"]]
            return [dict(zip(names, row)) for row in body["rows"]]

        done = poll(lambda: line("5/5 resolved"), timeout=600, interval=1, what="the scenario",
                    describe_last=output)  # fmt: skip
        assert demo.poll() is None, output()
        outage_at, recovered_at = at(line("2/5 outage")), at(line("4/5 recovery"))
        assert at(done) > recovered_at > outage_at

        # A past: a week of backdated checkouts, so the budget starts near a healthy level
        # (0.1% of them failed against 0.5% allowed: about 80% left) and the SLO's counts begin
        # a week ago.
        past = line("0/5 a past:")
        assert past, output()
        seeded = int(re.search(r"starts with (\d+)% of its error budget", past).group(1))
        assert 70 <= seeded <= 90, past
        history = requests.get(f"{api}/api/v1/slos/checkout-availability/history", timeout=30).json()
        first = datetime.fromisoformat(history["first_event"].replace("Z", "+00:00"))
        assert first <= outage_at - timedelta(days=6, hours=23), history["first_event"]
        points = [p for p in history["points"] if p["budget_remaining"] is not None]
        before = [p["budget_remaining"] for p in points
                  if datetime.fromisoformat(p["at"].replace("Z", "+00:00")) <= outage_at]  # fmt: skip
        assert before and abs(before[-1] * 100 - seeded) <= 5, (before[-3:], seeded)
        # The outage spent a visible part of it, not all of it, and it stopped falling.
        slo = requests.get(f"{api}/api/v1/slos/checkout-availability", timeout=10).json()
        after = slo["budget"]["remaining"]
        assert 0.05 < after < seeded / 100 - 0.08, (seeded, after)
        assert slo["exhausted_since"] is None

        # The public API: the page alert's transitions.
        rows = sql(
            "SELECT time, state FROM slo_alerts WHERE slo = 'checkout-availability' "
            "AND rule = 'page' AND state IN ('firing', 'resolved') ORDER BY time"
        )
        states = [(datetime.fromisoformat(r["time"].replace("Z", "+00:00")), r["state"]) for r in rows]
        assert [s for _, s in states] == ["firing", "resolved"], states
        fired, resolved = states[0][0], states[1][0]
        assert outage_at <= fired <= outage_at + FIRE_BOUND, (outage_at, fired)
        assert recovered_at <= resolved <= recovered_at + RESOLVE_BOUND, (recovered_at, resolved)

        # The receiver: one firing and one resolved page notification, signatures valid.
        text = output()
        assert "receiver ← webhook FIRING:1 page checkout-availability  (signature valid)" in text
        assert "receiver ← webhook RESOLVED page checkout-availability  (signature valid)" in text
        assert "INVALID" not in text
        # The resolved notification says how things stand now, not how they stood at firing.
        resolved_line = next(ln for ln in text.splitlines() if ln.strip().startswith("resolved page:"))
        m = re.search(r"burn rate now ([\d.]+) over 1h and ([\d.]+) over 2m, threshold ([\d.]+)", resolved_line)
        assert m, resolved_line
        # (a tier clears when either of its windows is under the threshold)
        assert min(float(m.group(1)), float(m.group(2))) < float(m.group(3)), resolved_line

        # After the scenario, the demo says what still fires and why: never the span SLO's
        # page (it resolved); its ticket only if the outage ran long enough to pass 3% errors
        # over 6 hours, which the demo's own figures then show; what it lists is what the API
        # says fires.
        said = text[text.index("still firing"):].splitlines()
        listed = {}
        if "still firing: nothing" not in said[0]:
            for ln in said[1:]:
                m = re.match(r"\[\d\d:\d\d\]\s+(\S+) (\S+): (.*)", ln)
                if not m:
                    break
                listed[(m.group(1), m.group(2))] = m.group(3)
        assert ("checkout-availability", "page") not in listed, listed
        if ("checkout-availability", "ticket") in listed:
            why = listed[("checkout-availability", "ticket")]
            m = re.search(r"burn rate ([\d.]+) over 6h and ([\d.]+) over 30m, threshold ([\d.]+)", why)
            assert m and min(float(m.group(1)), float(m.group(2))) >= float(m.group(3)), why
        slos = requests.get(f"{api}/api/v1/slos", timeout=10).json()["slos"]
        firing_now = {(s["name"], a["rule"]) for s in slos for a in s["alerts"] if a["state"] == "firing"}
        assert firing_now <= set(listed), (firing_now, listed)  # some may have resolved since
        sent = sql(
            "SELECT status, outcome, status_code FROM notifications "
            "WHERE group_key LIKE '%checkout-availability%' AND group_key LIKE '%page%' "
            "AND outcome = 'delivered' ORDER BY time"
        )
        assert [(r["status"], r["status_code"]) for r in sent] == [("firing", 200), ("resolved", 200)]

        # The shop's telemetry: one trace across its services, parent/child links intact.
        hops = sql(
            "SELECT count(*) AS n FROM spans root "
            "JOIN spans c ON c.trace_id = root.trace_id AND c.parent_span_id = root.span_id "
            "JOIN spans pay ON pay.trace_id = c.trace_id AND pay.parent_span_id = c.span_id "
            "WHERE root.http_route = '/api/checkout' AND root.kind = 'server' "
            "AND root.service_name = 'shop' AND root.parent_span_id IS NULL AND c.kind = 'client' "
            "AND pay.kind = 'server' AND pay.http_route = '/charges' AND pay.service_name = 'payment'"
        )
        assert hops[0]["n"] > 10, hops
        services = {"shop", "catalog", "payment", "recommendations", "orders"}
        orphans = sql(
            "SELECT count(*) AS n FROM spans child LEFT JOIN spans parent "
            "ON parent.trace_id = child.trace_id AND parent.span_id = child.parent_span_id "
            f"WHERE child.service_name IN ({', '.join(repr(n) for n in sorted(services))}) "
            "AND child.parent_span_id IS NOT NULL "
            "AND parent.span_id IS NULL AND child.end_time < now() - INTERVAL '30 seconds'"
        )
        assert orphans[0]["n"] == 0, orphans
        seen = sql("SELECT DISTINCT service_name FROM spans WHERE kind IN ('server', 'consumer')")
        assert {r["service_name"] for r in seen} == services, seen

        # The service map during the outage: every call between the services, and the failing
        # one — shop → payment — failing at about the outage's rate; the demo said so.
        r = requests.get(f"{api}/api/v1/services/map",
                         params={"from": outage_at.isoformat(),
                                 "to": recovered_at.isoformat()}, timeout=30)  # fmt: skip
        assert r.status_code == 200, r.text
        edges = {(e["caller"], e["callee"]): e for e in r.json()["edges"]}
        assert set(edges) == {
            ("shop", "catalog"), ("shop", "payment"), ("shop", "recommendations"),
            ("shop", "orders"), ("orders", "payment"), ("recommendations", "catalog"),
        }, sorted(edges)  # fmt: skip
        # The failing edge counts what SQL counts over the same window (a handful of calls at
        # a 50% failure rate: the share itself is too noisy to pin down, its counts are not).
        pay = edges[("shop", "payment")]
        counted = sql(
            "SELECT count(*) AS calls, sum(CASE WHEN pay.status_code = 'error' THEN 1 ELSE 0 END) AS errors "
            "FROM spans pay JOIN spans shop ON shop.trace_id = pay.trace_id AND shop.span_id = pay.parent_span_id "
            "WHERE pay.service_name = 'payment' AND shop.service_name = 'shop' "
            f"AND pay.start_time >= '{outage_at.isoformat()}' AND pay.start_time < '{recovered_at.isoformat()}'"
        )[0]
        assert (pay["calls"], pay["errors"]) == (counted["calls"], counted["errors"]), (pay, counted)
        assert pay["errors"] >= 1 and pay["error_rate"] == pay["errors"] / pay["calls"], pay
        assert edges[("shop", "catalog")]["error_rate"] == 0, edges[("shop", "catalog")]
        told = line("failing calls since the outage began")
        assert told and "shop → payment (" in told, output()
        # The queue: failed captures during the outage came back as retries.
        retried = sql(
            "SELECT count(*) AS n FROM spans WHERE service_name = 'orders' AND kind = 'consumer' "
            "AND attributes['sample_queue.delivery'] = '2'"
        )
        assert retried[0]["n"] > 0, retried
        errors = sql(
            "SELECT count(*) AS n FROM spans WHERE http_route = '/charges' AND service_name = 'payment' "
            "AND status_code = 'error' AND cardinality(events) > 0"
        )
        assert errors[0]["n"] > 0, "failed charges are error spans with an exception event"
        metrics = sql(
            "SELECT DISTINCT metric_name FROM metrics WHERE service_name = 'shop' ORDER BY 1"
        )
        assert {"http.server.request.duration", "http.server.active_requests",
                "http.client.request.duration", "shop.cart.items"} <= {r["metric_name"] for r in metrics}  # fmt: skip
        traced_logs = sql(
            "SELECT count(*) AS n FROM logs l JOIN spans s "
            "ON l.trace_id = s.trace_id AND l.span_id = s.span_id "
            "WHERE l.body = 'checkout completed' AND s.http_route = '/api/checkout'"
        )
        assert traced_logs[0]["n"] > 10, traced_logs

        # Ctrl-C stops everything cleanly.
        demo.send_signal(signal.SIGINT)
        assert demo.wait(timeout=60) == 0, output()
        assert "stopping" in output()
        shop = ready["shop"]
        try:
            requests.get(f"http://{shop}/healthz", timeout=2)
            raise AssertionError("the shop still answers after the demo stopped")
        except requests.ConnectionError:
            pass
    finally:
        if demo.poll() is None:
            os.killpg(demo.pid, signal.SIGKILL)
            demo.wait()


def test_the_shop_stops_when_the_demo_is_killed(tmp_path):
    """A demo killed with SIGKILL cannot stop its shop child itself: the kernel does (the
    shop asked for SIGTERM when its parent dies), so no shop is left sending load."""
    ready_file = tmp_path / "ready.json"
    command = [
        _server_binary(), "demo", "--scenario", "none", "--history", "0s",
        "--data-dir", str(tmp_path / "data"),
        "--http-listen", "127.0.0.1:0", "--otlp-grpc-listen", "127.0.0.1:0",
        "--otlp-http-listen", "127.0.0.1:0", "--shop-listen", "127.0.0.1:0",
        "--receiver-listen", "127.0.0.1:0", "--ready-file", str(ready_file),
    ]  # fmt: skip
    demo = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)  # fmt: skip
    try:
        ready = poll(lambda: ready_file.exists() and json.loads(ready_file.read_text()),
                     timeout=120, what="the demo's ready file")  # fmt: skip
        shop = f"http://{ready['shop']}/healthz"
        assert requests.get(shop, timeout=5).status_code == 200
        demo.kill()
        demo.wait()

        def gone() -> bool:
            try:
                requests.get(shop, timeout=1)
                return False
            except requests.ConnectionError:
                return True

        poll(gone, timeout=15, what="the shop stopping after the demo was killed")
    finally:
        try:
            os.killpg(demo.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        demo.wait()
