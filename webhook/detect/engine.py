"""The detector: records in, alert records out; windows, thresholds, firing and resolving.

For each rule that consumes the record's ``type``, each hit is counted in the window of its key
(its record's cluster and its labels): clusters never share a window, and an alert is about the
cluster of its records. When the rule trips, the key's alert instance fires (one alert record) and from
then on every hit for that key counts into it. The instance is re-emitted (same fingerprint,
new id) when its count grew, at most once per ``window_s`` since its last emission; it resolves
(one more record) once ``window_s`` passes with no hit for the key. Time is passed in by the
caller: wall time when serving, the records' own time in replays.
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any, Final

import orjson
import structlog

from webhook.core.findings import Severity
from webhook.detect.rules import Hit, Rule
from webhook.detect.windows import LruMap, Window
from webhook.metrics import Metrics
from webhook.record.alert import MAX_RECORDS, Alert, Status
from webhook.record.time import format_time
from webhook.record.view import RecordView

__all__ = ["Detector", "alert_id", "fingerprint"]

log = structlog.get_logger(__name__)

_ID_NAMESPACE: Final = uuid.UUID("0c4f3d0e-7b52-4d51-a7a4-3f6b5e9e2d17")


def fingerprint(cluster: str, detection: str, labels: Mapping[str, str]) -> str:
    """Hex, the same for every record of one alert instance: the detection and its labels."""
    text = orjson.dumps([cluster, detection, sorted(labels.items())])
    return hashlib.blake2b(text, digest_size=16).hexdigest()


def alert_id(fingerprint: str, status: Status, anchor: str, emission: int) -> str:
    """A UUIDv5 of the instance, what started it (its first record's id) and which emission."""
    return str(uuid.uuid5(_ID_NAMESPACE, f"{fingerprint}/{status}/{anchor}/{emission}"))


class _Firing:
    __slots__ = (
        "anchor",
        "cluster",
        "count",
        "emissions",
        "emitted_at",
        "emitted_count",
        "fingerprint",
        "hit",
        "key",
        "labels",
        "last_activity",
        "last_record",
        "namespace",
        "records",
        "records_total",
        "severity",
        "source_ips",
        "starts_at",
    )

    def __init__(
        self, *, key: str, cluster: str, fp: str, hit: Hit, severity: Severity, window: Window, now: float
    ) -> None:
        ids = list(dict.fromkeys([*hit.records, *window.record_ids()]))
        self.key = key
        self.cluster = cluster
        self.fingerprint = fp
        self.labels = dict(hit.labels)
        self.hit = hit
        # Fixed for the instance: Alertmanager identifies an alert by its labels, namespace included,
        # so a later hit in another namespace must not turn the re-emitted or resolved record into
        # a different alert.
        self.namespace = hit.namespace
        self.severity = severity
        self.anchor = ids[0]
        self.records = ids[:MAX_RECORDS]
        self.records_total = len(ids)
        self.last_record = ids[-1]
        self.count = len(window)
        self.starts_at = window.first_time() or now
        self.last_activity = now
        self.emissions = 0
        self.emitted_at = now
        self.emitted_count = 0
        self.source_ips: dict[str, None] = dict.fromkeys(hit.actor.source_ips if hit.actor else ())

    def add(self, hit: Hit, record_id: str, now: float) -> None:
        self.count += 1
        self.hit = hit
        self.last_activity = max(self.last_activity, now)
        if record_id != self.last_record:
            self.last_record = record_id
            self.records_total += 1
            if len(self.records) < MAX_RECORDS and record_id not in self.records:
                self.records.append(record_id)
        if hit.actor and len(self.source_ips) < 10:
            self.source_ips.update(dict.fromkeys(hit.actor.source_ips[: 10 - len(self.source_ips)]))


class _Entry:
    __slots__ = ("firing", "window")

    def __init__(self) -> None:
        self.window = Window()
        self.firing: _Firing | None = None


class _RuleState:
    __slots__ = ("firing", "keys", "rule")

    def __init__(self, rule: Rule, on_evict: Callable[[_RuleState, str, _Entry], None]) -> None:
        self.rule = rule
        self.firing: dict[str, _Entry] = {}
        self.keys: LruMap[_Entry] = LruMap(rule.max_keys, lambda key, entry: on_evict(self, key, entry))


def _key(cluster: str, labels: Mapping[str, str]) -> str:
    return orjson.dumps([cluster, sorted(labels.items())]).decode()


class Detector:
    def __init__(
        self,
        rules: Sequence[Rule],
        *,
        cluster: str,
        metrics: Metrics | None = None,
        wall: Callable[[], float] = time.time,
    ) -> None:
        """``cluster``: that of a record that names none."""
        self.cluster = cluster
        self.metrics = metrics
        self._wall = wall
        self._states = [_RuleState(rule, self._evicted) for rule in rules]
        self._by_type: dict[str, list[_RuleState]] = {}
        for state in self._states:
            for record_type in state.rule.consumes:
                self._by_type.setdefault(record_type, []).append(state)
        self._spill: list[Alert] = []  # resolutions of evicted instances, returned with the next call
        self._now = 0.0
        self._field_names: dict[type, tuple[str, ...]] = {}  # record class -> its fields, for views

    def _view(self, record: Any) -> Mapping[str, Any]:
        if dataclasses.is_dataclass(record) and not isinstance(record, type):
            cls = type(record)
            names = self._field_names.get(cls)
            if names is None:
                names = self._field_names[cls] = tuple(f.name for f in dataclasses.fields(cls))
            return RecordView(record, names)
        doc: Mapping[str, Any] = orjson.loads(orjson.dumps(record))
        return doc

    @property
    def rules(self) -> list[Rule]:
        return [state.rule for state in self._states]

    @property
    def consumes(self) -> frozenset[str]:
        return frozenset(self._by_type)

    def observe(self, record: Mapping[str, Any] | Any, now: float) -> list[Alert]:
        """Count one record (its JSON dict, or a dataclass such as ``Record``) at time ``now``."""
        doc: Mapping[str, Any] = record if isinstance(record, Mapping) else self._view(record)
        states = self._by_type.get(doc.get("type"), ())  # type: ignore[arg-type]
        out: list[Alert] = []
        if not states:
            return out
        record_id = str(doc.get("id"))
        cluster = doc.get("cluster")
        if not isinstance(cluster, str) or not cluster:
            cluster = self.cluster
        self._now = now
        for state in states:
            try:
                hits = list(state.rule.hits(doc, now))
            except Exception as exc:  # noqa: BLE001 - one odd record must not stop the others
                self._failed(state.rule, exc)
                continue
            for hit in hits:
                self._count(state, cluster, hit, record_id, now, out)
        if self._spill:
            out[:0], self._spill = self._spill, []
        return out

    def tick(self, now: float) -> list[Alert]:
        """Resolve the instances quiet for a window, re-emit grown ones, forget idle keys."""
        out: list[Alert] = []
        for state in self._states:
            rule = state.rule
            for key, entry in list(state.firing.items()):
                firing = entry.firing
                assert firing is not None  # noqa: S101 - firing holds firing entries only
                end = firing.last_activity + rule.window_s
                if now >= end:
                    out.append(self._emit(state, firing, "resolved", now, ends_at=end))
                    del state.firing[key]
                    state.keys.pop(key)
                elif self._due(rule, firing, now):
                    out.append(self._emit(state, firing, "firing", now))
            horizon = now - rule.window_s
            state.keys.prune(lambda e, h=horizon: e.firing is None and e.window.last <= h)  # type: ignore[misc]
            if self.metrics is not None:
                self.metrics.detection_keys.labels(detection=rule.id).set(len(state.keys))
        return out

    def flush(self) -> list[Alert]:
        """Resolve every firing instance at its own end (a replay's input is over)."""
        out: list[Alert] = []
        for state in self._states:
            for entry in state.firing.values():
                firing = entry.firing
                assert firing is not None  # noqa: S101
                end = firing.last_activity + state.rule.window_s
                out.append(self._emit(state, firing, "resolved", end, ends_at=end))
                state.keys.pop(firing.key)
            state.firing.clear()
        return out

    def _count(
        self, state: _RuleState, cluster: str, hit: Hit, record_id: str, now: float, out: list[Alert]
    ) -> None:
        rule = state.rule
        key = _key(cluster, hit.labels)
        entry = state.keys.touch(key, _Entry)
        firing = entry.firing
        if firing is not None and now >= firing.last_activity + rule.window_s:
            # quiet for a window, and no tick has resolved it yet: resolve before counting anew
            end = firing.last_activity + rule.window_s
            out.append(self._emit(state, firing, "resolved", now, ends_at=end))
            del state.firing[key]
            entry.firing = firing = None
        if firing is not None:
            firing.add(hit, record_id, now)
            if self._due(rule, firing, now):
                out.append(self._emit(state, firing, "firing", now))
            return
        window = entry.window
        window.expire(now, rule.window_s)
        window.add(hit.token or record_id, now, record_id, cap=rule.cap)
        if not rule.trips(window):
            return
        firing = _Firing(
            key=key,
            cluster=cluster,
            fp=fingerprint(cluster, rule.id, hit.labels),
            hit=hit,
            severity=hit.severity or rule.severity,
            window=window,
            now=now,
        )
        window.clear()
        entry.firing = firing
        state.firing[key] = entry
        out.append(self._emit(state, firing, "firing", now))

    def _failed(self, rule: Rule, exc: Exception) -> None:
        """Count a record the rule raised on; log its type only (a message can quote a value)."""
        log.error("detection.failed", detection=rule.id, error=type(exc).__name__)
        if self.metrics is not None:
            self.metrics.detection_errors.labels(detection=rule.id).inc()

    @staticmethod
    def _due(rule: Rule, firing: _Firing, now: float) -> bool:
        return firing.count > firing.emitted_count and now >= firing.emitted_at + rule.window_s

    def _evicted(self, state: _RuleState, key: str, entry: _Entry) -> None:
        if self.metrics is not None:
            self.metrics.detection_evictions.labels(detection=state.rule.id).inc()
        firing = entry.firing
        if firing is not None:
            del state.firing[key]
            self._spill.append(self._emit(state, firing, "resolved", self._now, ends_at=self._now))

    def _emit(
        self, state: _RuleState, firing: _Firing, status: Status, now: float, *, ends_at: float | None = None
    ) -> Alert:
        rule = state.rule
        hit = firing.hit
        summary, description = rule.text(firing.labels, firing.count, hit)
        if status == "firing":
            ident = alert_id(firing.fingerprint, status, firing.anchor, firing.emissions)
            firing.emissions += 1
            firing.emitted_at = now
            firing.emitted_count = firing.count
            ends_at = firing.last_activity + rule.window_s
        else:
            ident = alert_id(firing.fingerprint, status, firing.anchor, 0)
        actor = hit.actor
        if actor is not None:
            actor = replace(actor, source_ips=tuple(firing.source_ips))
        if self.metrics is not None:
            self.metrics.alerts.labels(detection=rule.id, severity=firing.severity, status=status).inc()
        return Alert(
            id=ident,
            fingerprint=firing.fingerprint,
            cluster=firing.cluster,
            status=status,
            detection=rule.id,
            severity=firing.severity,
            summary=summary,
            description=description,
            labels=dict(firing.labels),
            namespace=firing.namespace,
            actor=actor,
            object=hit.object,
            count=firing.count,
            threshold=rule.threshold,
            window_s=rule.window_s,
            starts_at=format_time(firing.starts_at),
            ends_at=format_time(ends_at) if ends_at is not None else None,
            time=format_time(now),
            received_at=format_time(self._wall()),
            records=tuple(firing.records),
            records_total=firing.records_total,
            change=hit.change,
            effect=hit.effect,
        )
