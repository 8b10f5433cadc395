"""The review's formats on the quick start's data: the README's ``report`` lines as written,
``--format json`` against its schema (data, never display strings), and the HTML page as a
person sees it, screenshotted by a headless Chromium."""

from __future__ import annotations

import asyncio
import io
import os
import re
import shutil
import subprocess
import sys
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jsonschema
import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer

from tests.conftest import make_config, settle
from tests.paths import ROOT
from tests.servers import need_binary
from webhook.commands.replay_server import replay_to_server
from webhook.record.files import read_records, record_files
from webhook.review.html import SEVERITY_COLOURS
from webhook.review.render import Report, render
from webhook.review.report import ReportOptions, build_report
from webhook.server.app import create_app

SCRIPT = Path(sys.executable).parent / "ingress-audit"
NOW = datetime(2027, 3, 1, tzinfo=UTC)  # months after the example's events

_TIME = {"type": "string", "format": "date-time", "pattern": r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$"}
_TIME_OR_NULL = {"anyOf": [_TIME, {"type": "null"}]}
_COUNT = {"type": "integer", "minimum": 0}
_NAMES = {"type": "array", "items": {"type": "string"}}
_FINDINGS = {
    "type": "array",
    "items": {
        "type": "object",
        "required": ["id", "severity"],
        "properties": {
            "id": {"type": "string"},
            "severity": {"enum": ["critical", "high", "medium", "low", "info"]},
        },
        "additionalProperties": False,
    },
}
_OBJECT = {
    "anyOf": [
        {"type": "null"},
        {
            "type": "object",
            "required": ["api_group", "resource", "subresource", "namespace", "name"],
            "additionalProperties": {"type": ["string", "null"]},
        },
    ]
}


def _rows(properties: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "array",
        "items": {
            "type": "object",
            "required": sorted(properties),
            "properties": properties,
            "additionalProperties": False,
        },
    }


_SECTION_ROWS: dict[str, dict[str, Any]] = {
    "changers": _rows(
        {
            "actor": {"type": "string"},
            **dict.fromkeys(
                ("ingress", "ingress_class", "tls_secret", "secret", "dns", "gateway", "total"), _COUNT
            ),
        }
    ),
    "changes": _rows(
        {
            "time": _TIME,
            "category": {"enum": ["ingress", "ingress-class", "tls-secret", "secret", "dns", "gateway"]},
            "actor": {"type": "string"},
            "actor_kind": {"type": ["string", "null"]},
            "verb": {"type": "string"},
            "object": _OBJECT,
            "change": {
                "type": "object",
                "required": [
                    "baseline",
                    "operations",
                    "operations_total",
                    "keys_added",
                    "keys_changed",
                    "keys_removed",
                    "dns",
                ],
                "properties": {
                    "baseline": {"type": ["string", "null"]},
                    "operations": _rows(
                        {"op": {"enum": ["add", "remove", "replace"]}, "path": {"type": "string"}}
                    ),
                    "operations_total": _COUNT,
                    "keys_added": _NAMES,
                    "keys_changed": _NAMES,
                    "keys_removed": _NAMES,
                    "dns": _rows({"change": {"enum": ["added", "removed"]}, "line": {"type": "string"}}),
                },
                "additionalProperties": False,
            },
            "findings": _FINDINGS,
        }
    ),
    "secrets": _rows(
        {
            "time": _TIME,
            "actor": {"type": "string"},
            "verb": {"type": "string"},
            "namespace": {"type": ["string", "null"]},
            "name": {"type": ["string", "null"]},
            "type": {"type": ["string", "null"]},
            "keys_added": _NAMES,
            "keys_changed": _NAMES,
            "keys_removed": _NAMES,
            "level": {"type": ["string", "null"]},
            "findings": _FINDINGS,
        }
    ),
    "findings": _rows(
        {
            "finding": {"type": "string"},
            "severity": {"type": "string"},
            "records": _COUNT,
            "examples": _rows(
                {
                    "time": _TIME,
                    "actor": {"type": "string"},
                    "verb": {"type": ["string", "null"]},
                    "object": _OBJECT,
                }
            ),
        }
    ),
}
_SEVERITY = {"type": "string"}
_SECTION_ROWS["alerts_by_detection"] = _rows(
    {
        "detection": {"type": "string"},
        "severity": _SEVERITY,
        "firing": _COUNT,
        "resolved": _COUNT,
        "alerts": _COUNT,
    }
)
_SECTION_ROWS["alerts"] = _rows(
    {
        "detection": {"type": "string"},
        "severity": _SEVERITY,
        "status": {"type": "string"},
        "count": _COUNT,
        "records_at": _TIME_OR_NULL,
        "starts_at": _TIME_OR_NULL,
        "last_update": _TIME_OR_NULL,
        "summary": {"type": "string"},
    }
)
_SECTION_ROWS["certificates"] = _rows(
    {
        "namespace": {"type": ["string", "null"]},
        "name": {"type": "string"},
        "cluster": {"type": "string"},
        "subject": {"type": ["string", "null"]},
        "sans": _NAMES,
        "not_after": _TIME,
        "days_left": {"type": "integer"},
        "position": _COUNT,
        "seen": _TIME_OR_NULL,
    }
)
_SECTION_ROWS["quality"] = _rows(
    {
        "issue": {"type": "string", "pattern": "^[a-z_]+$"},
        "detail": {"type": ["string", "null"]},
        "count": _COUNT,
    }
)
for _key, _by in (("unauthenticated", "source_ip"), ("forbidden", "user")):
    _SECTION_ROWS[_key] = _rows(
        {
            _by: {"type": "string"},
            "requests": _COUNT,
            "first": _TIME,
            "last": _TIME,
            "example": {"type": "object", "required": ["verb", "object"]},
        }
    )

REPORT_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["title", "period", "generated", "files", "summary", "files_hold", "sections"],
    "additionalProperties": False,
    "properties": {
        "title": {"type": "string"},
        "period": {
            "type": "object",
            "required": ["since", "until", "basis"],
            "properties": {
                "since": _TIME,
                "until": _TIME,
                "basis": {"enum": ["given", "newest-record", "now"]},
            },
            "additionalProperties": False,
        },
        "generated": _TIME,
        "files": _NAMES,
        "summary": {
            "type": "object",
            "additionalProperties": False,
            "required": [
                "audit_records",
                "first_record",
                "last_record",
                "clusters",
                "changes",
                "secret_writes",
                "findings",
                "unauthenticated_requests",
                "forbidden_requests",
                "alerts",
                "dead_letters",
            ],
            "properties": {
                "audit_records": _COUNT,
                "first_record": _TIME_OR_NULL,
                "last_record": _TIME_OR_NULL,
                "clusters": _rows({"cluster": {"type": "string"}, "records": _COUNT}),
                "changes": _COUNT,
                "secret_writes": _COUNT,
                "findings": {
                    "type": "object",
                    "required": ["critical", "high", "medium", "low", "info"],
                    "additionalProperties": False,
                    "properties": dict.fromkeys(("critical", "high", "medium", "low", "info"), _COUNT),
                },
                "unauthenticated_requests": _COUNT,
                "forbidden_requests": _COUNT,
                "alerts": {
                    "type": "object",
                    "required": ["firing", "resolved"],
                    "additionalProperties": False,
                    "properties": {"firing": _COUNT, "resolved": _COUNT},
                },
                "dead_letters": _COUNT,
            },
        },
        "files_hold": {
            "type": "object",
            "required": ["audit_records", "first_record", "last_record"],
            "additionalProperties": False,
            "properties": {
                "audit_records": _COUNT,
                "first_record": _TIME_OR_NULL,
                "last_record": _TIME_OR_NULL,
            },
        },
        "sections": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["key", "title", "total", "approximate", "rows"],
                "additionalProperties": False,
                "properties": {
                    "key": {"type": "string", "pattern": "^[a-z_]+$"},
                    "title": {"type": "string"},
                    "total": _COUNT,
                    "approximate": {"type": "boolean"},
                    "rows": {"type": "array", "items": {"type": "object"}},
                },
                "allOf": [
                    {"if": {"properties": {"key": {"const": k}}}, "then": {"properties": {"rows": rows}}}
                    for k, rows in _SECTION_ROWS.items()
                ],
            },
        },
    },
}


