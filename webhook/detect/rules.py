"""The rule interface: what a detection is, to the engine (webhook/detect/engine.py).

A rule says which record ``type``s it consumes and turns one record (its JSON dict) into
zero or more hits: a grouping key (``labels``), a token to count and the context of the
alert. Windows, thresholds, firing and resolving are the engine's, so a rule for another
record type (``access``) is one more subclass. The audit detections are in ``audit.py`` and
``drift.py``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, ClassVar

from webhook.core.findings import Severity
from webhook.core.net import parse_networks
from webhook.core.patterns import Matcher
from webhook.core.values import as_mapping
from webhook.detect.fields import Record, identity, in_networks, source_ips
from webhook.detect.settings import Exceptions, RuleSettings
from webhook.detect.windows import Window
from webhook.record.alert import AlertActor, AlertObject
from webhook.record.line import AUDIT

__all__ = ["Excepted", "Hit", "Rule"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Hit:
    """One record counted by one rule under one key."""

    labels: Mapping[str, str]
    token: str | None = None  # counted once per window; None: the record id (every record counts)
    namespace: str | None = None
    actor: AlertActor | None = None
    object: AlertObject | None = None
    severity: Severity | None = None  # instead of the rule's (findings keep their own)
    note: str = ""  # what this record says, for the description; never a secret value
    records: tuple[str, ...] = ()  # other records behind the alert, listed before this one's
    change: Mapping[str, Any] | None = None  # see Alert.change
    effect: Mapping[str, Any] | None = None  # see Alert.effect

    def with_token(self, token: str) -> Hit:
        return replace(self, token=token)


class Excepted:
    """True for a record an exception covers: its authenticated caller (not whom it impersonated,
    as in the filter), one of the caller's groups, the object's namespace, or a source IP."""

    def __init__(self, *sets: Exceptions) -> None:
        self.users = Matcher(tuple(u for s in sets for u in s.users))
        self.groups = Matcher(tuple(g for s in sets for g in s.groups))
        self.namespaces = Matcher(tuple(n for s in sets for n in s.namespaces))
        self.networks = parse_networks([c for s in sets for c in s.source_cidrs], where="source_cidrs")
        self._none = not (
            self.users.patterns or self.groups.patterns or self.namespaces.patterns or self.networks
        )

    def __call__(self, record: Record) -> bool:
        if self._none:  # most rules have no exceptions: nothing to read
            return False
        caller = identity(record, effective=False)
        if self.users(caller.get("username")) or self.groups.any_of(caller.get("groups")):
            return True
        if self.namespaces(as_mapping(record.get("object")).get("namespace")):
            return True
        return bool(self.networks) and any(in_networks(ip, self.networks) for ip in source_ips(record))


class Rule:
    """One detection. Subclasses set ``id`` and implement ``match`` and ``text``."""

    id: ClassVar[str]
    consumes: ClassVar[frozenset[str]] = frozenset({AUDIT})

    def __init__(self, settings: RuleSettings, *, max_keys: int, exceptions: Exceptions) -> None:
        self.settings = settings
        self.threshold = settings.threshold
        self.window_s = settings.window_s
        self.severity: Severity = settings.severity
        self.max_keys = settings.max_keys or max_keys
        self._excepted = Excepted(exceptions, settings.exceptions)

    @property
    def cap(self) -> int:
        """Tokens kept per key: enough to decide ``trips``."""
        return self.threshold

    def hits(self, record: Record, now: float) -> list[Hit]:
        if self._excepted(record):
            return []
        return self.match(record, now)

    def match(self, record: Record, now: float) -> list[Hit]:
        """The hits of one record not covered by an exception; ``now`` is the detection time."""
        raise NotImplementedError

    def trips(self, window: Window) -> bool:
        """Given the tokens live in a key's window, should it fire?"""
        return len(window) >= self.threshold

    def text(self, labels: Mapping[str, str], count: int, hit: Hit) -> tuple[str, str]:
        """Summary (one line) and description of the alert; ``hit`` is the latest record's."""
        raise NotImplementedError
