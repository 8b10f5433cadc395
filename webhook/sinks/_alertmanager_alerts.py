"""Alert records as Alertmanager v2 alerts: labels, annotations, times and the link template.

Alertmanager identifies an alert by its label set, so labels come only from what the firing and
the resolved record of one alert instance share (detection, severity, cluster, namespace and the
grouping ``labels``); everything that varies per record (ids, counts, the link) is an annotation.
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final
from urllib.parse import quote

from webhook.record.time import format_time, parse_time

__all__ = [
    "PLACEHOLDERS",
    "SEVERITIES",
    "AlertShape",
    "BadAlertError",
    "LinkTemplate",
    "alertname",
    "to_alert",
]

SEVERITIES: Final = ("info", "low", "medium", "high", "critical")
PLACEHOLDERS: Final = (
    "id",
    "fingerprint",
    "detection",
    "severity",
    "cluster",
    "namespace",
    "record",
    "starts_at_ms",
    "ends_at_ms",
)
MAX_RECORD_IDS: Final = 20  # in the ``records`` annotation; ``records_total`` has the count
MAX_DIFF_PATHS: Final = 10  # in the ``change`` annotation
_LABEL_NAME: Final = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_NOT_IN_NAME: Final = re.compile(r"[^A-Za-z0-9_]")
_DETECTION: Final = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")
_BAD_ESCAPE: Final = re.compile(r"%(?![0-9A-Fa-f]{2})")  # Alertmanager refuses such a generatorURL
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


class BadAlertError(ValueError):
    """An alert record that cannot become an alert; the message names the field, not the value."""


@dataclass(frozen=True, slots=True)
class LinkTemplate:
    """A URL with ``{placeholder}``s from ``PLACEHOLDERS``, each value percent-encoded."""

    template: str

    def __post_init__(self) -> None:
        """ValueError naming the problem when a placeholder is unknown or malformed."""
        try:
            fields = list(string.Formatter().parse(self.template))
        except ValueError:
            raise ValueError("unbalanced { or }: write {{ and }} for literal braces") from None
        for literal, name, spec, conversion in fields:
            if _BAD_ESCAPE.search(literal):
                raise ValueError("a % must start an escape of two hex digits (%25 for a literal %)")
            if name is None:
                continue
            if name not in PLACEHOLDERS or spec or conversion:
                raise ValueError(f"unknown placeholder {{{name}}}: use one of {', '.join(PLACEHOLDERS)}")

    def render(self, values: Mapping[str, str]) -> str:
        return self.template.format_map({k: quote(values.get(k, ""), safe="") for k in PLACEHOLDERS})


@dataclass(frozen=True, slots=True, kw_only=True)
class AlertShape:
    static_labels: tuple[tuple[str, str], ...] = ()
    link: LinkTemplate | None = None
    generator_url: LinkTemplate | None = None


def alertname(detection: str) -> str:
    """The detection id in CamelCase, as Prometheus names alerts (brute-force-ip: BruteForceIp)."""
    return "".join(part[:1].upper() + part[1:] for part in detection.split("-"))


def label_name(name: str) -> str:
    """A valid Prometheus label name: other characters become ``_``, a leading digit gets one."""
    cleaned = _NOT_IN_NAME.sub("_", name)
    return cleaned if _LABEL_NAME.match(cleaned) else f"_{cleaned}"


def _text(record: Mapping[str, Any], key: str) -> str | None:
    value = record.get(key)
    if isinstance(value, str) and value:
        return value
    if value is not None and not isinstance(value, str):
        raise BadAlertError(f"alert record: {key} must be a string")
    return None


def _required(record: Mapping[str, Any], key: str) -> str:
    value = _text(record, key)
    if value is None:
        raise BadAlertError(f"alert record: {key} must be a non-empty string")
    return value


def _time(record: Mapping[str, Any], key: str) -> datetime | None:
    value = _text(record, key)
    return None if value is None else _parse_time(value, key)


def _parse_time(value: str, key: str) -> datetime:
    when = parse_time(value)
    if when is None:
        raise BadAlertError(f"alert record: {key} is not an RFC 3339 time")
    return when


def _ms(when: datetime) -> str:
    return str((when - _EPOCH) // timedelta(milliseconds=1))


def _number(record: Mapping[str, Any], key: str) -> str:
    value = record.get(key)
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BadAlertError(f"alert record: {key} must be a number")
    return f"{value:g}"


def labels_of(record: Mapping[str, Any], static: Sequence[tuple[str, str]]) -> dict[str, str]:
    """Static labels, then the record's grouping labels, then the fixed ones (which win)."""
    detection = _required(record, "detection")
    if not _DETECTION.match(detection):
        raise BadAlertError("alert record: detection must be a kebab-case id")
    severity = record.get("severity")
    if severity not in SEVERITIES:
        raise BadAlertError(f"alert record: severity must be one of {', '.join(SEVERITIES)}")
    labels = dict(static)
    grouping = record.get("labels") or {}
    if not isinstance(grouping, dict):
        raise BadAlertError("alert record: labels must be an object")
    for name, value in grouping.items():
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise BadAlertError("alert record: labels values must be strings")
        if value != "":
            labels[label_name(str(name))] = str(value)
    labels["alertname"] = alertname(detection)
    labels["severity"] = str(severity)
    labels["cluster"] = _required(record, "cluster")
    namespace = _text(record, "namespace")
    if namespace is not None:
        labels["namespace"] = namespace
    else:
        labels.pop("namespace", None)  # not in the fixed set: must not come from elsewhere either
    return labels


