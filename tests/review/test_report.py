"""``ingress-audit report``: the weekly review of scenario A's records, its window, every format,
alerts and dead letters, secret safety, and the console script end to end."""

from __future__ import annotations

import asyncio
import gzip
import io
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer

from tests.conftest import captured_bodies, make_config, post_capture, records_in, scenario_secrets, settle
from webhook.commands.report import write
from webhook.record.files import read_records, record_files
from webhook.review.render import FORMATS, Report, render, to_dict
from webhook.review.report import ReportOptions, build_report, report_for
from webhook.server.app import create_app

SCRIPT = Path(sys.executable).parent / "ingress-audit"
DAY = timedelta(days=1)
SCENARIO_START = datetime(2026, 11, 24, tzinfo=UTC)
SCENARIO_END = SCENARIO_START + DAY
NOW = datetime(2026, 11, 25, 12, tzinfo=UTC)


async def _write_scenario(data: Path) -> None:
    config = make_config(data)
    client: TestClient[Any, Any] = TestClient(TestServer(create_app(config)))
    await client.start_server()
    try:
        for body in captured_bodies():
            status, _ = await post_capture(client, body)
            assert status == 200
        await settle(client)
    finally:
        await client.close()
    assert records_in(config), "the scenario produced records"


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Scenario A posted in order to the real app: its data dir (records, dead letters)."""
    root = tmp_path_factory.mktemp("report")
    asyncio.run(_write_scenario(root))
    return root / "data"


def options(**overrides: Any) -> ReportOptions:
    base: dict[str, Any] = {"since": SCENARIO_START, "until": SCENARIO_END, "now": NOW}
    return ReportOptions(**(base | overrides))


def scenario_report(data_dir: Path, **overrides: Any) -> Report:
    files = record_files([data_dir / "records.jsonl", data_dir / "dead-letter.jsonl"])
    return build_report(read_records(files), options(**overrides), sources=files)


def rows(report: Report, key: str) -> list[dict[str, Any]]:
    (section,) = [s for s in to_dict(report)["sections"] if s["key"] == key]
    found: list[dict[str, Any]] = section["rows"]
    return found


def summary(report: Report) -> dict[str, Any]:
    found: dict[str, Any] = report.data["summary"]
    return found


def named(ref: dict[str, Any] | None) -> str:
    """An object reference as the text formats write it: ``ingresses shop/shop-web``."""
    assert ref is not None
    return f"{ref['resource']} {'/'.join(p for p in (ref['namespace'], ref['name']) if p)}".rstrip()


def ids(findings: list[dict[str, str]]) -> list[str]:
    return [f["id"] for f in findings]


def rendered(report: Report, fmt: str) -> str:
    out = io.StringIO()
    render(report, fmt, out)
    return out.getvalue()


def audit(when: str, **fields: Any) -> dict[str, Any]:
    """A hand-made audit record with the fields the report reads."""
    doc: dict[str, Any] = {
        "type": "audit",
        "cluster": "prod",
        "time": when,
        "received_at": when,
        "verb": "get",
        "outcome": {"code": 200},
        "object": {
            "api_group": "networking.k8s.io",
            "resource": "ingresses",
            "namespace": "shop",
            "name": "web",
        },
        "actor": {
            "user": {"username": "alice", "kind": "user"},
            "impersonated": None,
            "source_ips": ["10.0.0.1"],
        },
        "findings": [],
        "change": None,
    }
    return doc | fields


def lines(*docs: dict[str, Any] | None) -> list[dict[str, Any] | None]:
    return list(docs)


def test_scenario_changes_name_who_did_what(data_dir: Path) -> None:
    """Every write to an Ingress, IngressClass, TLS secret, CoreDNS and Gateway API object, by admin."""
    report = scenario_report(data_dir)
    changes = rows(report, "changes")
    seen = {(c["category"], c["verb"], named(c["object"])) for c in changes}

    assert {
        ("tls-secret", "create", "secrets shop/shop-tls"),
        ("ingress-class", "create", "ingressclasses nginx-test"),
        ("ingress", "create", "ingresses shop/shop-web"),
        ("ingress", "patch", "ingresses shop/shop-web"),
        ("ingress", "update", "ingresses shop/shop-web"),
        ("ingress", "delete", "ingresses shop/shop-web"),
        ("dns", "update", "configmaps kube-system/coredns"),
        ("gateway", "create", "gateways shop/shop-gw"),
        ("gateway", "patch", "httproutes shop/shop-route"),
    } <= seen
    assert ("secret", "create", "secrets shop/db-creds") in seen  # Opaque, not TLS
    assert {c["actor"] for c in changes} == {"admin"}
    assert {c["actor_kind"] for c in changes} == {"user"}
    (removal,) = [c for c in changes if "tls-removed" in ids(c["findings"])]
    assert named(removal["object"]) == "ingresses shop/shop-web"
    assert removal["change"]["operations"] == [{"op": "remove", "path": "/spec/tls"}]
    assert removal["time"].replace(microsecond=0) == datetime(2026, 11, 24, 14, 21, 9, tzinfo=UTC)
    dns = next(c for c in changes if c["verb"] == "update" and c["category"] == "dns")
    assert {"change": "added", "line": "forward . 203.0.113.53"} in dns["change"]["dns"]
    (by_actor,) = rows(report, "changers")
    assert by_actor["actor"] == "admin"
    assert by_actor["total"] == len(changes)
    assert summary(report)["changes"] == len(changes)
    assert summary(report)["audit_records"] == len(records_in_dir(data_dir))


def test_scenario_secret_writes_with_bodies(data_dir: Path) -> None:
    """Scenario A logs Secrets with their bodies: each write's type and key names, in time
    order, the delete of db-creds with the keys it removed; no value."""
    secrets = rows(scenario_report(data_dir), "secrets")

    assert [(s["verb"], s["name"], s["type"]) for s in secrets] == [
        ("create", "shop-tls", "kubernetes.io/tls"),
        ("create", "db-creds", "Opaque"),
        ("create", "api-keys", "Opaque"),
        ("delete", "db-creds", "Opaque"),
    ]
    assert secrets[0]["keys_added"] == ["tls.crt", "tls.key"]
    assert secrets[-1]["keys_removed"] == ["password", "username"]
    assert [s["time"] for s in secrets] == sorted(s["time"] for s in secrets)


def records_in_dir(data_dir: Path) -> list[dict[str, Any]]:
    """The audit records (the detections' alert records are in the same file)."""
    docs = [orjson.loads(x) for x in (data_dir / "records.jsonl").read_bytes().splitlines()]
    return [doc for doc in docs if doc["type"] == "audit"]


def test_scenario_findings_by_severity(data_dir: Path) -> None:
    """Findings count records once each, high first, with examples naming actor and object."""
    found = {f["finding"]: f for f in rows(scenario_report(data_dir), "findings")}

    assert found["tls-removed"]["severity"] == "high"
    assert found["tls-removed"]["records"] == 1
    (example,) = found["tls-removed"]["examples"]
    assert (example["actor"], example["verb"], named(example["object"])) == (
        "admin",
        "patch",
        "ingresses shop/shop-web",
    )
    assert found["certificate-self-signed"]["records"] == 2  # raised twice in one record: counted once
    assert {"nginx-snippet-annotation", "dns-forwarder-changed", "ingress-without-tls"} <= found.keys()
    severities = [f["severity"] for f in rows(scenario_report(data_dir), "findings")]
    ranks = ["critical", "high", "medium", "low", "info"]
    assert severities == sorted(severities, key=ranks.index)


def test_scenario_auth_failures(data_dir: Path) -> None:
    """The 401 by its source IP; the 403s by user, impersonation shown as ``admin as alice``."""
    report = scenario_report(data_dir)
    unauthenticated = rows(report, "unauthenticated")
    forbidden = {r["user"]: r for r in rows(report, "forbidden")}

    assert [(r["source_ip"], r["requests"]) for r in unauthenticated] == [("127.0.0.1", 1)]
    assert unauthenticated[0]["example"]["verb"] == "list"
    assert named(unauthenticated[0]["example"]["object"]) == "ingresses shop"
    assert {u: r["requests"] for u, r in forbidden.items()} == {
        "alice": 2,
        "mallory": 1,
        "admin as alice": 1,
        "system:serviceaccount:shop:builder": 1,
    }
    assert named(forbidden["mallory"]["example"]["object"]) == "ingresses"
    assert next(r["user"] for r in rows(report, "forbidden")) == "alice"  # most first


def test_scenario_certificates_expiring(data_dir: Path) -> None:
    """shop-tls (not after 2027-11-24) is listed once within the horizon, with its SANs."""
    assert rows(scenario_report(data_dir), "certificates") == []  # a year left: not within 30 days
    soon = datetime(2027, 11, 4, 14, 20, 27, tzinfo=UTC)

    (cert,) = rows(scenario_report(data_dir, now=soon), "certificates")

    assert (cert["namespace"], cert["name"]) == ("shop", "shop-tls")
    assert cert["days_left"] == 20
    assert cert["sans"] == ["shop.example.test", "www.shop.example.test"]
    assert cert["not_after"] == datetime(2027, 11, 24, 14, 20, 27, tzinfo=UTC)
    # A window after the secret was written still lists it: its state outlives the window.
    later = scenario_report(data_dir, since=SCENARIO_END, until=SCENARIO_END + DAY, now=soon)
    assert [c["name"] for c in rows(later, "certificates")] == ["shop-tls"]
    assert summary(later)["audit_records"] == 0


def test_window_edges_with_injected_now() -> None:
    """``[since, until)`` by the record's own time; ``received_at`` when ``time`` is missing."""
    since = datetime(2026, 11, 17, 12, tzinfo=UTC)
    until = datetime(2026, 11, 24, 12, tzinfo=UTC)
    docs = lines(
        audit("2026-11-17T11:59:59.999999Z"),
        audit("2026-11-17T12:00:00Z"),
        audit("2026-11-24T11:59:59.999999Z"),
        audit("2026-11-24T12:00:00Z"),
        audit("2026-11-20T10:00:00+02:00"),
        audit("garbage", received_at="2026-11-20T00:00:00Z"),
        audit("2026-12-01T00:00:00Z", time=None),  # received_at decides: outside
        {"type": "audit", "verb": "get"},  # no time at all
    )

    report = build_report(docs, ReportOptions(since=since, until=until, now=until))

    assert summary(report)["audit_records"] == 4
    assert summary(report)["first_record"] == since
    assert summary(report)["last_record"] == datetime(2026, 11, 24, 11, 59, 59, 999999, tzinfo=UTC)
    assert {"issue": "records_without_time", "detail": "audit", "count": 1} in rows(report, "quality")


def test_alerts_dead_letters_and_unknown_types() -> None:
    """Alerts by latest status per fingerprint; dead letters by reason; other types ignored, counted."""
    t = "2026-11-20T10:00:00Z"

    def alert(fp: str, status: str, when: str, **extra: Any) -> dict[str, Any]:
        return {
            "type": "alert",
            "id": f"{fp}-{status}",
            "fingerprint": fp,
            "status": status,
            "detection": "tls-removed-burst",
            "severity": "high",
            "summary": f"TLS removed from {fp}",
            "labels": {"cluster": "prod"},
            "count": extra.pop("count", 1),
            "starts_at": t,
            "ends_at": None,
            "time": when,
            **extra,
        }

    docs = lines(
        alert("a", "firing", "2026-11-20T10:00:00Z", count=3),
        alert("a", "resolved", "2026-11-20T11:00:00Z", count=3),
        alert("b", "firing", "2026-11-21T10:00:00Z", count=7),
        alert("c", "firing", "2026-11-21T10:00:00Z", detection="auth-failures", severity="medium"),
        {"type": "dead_letter", "reason": "malformed-event", "received_at": t},
        {"type": "dead_letter", "reason": "malformed-event", "received_at": t},
        {"type": "dead_letter", "reason": "not-json", "received_at": t},
        {"type": "access", "time": t, "status": 200},
        {"type": "access_summary", "time": t},
        audit(t, change={"baseline": "unavailable", "operations": []}),
        None,  # a line that was not JSON
    )
    report = build_report(docs, ReportOptions(since=datetime(2026, 11, 18, tzinfo=UTC), until=NOW, now=NOW))

    assert rows(report, "alerts_by_detection") == [
        {"detection": "tls-removed-burst", "severity": "high", "firing": 1, "resolved": 1, "alerts": 2},
        {"detection": "auth-failures", "severity": "medium", "firing": 1, "resolved": 0, "alerts": 1},
    ]
    top = rows(report, "alerts")
    assert [(a["summary"], a["status"], a["count"]) for a in top] == [
        ("TLS removed from b", "firing", 7),
        ("TLS removed from c", "firing", 1),
        ("TLS removed from a", "resolved", 3),
    ]
    assert summary(report)["alerts"] == {"firing": 2, "resolved": 1}  # the latest status of each
    assert summary(report)["dead_letters"] == 3
    assert {(r["issue"], r["detail"]): r["count"] for r in rows(report, "quality")} == {
        ("dead_letters", "malformed-event"): 2,
        ("dead_letters", "not-json"): 1,
        ("baseline_unavailable", None): 1,
        ("unreadable_lines", None): 1,
        ("unknown_type", "access"): 1,
        ("unknown_type", "access_summary"): 1,
    }
    assert summary(report)["audit_records"] == 1


def test_cluster_filter() -> None:
    """``--cluster`` keeps that cluster's records and alerts (by ``labels.cluster``)."""
    t = "2026-11-20T10:00:00Z"
    docs = lines(
        audit(t, cluster="prod", outcome={"code": 403}),
        audit(t, cluster="staging", outcome={"code": 403}, actor={"user": {"username": "eve"}}),
        {
            "type": "alert",
            "fingerprint": "x",
            "status": "firing",
            "labels": {"cluster": "staging"},
            "time": t,
        },
    )
    report = build_report(
        docs, options(since=datetime(2026, 11, 1, tzinfo=UTC), until=NOW, clusters=("prod",))
    )

    assert summary(report)["clusters"] == [{"cluster": "prod", "records": 1}]
    assert [r["user"] for r in rows(report, "forbidden")] == ["alice"]
    assert rows(report, "alerts") == []


def test_certificates_follow_the_latest_record_and_deletes() -> None:
    """A renewed certificate replaces the old one; a deleted secret drops out; failures change nothing."""

    def secret(when: str, name: str, not_after: str, **extra: Any) -> dict[str, Any]:
        cert = {"position": 0, "subject": f"CN={name}", "sans": [f"{name}.example"], "not_after": not_after}
        fields: dict[str, Any] = {
            "verb": "update",
            "object": {"api_group": "", "resource": "secrets", "namespace": "shop", "name": name},
            "secret": {"type": "kubernetes.io/tls", "certificates": [cert]},
        }
        return audit(when, **(fields | extra))

    now = datetime(2026, 11, 25, tzinfo=UTC)
    docs = lines(
        secret("2026-11-01T00:00:00Z", "renewed", "2026-12-01T00:00:00Z"),
        secret("2026-11-10T00:00:00Z", "renewed", "2027-12-01T00:00:00Z"),
        secret("2026-11-01T00:00:00Z", "gone", "2026-12-01T00:00:00Z"),
        secret("2026-11-12T00:00:00Z", "gone", "x", verb="delete", secret=None),
        secret("2026-11-01T00:00:00Z", "expired", "2026-11-20T00:00:00Z"),
        secret("2026-11-13T00:00:00Z", "expired", "2027-12-01T00:00:00Z", outcome={"code": 422}),
        secret("2026-11-14T00:00:00Z", "expired", "2027-12-01T00:00:00Z", dry_run=True),
    )

    report = build_report(docs, ReportOptions(since=now - 7 * DAY, until=now, now=now))

    assert [(c["name"], c["days_left"]) for c in rows(report, "certificates")] == [("expired", -5)]


def test_bounded_tables_say_they_are_approximate() -> None:
    """Thousands of distinct 401 sources: the heavy hitter stays on top, the table says approximate."""
    t = "2026-11-20T10:00:00Z"
    noisy = (
        audit(t, outcome={"code": 401}, actor={"source_ips": [f"192.0.2.{i % 250}:{i}"]}) for i in range(5000)
    )
    heavy = (audit(t, outcome={"code": 401}, actor={"source_ips": ["198.51.100.7"]}) for _ in range(50))

    report = build_report(
        [*noisy, *heavy], options(since=datetime(2026, 11, 1, tzinfo=UTC), until=NOW, top=3)
    )

    top = rows(report, "unauthenticated")
    assert len(top) == 3
    assert (top[0]["source_ip"], top[0]["requests"]) == ("198.51.100.7", 50)
    (section,) = [s for s in report.sections if s.key == "unauthenticated"]
    assert section.approximate
    assert section.notes() == ["approximate: more distinct keys than kept"]


def test_reads_rotated_and_gzipped_backups(tmp_path: Path) -> None:
    """records.jsonl.2.gz, then .1, then the current file: every record once."""
    path = tmp_path / "records.jsonl"
    encoded = [
        orjson.dumps(audit(f"2026-11-2{i}T00:00:00Z", id=f"r{i}", outcome={"code": 403})) + b"\n"
        for i in range(3)
    ]
    with gzip.open(tmp_path / "records.jsonl.2.gz", "wb") as f:
        f.write(encoded[0])
    (tmp_path / "records.jsonl.1").write_bytes(encoded[1])
    path.write_bytes(encoded[2] + b"not json\n" + encoded[2])  # redelivered: counted once

    files = record_files([path])
    report = build_report(read_records(files), options(since=datetime(2026, 11, 1, tzinfo=UTC), until=NOW))

    assert [p.name for p in files] == ["records.jsonl.2.gz", "records.jsonl.1", "records.jsonl"]
    assert summary(report)["audit_records"] == 3
    assert rows(report, "forbidden")[0]["requests"] == 3
    assert {r["issue"]: r["count"] for r in rows(report, "quality")} == {
        "duplicate_records": 1,
        "unreadable_lines": 1,
    }


HOSTILE = '<script>alert("x")</script>|*a*'


def hostile_report() -> Report:
    t = "2026-11-20T10:00:00Z"
    docs = lines(
        audit(
            t,
            verb="patch",
            actor={"user": {"username": HOSTILE, "kind": "user"}, "source_ips": ["10.0.0.1"]},
            object={
                "api_group": "networking.k8s.io",
                "resource": "ingresses",
                "namespace": "ns",
                "name": HOSTILE,
            },
            findings=[{"id": "tls-removed", "severity": "high", "message": HOSTILE}],
            change={
                "baseline": "state",
                "operations": [{"op": "add", "path": f"/metadata/labels/{HOSTILE}"}],
            },
        ),
        audit(t, outcome={"code": 403}, actor={"user": {"username": HOSTILE}}),
    )
    return build_report(docs, options(since=datetime(2026, 11, 1, tzinfo=UTC), until=NOW))


def test_html_escapes_every_value() -> None:
    """A user and an object named ``<script>…`` come out as text, never as markup."""
    page = rendered(hostile_report(), "html")

    assert "<script" not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page
    assert page.startswith("<!DOCTYPE html>")
    assert page.rstrip().endswith("</html>")
    assert "<link" not in page  # self-contained
    assert "src=" not in page


def test_markdown_escapes_pipes_and_markup() -> None:
    """A ``|`` in a name does not split the table's cells; ``<``, ``*`` are escaped."""
    text = rendered(hostile_report(), "markdown")
    section = text.split("## Authorization failures (403) by user")[1].splitlines()
    header = next(line for line in section if line.startswith("| user |"))
    row = next(line for line in section if line.startswith("| &lt;script"))

    assert "<script" not in text
    assert r"\|\*a\*" in text
    assert row.replace("\\|", "").count("|") == header.count("|")


def test_plain_table_has_no_control_codes_and_json_parses() -> None:
    """``table`` off a terminal is plain ASCII-boxed text; ``json`` is the same data."""
    report = hostile_report()
    table = rendered(report, "table")

    assert "\x1b" not in table
    assert "Authorization failures (403) by user" in table
    assert HOSTILE[:20] in table
    doc = orjson.loads(rendered(report, "json"))
    assert doc["summary"]["audit_records"] == 2
    assert {s["key"] for s in doc["sections"]} >= {
        "changes",
        "findings",
        "forbidden",
        "certificates",
        "quality",
    }


def test_no_secret_value_in_any_format(data_dir: Path) -> None:
    """Scenario A's report, in every format, holds no line of secrets.txt."""
    secrets = scenario_secrets()
    soon = datetime(2027, 11, 4, tzinfo=UTC)
    report = scenario_report(data_dir, now=soon)
    for fmt in FORMATS:
        text = rendered(report, fmt)
        leaked = [s for s in secrets if s in text]
        assert leaked == [], f"{fmt} holds {len(leaked)} secret values"
        assert "shop-tls" in text


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SCRIPT), "report", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "200", **(env or {})},
        check=False,
    )


