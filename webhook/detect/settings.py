"""The ``detections:`` config section as frozen objects (docs/detections.md).

It lives here rather than in webhook/config.py so the detection package owns its defaults;
config.py parses the YAML into these and checks what the schema cannot (CIDRs, time zones).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import time
from typing import Final

from webhook.core.findings import Severity

__all__ = [
    "DETECTION_IDS",
    "WEEKDAYS",
    "ChangeWindow",
    "DeploymentIdentities",
    "DetectionsConfig",
    "Exceptions",
    "RuleSettings",
    "default_rules",
    "edge_rules",
]

WEEKDAYS: Final = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass(frozen=True, slots=True, kw_only=True)
class Exceptions:
    """Records whose caller, group, namespace or source address matches are not counted."""

    users: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()
    namespaces: tuple[str, ...] = ()
    source_cidrs: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class RuleSettings:
    """One detection: fires at ``threshold`` counted events within ``window_s`` of each other."""

    enabled: bool = True
    threshold: int = 1
    window_s: float = 300.0
    severity: Severity = "high"
    exceptions: Exceptions = field(default_factory=Exceptions)
    max_keys: int | None = None  # None: detections.max_keys
    namespace_threshold: int | None = None  # secret-enumeration only
    # edge-5xx-spike and change-correlation (docs/detections.md): a window counts when it has
    # at least min_requests requests, a 5xx ratio of at least ratio, and factor times the
    # baseline's (change-correlation: also request rates factor times above or below it)
    min_requests: int | None = None
    ratio: float | None = None
    factor: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class DeploymentIdentities:
    """Who may change ingress objects: the GitOps controller, the CI service account."""

    users: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()
    service_accounts: tuple[str, ...] = ()  # namespace/name, shell patterns allowed

    def __bool__(self) -> bool:
        return bool(self.users or self.groups or self.service_accounts)


@dataclass(frozen=True, slots=True, kw_only=True)
class ChangeWindow:
    """Changes are expected on ``days`` from ``start`` to ``end`` (local time in ``timezone``).

    ``end`` at or before ``start`` means the window runs past midnight into the next day.
    """

    days: tuple[str, ...] = WEEKDAYS[:5]
    start: time = time(9, 0)
    end: time = time(17, 0)
    timezone: str = "UTC"


_SECRET_READERS: Final = ("system:apiserver", "system:kube-controller-manager")


def default_rules() -> dict[str, RuleSettings]:
    """Conservative defaults: a brute force is 10 failures a minute, not 2."""
    return {
        "brute-force-source-ip": RuleSettings(threshold=10, window_s=60.0, severity="high"),
        "brute-force-user": RuleSettings(threshold=10, window_s=60.0, severity="high"),
        "secret-enumeration": RuleSettings(
            threshold=20,
            namespace_threshold=3,
            window_s=300.0,
            severity="high",
            exceptions=Exceptions(users=_SECRET_READERS),
        ),
        "untrusted-source-change": RuleSettings(threshold=1, window_s=300.0, severity="high"),
        "drift-identity": RuleSettings(threshold=1, window_s=300.0, severity="high"),
        "drift-change-window": RuleSettings(threshold=1, window_s=300.0, severity="medium"),
        "ingress-change-burst": RuleSettings(threshold=30, window_s=60.0, severity="medium"),
        "high-severity-finding": RuleSettings(threshold=1, window_s=300.0, severity="high"),
        **edge_rules(),
    }


def edge_rules() -> dict[str, RuleSettings]:
    """The detections over access logs: thresholds per window of the access records."""
    return {
        "edge-brute-force-client": RuleSettings(threshold=20, window_s=60.0, severity="high"),
        "edge-brute-force-host": RuleSettings(threshold=100, window_s=60.0, severity="medium"),
        "edge-request-rate": RuleSettings(threshold=3000, window_s=300.0, severity="medium"),
        "edge-5xx-spike": RuleSettings(
            threshold=1, window_s=300.0, severity="high", min_requests=20, ratio=0.1, factor=3.0
        ),
        "edge-sensitive-access": RuleSettings(threshold=1, window_s=300.0, severity="high"),
        "change-correlation": RuleSettings(
            threshold=1, window_s=900.0, severity="high", min_requests=20, ratio=0.1, factor=3.0
        ),
    }


DETECTION_IDS: Final = tuple(default_rules())


@dataclass(frozen=True, slots=True, kw_only=True)
class DetectionsConfig:
    enabled: bool = True
    max_keys: int = 10_000
    findings_min_severity: Severity = "high"
    exceptions: Exceptions = field(default_factory=Exceptions)
    deployment_identities: DeploymentIdentities = field(default_factory=DeploymentIdentities)
    change_windows: tuple[ChangeWindow, ...] = ()
    rules: Mapping[str, RuleSettings] = field(default_factory=default_rules)
