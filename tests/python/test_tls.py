"""TLS on every listener, against the real server with certificates the tests make themselves
(trustme): the OpenTelemetry Python SDK sends over TLS on gRPC and HTTP and the API answers
over HTTPS; plain text on a TLS port is told to use TLS and closed; a client that never
finishes its handshake is closed after tls.handshake_timeout; TLS 1.3 can be made the minimum;
certificates are replaced without a restart while an exporter keeps sending (and a broken one
is not taken); client certificates from the client CA stand for a tenant and roles (mTLS), and
can be required of every connection; bad TLS settings stop the server at start, named."""

from __future__ import annotations

import json
import re
import socket
import ssl
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
import requests
import trustme
from conftest import _server_binary, launch_server, poll
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpanExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from test_auth import create


@dataclass
class Pki:
    dir: Path
    ca: trustme.CA
    ca_file: str
    clients_ca: trustme.CA
    client_cert: str  # PEM chain file of a client certificate for edge.collectors
    client_key: str
    stranger_cert: str  # the same name, from a CA the server does not trust
    stranger_key: str

    def server_files(self, where: Path, ca: trustme.CA | None = None) -> tuple[Path, Path]:
        leaf = (ca or self.ca).issue_cert("localhost", "127.0.0.1")
        cert, key = where / "server.pem", where / "server.key"
        leaf.private_key_pem.write_to_path(str(key))
        leaf.cert_chain_pems[0].write_to_path(str(cert))
        return cert, key


@pytest.fixture(autouse=True)
def exporters_trust_what_they_are_given(monkeypatch):
    # requests lets these variables override a session's `verify` (which the OTLP/HTTP
    # exporter sets to its certificate_file): without this, the exporter would check the
    # server against the system's CAs whenever the environment names a bundle.
    for var in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Pki:
    d = tmp_path_factory.mktemp("pki")
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(d / "ca.pem"))
    clients_ca = trustme.CA()
    clients_ca.cert_pem.write_to_path(str(d / "clients-ca.pem"))
    client = clients_ca.issue_cert("edge.collectors")
    client.private_key_and_cert_chain_pem.write_to_path(str(d / "client.pem"))
    client.private_key_pem.write_to_path(str(d / "client.key"))
    stranger = trustme.CA().issue_cert("edge.collectors")
    stranger.private_key_and_cert_chain_pem.write_to_path(str(d / "stranger.pem"))
    stranger.private_key_pem.write_to_path(str(d / "stranger.key"))
    return Pki(
        d, ca, str(d / "ca.pem"), clients_ca,
        str(d / "client.pem"), str(d / "client.key"),
        str(d / "stranger.pem"), str(d / "stranger.key"),
    )  # fmt: skip


def tls_config(cert: Path, key: Path, extra: str = "") -> str:
    return f'[tls]\ncert_file = "{cert}"\nkey_file = "{key}"\n{extra}'


def start_tls(tmp_path_factory, pki: Pki, extra: str = "", keys: tuple[str, ...] = ()):
    work = tmp_path_factory.mktemp("sightline-tls")
    made = {}
    if keys:
        (work / "data").mkdir()
        made = {role: create(work / "data", role) for role in keys}
    cert, key = pki.server_files(work)
    srv = launch_server(work, tls_config(cert, key, extra), ca_file=pki.ca_file)
    return srv, work, cert, key, made


def metric(srv, name: str, headers: dict | None = None) -> float:
    text = requests.get(f"{srv.api_url}/metrics", verify=srv.verify, headers=headers, timeout=10).text
    return sum(float(v) for v in re.findall(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.M))


def export_one(exporter, service: str, name: str) -> SpanExportResult:
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    results: list[SpanExportResult] = []

    class Recording(SimpleSpanProcessor):
        def on_end(self, span):
            results.append(self.span_exporter.export((span,)))

        def shutdown(self):
            pass  # the exporter may be used again (one connection across many exports)

    provider.add_span_processor(Recording(exporter))
    with provider.get_tracer("test-tls").start_as_current_span(name):
        pass
    provider.shutdown()
    assert len(results) == 1
    return results[0]


def grpc_exporter(srv, pki: Pki, client: bool = False) -> GrpcSpanExporter:
    root = Path(pki.ca_file).read_bytes()
    if client:
        creds = grpc.ssl_channel_credentials(
            root_certificates=root,
            private_key=Path(pki.client_key).read_bytes(),
            certificate_chain=Path(pki.client_cert).read_bytes(),
        )
    else:
        creds = grpc.ssl_channel_credentials(root_certificates=root)
    return GrpcSpanExporter(endpoint=srv.otlp_grpc, credentials=creds, timeout=5)


