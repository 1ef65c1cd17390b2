"""Real receivers for the alert-delivery tests: a webhook server that records what it gets
(and answers what the test tells it to), an SMTP server (aiosmtpd), and OTLP/HTTP outages.
"""

from __future__ import annotations

import email
import email.policy
import hashlib
import hmac
import json
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import requests
from aiosmtpd.controller import Controller
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, Status

SECRET = "hook-secret-for-tests"


def tls_for_localhost(directory: Path) -> tuple[Path, Callable[[], ssl.SSLContext]]:
    """A private CA (its PEM file, for Sightline's ca_file) and a factory of server TLS
    contexts with a certificate it issued for localhost and 127.0.0.1."""
    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("localhost", "127.0.0.1")
    ca_file = directory / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))

    def server_context() -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        cert.configure_cert(ctx)
        return ctx

    return ca_file, server_context


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------------------------
# webhook receiver


@dataclass
class Request:
    headers: dict[str, str]
    body: bytes
    answered: int

    @property
    def json(self) -> dict[str, Any]:
        return json.loads(self.body)

    @property
    def notification_id(self) -> str:
        return self.headers["x-sightline-notification-id"]


@dataclass
class Hook:
    """An HTTP(S) server on 127.0.0.1 that records every POST. `answer(n)` (n counts requests
    from 1) gives the status and headers to reply with; default 200."""

    port: int = field(default_factory=free_port)
    answer: Callable[[int], tuple[int, dict[str, str]]] = lambda n: (200, {})
    tls: ssl.SSLContext | None = None
    requests: list[Request] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        scheme = "https" if self.tls else "http"
        host = "localhost" if self.tls else "127.0.0.1"
        return f"{scheme}://{host}:{self.port}/alerts"

    def start(self) -> Hook:
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("content-length", "0"))
                body = self.rfile.read(length)
                with hook._lock:
                    n = len(hook.requests) + 1
                    status, headers = hook.answer(n)
                    hook.requests.append(
                        Request({k.lower(): v for k, v in self.headers.items()}, body, status)
                    )
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                reply = b"ok" if status < 300 else f"refused with {status}".encode()
                self.send_header("content-length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args):
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        if self.tls:
            self._server.socket = self.tls.wrap_socket(self._server.socket, server_side=True)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def delivered(self) -> list[Request]:
        """Requests answered 2xx, in arrival order."""
        with self._lock:
            return [r for r in self.requests if 200 <= r.answered < 300]


# --------------------------------------------------------------------------------------------
# SMTP receiver


class _Collect:
    def __init__(self, inbox: list):
        self.inbox = inbox

    async def handle_DATA(self, server, session, envelope):
        self.inbox.append(envelope)
        return "250 Message accepted for delivery"


@dataclass
class Smtp:
    port: int = field(default_factory=free_port)
    inbox: list = field(default_factory=list)
    _controller: Controller | None = None

    def start(self, **kwargs) -> Smtp:
        self._controller = Controller(
            _Collect(self.inbox), hostname="127.0.0.1", port=self.port, **kwargs
        )
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller:
            self._controller.stop()
            self._controller = None

    def messages(self) -> list[email.message.EmailMessage]:
        return [
            email.message_from_bytes(e.original_content, policy=email.policy.default)
            for e in list(self.inbox)
        ]


# --------------------------------------------------------------------------------------------
# config, SLOs and outages


def slo_spec(service: str, name: str = "checkout-availability", extra: str = "") -> str:
    """Two page tiers over short windows, so an outage of a few hundred spans fires both and
    a few thousand good spans resolve both. The short windows are 5 minutes or more: a window
    of one minute would empty at the next minute boundary and resolve the alerts mid-test."""
    return f"""
name: {name}
service: {service}
objective: 99
window: 7d
indicator:
  spans:
    filter: "service_name = '{service}' AND kind = 'server'"
    good: "status_code != 'error'"
alerting:
  budget_exhausted: false
  tiers:
    - name: page-fast
      severity: page
      long: 10m
      short: 5m
      burn_rate: 10
    - name: page-slow
      severity: page
      long: 30m
      short: 10m
      burn_rate: 5
labels:
  team: payments
annotations:
  runbook: https://runbooks.example.com/{name}
{extra}
"""


def config(
    slo_dir: Path, receivers: str, *, route: str | None = None, extra: str = "", delivery: str = ""
) -> str:
    """A server config: 1 s SLO ticks, short grouping timers and quick retries."""
    route = route or """
[notify.route]
receivers = ["hook"]
"""
    return f"""
[slo]
dir = "{slo_dir}"
tick = "1s"

[notify]
external_url = "http://sightline.test:8080"

[notify.delivery]
initial_backoff = "200ms"
max_backoff = "1s"
breaker_failures = 3
breaker_cooldown = "1s"
{delivery}

{receivers}
{route}
group_by = ["slo", "severity"]
group_wait = "1s"
group_interval = "2s"
repeat_interval = "1h"
{extra}
"""


def webhook_receiver(name: str, url: str, extra: str = "") -> str:
    return f"""
[[notify.receivers]]
name = "{name}"
[notify.receivers.webhook]
url = "{url}"
secret = "{SECRET}"
timeout = "2s"
headers = {{ X-Team = "payments" }}
{extra}
"""


def email_receiver(name: str, port: int, extra: str = "") -> str:
    return f"""
[[notify.receivers]]
name = "{name}"
[notify.receivers.email]
to = ["oncall@example.com"]
from = "Sightline <alerts@example.com>"
smarthost = "127.0.0.1:{port}"
tls = "none"
timeout = "5s"
{extra}
"""


def spans(service: str, count: int, *, error: bool, start_ns: int | None = None) -> bytes:
    now = start_ns or time.time_ns()
    items = []
    for i in range(count):
        items.append(
            Span(
                trace_id=uuid.uuid4().bytes,
                span_id=uuid.uuid4().bytes[:8],
                name="POST /checkout",
                kind=Span.SPAN_KIND_SERVER,
                start_time_unix_nano=now + i * 1000,
                end_time_unix_nano=now + i * 1000 + 5_000_000,
                status=Status(code=Status.STATUS_CODE_ERROR if error else Status.STATUS_CODE_OK),
            )
        )
    req = ExportTraceServiceRequest(
        resource_spans=[
            ResourceSpans(
                resource=Resource(
                    attributes=[KeyValue(key="service.name", value=AnyValue(string_value=service))]
                ),
                scope_spans=[ScopeSpans(scope=InstrumentationScope(name="e2e.alerts"), spans=items)],
            )
        ]
    )
    return req.SerializeToString()


def send(server, service: str, count: int, *, error: bool, start_ns: int | None = None) -> None:
    """Exports `count` server spans over OTLP/HTTP in batches of 500."""
    while count > 0:
        n = min(count, 500)
        r = requests.post(
            f"{server.otlp_http_url}/v1/traces",
            data=spans(service, n, error=error, start_ns=start_ns),
            headers={"content-type": "application/x-protobuf"},
            timeout=10,
        )
        assert r.status_code == 200, r.text
        count -= n


def outage(server, service: str) -> None:
    """Every request fails: both page tiers fire at the next tick."""
    send(server, service, 200, error=True)


def recovery(server, service: str) -> None:
    """Enough good requests that the error ratio (200 / 4200) is under both thresholds."""
    send(server, service, 4000, error=False)


def slo_alerts(server, name: str) -> list[dict]:
    r = requests.get(f"{server.api_url}/api/v1/slos/{name}", timeout=10)
    assert r.status_code == 200, r.text
    return r.json()["alerts"]


def firing(server, name: str) -> list[dict]:
    return [a for a in slo_alerts(server, name) if a["state"] == "firing"]


def verify_signature(req: Request) -> None:
    want = "sha256=" + hmac.new(SECRET.encode(), req.body, hashlib.sha256).hexdigest()
    assert req.headers.get("x-sightline-signature") == want, "HMAC-SHA256 signature"


RFC3339 = r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$"


def check_alertmanager_v4(payload: dict) -> None:
    """The webhook body has exactly Alertmanager's v4 shape, field by field."""
    import re

    assert set(payload) == {
        "version", "groupKey", "truncatedAlerts", "status", "receiver", "groupLabels",
        "commonLabels", "commonAnnotations", "externalURL", "alerts",
    }, sorted(payload)  # fmt: skip
    assert payload["version"] == "4"
    assert isinstance(payload["groupKey"], str) and payload["groupKey"]
    assert isinstance(payload["truncatedAlerts"], int) and payload["truncatedAlerts"] >= 0
    assert payload["status"] in ("firing", "resolved")
    assert isinstance(payload["receiver"], str)
    for key in ("groupLabels", "commonLabels", "commonAnnotations"):
        assert isinstance(payload[key], dict)
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in payload[key].items())
    assert isinstance(payload["externalURL"], str)
    assert isinstance(payload["alerts"], list) and payload["alerts"]
    for a in payload["alerts"]:
        assert set(a) == {
            "status", "labels", "annotations", "startsAt", "endsAt", "generatorURL", "fingerprint",
        }, sorted(a)  # fmt: skip
        assert a["status"] in ("firing", "resolved")
        assert isinstance(a["labels"], dict) and isinstance(a["annotations"], dict)
        assert re.match(RFC3339, a["startsAt"]), a["startsAt"]
        if a["status"] == "firing":
            assert a["endsAt"] == "0001-01-01T00:00:00Z"
        else:
            assert re.match(RFC3339, a["endsAt"]) and a["endsAt"] >= a["startsAt"]
        assert re.fullmatch(r"[0-9a-f]{16}", a["fingerprint"])
        assert a["generatorURL"].startswith("http")
    # The group labels are the labels every alert shares, so they are common labels too.
    for k, v in payload["groupLabels"].items():
        assert payload["commonLabels"][k] == v