def _actor(actor: Any) -> str:
    if not isinstance(actor, dict):
        return ""
    who = actor.get("username") or "unknown user"
    if actor.get("kind"):
        who += f" ({actor['kind']})"
    ips = [ip for ip in actor.get("source_ips") or () if isinstance(ip, str)]
    return f"{who} from {', '.join(ips)}" if ips else str(who)


def _object(obj: Any) -> str:
    """``resource.group namespace/name``, as kubectl names things (no group: the core API)."""
    if not isinstance(obj, dict):
        return ""
    group, resource = obj.get("api_group") or "", obj.get("resource")
    kind = f"{resource}.{group}" if resource and group else (resource or group)
    where = "/".join(str(p) for p in (obj.get("namespace"), obj.get("name")) if p)
    return " ".join(p for p in (kind, where) if p)


def _change(change: Any) -> str:
    """change-correlation's audit change: verb, object, actor, time, record id, changed paths."""
    if not isinstance(change, dict):
        return ""
    obj = _object(change.get("object"))
    text = f"{change.get('verb') or 'change'} {obj or 'an object'} by {change.get('actor') or 'unknown user'}"
    if isinstance(change.get("time"), str):
        text += f" at {change['time']}"
    if isinstance(change.get("record_id"), str):
        text += f" (record {change['record_id']})"
    diff = change.get("diff")
    paths = [str(op.get("path")) for op in diff if isinstance(op, dict)] if isinstance(diff, list) else []
    if paths:
        total = change.get("diff_total")
        more = total - len(paths[:MAX_DIFF_PATHS]) if isinstance(total, int) else len(paths) - MAX_DIFF_PATHS
        text += "; changed " + ", ".join(paths[:MAX_DIFF_PATHS]) + (f" (+{more} more)" if more > 0 else "")
    return text


def _share(part: Any, whole: Any) -> str:
    return (
        f"{part / whole * 100:.1f} %" if isinstance(part, int) and isinstance(whole, int) and whole else "?"
    )


def _effect(effect: Any) -> str:
    """The access window that shifted, against the host's windows before."""
    if not isinstance(effect, dict):
        return ""
    where = " ".join(
        p
        for p in (
            effect.get("host") or (f"upstream {effect['upstream']}" if effect.get("upstream") else None),
            f"(ingress {effect['ingress']})" if effect.get("ingress") else None,
        )
        if isinstance(p, str)
    )
    requests, errors = effect.get("requests"), effect.get("errors_5xx")
    text = (
        f"{effect.get('kind') or 'shift'} on {where or 'a host'}, window {effect.get('window_start')} to "
        f"{effect.get('window_end')}: {requests} requests, {_share(errors, requests)} 5xx"
    )
    base = effect.get("baseline")
    if isinstance(base, dict):
        text += (
            f"; before: {base.get('requests')} requests in {base.get('windows')} window(s), "
            f"{_share(base.get('errors_5xx'), base.get('requests'))} 5xx"
        )
    return text


def _records(record: Mapping[str, Any]) -> tuple[list[str], str, str]:
    """The record ids, the ``records`` annotation (at most MAX_RECORD_IDS, then "+N more"), the total."""
    ids = [i for i in record.get("records") or () if isinstance(i, str)]
    total = record.get("records_total")
    total = total if isinstance(total, int) and not isinstance(total, bool) else len(ids)
    shown = ids[:MAX_RECORD_IDS]
    text = ", ".join(shown)
    if total > len(shown):
        text += f" (+{total - len(shown)} more)"
    return ids, text, str(total)


def to_alert(record: Mapping[str, Any], shape: AlertShape) -> dict[str, Any]:
    """One Alertmanager v2 ``postableAlert`` for one alert record; BadAlertError if malformed."""
    labels = labels_of(record, shape.static_labels)
    fingerprint = _required(record, "fingerprint")
    status = record.get("status")
    if status not in ("firing", "resolved"):
        raise BadAlertError("alert record: status must be firing or resolved")
    starts_at = _parse_time(_required(record, "starts_at"), "starts_at")
    ends_at = _time(record, "ends_at")
    if status == "resolved" and ends_at is None:
        ends_at = _time(record, "time") or _parse_time(_required(record, "received_at"), "received_at")
    if ends_at is not None and ends_at < starts_at:
        ends_at = starts_at  # Alertmanager refuses an alert that ends before it starts
    ids, record_ids, total = _records(record)
    values = {
        "id": _text(record, "id") or "",
        "fingerprint": fingerprint,
        "detection": str(record["detection"]),
        "severity": labels["severity"],
        "cluster": labels["cluster"],
        "namespace": labels.get("namespace", ""),
        "record": ids[0] if ids else "",
        "starts_at_ms": _ms(starts_at),
        "ends_at_ms": _ms(ends_at or _time(record, "time") or starts_at),
    }
    annotations = {
        "summary": _text(record, "summary") or "",
        "description": _text(record, "description") or "",
        "actor": _actor(record.get("actor")),
        "object": _object(record.get("object")),
        "records": record_ids,
        "records_total": total,
        "change": _change(record.get("change")),
        "effect": _effect(record.get("effect")),
        "count": _number(record, "count"),
        "threshold": _number(record, "threshold"),
        "window_s": _number(record, "window_s"),
        "fingerprint": fingerprint,
        "alert_id": values["id"],
        "link": shape.link.render(values) if shape.link is not None else "",
    }
    alert: dict[str, Any] = {
        "labels": labels,
        "annotations": {k: v for k, v in annotations.items() if v},
        "startsAt": format_time(starts_at),
    }
    if ends_at is not None:
        alert["endsAt"] = format_time(ends_at)
    if shape.generator_url is not None:
        alert["generatorURL"] = shape.generator_url.render(values)
    return alert