def test_console_script_end_to_end(data_dir: Path, tmp_path: Path) -> None:
    """With ``--config``, the JSONL sink and the dead letters are read; each format prints."""
    conf = tmp_path / "c.yaml"
    conf.write_text(f"data_dir: {data_dir}\n")
    window = ("--since", "2026-11-24T00:00:00Z", "--until", "2026-11-25T00:00:00Z")

    table = run_cli("--config", str(conf), *window)
    assert table.returncode == 0, table.stderr
    assert "\x1b" not in table.stdout
    for name in (
        "mallory",
        "admin as alice",
        "shop/shop-web",
        "tls-removed",
        "127.0.0.1",
        "dead-letter.jsonl",
    ):
        assert name in table.stdout

    out = tmp_path / "review.html"
    html = run_cli(
        "--config", str(conf), *window, "--format", "html", "--output", str(out), "--expiring-within", "400d"
    )
    assert html.returncode == 0, html.stderr
    assert html.stdout == ""
    assert "CN=shop.example.test" in out.read_text()
    assert out.stat().st_mode & 0o777 == 0o600

    md = run_cli(str(data_dir / "records.jsonl"), *window, "--format", "markdown", "--top", "1")
    assert md.returncode == 0, md.stderr
    assert md.stdout.startswith("# ingress-audit review")
    forbidden = md.stdout.split("## Authorization failures (403) by user")[1].split("##")[0]
    assert "| alice | 2 |" in forbidden
    assert "mallory" not in forbidden

    js = run_cli(str(data_dir / "records.jsonl"), "--since", "30m", "--format", "json")
    assert js.returncode == 0, js.stderr
    assert orjson.loads(js.stdout)["summary"]["audit_records"] == 0  # the scenario is older than that


