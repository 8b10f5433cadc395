"""Records sent to a Splunk HTTP Event Collector, optionally confirmed by indexer acknowledgement.

HEC answers with a status ``code`` in its JSON body; anything but 0 is a failure, even with
HTTP 200. Without acknowledgement a 200 means HEC took the events, not that they were indexed;
with it, a batch counts as delivered only once ``/services/collector/ack`` says so.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

import orjson
import structlog

from webhook.errors import PartialDeliveryError, SinkError
from webhook.record.line import RecordLine
from webhook.record.time import record_time
from webhook.sinks import SinkType
from webhook.sinks.base import Health, SinkSettings
from webhook.sinks.http import (
    URL_PATTERN,
    Answer,
    ClientOptions,
    HttpClient,
    client_properties,
    parse_client,
    raise_for_answer,
)

__all__ = ["HecOptions", "SplunkHecSink", "event_time"]

log = structlog.get_logger(__name__)

_TOKENS: Final = {"token_file": "Splunk"}
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
# Splunk's documented HEC status codes (Getting Data In: "Format events for HTTP Event Collector").
_CODES: Final = {
    1: "token disabled",
    2: "token is required",
    3: "invalid authorization",
    4: "invalid token",
    5: "no data",
    6: "invalid data format",
    7: "incorrect index",
    8: "internal server error",
    9: "server is busy",
    10: "data channel is missing",
    11: "invalid data channel",
    12: "event field is required",
    13: "event field cannot be blank",
    14: "ACK is disabled",
    15: "error in handling indexed fields",
    16: "query string authorization is not enabled",
    18: "HEC is unhealthy, queues are full",
    19: "HEC is unhealthy, ack service unavailable",
    20: "HEC is unhealthy, queues are full, ack service unavailable",
}
_RETRY_CODES: Final = frozenset({1, 2, 3, 4, 8, 9, 18, 19, 20})  # 1-4: credentials, re-read first
_EVENT_CODES: Final = frozenset({6, 12, 13, 15})  # may name the one bad event


@dataclass(frozen=True, slots=True, kw_only=True)
class HecOptions:
    url: str  # the token: client.auth, from token_file
    index: str | None = None
    source: str = "ingress-audit"
    sourcetype: str = "ingress-audit"
    host: str | None = None  # default: the record's cluster
    ack: bool = False
    ack_timeout_s: float = 60.0
    ack_poll_interval_s: float = 1.0
    client: ClientOptions = field(default_factory=ClientOptions)


def event_time(record: Mapping[str, Any]) -> str:
    """Seconds since the epoch with microseconds, as JSON number text, from ``time`` or ``received_at``."""
    micros = (record_time(record) or datetime.now(UTC)) - _EPOCH  # now: a record with no time
    seconds, rest = divmod(micros // timedelta(microseconds=1), 1_000_000)
    return f"{seconds}.{rest:06d}"


def _status(answer: Answer) -> tuple[int | None, dict[str, Any]]:
    try:
        doc = orjson.loads(answer.body)
    except orjson.JSONDecodeError:
        return None, {}
    if not isinstance(doc, dict):
        return None, {}
    code = doc.get("code")
    return (code if isinstance(code, int) else None), doc


class SplunkHecSink:
    def __init__(self, name: str, options: HecOptions) -> None:
        self.name = name
        self.options = options
        self._client = HttpClient(options.client, sink=name)
        base = options.url.rstrip("/")
        self._event_url = f"{base}/services/collector/event"
        self._ack_url = f"{base}/services/collector/ack"
        self._health_url = f"{base}/services/collector/health"
        self._headers: dict[str, str] = {"Content-Type": "application/json"}
        meta = {"source": options.source, "sourcetype": options.sourcetype}
        if options.index is not None:
            meta["index"] = options.index
        self._meta = orjson.dumps(meta)[1:-1]

    async def open(self) -> None:
        await self._client.open()
        if self.options.ack:
            self._headers["X-Splunk-Request-Channel"] = str(uuid.uuid4())

    def _event(self, record: RecordLine) -> bytes:
        host = self.options.host or record.record.get("cluster") or "ingress-audit"
        head = b'{"time":' + event_time(record.record).encode() + b',"host":' + orjson.dumps(host)
        return head + b"," + self._meta + b',"event":' + record.json + b"}"

    async def send(self, batch: Sequence[RecordLine]) -> None:
        if not batch:
            return
        body = b"\n".join(self._event(record) for record in batch)
        answer = await self._client.request(
            "POST", self._event_url, what="HEC event request", body=body, headers=self._headers
        )
        code, doc = _status(answer)
        self._raise_for_code(answer, code, doc, len(batch))
        if not self.options.ack:
            return
        ack_id = doc.get("ackId")
        if not isinstance(ack_id, int):
            log.warning("sink.ack_missing", sink=self.name)  # the token has acknowledgement off
            return
        await self._await_ack(ack_id)

    def _raise_for_code(self, answer: Answer, code: int | None, doc: Mapping[str, Any], events: int) -> None:
        if code is None or code == 0:
            raise_for_answer(answer, "HEC")  # no HEC status: judged by the HTTP status alone
            return
        meaning = f"HEC code {code} ({_CODES.get(code, 'undocumented')})"
        bad = doc.get("invalid-event-number")
        if code in _EVENT_CODES and isinstance(bad, int) and 0 <= bad < events:
            # HEC stops at the bad event; the ones before it may be indexed already (resent: at least once).
            retry = [i for i in range(events) if i != bad]
            raise PartialDeliveryError(meaning, retry=retry, rejected={bad: meaning})
        if code in _RETRY_CODES or (code not in _CODES and answer.status >= 500):
            raise SinkError(meaning, retry_after_s=answer.retry_after_s)
        raise SinkError(meaning, retryable=False)

    async def _await_ack(self, ack_id: int) -> None:
        deadline = time.monotonic() + self.options.ack_timeout_s
        body = orjson.dumps({"acks": [ack_id]})
        while True:
            answer = await self._client.request(
                "POST", self._ack_url, what="HEC ack request", body=body, headers=self._headers
            )
            code, doc = _status(answer)
            self._raise_for_code(answer, code, doc, 0)
            acks = doc.get("acks")
            if isinstance(acks, dict) and acks.get(str(ack_id)) is True:
                return
            if time.monotonic() + self.options.ack_poll_interval_s > deadline:
                raise SinkError(f"HEC did not acknowledge within {self.options.ack_timeout_s:g}s")
            await asyncio.sleep(self.options.ack_poll_interval_s)

    async def health(self) -> Health:
        """``GET /services/collector/health``: 503 (queues full, ack service down) is unhealthy."""
        return await self._client.probe(self._health_url, what="HEC health")

    async def aclose(self) -> None:
        await self._client.aclose()


def _parse(raw: Mapping[str, Any]) -> HecOptions:
    base = HecOptions(url=raw["url"])
    return HecOptions(
        url=raw["url"],
        index=raw.get("index"),
        source=raw.get("source", base.source),
        sourcetype=raw.get("sourcetype", base.sourcetype),
        host=raw.get("host"),
        ack=raw.get("ack", base.ack),
        ack_timeout_s=raw.get("ack_timeout_s", base.ack_timeout_s),
        ack_poll_interval_s=raw.get("ack_poll_interval_s", base.ack_poll_interval_s),
        client=parse_client(raw, sink_type="splunk_hec", tokens=_TOKENS),
    )


def _build(settings: SinkSettings, data_dir: Path) -> SplunkHecSink:
    return SplunkHecSink(settings.name, settings.options)


_NAME = {"type": "string", "minLength": 1, "maxLength": 256}

SINK_TYPE = SinkType(
    name="splunk_hec",
    description="Splunk HTTP Event Collector, with optional indexer acknowledgement",
    properties={
        "url": {
            "type": "string",
            "pattern": URL_PATTERN,
            "description": "Base URL, e.g. https://splunk:8088",
        },
        "index": _NAME,
        "source": _NAME,
        "sourcetype": _NAME,
        "host": {**_NAME, "description": "Default: the record's cluster."},
        "ack": {"type": "boolean", "description": "Wait for indexer acknowledgement (token must allow it)."},
        "ack_timeout_s": {"type": "number", "exclusiveMinimum": 0, "maximum": 3600},
        "ack_poll_interval_s": {"type": "number", "exclusiveMinimum": 0, "maximum": 60},
        **client_properties(tokens=_TOKENS, basic=False),
    },
    required=("url", "token_file"),
    parse=_parse,
    build=_build,
)
