"""The ``batch.rejected`` log line: every refused request, folded beyond ten a second (per reason
and status) by a ``FoldingLog`` (webhook/log.py), so a wrong token or junk cannot flood the log.
"""

from __future__ import annotations

from dataclasses import dataclass

import structlog

__all__ = ["Rejections", "write_rejected"]

log = structlog.get_logger(__name__)


@dataclass(slots=True)
class Rejections:
    requests: int = 0

    def add(self, other: Rejections) -> None:
        self.requests += other.requests


def write_rejected(key: tuple[str, int], sums: Rejections) -> None:
    """``batch.rejected``: FoldingLog(write_rejected) takes add((reason, status), Rejections(1))."""
    reason, status = key
    log.warning("batch.rejected", reason=reason, status=status, requests=sums.requests)