def test_console_script_errors(tmp_path: Path) -> None:
    """A missing file exits 1 with a clear message; a bad ``--since`` or duration exits 2."""
    missing = run_cli(str(tmp_path / "nope.jsonl"))
    assert missing.returncode == 1
    assert "ingress-audit: not-found:" in missing.stderr
    for args in (["--since", "last week"], ["--expiring-within", "2026-11-24T00:00:00Z"]):
        bad = run_cli(str(tmp_path / "nope.jsonl"), *args)
        assert bad.returncode == 2
        assert "expected a duration" in bad.stderr


def test_terminal_table_is_styled() -> None:
    """On a terminal the same table is drawn with styles (the plain one above has none)."""
    out = io.StringIO()
    render(hostile_report(), "table", out, terminal=True, width=120)

    assert "\x1b[1m" in out.getvalue()
    assert "Authorization failures (403) by user" in out.getvalue()


def test_terminal_escapes_in_records_are_shown_not_obeyed() -> None:
    """A11: a username carrying ESC/CSI sequences (``ESC[1A ESC[2K``, ``ESC]0;…``, C1 CSI)
    is printed as visible escapes by ``report --format table``, on a terminal or not."""
    evil = "oidc:eve\x1b[1A\x1b[2K\x1b]0;X\x1b\\\x9b2J\x07"
    t = "2026-11-20T10:00:00Z"
    docs = lines(audit(t, outcome={"code": 403}, actor={"user": {"username": evil}}))
    report = build_report(docs, options(since=datetime(2026, 11, 1, tzinfo=UTC), until=NOW))

    for terminal in (False, True):
        out = io.StringIO()
        render(report, "table", out, terminal=terminal, width=200)
        text = out.getvalue()
        assert "oidc:eve\\x1b[1A\\x1b[2K\\x1b]0;X\\x1b\\\\x9b2J\\x07" in text
        assert "\x9b" not in text
        assert "\x07" not in text
        assert "\x1b]" not in text
        assert "\x1b[1A" not in text
    markdown = rendered(report, "markdown")
    assert "x1b" in markdown
    assert not {"\x1b", "\x9b", "\x07"} & set(markdown)