def http_exporter(srv, pki: Pki, cert: str | None = None, key: str | None = None) -> HttpSpanExporter:
    return HttpSpanExporter(
        endpoint=f"https://{srv.otlp_http}/v1/traces",
        certificate_file=pki.ca_file,
        client_certificate_file=cert,
        client_key_file=key,
        timeout=5,
    )


def presented_leaf(addr: str, ca_file: str) -> bytes:
    host, port = addr.rsplit(":", 1)
    ctx = ssl.create_default_context(cafile=ca_file)
    with socket.create_connection((host, int(port)), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname=host) as tls:
            return tls.getpeercert(binary_form=True)


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory, pki):
    srv, work, cert, key, _ = start_tls(tmp_path_factory, pki, 'handshake_timeout = "1s"\n')
    yield srv, work, cert, key
    assert srv.stop() == 0, srv.log_tail()


def test_the_sdk_sends_over_tls_on_grpc_and_http_and_the_api_answers_over_https(tls_server, pki):
    srv = tls_server[0]
    assert srv.api_url.startswith("https://")
    assert export_one(grpc_exporter(srv, pki), "tls-grpc", "over-grpc") == SpanExportResult.SUCCESS
    assert export_one(http_exporter(srv, pki), "tls-http", "over-http") == SpanExportResult.SUCCESS
    rows = srv.wait_for_rows(
        "SELECT service_name, name FROM spans WHERE service_name LIKE 'tls-%' ORDER BY 1",
        until=lambda r: len(r) == 2,
    )
    assert [r["name"] for r in rows] == ["over-grpc", "over-http"]
    # TLS 1.2 clients are served by default; HTTP/1.1 and HTTP/2 both work on the API.
    ctx = ssl.create_default_context(cafile=pki.ca_file)
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    host, port = srv.http.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname=host) as tls:
            assert tls.version() == "TLSv1.2"
            tls.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            assert tls.recv(100).startswith(b"HTTP/1.1 200")
    # A client that does not trust the server's CA refuses it.
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(f"{srv.api_url}/healthz", timeout=5)


def test_plain_text_on_a_tls_port_is_told_to_use_tls_and_the_server_keeps_serving(tls_server, pki):
    srv = tls_server[0]
    before = metric(srv, "sightline_tls_handshake_failures_total")
    for addr in (srv.http, srv.otlp_http, srv.otlp_grpc):
        got = requests.get(f"http://{addr}/healthz", timeout=5)
        assert got.status_code == 400, addr
        assert "speaks TLS" in got.text and "https://" in got.text
    # A plain-text gRPC client fails and is not served.
    plain = GrpcSpanExporter(endpoint=srv.otlp_grpc, insecure=True, timeout=3)
    assert export_one(plain, "tls-plain", "never") != SpanExportResult.SUCCESS
    assert requests.get(f"{srv.api_url}/healthz", verify=srv.verify, timeout=5).status_code == 200
    assert metric(srv, "sightline_tls_handshake_failures_total") >= before + 4
    assert srv.sql("SELECT count(*) AS n FROM spans WHERE service_name = 'tls-plain'") == [{"n": 0}]


def test_a_client_that_never_finishes_its_handshake_is_closed(tls_server, pki):
    srv = tls_server[0]
    host, port = srv.http.rsplit(":", 1)
    silent = socket.create_connection((host, int(port)), timeout=10)
    partial = socket.create_connection((host, int(port)), timeout=10)
    # The start of a ClientHello record that announces 255 bytes and sends 3.
    partial.sendall(b"\x16\x03\x01\x00\xff\x01\x00\x00")
    # Meanwhile others are served: handshakes do not wait for each other.
    assert requests.get(f"{srv.api_url}/healthz", verify=srv.verify, timeout=5).status_code == 200
    started = time.monotonic()
    for s in (silent, partial):
        try:
            assert s.recv(1) == b"", "closed without an answer"
        except ConnectionResetError:
            pass
        s.close()
    # Closed by the 1 s handshake timeout, well before the 10 s socket timeout.
    assert time.monotonic() - started < 8
    assert requests.get(f"{srv.api_url}/healthz", verify=srv.verify, timeout=5).status_code == 200


