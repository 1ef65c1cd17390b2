"""Fixtures for Sightline's end-to-end tests.

The tests drive the real `sightline` binary, named by the SIGHTLINE_BIN environment variable
(normally $CARGO_TARGET_DIR/debug/sightline), through its public surfaces only: OTLP over gRPC
and HTTP, the HTTP API (/api/v1/sql, /api/v1/flush, /readyz) and the Parquet files it leaves in
its data directory. See docs/sql.md.

    pip install -r tests/python/requirements.txt
    SIGHTLINE_BIN=target/debug/sightline pytest tests/python

Fixtures:
  server         one running server per test module (SIGTERM on teardown, exit code 0 asserted)
  start_server   factory for a dedicated server (for tests that stop it themselves)
  service_name   a service.name unique to the running test, so tests sharing a server never
                 see each other's rows
  otel           builds OpenTelemetry SDK providers / exporters pointed at `server`, tagged with
                 `service_name`, and shuts them down after the test
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import signal
import subprocess
import time
import uuid
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import (
    OTLPLogExporter as GrpcLogExporter,
)
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import (
    OTLPMetricExporter as GrpcMetricExporter,
)
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
    OTLPSpanExporter as GrpcSpanExporter,
)
from opentelemetry.exporter.otlp.proto.http._log_exporter import (
    OTLPLogExporter as HttpLogExporter,
)
from opentelemetry.exporter.otlp.proto.http.metric_exporter import (
    OTLPMetricExporter as HttpMetricExporter,
)
from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
    OTLPSpanExporter as HttpSpanExporter,
)
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

# Keep the developer's OTEL_* environment (endpoints, temporality preference, disabled SDK...)
# out of the tests: every exporter here is configured explicitly.
for _name in list(os.environ):
    if _name.startswith("OTEL_"):
        del os.environ[_name]

STARTUP_TIMEOUT_S = float(os.environ.get("SIGHTLINE_E2E_STARTUP_TIMEOUT", "60"))
SHUTDOWN_TIMEOUT_S = float(os.environ.get("SIGHTLINE_E2E_SHUTDOWN_TIMEOUT", "30"))
POLL_TIMEOUT_S = float(os.environ.get("SIGHTLINE_E2E_POLL_TIMEOUT", "20"))
HTTP_TIMEOUT_S = 10.0
PROTOCOLS = ("grpc", "http")


# --------------------------------------------------------------------------------------------
# polling


def poll(
    check: Callable[[], Any],
    *,
    timeout: float = POLL_TIMEOUT_S,
    interval: float = 0.1,
    what: str = "condition",
    describe_last: Callable[[], str] | None = None,
) -> Any:
    """Call `check` until it returns something truthy, then return that value.

    Fails the test when `timeout` seconds pass first. The pause between attempts grows from
    `interval` up to 0.5 s.
    """
    deadline = time.monotonic() + timeout
    pause = interval
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() >= deadline:
            detail = f"; last observation: {describe_last()}" if describe_last else ""
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}{detail}")
        time.sleep(pause)
        pause = min(pause * 1.5, 0.5)


def sql_quote(value: str) -> str:
    """A SQL string literal for `value`."""
    return "'" + value.replace("'", "''") + "'"


# --------------------------------------------------------------------------------------------
# the server


class SqlError(AssertionError):
    """POST /api/v1/sql answered something other than 200."""

    def __init__(self, status: int, text: str, query: str):
        super().__init__(f"SQL failed with HTTP {status}: {text}\n  query: {query}")
        self.status = status
        self.text = text


@dataclass
class Server:
    process: subprocess.Popen
    data_dir: Path
    log_path: Path
    otlp_grpc: str  # "127.0.0.1:PORT"
    otlp_http: str  # "127.0.0.1:PORT"
    http: str  # "127.0.0.1:PORT"
    # With TLS: "https", and the CA file that clients trust (requests' `verify`).
    scheme: str = "http"
    ca_file: str | None = None

    quote = staticmethod(sql_quote)

    @property
    def api_url(self) -> str:
        return f"{self.scheme}://{self.http}"

    @property
    def otlp_http_url(self) -> str:
        return f"{self.scheme}://{self.otlp_http}"

    @property
    def verify(self) -> str | bool:
        return self.ca_file or True

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "<no server log>"
        return "\n".join(text.splitlines()[-lines:])

    # -- HTTP API -------------------------------------------------------------------------

    def sql(self, query: str) -> list[dict[str, Any]]:
        """Run `query` through POST /api/v1/sql and return its rows as dicts keyed by column."""
        resp = requests.post(
            f"{self.api_url}/api/v1/sql",
            json={"sql": query, "format": "json"},
            timeout=HTTP_TIMEOUT_S,
            verify=self.verify,
        )
        if resp.status_code != 200:
            raise SqlError(resp.status_code, resp.text, query)
        body = resp.json()
        names = [column["name"] for column in body["columns"]]
        rows = [dict(zip(names, row, strict=True)) for row in body["rows"]]
        assert body["row_count"] == len(rows), f"row_count {body['row_count']} != {len(rows)} rows"
        return rows

    def flush(self) -> None:
        """POST /api/v1/flush: the server writes every buffered row to Parquet."""
        resp = requests.post(f"{self.api_url}/api/v1/flush", timeout=HTTP_TIMEOUT_S, verify=self.verify)
        assert resp.status_code == 200, f"flush answered {resp.status_code}: {resp.text}"

    def wait_for_rows(
        self,
        query: str,
        *,
        until: Callable[[list[dict[str, Any]]], bool] = bool,
        timeout: float = POLL_TIMEOUT_S,
        flush: bool = False,
    ) -> list[dict[str, Any]]:
        """Poll `query` until `until(rows)` holds and return those rows.

        Acknowledged rows are visible to SQL at once (from the in-memory buffer), so by
        default nothing is flushed; `flush=True` first writes every buffer to Parquet, so the
        rows are read back from the files. SQL errors are retried and the last one is reported
        on timeout.
        """
        last: dict[str, Any] = {"rows": None, "error": None}

        def attempt():
            if flush:
                self.flush()
            try:
                rows = self.sql(query)
            except SqlError as err:
                last["error"] = str(err)
                return None
            last["rows"], last["error"] = rows, None
            return rows if until(rows) else None

        def describe():
            return last["error"] or f"rows={last['rows']!r}"

        return poll(attempt, timeout=timeout, what=f"rows of: {query}", describe_last=describe)

    # -- lifecycle ------------------------------------------------------------------------

    def stop(self, timeout: float = SHUTDOWN_TIMEOUT_S) -> int:
        """SIGTERM the server, wait for it, and return its exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                pytest.fail(
                    f"server did not exit within {timeout:.0f}s of SIGTERM\n{self.log_tail()}"
                )
        return self.process.returncode


