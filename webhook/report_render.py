"""The weekly review as text: a rich table for terminals (plain when not one), Markdown, HTML, JSON.

Every renderer takes the same ``Report``: a title, a few facts and sections of rows, so what one
format shows the others show too. Markdown and HTML escape every cell: user and object names
come from the cluster and must not become markup.
"""

from __future__ import annotations

import html
import io
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import IO, Final

import orjson

from webhook.visible import visible

__all__ = ["FORMATS", "Report", "Section", "render"]

FORMATS: Final = ("table", "markdown", "html", "json")
Cell = str | int
_MD_SPECIAL: Final = re.compile(r"([\\`*_\[\]#|])")


@dataclass(frozen=True, slots=True, kw_only=True)
class Section:
    key: str
    title: str
    columns: tuple[str, ...]
    rows: tuple[tuple[Cell, ...], ...]
    note: str = ""
    empty: str = "none"


@dataclass(frozen=True, slots=True, kw_only=True)
class Report:
    title: str
    facts: tuple[tuple[str, Cell], ...]
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
        out.write(to_html(report))
    elif fmt == "json":
        out.write(orjson.dumps(to_dict(report), option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        raise ValueError(f"unknown format {fmt!r}")


def to_dict(report: Report) -> dict[str, object]:
    return {
        "title": report.title,
        "facts": dict(report.facts),
        "sections": [
            {
                "key": s.key,
                "title": s.title,
                "note": s.note,
                "rows": [dict(zip(s.columns, row, strict=True)) for row in s.rows],
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
    console.print(visible(report.title), style="bold")
    facts = Table(box=style, show_header=False)
    facts.add_column(style="bold")
    facts.add_column(overflow="fold")
    for label, value in report.facts:
        facts.add_row(visible(label), visible(str(value)))
    console.print(facts)
    for section in report.sections:
        console.print()
        heading = section.title + (f" ({section.note})" if section.note else "")
        console.print(visible(heading), style="bold")
        if not section.rows:
            console.print(f"  {visible(section.empty)}", style="dim")
            continue
        table = Table(box=style, header_style="bold")
        for column in section.columns:
            table.add_column(visible(column), overflow="fold")
        for row in section.rows:
            table.add_row(*(visible(str(c)) for c in row))
        console.print(table)


def _md(cell: Cell) -> str:
    text = visible(" ".join(str(cell).split()))
    text = html.escape(text, quote=False)
    return _MD_SPECIAL.sub(r"\\\1", text) or " "


def markdown(report: Report) -> str:
    lines = [f"# {_md(report.title)}", ""]
    lines += _md_table(("", ""), [(label, value) for label, value in report.facts], header=False)
    for section in report.sections:
        lines += ["", f"## {_md(section.title)}", ""]
        if section.note:
            lines += [f"_{_md(section.note)}_", ""]
        if not section.rows:
            lines.append(_md(section.empty))
            continue
        lines += _md_table(section.columns, section.rows)
    return "\n".join(lines) + "\n"


def _md_table(columns: Sequence[str], rows: Sequence[Sequence[Cell]], *, header: bool = True) -> list[str]:
    head = "| " + " | ".join(_md(c) if header else " " for c in columns) + " |"
    rule = "| " + " | ".join("---" for _ in columns) + " |"
    return [head, rule, *("| " + " | ".join(_md(c) for c in row) + " |" for row in rows)]


_CSS: Final = """
body{font-family:system-ui,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}
th,td{border:1px solid #ccc;padding:.25em .5em;text-align:left;vertical-align:top}
th{background:#f2f2f2}
td{font-family:ui-monospace,monospace;font-size:90%}
.note,.empty{color:#666}
"""


def to_html(report: Report) -> str:
    """A self-contained page: inline CSS, no script, every value escaped."""
    e = html.escape
    buf = io.StringIO()
    buf.write('<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n')
    buf.write(f"<title>{e(report.title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n")
    buf.write(f"<h1>{e(report.title)}</h1>\n<table>\n")
    for label, value in report.facts:
        buf.write(f"<tr><th>{e(label)}</th><td>{e(str(value))}</td></tr>\n")
    buf.write("</table>\n")
    for section in report.sections:
        buf.write(f'<h2 id="{e(section.key)}">{e(section.title)}</h2>\n')
        if section.note:
            buf.write(f'<p class="note">{e(section.note)}</p>\n')
        if not section.rows:
            buf.write(f'<p class="empty">{e(section.empty)}</p>\n')
            continue
        buf.write("<table>\n<tr>" + "".join(f"<th>{e(c)}</th>" for c in section.columns) + "</tr>\n")
        for row in section.rows:
            buf.write("<tr>" + "".join(f"<td>{e(str(c))}</td>" for c in row) + "</tr>\n")
        buf.write("</table>\n")
    buf.write("</body>\n</html>\n")
    return buf.getvalue()
