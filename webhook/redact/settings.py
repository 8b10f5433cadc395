"""The ``redaction:`` config section, owned by the redaction stage; webhook/config.py builds it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["RedactionConfig"]


@dataclass(frozen=True, slots=True, kw_only=True)
class RedactionConfig:
    """Secret values become HMAC-SHA256 fingerprints under this key (see docs/secrets.md)."""

    fingerprint_key_file: Path = Path("fingerprint.key")
    certificate_expiry_warning_days: int = 30
