"""The ``state:`` config section, read by ``open_store`` alone; webhook/config.py builds it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

__all__ = ["StateConfig"]


@dataclass(frozen=True, slots=True, kw_only=True)
class StateConfig:
    """Last known (redacted) object per key, for diffs, and the dedupe keys (docs/architecture.md)."""

    type: Literal["memory", "sqlite", "redis"] = "sqlite"
    path: Path = Path("state.sqlite3")
    max_objects: int = 100_000
    max_age_s: float = 30 * 86400.0
    url: str = "redis://127.0.0.1:6379/0"
    password_file: Path | None = None
    key_prefix: str = "ingress-audit"
    timeout_s: float = 2.0
