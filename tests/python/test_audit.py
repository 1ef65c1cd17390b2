"""The audit table against the real server: keys made and revoked with `sightline keys` (also
while the server is stopped), silences created and expired, flushes and failed authentication
on the API and on OTLP are rows of `audit` with the key id (never the key), the client's
address and the listener; only an admin key can query it."""

from __future__ import annotations

import time

import pytest
import requests
from conftest import launch_server, poll
from test_auth import create, keys


def key_id(key: str) -> str:
    return key.split("_")[1]


def sql(srv, key: str, query: str) -> requests.Response:
    return requests.post(
        f"{srv.api_url}/api/v1/sql", json={"sql": query},
        headers={"Authorization": f"Bearer {key}"}, timeout=10,
    )  # fmt: skip


def audit_rows(srv, admin: str, where: str = "true") -> list[dict]:
    r = sql(srv, admin, f"SELECT * FROM audit WHERE {where} ORDER BY time")
    assert r.ok, r.text
    body = r.json()
    names = [c["name"] for c in body["columns"]]
    return [dict(zip(names, row, strict=True)) for row in body["rows"]]


@pytest.fixture(scope="module")
def audited(tmp_path_factory):
    work = tmp_path_factory.mktemp("sightline-audit")
    (work / "data").mkdir()
    made = {role: create(work / "data", role) for role in ("ingest", "read", "admin")}
    srv = launch_server(work)
    yield srv, made, work
    if srv.process.poll() is None:
        assert srv.stop() == 0, srv.log_tail()


def test_keys_made_before_start_are_recorded_once(audited):
    srv, made, _ = audited
    rows = poll(
        lambda: (r := audit_rows(srv, made["admin"], "action = 'key.create'")) and len(r) >= 3 and r,
        timeout=10, what="three key.create rows",
    )  # fmt: skip
    assert sorted(r["target"] for r in rows) == sorted(key_id(k) for k in made.values())
    assert {r["via"] for r in rows} == {"cli"} and all(r["client_address"] is None for r in rows)
    assert any("roles ingest" in r["detail"] for r in rows)


def test_admin_actions_are_recorded_with_the_key_and_the_address(audited):
    srv, made, _ = audited
    admin = {"Authorization": f"Bearer {made['admin']}"}
    ends = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 3600))
    silence = {
        "matchers": [{"name": "slo", "value": "audited", "isRegex": False, "isEqual": True}],
        "endsAt": ends, "createdBy": "test", "comment": "audit test",
    }  # fmt: skip
    r = requests.post(f"{srv.api_url}/api/v1/silences", json=silence, headers=admin, timeout=10)
    assert r.ok, r.text
    sid = r.json()["silenceID"]
    assert requests.delete(f"{srv.api_url}/api/v1/silences/{sid}", headers=admin, timeout=10).ok
    assert requests.post(f"{srv.api_url}/api/v1/flush", headers=admin, timeout=10).ok
    # A refused change is no action: not recorded.
    read = {"Authorization": f"Bearer {made['read']}"}
    assert requests.post(f"{srv.api_url}/api/v1/flush", headers=read, timeout=10).status_code == 403
    rows = audit_rows(srv, made["admin"], "action IN ('silence.create', 'silence.expire', 'flush')")
    assert [r["action"] for r in rows] == ["silence.create", "silence.expire", "flush"]
    for r in rows:
        assert r["key_id"] == key_id(made["admin"]) and r["tenant"] == "default"
        assert r["client_address"] == "127.0.0.1" and r["via"] == "api"
    assert rows[0]["target"] == sid and rows[1]["target"] == sid
    assert '"audited"' in rows[0]["detail"]


def test_failed_attempts_are_recorded_on_every_listener_without_the_secret(audited):
    srv, made, _ = audited
    wrong_secret = f"sl_{key_id(made['read'])}_{'A' * 43}"
    r = requests.get(f"{srv.api_url}/api/v1/slos", headers={"Authorization": f"Bearer {wrong_secret}"}, timeout=10)
    assert r.status_code == 401
    r = requests.post(
        f"{srv.otlp_http_url}/v1/traces", data=b"", timeout=10,
        headers={"Content-Type": "application/x-protobuf", "Authorization": "Bearer nope"},
    )  # fmt: skip
    assert r.status_code == 401
    rows = poll(
        lambda: (r := audit_rows(srv, made["admin"], "action = 'auth.failure'")) and len(r) >= 2 and r,
        timeout=10, what="two auth.failure rows",
    )  # fmt: skip
    by_via = {r["via"]: r for r in rows}
    assert by_via["api"]["key_id"] == key_id(made["read"]), "a key-shaped attempt names the key"
    assert by_via["otlp_http"]["key_id"] is None
    assert all(r["client_address"] == "127.0.0.1" for r in rows)
    everything = str(audit_rows(srv, made["admin"]))
    assert "A" * 43 not in everything
    assert all(k.split("_", 2)[2] not in everything for k in made.values()), "no secret is stored"


def test_only_admin_keys_can_read_the_audit(audited):
    srv, made, _ = audited
    r = sql(srv, made["read"], "SELECT count(*) FROM audit")
    assert r.status_code == 400 and "audit" in r.text
    listed = sql(srv, made["read"], "SELECT table_name FROM information_schema.tables")
    assert listed.ok and "audit" not in [row[0] for row in listed.json()["rows"]]
    listed = sql(srv, made["admin"], "SELECT table_name FROM information_schema.tables")
    assert "audit" in [row[0] for row in listed.json()["rows"]]
    # Not through a CTE, a view or a qualified name either.
    for query in (
        "WITH a AS (SELECT * FROM audit) SELECT * FROM a",
        "SELECT * FROM datafusion.public.audit",
        "SELECT * FROM spans JOIN audit ON true",
    ):
        assert sql(srv, made["read"], query).status_code == 400, query


def test_key_changes_are_recorded_while_running_and_after_a_restart(audited):
    srv, made, work = audited
    out = keys(work / "data", "revoke", key_id(made["ingest"]))
    assert out.returncode == 0, out.stderr
    poll(
        lambda: audit_rows(srv, made["admin"], "action = 'key.revoke'") or None,
        timeout=10, what="a key.revoke row",
    )  # fmt: skip
    assert srv.stop() == 0, srv.log_tail()
    later = create(work / "data", "read")
    srv = launch_server(work)
    try:
        rows = poll(
            lambda: (r := audit_rows(srv, made["admin"], "action LIKE 'key.%'")) and len(r) >= 5 and r,
            timeout=10, what="the key made while stopped",
        )  # fmt: skip
        time.sleep(1.5)  # a reload in between must not record anything twice
        rows = audit_rows(srv, made["admin"], "action LIKE 'key.%'")
        assert [r["action"] for r in rows].count("key.create") == 4, rows
        assert [r["action"] for r in rows].count("key.revoke") == 1, rows
        assert rows[-1]["target"] == key_id(later)
    finally:
        assert srv.stop() == 0, srv.log_tail()
