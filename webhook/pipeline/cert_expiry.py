"""The soonest certificate expiry among the TLS Secrets seen, as one gauge without object labels.

A rule can then say "a certificate expires within N days" (``… - time() < N * 86400``) with
one series per replica, whatever the number of Secrets. Each replica knows the Secrets whose
writes it recorded since it started (with the ``request-response`` audit policy profile,
which shows their certificates); ``min()`` across replicas covers what any of them saw.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Final

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

__all__ = ["CertificateExpiry"]

_MAX_SECRETS: Final = 100_000  # ~100 bytes each; the oldest entry goes first beyond this


class CertificateExpiry(Collector):
    """Not-after of each tracked Secret's ``tls.crt`` chain (its earliest certificate)."""

    def __init__(self, max_secrets: int = _MAX_SECRETS) -> None:
        self._not_after: dict[tuple[str, str], float] = {}
        self._max = max_secrets

    def __len__(self) -> int:
        return len(self._not_after)

    def seen(self, namespace: str, name: str, not_after: list[str]) -> None:
        """The Secret now holds these certificates (RFC 3339 not-after times); none: forget it."""
        key = (namespace, name)
        self._not_after.pop(key, None)  # re-inserted last: the oldest entry is evicted first
        if not not_after:
            return
        if len(self._not_after) >= self._max:
            del self._not_after[next(iter(self._not_after))]
        self._not_after[key] = min(datetime.fromisoformat(t).timestamp() for t in not_after)

    def forget(self, namespace: str, name: str) -> None:
        self._not_after.pop((namespace, name), None)

    def soonest(self) -> float | None:
        return min(self._not_after.values(), default=None)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        soonest = GaugeMetricFamily(
            "ingress_audit_certificate_expiry_soonest_timestamp_seconds",
            "Earliest not-after (Unix time) among the tls.crt certificates of the Secrets seen; "
            "absent while none is known.",
        )
        value = self.soonest()
        if value is not None:
            soonest.add_metric([], value)
        yield soonest
        yield GaugeMetricFamily(
            "ingress_audit_certificate_secrets_tracked",
            "Secrets whose tls.crt expiry is tracked for the gauge above.",
            value=len(self._not_after),
        )