def test_certificates_are_replaced_without_a_restart_while_an_exporter_sends(tls_server, pki):
    srv, work, cert, key = tls_server
    old_leaf = presented_leaf(srv.http, pki.ca_file)
    exporter = grpc_exporter(srv, pki)
    failures: list[SpanExportResult] = []
    sent = [0]
    stop = threading.Event()

    def keep_sending():
        while not stop.is_set():
            result = export_one(exporter, "tls-rotation", f"span-{sent[0]}")
            sent[0] += 1
            if result != SpanExportResult.SUCCESS:
                failures.append(result)
            time.sleep(0.02)

    sender = threading.Thread(target=keep_sending)
    sender.start()
    try:
        time.sleep(0.5)
        # A broken certificate (a half-written file): not taken, the old one is still served.
        failed_before = metric(srv, "sightline_tls_reload_failures_total")
        cert.write_text("-----BEGIN CERTIFICATE-----\nMIIB\n")
        poll(
            lambda: metric(srv, "sightline_tls_reload_failures_total") > failed_before or None,
            timeout=10, what="the broken certificate is reported",
        )  # fmt: skip
        assert presented_leaf(srv.http, pki.ca_file) == old_leaf
        # A renewed certificate: served to new connections within about a second.
        leaf = pki.ca.issue_cert("localhost", "127.0.0.1")
        leaf.private_key_pem.write_to_path(str(key))
        leaf.cert_chain_pems[0].write_to_path(str(cert))
        new_leaf = ssl.PEM_cert_to_DER_cert(leaf.cert_chain_pems[0].bytes().decode())
        poll(
            lambda: presented_leaf(srv.http, pki.ca_file) == new_leaf or None,
            timeout=10, what="the new certificate is presented",
        )  # fmt: skip
        for addr in (srv.otlp_grpc, srv.otlp_http):
            assert presented_leaf(addr, pki.ca_file) == new_leaf, addr
        time.sleep(0.5)
    finally:
        stop.set()
        sender.join(timeout=30)
    assert failures == [], f"{len(failures)} of {sent[0]} exports failed during the rotation"
    assert metric(srv, "sightline_tls_reloads_total") >= 1
    srv.wait_for_rows(
        "SELECT count(*) AS n FROM spans WHERE service_name = 'tls-rotation'",
        until=lambda r: r[0]["n"] == sent[0],
    )
    assert "TLS files not reloaded" in srv.log_path.read_text()


def test_tls_1_3_can_be_the_minimum(tmp_path_factory, pki):
    srv, *_ = start_tls(tmp_path_factory, pki, 'min_version = "1.3"\n')
    try:
        host, port = srv.http.rsplit(":", 1)
        old = ssl.create_default_context(cafile=pki.ca_file)
        old.maximum_version = ssl.TLSVersion.TLSv1_2
        with socket.create_connection((host, int(port)), timeout=5) as raw:
            with pytest.raises(ssl.SSLError):
                old.wrap_socket(raw, server_hostname=host)
        assert presented_leaf(srv.http, pki.ca_file)
    finally:
        assert srv.stop() == 0, srv.log_tail()


def test_client_certificates_stand_for_a_tenant_and_roles(tmp_path_factory, pki):
    extra = (
        f'client_ca_file = "{pki.dir / "clients-ca.pem"}"\n'
        '[[tls.clients]]\nname = "edge.collectors"\nroles = ["ingest"]\n'
    )
    srv, _, _, _, made = start_tls(tmp_path_factory, pki, extra, keys=("read", "admin"))
    try:
        # The certificate alone lets the collector send, over HTTP and gRPC.
        with_cert = http_exporter(srv, pki, pki.client_cert, pki.client_key)
        assert export_one(with_cert, "tls-mtls", "cert-http") == SpanExportResult.SUCCESS
        assert export_one(grpc_exporter(srv, pki, client=True), "tls-mtls", "cert-grpc") == SpanExportResult.SUCCESS
        # Without a certificate or a key: 401.
        assert export_one(http_exporter(srv, pki), "tls-mtls", "nothing") == SpanExportResult.FAILURE
        got = requests.post(
            f"https://{srv.otlp_http}/v1/traces", data=b"", verify=srv.verify, timeout=5,
            headers={"Content-Type": "application/x-protobuf"},
        )  # fmt: skip
        assert got.status_code == 401
        # The certificate has ingest only: reading with it is forbidden, a read key reads.
        sql = {"sql": "SELECT name FROM spans WHERE service_name = 'tls-mtls' ORDER BY name"}
        got = requests.post(
            f"{srv.api_url}/api/v1/sql", json=sql, verify=srv.verify, timeout=5,
            cert=(pki.client_cert, pki.client_key),
        )  # fmt: skip
        assert got.status_code == 403, got.text
        who = requests.get(
            f"{srv.api_url}/api/v1/whoami", verify=srv.verify, timeout=5,
            cert=(pki.client_cert, pki.client_key),
        ).json()  # fmt: skip
        assert who["tenant"] == "default" and who["key_id"] == "cert:edge.collectors"
        assert who["roles"] == ["ingest"]
        read = {"Authorization": f"Bearer {made['read']}"}
        got = requests.post(f"{srv.api_url}/api/v1/sql", json=sql, verify=srv.verify, timeout=5, headers=read)
        assert got.status_code == 200 and [r[0] for r in got.json()["rows"]] == ["cert-grpc", "cert-http"]
        # The same name from a CA the server does not trust: refused in the handshake.
        with pytest.raises(requests.exceptions.RequestException):
            requests.get(
                f"{srv.api_url}/api/v1/whoami", verify=srv.verify, timeout=5,
                cert=(pki.stranger_cert, pki.stranger_key),
            ).raise_for_status()  # fmt: skip
    finally:
        assert srv.stop() == 0, srv.log_tail()


