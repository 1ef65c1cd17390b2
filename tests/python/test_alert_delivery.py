"""Alert delivery end to end: outages sent over OTLP/HTTP fire SLO alerts, and the
notifications reach a real webhook server and a real SMTP server (aiosmtpd) — once, in order,
through receiver outages and a SIGKILL, with silences and maintenance windows respected.
"""

from __future__ import annotations

import re
import time

import requests
from alerting import (
    free_port,
    Hook,
    Smtp,
    check_alertmanager_v4,
    config,
    email_receiver,
    firing,
    outage,
    recovery,
    send,
    slo_spec,
    tls_for_localhost,
    verify_signature,
    webhook_receiver,
)
from conftest import launch_server, poll

SLO = "checkout-availability"


def metric(server, name: str, **labels) -> float:
    """The value of one sample on /metrics (0 when absent)."""
    text = requests.get(f"{server.api_url}/metrics", timeout=10).text
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        m = re.fullmatch(r"([a-z_]+)\{([^}]*)\} (\S+)", line)
        if m and m.group(1) == name:
            got = ",".join(sorted(m.group(2).split(",")))
            if got == want:
                return float(m.group(3))
    return 0.0


def history(server) -> list[dict]:
    return server.sql(
        "SELECT receiver, integration, status, outcome, attempt, status_code, error, "
        "notification_id, alerts FROM notifications ORDER BY time, attempt"
    )


def start(tmp_path, receivers: str, *, service: str, spec_extra: str = "", **kw):
    slo_dir = tmp_path / "slos"
    slo_dir.mkdir(exist_ok=True)
    (slo_dir / "checkout.yaml").write_text(slo_spec(service, extra=spec_extra))
    text = config(slo_dir, receivers, **kw)
    return launch_server(tmp_path, text), text


def stop(server) -> None:
    assert server.stop() == 0, server.log_tail()


def test_an_outage_notifies_each_group_once_by_webhook_and_email_then_resolves(tmp_path):
    hook, smtp = Hook().start(), Smtp().start()
    service = "checkout-e2e"
    try:
        receivers = webhook_receiver("hook", hook.url) + email_receiver("mail", smtp.port)
        route = '\n[notify.route]\nreceivers = ["hook", "mail"]\n'
        server, _ = start(tmp_path, receivers, service=service, route=route)
        try:
            outage(server, service)
            poll(lambda: len(firing(server, SLO)) == 2, what="both page tiers firing")
            poll(lambda: hook.delivered() and smtp.inbox, what="webhook and email", timeout=30)

            # The webhook: Alertmanager's v4 payload, signed, with the SLO facts.
            (req,) = hook.delivered()
            verify_signature(req)
            assert req.headers["x-team"] == "payments"
            assert req.headers["content-type"] == "application/json"
            p = req.json
            check_alertmanager_v4(p)
            assert p["status"] == "firing" and p["receiver"] == "hook"
            assert p["groupLabels"] == {"slo": SLO, "severity": "page"}
            assert p["externalURL"] == "http://sightline.test:8080"
            assert p["truncatedAlerts"] == 0
            assert {a["labels"]["tier"] for a in p["alerts"]} == {"page-fast", "page-slow"}
            assert p["commonLabels"]["team"] == "payments"
            assert p["commonLabels"]["service"] == service
            assert p["commonLabels"]["alertname"] == "SLOBurnRate"
            ann = p["commonAnnotations"]
            assert ann["objective"] == "99%" and ann["window"] == "7d"
            assert ann["runbook"] == f"https://runbooks.example.com/{SLO}"
            assert ann["slo_url"] == f"http://sightline.test:8080/slos/{SLO}"
            assert ann["budget_remaining"].endswith("%")
            for a in p["alerts"]:
                assert a["generatorURL"] == ann["slo_url"]
                assert float(a["annotations"]["burn_rate_long"]) >= float(
                    a["annotations"]["threshold"]
                )
                assert a["annotations"]["long_window"] in ("10m", "30m")
                assert "summary" in a["annotations"] and "description" in a["annotations"]

            # The email: a clear subject, text and HTML bodies with the same facts.
            (msg,) = smtp.messages()
            assert msg["subject"] == f"[FIRING:2] {SLO} page"
            assert msg["to"] == "oncall@example.com"
            text = msg.get_body(("plain",)).get_content()
            html = msg.get_body(("html",)).get_content()
            for body in (text, html):
                assert "runbooks.example.com" in body and f"/slos/{SLO}" in body
                assert "page-fast" in body and "99%" in body

            # Recovery: one resolved notification each, then silence.
            recovery(server, service)
            poll(lambda: not firing(server, SLO), what="alerts resolved")
            poll(lambda: len(hook.delivered()) == 2 and len(smtp.inbox) == 2, timeout=30,
                 what="resolved notifications")  # fmt: skip
            resolved = hook.delivered()[1].json
            check_alertmanager_v4(resolved)
            assert resolved["status"] == "resolved"
            assert {a["status"] for a in resolved["alerts"]} == {"resolved"}
            # With the figures that cleared it (a tier clears when either window is under
            # its threshold) and, labelled, those it fired with.
            for a in resolved["alerts"]:
                ann = a["annotations"]
                threshold = float(ann["threshold"])
                now = [float(ann[k]) for k in ("burn_rate_long", "burn_rate_short") if k in ann]
                assert min(now, default=0.0) < threshold, ann
                assert float(ann["burn_rate_long_at_firing"]) >= threshold, ann
                assert ann["description"].startswith("Resolved: burn rate now"), ann
                assert ann["description_at_firing"].startswith("Burn rate "), ann
                assert "no longer burning" in ann["summary"], ann
            assert smtp.messages()[1]["subject"] == f"[RESOLVED] {SLO} page"
            time.sleep(5)  # two more group intervals: nothing more
            assert len(hook.requests) == 2 and len(smtp.inbox) == 2

            # History in SQL, counts in /metrics.
            rows = history(server)
            outcomes = sorted((r["receiver"], r["outcome"], r["status"]) for r in rows)
            assert outcomes == sorted(
                (rcv, o, s)
                for rcv in ("hook", "mail")
                for o in ("queued", "delivered")
                for s in ("firing", "resolved")
            ), outcomes
            assert {r["integration"] for r in rows} == {"webhook", "email"}
            delivered = [r for r in rows if r["outcome"] == "delivered"]
            assert {r["status_code"] for r in delivered if r["receiver"] == "hook"} == {200}
            assert {r["status_code"] for r in delivered if r["receiver"] == "mail"} == {250}
            assert metric(server, "sightline_notifications_total", receiver="hook", outcome="sent") == 2
            assert metric(server, "sightline_notifications_total", receiver="mail", outcome="sent") == 2
            assert metric(server, "sightline_notifications_pending", receiver="hook") == 0
        finally:
            stop(server)
    finally:
        hook.stop()
        smtp.stop()