def write_records(path: Path, *docs: dict[str, Any]) -> Path:
    path.write_bytes(b"".join(orjson.dumps(d) + b"\n" for d in docs))
    return path


def run_json(path: Path, out: Path, **kwargs: Any) -> dict[str, Any]:
    write(report_for([path], **({"since": None, "until": None, "now": NOW} | kwargs)), "json", out)
    doc: dict[str, Any] = orjson.loads(out.read_bytes())
    return doc


def test_default_period_is_the_week_up_to_the_newest_record(tmp_path: Path) -> None:
    """No ``--since``: the 7 days up to the newest audit record, whatever the clock says; an
    alert processed weeks later is counted with the records that raised it, and the notice
    says what the period holds."""
    newest = "2026-11-24T14:21:48.5Z"
    path = write_records(
        tmp_path / "records.jsonl",
        audit("2026-11-10T00:00:00Z", id="old", outcome={"code": 403}),  # 14 days before: outside
        audit("2026-11-17T14:21:49Z", id="a", verb="delete"),
        audit(newest, id="b", findings=[{"id": "tls-removed", "severity": "high"}], verb="patch"),
        {
            "type": "alert",
            "id": "al",
            "fingerprint": "f",
            "status": "firing",
            "detection": "high-severity-finding",
            "severity": "high",
            "records": ["b"],
            "time": "2026-12-06T20:35:47Z",  # processed at replay time, long after the events
        },
    )
    far_later = datetime(2027, 3, 1, tzinfo=UTC)

    doc = run_json(path, tmp_path / "r.json", now=far_later)
    text = tmp_path / "r.txt"
    write(report_for([path], since=None, until=None, now=far_later), "table", text)

    assert doc["period"] == {
        "since": "2026-11-17T14:21:48.500001Z",
        "until": "2026-11-24T14:21:48.500001Z",
        "basis": "newest-record",
    }
    assert doc["summary"]["audit_records"] == 2
    assert doc["summary"]["alerts"] == {"firing": 1, "resolved": 0}
    assert doc["summary"]["findings"]["high"] == 1  # the alert's record is in the period
    (alert,) = next(r for r in doc["sections"] if r["key"] == "alerts")["rows"]
    assert alert["records_at"] == "2026-11-24T14:21:48.500000Z"
    assert alert["last_update"] == "2026-12-06T20:35:47Z"  # its own time, shown as it is
    assert doc["summary"]["forbidden_requests"] == 0
    assert doc["files_hold"] == {
        "audit_records": 3,
        "first_record": "2026-11-10T00:00:00Z",
        "last_record": "2026-11-24T14:21:48.500000Z",
    }
    assert "The 7 days up to the newest record, 2026-11-24T14:21:48Z" in text.read_text()
    assert "the files hold 3 audit records, from 2026-11-10T00:00:00Z" in text.read_text()


