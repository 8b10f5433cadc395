"""A finding: something a record's reader should look at, with a stable id and a severity.

Every stage that raises findings uses this one type; docs/findings.md lists them all.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

from webhook.core.pickling import plain_pickle

__all__ = ["SEVERITIES", "Finding", "Severity"]

Severity = Literal["info", "low", "medium", "high", "critical"]
SEVERITIES: Final = ("info", "low", "medium", "high", "critical")


@plain_pickle
@dataclass(frozen=True, slots=True, kw_only=True)
class Finding:
    id: str  # kebab-case, stable: dashboards and alerts key on it
    severity: Severity
    message: str  # names keys, hosts and objects, never a secret value
    path: str | None = None