def test_delivery_errors_never_show_the_receiver_url(tmp_path):
    # Nobody listens: connection refused. The URL's credentials and token must not be stored.
    port = free_port()
    url = f"http://alert-user:s3cret-pass@127.0.0.1:{port}/hook?token=t0ken-value"
    service = "checkout-leak"
    server, _ = start(tmp_path, webhook_receiver("hook", url), service=service)
    try:
        outage(server, service)
        rows = poll(
            lambda: [r for r in history(server) if r["outcome"] == "retrying" and r["error"]],
            what="a failed attempt",
            timeout=30,
        )
        pending = requests.get(f"{server.api_url}/api/v1/notifications/pending", timeout=10)
        for text in [r["error"] for r in rows] + [pending.text, server.log_path.read_text()]:
            assert "s3cret-pass" not in text and "t0ken-value" not in text, text[:500]
        assert any("refused" in r["error"].lower() for r in rows), rows
    finally:
        stop(server)


def test_a_receiver_that_is_down_gets_everything_once_it_recovers(tmp_path):
    # First nobody listens (connection refused), then 503 with Retry-After, then 200.
    hook = Hook(answer=lambda n: (503, {"Retry-After": "1"}) if n <= 3 else (200, {}))
    service = "checkout-down"
    server, _ = start(tmp_path, webhook_receiver("hook", hook.url), service=service)
    try:
        outage(server, service)
        poll(
            lambda: any(r["outcome"] == "retrying" and r["status_code"] is None for r in history(server)),
            what="refused connections retried",
            timeout=30,
        )
        hook.start()
        poll(lambda: hook.delivered(), what="delivery after the receiver recovered", timeout=30)
        recovery(server, service)
        poll(lambda: len(hook.delivered()) == 2, what="the resolved notification", timeout=30)
        time.sleep(4)
        ok = hook.delivered()
        assert [r.json["status"] for r in ok] == ["firing", "resolved"], "in order"
        assert len({r.notification_id for r in ok}) == 2, "nothing twice"
        assert [r.answered for r in hook.requests[:3]] == [503, 503, 503]
        rows = history(server)
        retries = [r for r in rows if r["outcome"] == "retrying"]
        assert any(r["status_code"] == 503 for r in retries)
        assert any("refused" in (r["error"] or "").lower() for r in retries), retries
        assert [r["outcome"] for r in rows if r["outcome"] in ("delivered", "rejected", "expired")] == [
            "delivered",
            "delivered",
        ]
        assert metric(server, "sightline_notifications_total", receiver="hook", outcome="retried") >= 4
        assert metric(server, "sightline_notifications_total", receiver="hook", outcome="sent") == 2
    finally:
        stop(server)
        hook.stop()