def test_a_period_without_records_says_what_the_files_hold(tmp_path: Path) -> None:
    """An explicit ``--since`` after the records: no contradiction, a plain sentence instead."""
    path = write_records(tmp_path / "records.jsonl", audit("2026-11-24T14:20:33Z", id="a"))
    since = datetime(2026, 11, 29, tzinfo=UTC)

    doc = run_json(path, tmp_path / "r.json", since=since)
    report = report_for([path], since=since, until=None, now=NOW + 30 * DAY)
    write(report, "markdown", tmp_path / "r.md")

    assert doc["summary"]["audit_records"] == 0
    assert doc["summary"]["first_record"] is None
    assert doc["files_hold"]["audit_records"] == 1
    assert (
        "The period 2026-11-29T00:00:00Z to 2026-12-25T12:00:00Z holds no audit record; "
        "the files hold 1 audit record, from 2026-11-24T14:20:33Z to 2026-11-24T14:20:33Z."
    ) in (tmp_path / "r.md").read_text()


def test_changes_are_in_time_order_and_the_newest_are_kept() -> None:
    """Rows by record time, not file order; past ``max_changes`` the newest stay, all counted."""
    times = ["2026-11-24T14:21:09Z", "2026-11-24T14:20:40Z", "2026-11-24T14:22:00Z", "2026-11-24T14:20:37Z"]
    docs = lines(*(audit(t, id=t, verb="patch") for t in times))

    report = build_report(docs, options(max_changes=3))

    listed = [c["time"] for c in rows(report, "changes")]
    assert listed == sorted(listed)
    assert [stamp_of(t) for t in listed] == ["14:20:40", "14:21:09", "14:22:00"]
    assert summary(report)["changes"] == 4
    (section,) = [s for s in report.sections if s.key == "changes"]
    assert section.notes() == ["the latest 3 of 4"]
    md = rendered(report, "markdown").split("## Changes")[1].split("##")[0]
    assert md.index("14:20:40Z") < md.index("14:21:09Z") < md.index("14:22:00Z")


