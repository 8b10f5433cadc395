"""Records indexed in Elasticsearch or OpenSearch through the ``_bulk`` API.

Every document's ``_id`` is the record id, so a resent batch overwrites (``index``) or is
refused as already there (``create``, 409) instead of duplicating. The bulk answer is read item
by item: throttled or failed items are resent, items refused for good are dead-lettered.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Literal

import orjson
import structlog

from webhook.errors import PartialDeliveryError, SinkError
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

__all__ = ["ElasticsearchOptions", "ElasticsearchSink", "index_name"]

log = structlog.get_logger(__name__)

_TOKENS: Final = {"bearer_token_file": "Bearer", "api_key_file": "ApiKey"}
# Lower case only, as index names must be; date fields limited to numeric strftime codes.
_INDEX_PATTERN: Final = r"^(?![-_+.])(?:[a-z0-9._+-]|%[YmdHjGVuy]|\{type\})+$"
_NOT_INDEX_SAFE: Final = re.compile(r"[^a-z0-9_-]")


@dataclass(frozen=True, slots=True, kw_only=True)
class ElasticsearchOptions:
    url: str
    index: str = "ingress-audit-%Y.%m.%d"
    op_type: Literal["index", "create"] = "index"
    client: ClientOptions = field(default_factory=ClientOptions)


def index_name(pattern: str, record: Mapping[str, Any]) -> str:
    """The index for one record: ``pattern`` with the record's time (UTC) and ``{type}`` filled in."""
    if "{type}" in pattern:
        kind = record.get("type")
        safe = _NOT_INDEX_SAFE.sub("_", kind.lower()) if isinstance(kind, str) else "_"
        pattern = pattern.replace("{type}", safe)
    if "%" not in pattern:
        return pattern
    return (record_time(record) or datetime.now(UTC)).strftime(pattern)


def _item_result(item: Any) -> tuple[int, str]:
    """Status and error type of one bulk answer item (0 when unreadable)."""
    if not isinstance(item, dict) or len(item) != 1:
        return 0, "unreadable item"
    result = next(iter(item.values()))
    if not isinstance(result, dict) or not isinstance(result.get("status"), int):
        return 0, "unreadable item"
    error = result.get("error")
    kind = error.get("type") if isinstance(error, dict) else None
    return result["status"], kind if isinstance(kind, str) else "error"


class ElasticsearchSink:
    def __init__(self, name: str, options: ElasticsearchOptions) -> None:
        self.name = name
        self.options = options
        self._client = HttpClient(options.client, sink=name)
        self._base = options.url.rstrip("/")

    async def open(self) -> None:
        await self._client.open()

    def _body(self, batch: Sequence[RecordLine]) -> bytes:
        parts = []
        op = self.options.op_type
        for record in batch:
            doc = record.record
            action = {op: {"_index": index_name(self.options.index, doc), "_id": doc["id"]}}
            parts.append(orjson.dumps(action) + b"\n" + record.json + b"\n")
        return b"".join(parts)

    async def send(self, batch: Sequence[RecordLine]) -> None:
        if not batch:
            return
        answer = await self._client.request(
            "POST",
            f"{self._base}/_bulk",
            what="bulk request",
            body=self._body(batch),
            headers={"Content-Type": "application/x-ndjson"},
        )
        raise_for_answer(answer, "Elasticsearch")
        try:
            items = orjson.loads(answer.body)["items"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            items = None
        if not isinstance(items, list) or len(items) != len(batch):
            # Resending is harmless: the ids make it idempotent.
            raise SinkError("the bulk answer does not list one item per record")
        retry: list[int] = []
        rejected: dict[int, str] = {}
        for i, item in enumerate(items):
            status, kind = _item_result(item)
            if 200 <= status < 300 or (status == 409 and self.options.op_type == "create"):
                continue  # stored, or (409 on create) stored by an earlier attempt
            if status == 0 or status == 429 or status >= 500:
                retry.append(i)
            else:
                rejected[i] = f"{status} {kind}"
        if retry or rejected:
            raise PartialDeliveryError(
                f"bulk: {len(retry)} item(s) to resend, {len(rejected)} refused",
                retry=retry,
                rejected=rejected,
            )

    async def health(self) -> Health:
        """``GET /``: the cluster answers with our credentials."""
        return await self._client.probe(f"{self._base}/", what="Elasticsearch")

    async def aclose(self) -> None:
        await self._client.aclose()


def _parse(raw: Mapping[str, Any]) -> ElasticsearchOptions:
    base = ElasticsearchOptions(url=raw["url"])
    return ElasticsearchOptions(
        url=raw["url"],
        index=raw.get("index", base.index),
        op_type=raw.get("op_type", base.op_type),
        client=parse_client(raw, sink_type="elasticsearch", tokens=_TOKENS),
    )


def _build(settings: SinkSettings, data_dir: Path) -> ElasticsearchSink:
    return ElasticsearchSink(settings.name, settings.options)


SINK_TYPE = SinkType(
    name="elasticsearch",
    description="Elasticsearch or OpenSearch _bulk API, the record id as document id",
    properties={
        "url": {"type": "string", "pattern": URL_PATTERN, "description": "Base URL, e.g. https://es:9200"},
        "index": {
            "type": "string",
            "pattern": _INDEX_PATTERN,
            "maxLength": 200,
            "description": "Index name; %Y %m %d %H %j %G %V %u %y take the record's time (UTC), "
            "{type} the record's type (audit, alert).",
        },
        "op_type": {"enum": ["index", "create"], "description": "create for data streams"},
        **client_properties(tokens=_TOKENS),
    },
    required=("url",),
    parse=_parse,
    build=_build,
)