def test_client_certificates_can_be_required_of_every_connection(tmp_path_factory, pki):
    extra = f'client_ca_file = "{pki.dir / "clients-ca.pem"}"\nclient_auth = "required"\n'
    work = tmp_path_factory.mktemp("sightline-mtls")
    cert, key = pki.server_files(work)
    config = work / "sightline.toml"
    config.write_text(tls_config(cert, key, extra))
    ready = work / "ready.json"
    # Every connection needs a certificate from the client CA, so listening beyond loopback
    # without keys is allowed.
    proc = subprocess.Popen(
        [_server_binary(), "serve", "--config", str(config), "--data-dir", str(work / "data"),
         "--otlp-grpc-listen", "0.0.0.0:0", "--otlp-http-listen", "0.0.0.0:0",
         "--http-listen", "0.0.0.0:0", "--ready-file", str(ready)],
        stdout=open(work / "server.log", "wb"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        poll(lambda: ready.exists() or proc.poll() is not None or None, timeout=60, what="ready")
        assert proc.poll() is None, (work / "server.log").read_text()

        port = json.loads(ready.read_text())["http"].rsplit(":", 1)[1]
        url = f"https://127.0.0.1:{port}/healthz"
        with pytest.raises(requests.exceptions.RequestException):
            requests.get(url, verify=pki.ca_file, timeout=5)
        got = requests.get(url, verify=pki.ca_file, timeout=5, cert=(pki.client_cert, pki.client_key))
        assert got.status_code == 200
    finally:
        proc.terminate()
        assert proc.wait(timeout=30) == 0, (work / "server.log").read_text()


@pytest.mark.parametrize(
    "extra,named",
    [
        ("", None),  # the key file is removed below
        ('client_auth = "required"\n', "tls.client_ca_file"),
        ('min_version = "1.1"\n', "min_version"),
        ('client_ca_file = "/nonexistent/ca.pem"\n', "/nonexistent/ca.pem"),
    ],
)
def test_bad_tls_settings_stop_the_server_at_start(tmp_path_factory, pki, extra, named):
    work = tmp_path_factory.mktemp("sightline-badtls")
    cert, key = pki.server_files(work)
    if named is None:
        key.unlink()
        named = str(key)
    config = work / "sightline.toml"
    config.write_text(tls_config(cert, key, extra))
    out = subprocess.run(
        [_server_binary(), "serve", "--config", str(config), "--data-dir", str(work / "data"),
         "--otlp-grpc-listen", "127.0.0.1:0", "--otlp-http-listen", "127.0.0.1:0",
         "--http-listen", "127.0.0.1:0"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode != 0
    assert named in out.stderr, out.stderr


def test_the_load_tool_sends_over_tls(tls_server, pki):
    srv = tls_server[0]
    out = subprocess.run(
        [_server_binary(), "load", "--protocol", "both", "--grpc", srv.otlp_grpc,
         "--http", srv.otlp_http, "--ca-file", pki.ca_file, "--signal", "traces",
         "--connections", "2", "--duration", "1s", "--seed", "7", "--json"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr

    report = json.loads(out.stdout)
    assert report["grpc_target"].startswith("https://") and report["http_target"].startswith("https://")
    for protocol in ("grpc", "http"):
        part = report["by_protocol"][protocol]
        assert part["ok"] > 0 and part["errored"] == 0 and part["rejected"] == 0, part
    # Without the CA the server's certificate is not trusted: nothing is sent.
    out = subprocess.run(
        [_server_binary(), "load", "--protocol", "grpc", "--grpc", f"https://{srv.otlp_grpc}",
         "--signal", "traces", "--duration", "1s"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode != 0 and "--ca-file" in out.stderr