def stamp_of(when: datetime) -> str:
    return when.strftime("%H:%M:%S")


def secret_write(when: str, verb: str, name: str, **extra: Any) -> dict[str, Any]:
    """A Secret write as the default (Metadata) policy records it: no body."""
    fields: dict[str, Any] = {
        "verb": verb,
        "level": "Metadata",
        "object": {"api_group": "", "resource": "secrets", "namespace": "shop", "name": name},
        "actor": {"user": {"username": "admin", "kind": "user"}, "source_ips": ["10.0.0.9"]},
        "outcome": {"code": 201 if verb == "create" else 200},
        "secret": None,
        "change": {"baseline": "none", "operations": [], "omitted_operations": 0},
        "findings": [{"id": "change-by-human", "severity": "low"}],
    }
    return audit(when, id=f"{verb}-{name}-{when}", **(fields | extra))


def test_secret_writes_are_reviewed_under_the_metadata_policy() -> None:
    """Creates, patches and deletes of Secrets without a body: who, when, which; with a body,
    type and key names; failures and dry runs are not writes; no value appears."""
    docs = lines(
        secret_write("2026-11-24T14:22:21Z", "delete", "db-creds"),
        secret_write("2026-11-24T14:20:43Z", "create", "db-creds"),
        secret_write(
            "2026-11-24T14:21:00Z",
            "patch",
            "web-tls",
            level="RequestResponse",
            secret={
                "type": "kubernetes.io/tls",
                "changes": {"added": [], "changed": ["tls.crt", "tls.key"], "removed": []},
            },
            change={
                "baseline": "state",
                "operations": [
                    {"op": "replace", "path": "/data/tls.key", "old": "hmac-sha256:x", "new": "v4lu3"}
                ],
            },
        ),
        secret_write("2026-11-24T14:21:30Z", "delete", "web-tls"),  # Metadata: known as TLS from before
        secret_write("2026-11-24T14:21:40Z", "update", "other", outcome={"code": 403}),
        secret_write("2026-11-24T14:21:41Z", "create", "other", dry_run=True),
    )

    report = build_report(docs, options())
    secrets = rows(report, "secrets")

    assert [(s["verb"], s["name"], s["type"]) for s in secrets] == [
        ("create", "db-creds", None),
        ("patch", "web-tls", "kubernetes.io/tls"),
        ("delete", "web-tls", "kubernetes.io/tls"),
        ("delete", "db-creds", None),
    ]
    assert secrets[1]["keys_changed"] == ["tls.crt", "tls.key"]
    assert {s["actor"] for s in secrets} == {"admin"}
    assert summary(report)["secret_writes"] == 4
    changes = [(c["category"], c["verb"], named(c["object"])) for c in rows(report, "changes")]
    assert ("secret", "delete", "secrets shop/db-creds") in changes
    assert ("tls-secret", "delete", "secrets shop/web-tls") in changes
    (by_actor,) = rows(report, "changers")
    assert (by_actor["secret"], by_actor["tls_secret"]) == (2, 2)
    for fmt in FORMATS:
        out = rendered(report, fmt)
        assert "db-creds" in out
        assert "v4lu3" not in out
        assert "hmac-sha256" not in out
    assert "request-response policy profile" in rendered(report, "table")


