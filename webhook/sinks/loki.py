"""Records pushed to Grafana Loki, one stream per label set, labels from a small fixed menu.

Labels are limited to low-cardinality fields (never user or object names), so the number of
streams stays bounded. Each record's timestamp is its own ``time``, so a resent record is the
same line at the same timestamp in the same stream: an entry Loki treats as a duplicate.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

import orjson

from webhook.record.line import RecordLine
from webhook.record.time import record_time
from webhook.sinks import SinkType
from webhook.sinks.base import Health, SinkSettings
from webhook.sinks.http import (
    URL_PATTERN,
    ClientOptions,
    HttpClient,
    client_properties,
    parse_client,
    raise_for_answer,
)

__all__ = ["LABELS", "LokiOptions", "LokiSink", "labels_of", "timestamp_ns"]

# detection, severity and status are set on alert records only (a handful of values each)
LABELS: Final = (
    "cluster",
    "type",
    "resource",
    "verb",
    "namespace",
    "outcome",
    "detection",
    "severity",
    "status",
)
_DEFAULT_LABELS: Final = ("cluster", "resource", "verb")
_FALLBACK: Final = {"job": "ingress-audit"}  # Loki refuses a stream without labels
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_TOKENS: Final = {"bearer_token_file": "Bearer"}


@dataclass(frozen=True, slots=True, kw_only=True)
class LokiOptions:
    url: str
    labels: tuple[str, ...] = _DEFAULT_LABELS
    static_labels: tuple[tuple[str, str], ...] = (("job", "ingress-audit"),)
    tenant_id: str | None = None
    client: ClientOptions = field(default_factory=ClientOptions)


def _label(record: Mapping[str, Any], name: str) -> str | None:
    obj = record.get("object") or {}
    if name in ("resource", "namespace"):
        value = obj.get(name) if isinstance(obj, dict) else None
        if name == "namespace" and value is None:
            value = record.get("namespace")  # an alert's namespace
    elif name == "outcome":
        code = (record.get("outcome") or {}).get("code")
        value = f"{code // 100}xx" if isinstance(code, int) and not isinstance(code, bool) else None
    else:
        value = record.get(name)
    return value if isinstance(value, str) and value else None


def labels_of(record: Mapping[str, Any], names: Sequence[str], static: Mapping[str, str]) -> dict[str, str]:
    """The stream labels of one record: the static ones, then the chosen record fields (which win)."""
    labels = dict(static)
    for name in names:
        value = _label(record, name)
        if value is not None:
            labels[name] = value
    return labels or dict(_FALLBACK)


def timestamp_ns(record: Mapping[str, Any]) -> int:
    """The record's ``time`` (else ``received_at``) in nanoseconds since the epoch, exactly."""
    when = record_time(record) or datetime.now(UTC)
    return (when - _EPOCH) // timedelta(microseconds=1) * 1000


def push_body(batch: Sequence[RecordLine], names: Sequence[str], static: Mapping[str, str]) -> bytes:
    streams: dict[tuple[tuple[str, str], ...], list[tuple[int, str]]] = {}
    for record in batch:
        key = tuple(sorted(labels_of(record.record, names, static).items()))
        streams.setdefault(key, []).append((timestamp_ns(record.record), record.json.decode("utf-8")))
    return orjson.dumps(
        {
            "streams": [
                {"stream": dict(key), "values": [[str(ns), line] for ns, line in sorted(values, key=_first)]}
                for key, values in streams.items()
            ]
        }
    )


def _first(entry: tuple[int, str]) -> int:
    return entry[0]


class LokiSink:
    def __init__(self, name: str, options: LokiOptions) -> None:
        self.name = name
        self.options = options
        self._client = HttpClient(options.client, sink=name)
        base = options.url.rstrip("/")
        self._push_url = f"{base}/loki/api/v1/push"
        self._ready_url = f"{base}/ready"
        self._headers = {"Content-Type": "application/json"}
        if options.tenant_id is not None:
            self._headers["X-Scope-OrgID"] = options.tenant_id

    async def open(self) -> None:
        await self._client.open()

    async def send(self, batch: Sequence[RecordLine]) -> None:
        if not batch:
            return
        body = push_body(batch, self.options.labels, dict(self.options.static_labels))
        answer = await self._client.request(
            "POST", self._push_url, what="Loki push", body=body, headers=self._headers
        )
        raise_for_answer(answer, "Loki")

    async def health(self) -> Health:
        """``GET /ready``: not ready (503) or unreachable is unhealthy; a proxy's 404 is not."""
        return await self._client.probe(self._ready_url, what="Loki /ready")

    async def aclose(self) -> None:
        await self._client.aclose()


def _parse(raw: Mapping[str, Any]) -> LokiOptions:
    base = LokiOptions(url=raw["url"])
    static = raw.get("static_labels")
    return LokiOptions(
        url=raw["url"],
        labels=tuple(raw.get("labels", base.labels)),
        static_labels=base.static_labels if static is None else tuple(sorted(static.items())),
        tenant_id=raw.get("tenant_id"),
        client=parse_client(raw, sink_type="loki", tokens=_TOKENS),
    )


def _build(settings: SinkSettings, data_dir: Path) -> LokiSink:
    return LokiSink(settings.name, settings.options)


SINK_TYPE = SinkType(
    name="loki",
    description="Grafana Loki push API, streams labelled by a few low-cardinality fields",
    properties={
        "url": {"type": "string", "pattern": URL_PATTERN, "description": "Base URL, e.g. http://loki:3100"},
        "labels": {
            "type": "array",
            "items": {"enum": list(LABELS)},
            "uniqueItems": True,
            "description": "Record fields that become stream labels (outcome: the code class, 2xx).",
        },
        "static_labels": {
            "type": "object",
            "maxProperties": 16,
            "propertyNames": {"pattern": "^[a-zA-Z_][a-zA-Z0-9_]{0,63}$", "not": {"pattern": "^__"}},
            "additionalProperties": {"type": "string", "minLength": 1, "maxLength": 1024},
        },
        "tenant_id": {"type": "string", "minLength": 1, "description": "Sent as X-Scope-OrgID."},
        **client_properties(tokens=_TOKENS),
    },
    required=("url",),
    parse=_parse,
    build=_build,
)