def _server_binary() -> str:
    binary = os.environ.get("SIGHTLINE_BIN")
    if not binary:
        pytest.fail(
            "SIGHTLINE_BIN is not set. Build the server (cargo build) and run e.g.\n"
            "  SIGHTLINE_BIN=$CARGO_TARGET_DIR/debug/sightline pytest tests/python",
            pytrace=False,
        )
    if not (os.path.isfile(binary) and os.access(binary, os.X_OK)):
        pytest.fail(f"SIGHTLINE_BIN={binary!r} is not an executable file", pytrace=False)
    return binary


def create_key(data_dir, tenant: str, role: str) -> str:
    """`sightline keys create`: a new key of `tenant` with `role`, printed once."""
    out = subprocess.run(
        [_server_binary(), "keys", "create", "--data-dir", str(data_dir), "--tenant", tenant, "--role", role],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def s3_storage_section(prefix: str) -> str:
    """The `[storage]` keys that put a server's Parquet files under `prefix` of the test
    script's S3 server (SeaweedFS): its endpoint, bucket and the run's SigV4 key."""
    bucket = os.environ.get("SIGHTLINE_S3_BUCKET", "sightline")
    return (
        f'url = "s3://{bucket}/{prefix}"\n'
        f'endpoint = "{os.environ["SIGHTLINE_S3_ENDPOINT"]}"\n'
        'region = "us-east-1"\n'
        f'access_key_id = "{os.environ["SIGHTLINE_S3_ACCESS_KEY_ID"]}"\n'
        f'secret_access_key = "{os.environ["SIGHTLINE_S3_SECRET_ACCESS_KEY"]}"\n'
    )


# For the tests that open the data directory's Parquet files themselves: with the files in S3
# (SIGHTLINE_TEST_STORAGE=s3) there are none there; test_object_storage.py reads them from
# the bucket instead.
reads_local_parquet = pytest.mark.skipif(
    os.environ.get("SIGHTLINE_TEST_STORAGE") == "s3",
    reason="reads Parquet files in the data directory; with storage.url in S3 they are in the bucket",
)


def _with_test_storage(workdir: Path, config: str | None) -> str | None:
    """With `SIGHTLINE_TEST_STORAGE=s3` every server of the suite keeps its Parquet files in
    the test S3 server, under a prefix of its work directory's (a restart in the same work
    directory finds them again); a config that names a storage itself is left as it is."""
    if os.environ.get("SIGHTLINE_TEST_STORAGE") != "s3":
        return config
    text = config or ""
    if re.search(r"^\s*url\s*=", text, re.MULTILINE) and "[storage]" in text:
        return config
    prefix = "e2e/" + hashlib.sha256(str(workdir.resolve()).encode()).hexdigest()[:16]
    section = s3_storage_section(prefix)
    if re.search(r"^\[storage\]\s*$", text, re.MULTILINE):
        return re.sub(r"^\[storage\]\s*$", "[storage]\n" + section.rstrip("\n"), text, count=1, flags=re.MULTILINE)
    return text + "\n[storage]\n" + section


def launch_server(workdir: Path, config: str | None = None, ca_file: str | None = None) -> Server:
    """Start `sightline serve` on ephemeral ports under `workdir` and wait until it is ready.
    `config` is the text of a TOML config file to start it with; `ca_file` the CA its TLS
    certificate chains to, when the config turns TLS on."""
    binary = _server_binary()
    data_dir = workdir / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    ready_file = workdir / "ready.json"
    ready_file.unlink(missing_ok=True)  # left by an earlier server in the same workdir
    log_path = workdir / "server.log"
    command = [
        binary, "serve",
        "--data-dir", str(data_dir),
        "--otlp-grpc-listen", "127.0.0.1:0",
        "--otlp-http-listen", "127.0.0.1:0",
        "--http-listen", "127.0.0.1:0",
        "--ready-file", str(ready_file),
    ]  # fmt: skip
    config = _with_test_storage(workdir, config)
    if config is not None:
        config_path = workdir / "sightline.toml"
        config_path.write_text(config)
        command += ["--config", str(config_path)]
    env = dict(os.environ, RUST_BACKTRACE="1")
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env
        )

    def log_tail() -> str:
        return "\n".join(log_path.read_text(errors="replace").splitlines()[-40:])

    def read_ready():
        if process.poll() is not None:
            pytest.fail(
                f"server exited with code {process.returncode} before it was ready\n"
                f"command: {' '.join(command)}\n{log_tail()}"
            )
        try:
            return json.loads(ready_file.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            # The contract says the file is renamed into place; tolerate a torn read anyway.
            return None

    try:
        ready = poll(
            read_ready,
            timeout=STARTUP_TIMEOUT_S,
            what=f"ready file {ready_file}",
            describe_last=lambda: f"server log:\n{log_tail()}",
        )
        assert set(ready) >= {"otlp_grpc", "otlp_http", "http"}, f"ready file: {ready!r}"
        for key in ("otlp_grpc", "otlp_http", "http"):
            assert re.fullmatch(r"127\.0\.0\.1:[1-9]\d*", ready[key]), f"{key}: {ready[key]!r}"
        server = Server(
            process=process,
            data_dir=data_dir,
            log_path=log_path,
            otlp_grpc=ready["otlp_grpc"],
            otlp_http=ready["otlp_http"],
            http=ready["http"],
            scheme="https" if ready.get("tls") else "http",
            ca_file=ca_file,
        )

        def is_ready():
            try:
                got = requests.get(f"{server.api_url}/readyz", timeout=2, verify=server.verify)
                return got.status_code == 200
            except requests.RequestException:
                return False

        poll(is_ready, timeout=STARTUP_TIMEOUT_S, what="GET /readyz == 200")
    except BaseException:
        if process.poll() is None:
            process.kill()
            process.wait()
        raise
    return server


def _stop_and_check(server: Server) -> None:
    code = server.stop()
    assert code == 0, f"server exited with code {code} after SIGTERM\n{server.log_tail()}"


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Server:
    """One Sightline server for the whole test module."""
    srv = launch_server(tmp_path_factory.mktemp("sightline"))
    yield srv
    _stop_and_check(srv)


@pytest.fixture
def start_server(tmp_path_factory):
    """Factory for dedicated servers; any still running at teardown are stopped and checked."""
    started: list[Server] = []

    def start(config: str | None = None) -> Server:
        srv = launch_server(tmp_path_factory.mktemp("sightline-own"), config)
        started.append(srv)
        return srv

    yield start
    for srv in started:
        if srv.process.poll() is None:
            _stop_and_check(srv)


@pytest.fixture
def service_name(request) -> str:
    """A service.name unique to this test (and parameter set)."""
    slug = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")
    return f"e2e-{slug}-{uuid.uuid4().hex[:8]}"


# --------------------------------------------------------------------------------------------
# OpenTelemetry SDK wiring


class Otel:
    """Builds SDK providers and exporters that send to a Sightline server.

    Everything built here is shut down when the test ends. Providers are never installed as
    the global ones, so tests stay independent of each other.
    """

    def __init__(self, server: Server, service_name: str):
        self.server = server
        self.service_name = service_name
        self._to_shutdown: list[Any] = []

    def resource(self, extra: dict[str, Any] | None = None):
        # Resource(...) (not Resource.create) so the attributes are exactly these.
        return Resource({"service.name": self.service_name, **(extra or {})})

    def _check_protocol(self, protocol: str) -> None:
        if protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be one of {PROTOCOLS}, not {protocol!r}")

    # -- exporters ------------------------------------------------------------------------

    def span_exporter(self, protocol: str, server: Server | None = None):
        """A bare OTLP span exporter (shut down with the test), for calling export() directly."""
        exporter = self._new_span_exporter(protocol, server or self.server)
        self._to_shutdown.append(exporter)
        return exporter

    def _new_span_exporter(self, protocol: str, srv: Server):
        self._check_protocol(protocol)
        if protocol == "grpc":
            return GrpcSpanExporter(endpoint=srv.otlp_grpc, insecure=True, timeout=10)
        return HttpSpanExporter(endpoint=f"http://{srv.otlp_http}/v1/traces", timeout=10)

    def metric_exporter(self, protocol: str):
        self._check_protocol(protocol)
        if protocol == "grpc":
            return GrpcMetricExporter(endpoint=self.server.otlp_grpc, insecure=True, timeout=10)
        return HttpMetricExporter(endpoint=f"{self.server.otlp_http_url}/v1/metrics", timeout=10)

    def log_exporter(self, protocol: str):
        self._check_protocol(protocol)
        if protocol == "grpc":
            return GrpcLogExporter(endpoint=self.server.otlp_grpc, insecure=True, timeout=10)
        return HttpLogExporter(endpoint=f"{self.server.otlp_http_url}/v1/logs", timeout=10)

    # -- providers ------------------------------------------------------------------------

    def tracer_provider(self, protocol: str, resource_attributes: dict[str, Any] | None = None):
        provider = TracerProvider(resource=self.resource(resource_attributes))
        provider.add_span_processor(
            BatchSpanProcessor(self._new_span_exporter(protocol, self.server))
        )
        self._to_shutdown.append(provider)
        return provider

    def meter_provider(self, protocol: str, resource_attributes: dict[str, Any] | None = None):
        """A MeterProvider that exports only on force_flush() (and on shutdown)."""
        reader = PeriodicExportingMetricReader(
            self.metric_exporter(protocol), export_interval_millis=math.inf
        )
        provider = MeterProvider(
            resource=self.resource(resource_attributes), metric_readers=[reader]
        )
        self._to_shutdown.append(provider)
        return provider

    def logger_provider(self, protocol: str, resource_attributes: dict[str, Any] | None = None):
        provider = LoggerProvider(resource=self.resource(resource_attributes))
        provider.add_log_record_processor(BatchLogRecordProcessor(self.log_exporter(protocol)))
        self._to_shutdown.append(provider)
        return provider

    def logging_handler(self, logger_provider):
        """The SDK's stdlib-logging bridge (deprecated upstream in favour of a contrib package,
        still shipped in opentelemetry-sdk)."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            return LoggingHandler(logger_provider=logger_provider)

    def close(self) -> None:
        for item in reversed(self._to_shutdown):
            try:
                item.shutdown()
            except Exception as err:  # a dead server must not hide the test's own failure
                warnings.warn(f"shutting down {type(item).__name__} failed: {err!r}", stacklevel=2)
        self._to_shutdown.clear()


@pytest.fixture
def otel(server, service_name) -> Otel:
    helper = Otel(server, service_name)
    yield helper
    helper.close()
