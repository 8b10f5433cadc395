"""CoreDNS: the Corefile of ``kube-system/coredns`` diffed line by line, with the changes to
``forward``, ``rewrite`` and ``hosts`` and to server blocks (stub domains) named."""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from typing import Any, Final, Literal

__all__ = ["DirectiveChange", "DnsChange", "corefile_change", "corefile_of", "is_coredns"]

_DIRECTIVES: Final = frozenset({"forward", "rewrite", "hosts", "proxy"})
_SERVER_BLOCK: Final = re.compile(r"^\s*([^\s{#][^{#]*?)\s*\{\s*$")
_LINES_LIMIT: Final = 200


@dataclass(frozen=True, slots=True, kw_only=True)
class DirectiveChange:
    directive: Literal["forward", "rewrite", "hosts", "stub_domain"]
    change: Literal["added", "removed"]
    server: str | None  # the server block (zone) it is in
    line: str


@dataclass(frozen=True, slots=True, kw_only=True)
class DnsChange:
    added: tuple[str, ...]
    removed: tuple[str, ...]
    directives: tuple[DirectiveChange, ...]


def is_coredns(event: dict[str, Any]) -> bool:
    ref = event.get("objectRef")
    return (
        isinstance(ref, dict)
        and ref.get("resource") == "configmaps"
        and not ref.get("apiGroup")
        and ref.get("namespace") == "kube-system"
        and ref.get("name") == "coredns"
    )


def corefile_of(configmap: object) -> str | None:
    data = configmap.get("data") if isinstance(configmap, dict) else None
    corefile = data.get("Corefile") if isinstance(data, dict) else None
    return corefile if isinstance(corefile, str) else None


def _servers(lines: list[str]) -> list[str | None]:
    """The server block each line is in (``.:53``, ``example.com:53``)."""
    where: list[str | None] = []
    server: str | None = None
    depth = 0
    for line in lines:
        match = _SERVER_BLOCK.match(line)
        if depth == 0 and match:
            server = match.group(1)
        where.append(server)
        depth += line.count("{") - line.count("}")
        if depth <= 0:
            depth = 0
    return where


def _directives(
    lines: list[str], servers: list[str | None], indexes: list[int], change: Literal["added", "removed"]
) -> list[DirectiveChange]:
    found: list[DirectiveChange] = []
    for index in indexes:
        text = lines[index].strip()
        word = text.split(maxsplit=1)[0] if text else ""
        server = servers[index]
        if _SERVER_BLOCK.match(lines[index]) and server is not None and not server.startswith(".:"):
            found.append(DirectiveChange(directive="stub_domain", change=change, server=server, line=text))
        elif word in _DIRECTIVES:
            directive: Literal["forward", "rewrite", "hosts"] = "forward" if word == "proxy" else word  # type: ignore[assignment]
            found.append(DirectiveChange(directive=directive, change=change, server=server, line=text))
    return found


def corefile_change(old: str | None, new: str | None) -> DnsChange | None:
    """None when neither side has a Corefile or nothing changed."""
    if old is None and new is None:
        return None
    before, after = (old or "").splitlines(), (new or "").splitlines()
    removed: list[int] = []
    added: list[int] = []
    matcher = difflib.SequenceMatcher(
        a=[line.strip() for line in before], b=[line.strip() for line in after], autojunk=False
    )
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag in ("replace", "delete"):
            removed.extend(range(i1, i2))
        if tag in ("replace", "insert"):
            added.extend(range(j1, j2))
    removed = [i for i in removed if before[i].strip()]
    added = [j for j in added if after[j].strip()]
    if not removed and not added:
        return None
    directives = _directives(before, _servers(before), removed, "removed") + _directives(
        after, _servers(after), added, "added"
    )
    return DnsChange(
        added=tuple(after[j].strip() for j in added[:_LINES_LIMIT]),
        removed=tuple(before[i].strip() for i in removed[:_LINES_LIMIT]),
        directives=tuple(directives),
    )