def test_pending_notifications_survive_sigkill(tmp_path):
    hook = Hook()  # not started: connections are refused
    service = "checkout-kill"
    server, text = start(tmp_path, webhook_receiver("hook", hook.url), service=service)
    try:
        outage(server, service)

        def pending():
            r = requests.get(f"{server.api_url}/api/v1/notifications/pending", timeout=10)
            got = r.json()["pending"]
            return got if got and got[0]["attempts"] >= 1 else None

        (queued,) = poll(pending, what="a notification waiting in the outbox", timeout=30)
        assert queued["last_error"], queued
    finally:
        server.process.kill()
        server.process.wait()
    hook.start()
    try:
        server = launch_server(tmp_path, text)
        try:
            poll(lambda: hook.delivered(), what="delivery after the restart", timeout=30)
            time.sleep(4)
            (req,) = hook.requests
            assert req.notification_id == queued["id"], "the very notification that was pending"
            assert req.json["status"] == "firing" and len(req.json["alerts"]) == 2
            # The alerts still fire, but they were announced: no second notification.
            assert len(firing(server, SLO)) == 2
        finally:
            stop(server)
    finally:
        hook.stop()


def test_a_400_is_not_retried(tmp_path):
    hook = Hook(answer=lambda n: (400, {})).start()
    service = "checkout-400"
    server, _ = start(tmp_path, webhook_receiver("hook", hook.url), service=service)
    try:
        outage(server, service)
        poll(
            lambda: [r for r in history(server) if r["outcome"] == "rejected"],
            what="the rejection recorded",
            timeout=30,
        )
        time.sleep(3)
        assert len(hook.requests) == 1
        (row,) = [r for r in history(server) if r["outcome"] != "queued"]
        assert row["status_code"] == 400 and "400" in row["error"]
        assert metric(server, "sightline_notifications_total", receiver="hook", outcome="failed") == 1
        assert metric(server, "sightline_notifications_total", receiver="hook", outcome="retried") == 0
    finally:
        stop(server)
        hook.stop()


def test_an_undeliverable_notification_is_given_up_after_max_age_and_recorded(tmp_path):
    hook = Hook()  # never started: every connection is refused
    service = "checkout-expire"
    server, _ = start(
        tmp_path, webhook_receiver("hook", hook.url), service=service, delivery='max_age = "4s"'
    )
    try:
        outage(server, service)
        # Three refused connections in a row open the receiver's breaker.
        poll(
            lambda: metric(server, "sightline_notify_circuit_open", receiver="hook") == 1,
            what="the circuit breaker open",
            timeout=30,
        )
        (row,) = poll(
            lambda: [r for r in history(server) if r["outcome"] == "expired"],
            what="the notification given up",
            timeout=30,
        )
        assert "max_age" in row["error"] and "refused" in row["error"].lower(), row
        assert row["attempt"] >= 3

        def outbox_empty():
            r = requests.get(f"{server.api_url}/api/v1/notifications/pending", timeout=10)
            return r.json()["pending"] == []

        # (A tier that fired a tick later makes a second notification; it expires too.)
        poll(outbox_empty, what="every notification given up", timeout=30)
        rows = history(server)
        queued = {r["notification_id"] for r in rows if r["outcome"] == "queued"}
        expired = [r["notification_id"] for r in rows if r["outcome"] == "expired"]
        assert sorted(expired) == sorted(queued) and not hook.requests
        assert metric(server, "sightline_notifications_total", receiver="hook", outcome="dropped") == len(queued)
        assert metric(server, "sightline_notifications_pending", receiver="hook") == 0
    finally:
        stop(server)


def in_a_day() -> str:
    import datetime

    later = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=1)
    return later.strftime("%Y-%m-%dT%H:%M:%SZ")


