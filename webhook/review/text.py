"""How the review's data reads as text (table, Markdown, HTML cells): objects, changes,
examples and data-quality issues, by path and key name, never a value."""

from __future__ import annotations

from typing import Any, Final

from webhook.review.render import stamp

__all__ = [
    "change_text",
    "example_text",
    "examples_text",
    "findings_text",
    "issue_text",
    "object_text",
    "position_text",
]

_MARKS: Final = {"add": "+", "remove": "-", "replace": "~"}
_QUALITY: Final = {
    "dead_letters": "dead letters",
    "baseline_unavailable": "baseline unavailable (no diff, no change findings)",
    "duplicate_records": "duplicate records (counted once)",
    "unreadable_lines": "unreadable lines",
    "records_without_time": "records without a time",
    "unknown_type": "ignored records of type",
}


def object_text(ref: Any) -> str:
    if not isinstance(ref, dict):
        return "-"
    resource = "/".join(p for p in (ref.get("resource"), ref.get("subresource")) if p) or "-"
    name = "/".join(p for p in (ref.get("namespace"), ref.get("name")) if p)
    return f"{resource} {name}".rstrip()


def _path(path: str) -> str:
    """A JSON pointer as a reader says it: annotations and labels by their key."""
    for prefix, what in (("/metadata/annotations/", "annotation "), ("/metadata/labels/", "label ")):
        if path.startswith(prefix):
            return what + path[len(prefix) :].replace("~1", "/").replace("~0", "~")
    return path


def change_text(change: Any) -> str:
    if not isinstance(change, dict):
        return "-"
    parts: list[str] = []
    ops, total = change.get("operations") or [], int(change.get("operations_total") or 0)
    if total:
        touched = [f"{_MARKS.get(op['op'], '?')}{_path(op['path'])}" for op in ops[:3]]
        more = f" (+{total - len(touched)} more)" if total > len(touched) else ""
        parts.append(f"{total} op{'s' if total != 1 else ''}: {', '.join(touched)}{more}")
    elif change.get("baseline") == "none":
        parts.append("no earlier state to diff")
    if change.get("baseline") not in ("none", "state", None):
        parts.append(f"baseline {change['baseline']}")
    keys = ((what, change.get(f"keys_{what}")) for what in ("added", "changed", "removed"))
    parts += [f"keys {what}: {', '.join(names)}" for what, names in keys if names]
    parts += [f"{'+' if d['change'] == 'added' else '-'}{d['line']}" for d in (change.get("dns") or [])[:3]]
    return "; ".join(parts) or "-"


def findings_text(findings: Any) -> str:
    return ", ".join(f["id"] for f in findings or ()) or "-"


def example_text(ex: Any) -> str:
    if not isinstance(ex, dict):
        return "-"
    what = object_text(ex.get("object")) if ex.get("object") else str(ex.get("request_uri") or "-")
    who = f"{ex['actor']} " if ex.get("actor") else ""
    when = f"{stamp(ex['time'])} " if ex.get("time") else ""
    return f"{when}{who}{ex.get('verb') or '-'} {what}"


def examples_text(examples: Any) -> str:
    return "; ".join(example_text(e) for e in examples or ()) or "-"


def position_text(position: Any) -> str:
    return "leaf" if position in (0, None) else f"chain #{position}"


def issue_text(issue: Any) -> str:
    return _QUALITY.get(str(issue), str(issue))