async def _quick_start(data: Path) -> None:
    """The README's quick start: post examples/eventlist.json, then replay examples/audit.log."""
    config = replace(make_config(data.parent), data_dir=data)
    client: TestClient[Any, Any] = TestClient(TestServer(create_app(config)))
    await client.start_server()
    try:
        body = (ROOT / "examples" / "eventlist.json").read_bytes()
        resp = await client.post("/audit", data=body, headers={"Content-Type": "application/json"})
        assert resp.status == 200
        await replay_to_server(str(client.make_url("/audit")), [ROOT / "examples" / "audit.log"])
        await settle(client)
    finally:
        await client.close()


@pytest.fixture(scope="module")
def quick_start(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory laid out as after the quick start: ``ingress-audit-data/`` and ``config/``."""
    root = tmp_path_factory.mktemp("quick-start")
    asyncio.run(_quick_start(root / "ingress-audit-data"))
    (root / "config").mkdir()
    shutil.copy(ROOT / "config" / "ingress-audit.yaml", root / "config" / "ingress-audit.yaml")
    return root


def _readme_report_commands() -> list[str]:
    blocks = re.findall(r"```sh\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)
    lines = (line.split("#")[0].strip() for block in blocks for line in block.splitlines())
    return [line for line in lines if line.startswith("ingress-audit report")]


def test_the_readmes_report_examples_run_on_the_quick_start(quick_start: Path) -> None:
    """Each ``ingress-audit report`` line of the README, as written, in the quick start's
    directory: exit 0, and the default review holds the example's records, not an empty week."""
    commands = _readme_report_commands()
    assert len(commands) == 3
    for command in commands:
        argv = [str(SCRIPT), *command.split()[1:]]
        done = subprocess.run(
            argv,
            cwd=quick_start,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            env=dict(os.environ),
        )
        assert done.returncode == 0, (command, done.stderr)
        output = done.stdout
        if "--output" in argv:
            output = (quick_start / argv[argv.index("--output") + 1]).read_text()
        pattern = r"<b>43</b><span>audit records" if "html" in argv else r"audit records\W+43\b"
        assert re.search(pattern, output), (command, output[:600])
    default = subprocess.run(
        [str(SCRIPT), "report"],
        cwd=quick_start,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env={**os.environ, "COLUMNS": "250"},
    ).stdout
    assert "The 7 days up to the newest record, 2026-11-24T" in default
    for who in ("secrets shop/db-creds", "tls-removed", "mallory"):
        assert who in default


def quick_start_report(quick_start: Path, **overrides: Any) -> Report:
    files = record_files([quick_start / "ingress-audit-data" / "records.jsonl"])
    base: dict[str, Any] = {
        "since": datetime(2026, 11, 1, tzinfo=UTC),
        "until": datetime(2026, 12, 1, tzinfo=UTC),
        "now": NOW,
    }
    return build_report(read_records(files), ReportOptions(**(base | overrides)), sources=files)


def _json(report: Report) -> dict[str, Any]:
    out = io.StringIO()
    render(report, "json", out)
    doc: dict[str, Any] = orjson.loads(out.getvalue())
    return doc


def _strings(doc: Any) -> list[str]:
    if isinstance(doc, dict):
        return [*doc, *(s for v in doc.values() for s in _strings(v))]
    if isinstance(doc, list):
        return [s for v in doc for s in _strings(v)]
    return [doc] if isinstance(doc, str) else []


def test_json_is_data_that_matches_its_schema(quick_start: Path) -> None:
    """Numbers, RFC 3339 times, lists and snake_case keys; no display strings, nothing cut."""
    doc = _json(quick_start_report(quick_start))

    jsonschema.Draft202012Validator(
        REPORT_SCHEMA, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    ).validate(doc)
    assert not [s for s in _strings(doc) if "…" in s]
    keys = list(_strings_keys(doc))
    assert all(re.fullmatch(r"[a-z][a-z0-9_]*", k) for k in keys), sorted(
        {k for k in keys if " " in k or "/" in k}
    )
    assert doc["summary"]["audit_records"] == 43
    assert doc["summary"]["alerts"]["firing"] == sum(
        r["firing"] for r in _section(doc, "alerts_by_detection")
    )
    assert doc["summary"]["changes"] == sum(r["total"] for r in _section(doc, "changers"))
    changes = _section(doc, "changes")
    assert [c["time"] for c in changes] == sorted(c["time"] for c in changes)
    long_path = "/metadata/annotations/nginx.ingress.kubernetes.io~1configuration-snippet"
    assert any(op["path"] == long_path for c in changes for op in c["change"]["operations"])
    assert {(s["verb"], s["name"]) for s in _section(doc, "secrets")} >= {
        ("create", "db-creds"),
        ("delete", "db-creds"),
    }


def _strings_keys(doc: Any) -> list[str]:
    if isinstance(doc, dict):
        return [*doc, *(k for v in doc.values() for k in _strings_keys(v))]
    if isinstance(doc, list):
        return [k for v in doc for k in _strings_keys(v)]
    return []


def _section(doc: dict[str, Any], key: str) -> list[dict[str, Any]]:
    (section,) = [s for s in doc["sections"] if s["key"] == key]
    rows: list[dict[str, Any]] = section["rows"]
    return rows


def _screenshot(page: Path, png: Path, tmp_path: Path) -> None:
    chromium = need_binary(["chromium", "chromium-browser"], "chromium")
    argv = [
        chromium,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
        f"--screenshot={png}",
        "--window-size=1280,2000",
        page.as_uri(),
    ]
    done = subprocess.run(argv, capture_output=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert png.is_file()


def _colour_counts(png: Path, top: int | None = None) -> dict[str, int]:
    from PIL import Image

    with Image.open(png) as image:
        assert image.size == (1280, 2000)
        rgb = image.convert("RGB")
        if top is not None:
            rgb = rgb.crop((0, 0, 1280, top))
        colours = {c: n for n, c in rgb.getcolors(maxcolors=1 << 22) or ()}
    wanted = {s: tuple(int(h[i : i + 2], 16) for i in (1, 3, 5)) for s, h in SEVERITY_COLOURS.items()}
    return {s: colours.get(rgb_value, 0) for s, rgb_value in wanted.items()}


def _severity_report() -> Report:
    base: dict[str, Any] = {
        "type": "audit",
        "cluster": "prod",
        "verb": "patch",
        "outcome": {"code": 200},
        "actor": {"user": {"username": "admin", "kind": "user"}, "source_ips": ["10.0.0.1"]},
        "change": {"baseline": "state", "operations": [{"op": "remove", "path": "/spec/tls"}]},
    }
    docs: list[dict[str, Any] | None] = [
        base
        | {
            "id": severity,
            "time": f"2026-11-24T14:2{i}:00Z",
            "object": {
                "api_group": "networking.k8s.io",
                "resource": "ingresses",
                "namespace": "shop",
                "name": severity,
            },
            "findings": [{"id": f"{severity}-finding", "severity": severity}],
        }
        for i, severity in enumerate(SEVERITY_COLOURS)
    ]
    return build_report(
        docs,
        ReportOptions(
            since=datetime(2026, 11, 24, tzinfo=UTC), until=datetime(2026, 11, 25, tzinfo=UTC), now=NOW
        ),
    )


def test_html_shows_severities_in_colour(tmp_path: Path) -> None:
    """A headless Chromium renders the page: 1280x2000, and each severity present is painted in
    its colour in the summary at the top; a severity absent from the data is not painted."""
    page, png = tmp_path / "review.html", tmp_path / "review.png"
    out = io.StringIO()
    render(_severity_report(), "html", out)
    page.write_text(out.getvalue())

    _screenshot(page, png, tmp_path)

    top = _colour_counts(png, top=400)  # the summary, above the fold
    assert all(n > 500 for n in top.values()), top
    whole = _colour_counts(png)
    assert all(whole[s] > top[s] for s in SEVERITY_COLOURS), whole  # and again in the tables


def test_html_of_the_quick_start_is_coloured_by_its_findings(quick_start: Path, tmp_path: Path) -> None:
    """The quick start's findings are high, medium and low: those colours, not critical's."""
    page, png = tmp_path / "review.html", tmp_path / "review.png"
    out = io.StringIO()
    render(quick_start_report(quick_start), "html", out)
    page.write_text(out.getvalue())
    assert "<script" not in out.getvalue()
    assert "http://" not in out.getvalue()
    assert "https://" not in out.getvalue()

    _screenshot(page, png, tmp_path)

    counts = _colour_counts(png)
    assert counts["high"] > 500
    assert counts["medium"] > 500
    assert counts["low"] > 500
    assert counts["critical"] == 0
