"""The weekly review as one self-contained HTML page: inline CSS, no script, no external asset,
every value escaped. The summary comes first, severities are coloured, tables keep times on
one line, so a reader finds what is risky at a glance."""

from __future__ import annotations

import html
import io
from typing import Any, Final

from webhook.review.collect import SEVERITIES, SEVERITY_RANK
from webhook.review.render import Report, Section, visible

__all__ = ["SEVERITY_COLOURS", "to_html"]

SEVERITY_COLOURS: Final = {
    "critical": "#7f1d1d",
    "high": "#dc2626",
    "medium": "#d97706",
    "low": "#2563eb",
    "info": "#6b7280",
}
_SEV_CSS: Final = "".join(
    f".sev-{s}{{background:{c};color:#fff}}tr.row-{s} td:first-child{{border-left:6px solid {c}}}"
    for s, c in SEVERITY_COLOURS.items()
)
_CSS: Final = (
    """
*{box-sizing:border-box}
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;color:#1f2937;background:#f3f4f6}
body{line-height:1.4}
main{max-width:1240px;margin:0 auto;padding:24px}
h1{font-size:26px;margin:0 0 8px}
h2{font-size:19px;margin:0 0 10px;display:flex;gap:10px;align-items:center}
.notice{background:#e0ecff;border-left:5px solid #1d4ed8;padding:10px 14px;margin:0 0 16px;font-size:15px}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(140px,1fr));gap:10px;margin:0 0 12px}
.card{background:#fff;border:1px solid #d1d5db;border-radius:8px;padding:10px 12px}
.card b{display:block;font-size:26px}
.card span{font-size:13px;color:#4b5563}
.card.sev b,.card.sev span{color:#fff}
.sevs{display:grid;grid-template-columns:repeat(5,1fr);gap:10px;margin:0 0 12px}
.facts{width:100%;background:#fff;border-collapse:collapse;margin:0 0 12px;font-size:14px}
.facts th{width:170px;background:#f9fafb}
nav{background:#fff;border:1px solid #d1d5db;border-radius:8px;padding:8px 12px;margin:0 0 16px}
nav{font-size:14px}
nav a{margin-right:14px;white-space:nowrap;color:#1d4ed8;text-decoration:none}
section{background:#fff;border:1px solid #d1d5db;border-radius:8px;padding:14px 16px;margin:0 0 16px}
section{overflow-x:auto}
table{border-collapse:collapse;width:100%;font-size:13px}
th,td{border:1px solid #e5e7eb;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f3f4f6;font-weight:600;white-space:nowrap}
tbody tr:nth-child(even){background:#f9fafb}
td.nowrap{white-space:nowrap}
td.time{white-space:nowrap;font-family:ui-monospace,"DejaVu Sans Mono",monospace}
td.number{text-align:right;font-variant-numeric:tabular-nums}
td.wide{min-width:260px}
.badge{display:inline-block;white-space:nowrap;border-radius:4px;padding:1px 7px;margin:1px 2px}
.badge{font-size:12px;font-weight:600}
.count{background:#e5e7eb;color:#374151;border-radius:10px;padding:1px 9px;font-size:13px;font-weight:600}
.note,.empty{color:#4b5563;font-size:14px;margin:4px 0 8px}
"""
    + _SEV_CSS
)
_CARDS: Final = (
    ("audit_records", "audit records"),
    ("changes", "changes"),
    ("secret_writes", "Secret writes"),
    ("unauthenticated_requests", "401 requests"),
    ("forbidden_requests", "403 requests"),
    ("dead_letters", "dead letters"),
)
_IN_FACTS: Final = frozenset({"period", "first / last record", "clusters", "alerts", "generated", "files"})
e = html.escape


def _badge(severity: str, label: str) -> str:
    cls = f"sev-{severity}" if severity in SEVERITY_COLOURS else "sev-info"
    return f'<span class="badge {cls}">{e(label)}</span>'