def test_a_silenced_alert_sends_nothing(tmp_path):
    hook = Hook().start()
    service = "checkout-silenced"
    server, _ = start(tmp_path, webhook_receiver("hook", hook.url), service=service)
    api = f"{server.api_url}/api/v1/silences"
    try:
        bad = requests.post(api, json={"matchers": [], "endsAt": "2200-01-01T00:00:00Z"}, timeout=10)
        assert bad.status_code == 400 and "matcher" in bad.json()["error"]
        bad = requests.post(api, data=b"{not json", headers={"content-type": "application/json"}, timeout=10)
        assert bad.status_code == 400
        body = {
            "matchers": [{"name": "slo", "value": SLO, "isRegex": False, "isEqual": True}],
            "endsAt": in_a_day(),
            "createdBy": "e2e",
            "comment": "planned failover drill",
        }
        r = requests.post(api, json=body, timeout=10)
        assert r.status_code == 200, r.text
        silence_id = r.json()["silenceID"]
        (listed,) = requests.get(api, timeout=10).json()
        assert listed["status"]["state"] == "active" and listed["comment"] == "planned failover drill"

        outage(server, service)
        poll(lambda: len(firing(server, SLO)) == 2, what="alerts firing")
        time.sleep(5)  # group_wait and two group intervals
        assert hook.requests == []
        assert [r for r in history(server) if r["outcome"] == "queued"] == []

        # Ending the silence lets the still-firing alerts through.
        assert requests.delete(f"{api}/{silence_id}", timeout=10).status_code == 200
        assert requests.delete(f"{api}/no-such-id", timeout=10).status_code == 404
        poll(lambda: hook.delivered(), what="notification once the silence ended", timeout=30)
        assert hook.delivered()[0].json["status"] == "firing"
    finally:
        stop(server)
        hook.stop()


def test_a_maintenance_window_mutes_and_leaves_the_budget_untouched(tmp_path):
    hook = Hook().start()
    service = "checkout-maint"
    slo_dir = tmp_path / "slos"
    slo_dir.mkdir()
    # The same events counted by two SLOs; only the first excludes maintenance.
    (slo_dir / "a.yaml").write_text(slo_spec(service, name="maintained", extra="exclude_maintenance: true"))
    (slo_dir / "b.yaml").write_text(slo_spec(service, name="control"))
    now = time.time()
    iso = lambda t: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))  # noqa: E731
    window = f"""
[[maintenance]]
name = "db-migration"
matchers = ['slo="maintained"']
starts_at = "{iso(now - 600)}"
ends_at = "{iso(now + 3600)}"
"""
    text = config(slo_dir, webhook_receiver("hook", hook.url)) + window
    server = launch_server(tmp_path, text)
    try:
        # Good traffic before the window counts for both.
        send(server, service, 300, error=False, start_ns=int((now - 1800) * 1e9))
        outage(server, service)
        poll(lambda: len(firing(server, "control")) == 2, what="the control SLO firing")
        poll(lambda: hook.delivered(), what="the control SLO's notification", timeout=30)
        time.sleep(4)
        slos = {s["name"]: s for s in requests.get(f"{server.api_url}/api/v1/slos", timeout=10).json()["slos"]}
        assert slos["maintained"]["budget"]["remaining"] == 1.0, slos["maintained"]
        assert slos["maintained"]["total"] == 300
        assert slos["control"]["budget"]["remaining"] < 0, slos["control"]
        assert firing(server, "maintained") == []
        assert {r.json["groupLabels"]["slo"] for r in hook.requests} == {"control"}
        windows = requests.get(f"{server.api_url}/api/v1/maintenance", timeout=10).json()["windows"]
        assert windows[0]["name"] == "db-migration" and windows[0]["active"]
    finally:
        stop(server)
        hook.stop()


def test_webhooks_over_tls_and_email_with_starttls(tmp_path):
    ca_file, server_context = tls_for_localhost(tmp_path)
    hook = Hook(tls=server_context()).start()
    smtp = Smtp().start(tls_context=server_context(), require_starttls=True, server_hostname="localhost")
    service = "checkout-tls"
    try:
        receivers = webhook_receiver("hook", hook.url, f'ca_file = "{ca_file}"') + email_receiver(
            "mail", smtp.port, f'ca_file = "{ca_file}"'
        ).replace('tls = "none"', 'tls = "starttls"').replace("127.0.0.1:", "localhost:")
        route = '\n[notify.route]\nreceivers = ["hook", "mail"]\n'
        server, _ = start(tmp_path, receivers, service=service, route=route)
        try:
            outage(server, service)
            poll(lambda: hook.delivered() and smtp.inbox, what="TLS deliveries", timeout=30)
            verify_signature(hook.delivered()[0])
            assert smtp.messages()[0]["subject"] == f"[FIRING:2] {SLO} page"
        finally:
            stop(server)
    finally:
        hook.stop()
        smtp.stop()


