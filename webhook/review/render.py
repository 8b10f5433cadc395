"""The weekly review as text: a rich table for terminals (plain when not one), Markdown, HTML, JSON.

Every renderer takes the same ``Report``: a summary, a notice about the period and sections of
rows, so what one format shows the others show too. Rows are data (numbers, times, lists);
``json`` writes them as they are, the text formats through each column's ``show``. Markdown
and HTML escape every cell: user and object names come from the cluster and must not become
markup.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import IO, Any, Final

import orjson

from webhook.core.visible import visible

# Control characters in names from the cluster are shown as escapes (webhook/core/visible.py): ESC
# sequences must not move the cursor or retitle the terminal a review is printed on.
__all__ = ["FORMATS", "Column", "Report", "Section", "render", "stamp", "text", "to_dict", "visible"]

FORMATS: Final = ("table", "markdown", "html", "json")
_MD_SPECIAL: Final = re.compile(r"([\\`*_\[\]#|])")


def stamp(when: datetime) -> str:
    """RFC 3339 to the second, ``Z`` for UTC: the text formats' one way of writing a time."""
    return when.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def text(value: Any) -> str:
    """A cell's text when its column says nothing better: ``-`` for nothing, lists joined."""
    if value is None or value == [] or value == "":
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, datetime):
        return stamp(value)
    if isinstance(value, list | tuple):
        return ", ".join(text(v) for v in value)
    return str(value)


@dataclass(frozen=True, slots=True, kw_only=True)
class Column:
    key: str  # the row's key: snake_case, the JSON name
    title: str
    show: Callable[[Any], str] = text
    style: str = ""  # html: "severity", "findings" (badges), "time", "number", "wide", "nowrap"


@dataclass(frozen=True, slots=True, kw_only=True)
class Section:
    key: str
    title: str
    columns: tuple[Column, ...]
    rows: tuple[dict[str, Any], ...]
    total: int | None = None  # rows counted, when more than listed
    approximate: bool = False  # a bounded table met more keys than it keeps
    note: str = ""  # a line of text for readers (not in json)
    empty: str = "none"

    def notes(self) -> list[str]:
        lines = [self.note] if self.note else []
        if self.total is not None and self.total > len(self.rows):
            lines.append(f"the latest {len(self.rows)} of {self.total}")
        if self.approximate:
            lines.append("approximate: more distinct keys than kept")
        return lines

    def cells(self, row: dict[str, Any]) -> list[str]:
        return [visible(c.show(row.get(c.key))) for c in self.columns]


@dataclass(frozen=True, slots=True, kw_only=True)
class Report:
    title: str
    data: dict[str, Any]  # period, generated, files, summary, files_hold: the json head
    facts: tuple[tuple[str, str], ...]  # the same, as text
    notice: str  # what the period holds, in a sentence
    sections: tuple[Section, ...]


def render(
    report: Report, fmt: str, out: IO[str], *, terminal: bool = False, width: int | None = 160
) -> None:
    """Write ``report`` to ``out``; ``terminal`` allows colour and styles (``table`` only)."""
    if fmt == "table":
        _table(report, out, terminal=terminal, width=width)
    elif fmt == "markdown":
        out.write(markdown(report))
    elif fmt == "html":
        from webhook.review.html import to_html

        out.write(to_html(report))
    elif fmt == "json":
        option = orjson.OPT_INDENT_2 | orjson.OPT_UTC_Z | orjson.OPT_NAIVE_UTC
        out.write(orjson.dumps(to_dict(report), option=option).decode() + "\n")
    else:
        raise ValueError(f"unknown format {fmt!r}")


def to_dict(report: Report) -> dict[str, Any]:
    """The report as data: times stay ``datetime`` (RFC 3339 in json), counts numbers."""
    return {
        "title": report.title,
        **report.data,
        "sections": [
            {
                "key": s.key,
                "title": s.title,
                "total": len(s.rows) if s.total is None else s.total,
                "approximate": s.approximate,
                "rows": [{c.key: row.get(c.key) for c in s.columns} for row in s.rows],
            }
            for s in report.sections
        ],
    }


def _table(report: Report, out: IO[str], *, terminal: bool, width: int | None) -> None:
    from rich import box
    from rich.console import Console
    from rich.table import Table

    console = Console(
        file=out,
        force_terminal=terminal,
        no_color=not terminal,
        width=width,
        highlight=False,
        markup=False,
        emoji=False,
    )
    style = box.ROUNDED if terminal else box.ASCII
    console.print(report.title, style="bold")
    if report.notice:
        console.print(visible(report.notice))
    facts = Table(box=style, show_header=False)
    facts.add_column(style="bold")
    facts.add_column(overflow="fold")
    for label, value in report.facts:
        facts.add_row(label, visible(value))
    console.print(facts)
    for section in report.sections:
        console.print()
        notes = section.notes()
        console.print(section.title + (f" ({'; '.join(notes)})" if notes else ""), style="bold")
        if not section.rows:
            console.print(f"  {visible(section.empty)}", style="dim")
            continue
        table = Table(box=style, header_style="bold")
        for column in section.columns:
            table.add_column(column.title, overflow="fold")
        for row in section.rows:
            table.add_row(*section.cells(row))
        console.print(table)


def _md(cell: str) -> str:
    flat = " ".join(cell.split())
    flat = html.escape(flat, quote=False)
    return _MD_SPECIAL.sub(r"\\\1", flat) or " "


def markdown(report: Report) -> str:
    lines = [f"# {_md(report.title)}", ""]
    if report.notice:
        lines += [_md(visible(report.notice)), ""]
    lines += _md_table(("", ""), [(k, visible(v)) for k, v in report.facts], header=False)
    for section in report.sections:
        lines += ["", f"## {_md(section.title)}", ""]
        for note in section.notes():
            lines += [f"_{_md(note)}_", ""]
        if not section.rows:
            lines.append(_md(section.empty))
            continue
        lines += _md_table([c.title for c in section.columns], [section.cells(r) for r in section.rows])
    return "\n".join(lines) + "\n"


def _md_table(columns: Sequence[str], rows: Sequence[Sequence[str]], *, header: bool = True) -> list[str]:
    head = "| " + " | ".join(_md(c) if header else " " for c in columns) + " |"
    rule = "| " + " | ".join("---" for _ in columns) + " |"
    return [head, rule, *("| " + " | ".join(_md(c) for c in row) + " |" for row in rows)]