def _cell(section: Section, column: Any, row: dict[str, Any]) -> str:
    value = row.get(column.key)
    if column.style == "severity" and isinstance(value, str):
        return f"<td>{_badge(value, visible(value))}</td>"
    if column.style == "findings" and isinstance(value, list) and value:
        return "<td>" + "".join(_badge(str(f["severity"]), visible(str(f["id"]))) for f in value) + "</td>"
    cls = f' class="{column.style}"' if column.style in ("time", "number", "wide", "nowrap") else ""
    return f"<td{cls}>{e(visible(column.show(value)))}</td>"


def _row_severity(row: dict[str, Any]) -> str | None:
    found = [row["severity"]] if isinstance(row.get("severity"), str) else []
    found += [str(f["severity"]) for f in row.get("findings") or () if isinstance(f, dict)]
    found = [s for s in found if s in SEVERITY_RANK]
    return max(found, key=SEVERITY_RANK.__getitem__) if found else None


def _summary(buf: io.StringIO, report: Report) -> None:
    summary = report.data["summary"]
    buf.write('<div class="cards">\n')
    for key, label in _CARDS:
        buf.write(f'<div class="card"><b>{e(str(summary[key]))}</b><span>{e(label)}</span></div>\n')
    alerts = summary["alerts"]
    firing = f"{alerts['firing']}</b><span>alerts firing ({alerts['resolved']} resolved)"
    buf.write(f'<div class="card"><b>{firing}</span></div>\n')
    buf.write('</div>\n<div class="sevs">\n')
    for severity in SEVERITIES:
        n = summary["findings"][severity]
        cls = f"card sev sev-{severity}" if n else "card"
        buf.write(f'<div class="{cls}"><b>{n}</b><span>{severity} findings</span></div>\n')
    buf.write('</div>\n<table class="facts">\n')
    for label, value in report.facts:
        if label in _IN_FACTS:
            buf.write(f"<tr><th>{e(label)}</th><td>{e(visible(value))}</td></tr>\n")
    buf.write("</table>\n")


def _section(buf: io.StringIO, section: Section) -> None:
    total = len(section.rows) if section.total is None else section.total
    buf.write(
        f'<section id="{e(section.key)}">\n<h2>{e(section.title)} <span class="count">{total}</span></h2>\n'
    )
    for note in section.notes():
        buf.write(f'<p class="note">{e(note)}</p>\n')
    if not section.rows:
        buf.write(f'<p class="empty">{e(section.empty)}</p>\n</section>\n')
        return
    buf.write("<table>\n<thead><tr>" + "".join(f"<th>{e(c.title)}</th>" for c in section.columns))
    buf.write("</tr></thead>\n<tbody>\n")
    for row in section.rows:
        severity = _row_severity(row)
        cls = f' class="row-{severity}"' if severity else ""
        buf.write(f"<tr{cls}>" + "".join(_cell(section, c, row) for c in section.columns) + "</tr>\n")
    buf.write("</tbody>\n</table>\n</section>\n")


def to_html(report: Report) -> str:
    """A self-contained page: inline CSS, no script, every value escaped."""
    buf = io.StringIO()
    buf.write('<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n')
    buf.write('<meta name="viewport" content="width=device-width, initial-scale=1">\n')
    buf.write(f"<title>{e(report.title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n<main>\n")
    buf.write(f"<h1>{e(report.title)}</h1>\n")
    if report.notice:
        buf.write(f'<p class="notice">{e(visible(report.notice))}</p>\n')
    _summary(buf, report)
    buf.write("<nav>")
    for s in report.sections:
        total = len(s.rows) if s.total is None else s.total
        buf.write(f'<a href="#{e(s.key)}">{e(s.title)} ({total})</a> ')
    buf.write("</nav>\n")
    for section in report.sections:
        _section(buf, section)
    buf.write("</main>\n</body>\n</html>\n")
    return buf.getvalue()
