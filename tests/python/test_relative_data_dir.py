"""The default data directory is relative (./data): flushed Parquet files must still be
readable by SQL. (They were not: the object store took the relative path from `/`.)"""

from __future__ import annotations

import json
import subprocess

import requests
from alerting import send
from conftest import _server_binary, poll


def test_a_relative_data_dir_serves_flushed_data(tmp_path):
    ready = tmp_path / "ready.json"
    proc = subprocess.Popen(
        [_server_binary(), "serve", "--data-dir", "data", "--otlp-grpc-listen", "127.0.0.1:0",
         "--otlp-http-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0", "--ready-file", str(ready)],
        cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=open(tmp_path / "server.log", "wb"),  # noqa: SIM115
    )  # fmt: skip
    try:
        addrs = poll(lambda: ready.exists() and json.loads(ready.read_text()), what="ready file")

        class Server:
            otlp_http_url = f"http://{addrs['otlp_http']}"

        send(Server, "relative-dir", 25, error=False)
        api = f"http://{addrs['http']}"
        assert requests.post(f"{api}/api/v1/flush", timeout=10).status_code == 200
        assert list((tmp_path / "data").rglob("*.parquet")), "flushed to files"
        r = requests.post(f"{api}/api/v1/sql", json={"sql": "SELECT count(*) AS n FROM spans", "format": "json"}, timeout=10)
        assert r.status_code == 200, r.text
        assert r.json()["rows"] == [[25]]
    finally:
        proc.terminate()
        assert proc.wait(timeout=30) == 0
