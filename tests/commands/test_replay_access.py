"""Backfill: the scenario's ingress change, then access logs of its host, through ``replay``.

The captured scenario creates ``shop/shop-web`` (A05) and later patches it (A14: TLS removed,
host www.shop.example.test, backend shop-frontend:8443). Access lines after the change carry
a 5xx jump on that backend; the summaries name the ingress, and the host index remembers the
change that preceded the jump (the hook change correlation reads).
"""

from __future__ import annotations

import gzip
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from tests.access.access_lines import nginx_line
from tests.commands.test_replay import run_cli
from tests.conftest import CAPTURES, delivered, make_config, post_capture, read_jsonl, records_in
from tests.sources.test_access_http import access_config, fluent_bit
from webhook.commands.replay import replay
from webhook.server.app import RUNTIME, create_app

CHANGE_CAPTURES = ["0009.json", "0019.json"]  # A05 create shop/shop-web, A14 patch it
BEFORE = datetime(2026, 11, 24, 14, 20, 0, tzinfo=UTC).timestamp()  # the window before the patch
AFTER = datetime(2026, 11, 24, 14, 21, 10, tzinfo=UTC).timestamp()  # the patch was at 14:21:09


def _audit_file(tmp_path: Path) -> Path:
    path = tmp_path / "audit.log"
    path.write_bytes(
        b"".join(orjson.dumps(orjson.loads((CAPTURES / n).read_bytes())) + b"\n" for n in CHANGE_CAPTURES)
    )
    return path


def _access_lines() -> list[bytes]:
    before = [
        nginx_line(t=BEFORE + i, upstream="[shop-shop-frontend-80]", req_id=f"a{i:031x}") for i in range(30)
    ]
    after = [
        nginx_line(
            t=AFTER + i,
            status=502 if i % 3 else 200,
            upstream="[shop-shop-frontend-8443]",
            req_id=f"b{i:031x}",
        )
        for i in range(30)
    ]
    return before + after


def _access_file(tmp_path: Path) -> Path:
    path = tmp_path / "access.log.gz"
    path.write_bytes(gzip.compress(b"\n".join(_access_lines()) + b"\n"))
    return path


def test_replay_access_after_the_change(tmp_path: Path) -> None:
    """No 5xx in the window before the patch, 20 of 30 after it; replaying twice adds nothing."""
    config_file = tmp_path / "config.yaml"
    data = tmp_path / "data"
    config_file.write_text("access:\n  enabled: true\n  keep_all: false\n", "utf-8")
    args = ["--config", str(config_file), "--data-dir", str(data), str(_audit_file(tmp_path))]

    first = run_cli(*args, "--access", str(_access_file(tmp_path)), cwd=tmp_path)
    again = run_cli(*args, "--access", str(_access_file(tmp_path)), cwd=tmp_path)
    assert first.returncode == again.returncode == 0, first.stderr

    records = [orjson.loads(line) for line in (data / "access.jsonl").read_bytes().splitlines()]
    assert b'"type":"access' not in (data / "records.jsonl").read_bytes()  # their own file
    hosts = [r for r in records if r["type"] == "access_summary" and r["scope"] == "host"]
    by_window = {(r["window_start"], r["host"] or r["upstream"]): r for r in hosts}
    assert len(hosts) == len(by_window) == 2  # the second replay wrote nothing again
    # The index holds the ingresses as the audit replay left them: the old backend is unknown.
    before = by_window[("2026-11-24T14:20:00.000000Z", "shop-shop-frontend-80")]
    after = by_window[("2026-11-24T14:21:00.000000Z", "www.shop.example.test")]
    assert before["statuses"] == {"2xx": 30}
    assert after["statuses"] == {"2xx": 10, "5xx": 20}
    assert before["ingress"] is None
    assert after["ingress"] == {
        "namespace": "shop",
        "name": "shop-web",
        "ingress_class": "nginx-test",
        "tls": False,
        "tls_secret": None,
    }
    assert "60 access lines read" in first.stdout
    assert "4 window summaries written" in first.stdout  # two host windows and two client windows


async def test_the_index_remembers_the_change_before_the_spike(aiohttp_client: Any, tmp_path: Path) -> None:
    """After the patch, the host's last change is that audit record: id, actor, changed paths."""
    config = access_config(tmp_path)
    client = await aiohttp_client(create_app(config))
    for name in CHANGE_CAPTURES:
        assert (await post_capture(client, CAPTURES / name))[0] == 200
    lines = [line for line in _access_lines() if b"8443" in line]
    resp = await client.post(
        "/ingest/access", data=fluent_bit(*lines), headers={"Content-Type": "application/x-ndjson"}
    )
    assert resp.status == 200

    access = client.app[RUNTIME].access
    assert access is not None
    change = access.index.last_change("www.shop.example.test")
    await access.flush(everything=True)
    records = await delivered(client, config)

    patch = next(r for r in records if r["type"] == "audit" and r["verb"] == "patch")
    assert change is not None
    assert (change.record_id, change.actor, change.verb) == (patch["id"], "admin", "patch")
    assert any(path.startswith("/spec/tls") for path in change.changed_paths)
    assert access.index.last_change("shop.example.test") is not None  # the host it dropped
    summary = next(r for r in records_in(config) if r["type"] == "access_summary" and r["scope"] == "host")
    assert summary["statuses"] == {"2xx": 10, "5xx": 20}

    assert (await post_capture(client, CAPTURES / "0050.json"))[0] == 200  # A36: delete the ingress
    deleted = access.index.last_change("www.shop.example.test")
    assert deleted is not None
    assert (deleted.verb, deleted.name) == ("delete", "shop-web")
    assert access.index.lookup("www.shop.example.test", "/") is None


async def test_replay_access_without_access_enabled_uses_the_access_file(tmp_path: Path) -> None:
    """``replay --access`` with the embedded defaults (access off) still keeps access records in
    access.jsonl, apart from the audit records; a second run finds them there."""
    config = make_config(tmp_path)
    audit, access = _audit_file(tmp_path), _access_file(tmp_path)

    first = await replay(config, [audit], access_files=[access])
    again = await replay(config, [audit], access_files=[access])

    records = read_jsonl(config.data_dir / "records.jsonl")
    summaries = read_jsonl(config.data_dir / "access.jsonl")
    assert {r["type"] for r in records} <= {"audit", "alert"}
    assert {r["type"] for r in summaries} == {"access_summary"}
    assert first.access is not None
    assert again.access is not None
    assert len(summaries) == len({r["id"] for r in summaries})  # the second run wrote nothing again