def test_control_characters_are_shown_not_sent() -> None:
    """The security review's terminal-escape finding: a username or object holding ESC sequences
    is printed as ``\\x1b`` in every text format, so it cannot erase lines or retitle the terminal."""
    evil = "eve\x1b[1A\x1b[2K\x1b]0;PWNED\x07\x9b"
    docs = lines(
        audit(
            "2026-11-24T10:00:00Z",
            verb="patch",
            actor={"user": {"username": evil, "kind": "user"}, "source_ips": ["10.0.0.1"]},
            findings=[{"id": evil, "severity": "high"}],
        ),
        audit("2026-11-24T10:00:01Z", outcome={"code": 403}, actor={"user": {"username": evil}}),
        audit("2026-11-24T10:00:02Z", cluster=evil),
    )
    report = build_report(docs, options())

    for fmt in ("table", "markdown", "html"):
        out = rendered(report, fmt)
        assert not [c for c in out if (ord(c) < 0x20 and c != "\n") or 0x7F <= ord(c) <= 0x9F], fmt
        assert "evex1b[1Ax1b[2Kx1b]0;PWNEDx07x9b" in out.replace("\\", ""), fmt  # markdown escapes [ and \\
    styled = io.StringIO()
    render(report, "table", styled, terminal=True, width=200)
    assert "\x1b]0;PWNED" not in styled.getvalue()
    assert orjson.loads(rendered(report, "json"))["summary"]["forbidden_requests"] == 1
