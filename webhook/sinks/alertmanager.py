"""Alert records posted to Prometheus Alertmanager's v2 API, to every peer of an HA group.

Only records of type ``alert`` are sent; every other record is acknowledged and skipped. A
firing alert carries the record's ``ends_at`` as ``endsAt``, so Alertmanager resolves it by
itself when the window passes even if no resolved record arrives. Alertmanager peers do not
share alerts with each other (only silences and who was notified), so clients post to all of
them; a batch counts as delivered once at least one peer has taken it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import orjson
import structlog

from webhook.errors import ConfigError, PartialDeliveryError, SinkError
from webhook.record.line import ALERT, RecordLine
from webhook.sinks import SinkType
from webhook.sinks._alertmanager_alerts import (
    PLACEHOLDERS,
    SEVERITIES,
    AlertShape,
    BadAlertError,
    LinkTemplate,
    to_alert,
)
from webhook.sinks.base import Health, SinkSettings
from webhook.sinks.http import (
    URL_PATTERN,
    ClientOptions,
    HttpClient,
    client_properties,
    parse_client,
    raise_for_answer,
)

__all__ = ["AlertmanagerOptions", "AlertmanagerSink"]

log = structlog.get_logger(__name__)

_TOKENS: Final = {"bearer_token_file": "Bearer"}
_JSON: Final = {"Content-Type": "application/json"}


@dataclass(frozen=True, slots=True, kw_only=True)
class AlertmanagerOptions:
    urls: tuple[str, ...]
    min_severity: str = "info"
    shape: AlertShape = field(default_factory=lambda: AlertShape(static_labels=(("job", "ingress-audit"),)))
    client: ClientOptions = field(default_factory=ClientOptions)


class AlertmanagerSink:
    def __init__(self, name: str, options: AlertmanagerOptions) -> None:
        self.name = name
        self.options = options
        self._client = HttpClient(options.client, sink=name)
        self._bases = tuple(url.rstrip("/") for url in options.urls)
        self._floor = SEVERITIES.index(options.min_severity)
        self._down: set[str] = set()  # peers whose last post failed, logged once until they recover

    async def open(self) -> None:
        await self._client.open()

    def _wanted(self, record: RecordLine) -> bool:
        if record.type != ALERT:
            return False
        severity = record.record.get("severity")
        return severity not in SEVERITIES or SEVERITIES.index(severity) >= self._floor  # bad ones: refused

    async def send(self, batch: Sequence[RecordLine]) -> None:
        alerts: list[tuple[int, dict[str, Any]]] = []
        rejected: dict[int, str] = {}
        for index, record in enumerate(batch):
            if not self._wanted(record):
                continue
            try:
                alerts.append((index, to_alert(record.record, self.options.shape)))
            except BadAlertError as exc:
                rejected[index] = str(exc)
        if alerts:
            try:
                await self._post([alert for _, alert in alerts])
            except SinkError as exc:
                if exc.retryable:
                    if not rejected:
                        raise
                    retry = [i for i, _ in alerts]
                    raise PartialDeliveryError(exc.message, retry=retry, rejected=rejected) from None
                if len(alerts) == 1:
                    rejected[alerts[0][0]] = exc.message
                else:
                    await self._one_by_one(alerts, rejected)  # which of them Alertmanager refuses
        if rejected:  # by index: the skipped records are acknowledged, never dead-lettered
            raise PartialDeliveryError(
                f"{len(rejected)} alert record(s) refused", retry=(), rejected=rejected
            )

    async def _one_by_one(self, alerts: list[tuple[int, dict[str, Any]]], rejected: dict[int, str]) -> None:
        """After a 400 for the batch: each alert alone, so only the refused ones are dead-lettered."""
        retry: list[int] = []
        message = ""
        for index, alert in alerts:
            try:
                await self._post([alert])
            except SinkError as exc:
                if exc.retryable:
                    retry.append(index)
                    message = exc.message
                else:
                    rejected[index] = exc.message
        if retry:
            raise PartialDeliveryError(message, retry=retry, rejected=rejected)

    async def _post(self, alerts: list[dict[str, Any]]) -> None:
        """POST to every peer at once; delivered if one took it, else the most hopeful failure."""
        body = orjson.dumps(alerts)
        results = await asyncio.gather(*(self._post_to(base, body) for base in self._bases))
        failures = [exc for exc in results if exc is not None]
        for base, exc in zip(self._bases, results, strict=True):
            self._note(base, exc)
        if len(failures) < len(results):
            return
        message = "; ".join(exc.message for exc in failures)
        retryable = [exc for exc in failures if exc.retryable]
        if not retryable:
            raise SinkError(message, retryable=False)
        waits = [exc.retry_after_s for exc in retryable if exc.retry_after_s is not None]
        raise SinkError(message, retry_after_s=min(waits) if waits else None)

    async def _post_to(self, base: str, body: bytes) -> SinkError | None:
        what = f"Alertmanager {base}"
        try:
            answer = await self._client.request(
                "POST", f"{base}/api/v2/alerts", what=what, body=body, headers=_JSON
            )
            raise_for_answer(answer, what)
        except SinkError as exc:
            return exc
        return None

    def _note(self, base: str, exc: SinkError | None) -> None:
        if exc is None and base in self._down:
            self._down.discard(base)
            log.info("sink.peer_recovered", sink=self.name, peer=self._bases.index(base))
        elif exc is not None and base not in self._down:
            self._down.add(base)
            log.warning("sink.peer_failed", sink=self.name, peer=self._bases.index(base), reason=exc.message)

    async def health(self) -> Health:
        """``GET /-/ready`` on every peer: healthy while one is, as delivery is."""
        results = await asyncio.gather(
            *(self._client.probe(f"{base}/-/ready", what=f"Alertmanager {base}") for base in self._bases)
        )
        problems = [h.detail for h in results if not h.ok or h.detail]
        if any(h.ok and not h.detail for h in results):
            return Health(True, "; ".join(problems))
        return Health(False, "; ".join(problems))

    async def aclose(self) -> None:
        await self._client.aclose()


def _template(raw: Mapping[str, Any], key: str, problems: list[str]) -> LinkTemplate | None:
    if key not in raw:
        return None
    try:
        return LinkTemplate(raw[key])
    except ValueError as exc:
        problems.append(f"$.sinks[type=alertmanager].{key}: {exc}")
        return None


def _parse(raw: Mapping[str, Any]) -> AlertmanagerOptions:
    base = AlertmanagerOptions(urls=tuple(raw["urls"]))
    problems: list[str] = []
    link, generator = _template(raw, "link_template", problems), _template(raw, "generator_url", problems)
    if problems:
        raise ConfigError("alertmanager sink options are not consistent", tuple(problems))
    static = raw.get("static_labels")
    return AlertmanagerOptions(
        urls=base.urls,
        min_severity=raw.get("min_severity", base.min_severity),
        shape=AlertShape(
            static_labels=base.shape.static_labels if static is None else tuple(sorted(static.items())),
            link=link,
            generator_url=generator,
        ),
        client=parse_client(raw, sink_type="alertmanager", tokens=_TOKENS),
    )


def _build(settings: SinkSettings, data_dir: Path) -> AlertmanagerSink:
    return AlertmanagerSink(settings.name, settings.options)


_TEMPLATE = {
    "type": "string",
    "pattern": r"^https?://\S+$",
    "description": f"Placeholders, each percent-encoded: {', '.join('{' + p + '}' for p in PLACEHOLDERS)}.",
}
_CLIENT = {k: v for k, v in client_properties(tokens=_TOKENS).items() if k != "gzip"}  # Alertmanager: no gzip

SINK_TYPE = SinkType(
    name="alertmanager",
    description="Alert records posted to Prometheus Alertmanager's v2 API, to every peer",
    properties={
        "urls": {
            "type": "array",
            "minItems": 1,
            "maxItems": 16,
            "uniqueItems": True,
            "items": {"type": "string", "pattern": URL_PATTERN},
            "description": "Base URL of each Alertmanager peer, e.g. http://alertmanager:9093",
        },
        "static_labels": {
            "type": "object",
            "maxProperties": 16,
            "propertyNames": {"pattern": "^[a-zA-Z_][a-zA-Z0-9_]{0,63}$", "not": {"pattern": "^__"}},
            "additionalProperties": {"type": "string", "minLength": 1, "maxLength": 1024},
        },
        "link_template": _TEMPLATE,
        "generator_url": _TEMPLATE,
        "min_severity": {"enum": list(SEVERITIES), "description": "Alerts below this are skipped."},
        **_CLIENT,
    },
    required=("urls",),
    parse=_parse,
    build=_build,
)