def test_email_over_implicit_tls_with_authentication(tmp_path):
    from aiosmtpd.smtp import AuthResult

    ca_file, server_context = tls_for_localhost(tmp_path)
    ctx = server_context()
    logins = []

    def authenticator(server, session, envelope, mechanism, auth_data):
        ok = auth_data.login == b"alerts" and auth_data.password == b"s3cret"
        logins.append((mechanism, auth_data.login, ok))
        return AuthResult(success=ok)

    # aiosmtpd counts only STARTTLS as TLS for auth_require_tls; this connection is TLS from
    # its first byte, so that check is off.
    smtp = Smtp().start(ssl_context=ctx, server_hostname="localhost", authenticator=authenticator,
                        auth_require_tls=False)  # fmt: skip
    service = "checkout-smtps"
    try:
        receivers = email_receiver(
            "mail", smtp.port, f'ca_file = "{ca_file}"\nusername = "alerts"\npassword = "s3cret"'
        ).replace('tls = "none"', 'tls = "tls"').replace("127.0.0.1:", "localhost:")
        route = '\n[notify.route]\nreceivers = ["mail"]\n'
        server, _ = start(tmp_path, receivers, service=service, route=route)
        try:
            outage(server, service)
            poll(lambda: smtp.inbox, what="mail over implicit TLS", timeout=30)
            assert smtp.messages()[0]["subject"] == f"[FIRING:2] {SLO} page"
            assert logins and all(ok for _, _, ok in logins), logins
            assert smtp.inbox[0].mail_from == "alerts@example.com"
        finally:
            stop(server)
    finally:
        smtp.stop()


def test_each_tenant_s_alerts_say_whose_they_are_and_route_by_it(tmp_path):
    """Receivers and routes are the operator's, shared by tenants: a tenant's alerts carry a
    `tenant` label (which no spec can set to another tenant's name), so a route can send each
    tenant's pages to its own receiver."""
    from alerting import spans
    from conftest import create_key

    ops, team_a = Hook().start(), Hook().start()
    service = "checkout-tenants"
    data = tmp_path / "data"
    data.mkdir()
    keys = {t: create_key(data, t, "ingest") for t in ("team-a", "team-b")}
    slo_dir = tmp_path / "slos"
    for tenant in ("team-a", "team-b"):
        (slo_dir / tenant).mkdir(parents=True)
        spec = slo_spec(service)
        if tenant == "team-b":  # tries to pass for team-a
            spec = spec.replace("  team: payments", "  team: payments\n  tenant: team-a")
        (slo_dir / tenant / "checkout.yaml").write_text(spec)
    receivers = webhook_receiver("ops", ops.url) + webhook_receiver("team-a", team_a.url)
    route = '\n[notify.route]\nreceivers = ["ops"]\n'
    child = """
[[notify.route.routes]]
receivers = ["team-a"]
matchers = ['tenant="team-a"']
"""
    server = launch_server(tmp_path, config(slo_dir, receivers, route=route, extra=child))

    def outage_of(tenant: str) -> None:
        r = requests.post(
            f"{server.otlp_http_url}/v1/traces", data=spans(service, 200, error=True), timeout=10,
            headers={"content-type": "application/x-protobuf", "authorization": f"Bearer {keys[tenant]}"},
        )  # fmt: skip
        assert r.status_code == 200, r.text

    try:
        outage_of("team-a")
        poll(lambda: team_a.delivered(), what="team-a's page at team-a's receiver", timeout=30)
        (a,) = team_a.delivered()
        assert a.json["commonLabels"]["tenant"] == "team-a"
        assert {x["labels"]["tenant"] for x in a.json["alerts"]} == {"team-a"}
        outage_of("team-b")
        poll(lambda: ops.delivered(), what="team-b's page at the operator's receiver", timeout=30)
        (b,) = ops.delivered()
        assert b.json["commonLabels"]["tenant"] == "team-b", b.json["commonLabels"]
        # The same spec in two tenants: a receiver must never take one for the other.
        assert b.json["groupLabels"]["tenant"] == "team-b" and a.json["groupLabels"]["tenant"] == "team-a"
        assert a.json["groupKey"] != b.json["groupKey"]
        assert {x["labels"]["tier"] for x in a.json["alerts"]} == {x["labels"]["tier"] for x in b.json["alerts"]}
        assert not {x["fingerprint"] for x in a.json["alerts"]} & {x["fingerprint"] for x in b.json["alerts"]}
        time.sleep(2)  # a group_interval: nothing more arrives anywhere
        assert len(team_a.delivered()) == 1 and len(ops.delivered()) == 1
    finally:
        stop(server)
        ops.stop()
        team_a.stop()
