"""Builders of what CloudWatch Logs and Firehose wrap the captured audit events in.

The events are the captured ones byte for byte (sliced out of the apiserver's EventList bodies),
so that a decoder can be checked to hand them back unchanged.
"""

from __future__ import annotations

import base64
import gzip
from collections.abc import Iterable, Sequence
from functools import cache
from pathlib import Path
from typing import Any, Final

import orjson

from tests.conftest import captured_bodies
from webhook.core.jsonscan import elements, top_members

__all__ = [
    "AUDIT_STREAM",
    "CONTROL_MESSAGE",
    "capture_event_bytes",
    "cwl_message",
    "firehose_body",
    "gz",
    "record",
    "scenario_event_bytes",
]

# AWS's own health check, exactly as CloudWatch Logs sent it (OTel awsfirehosereceiver testdata).
CONTROL_MESSAGE: Final = (
    b'{"messageType":"CONTROL_MESSAGE","owner":"CloudwatchLogs","logGroup":"","logStream":"",'
    b'"subscriptionFilters":[],"logEvents":[{"id":"","timestamp":1741312971934,'
    b'"message":"CWL CONTROL MESSAGE: Checking health of destination Firehose."}]}'
)
AUDIT_STREAM: Final = "kube-apiserver-audit-71976ca11bea5d3083393f7d32dab75b"


@cache
def capture_event_bytes(body: Path) -> tuple[bytes, ...]:
    """Each event of a captured EventList body, as the exact bytes the apiserver sent."""
    data = body.read_bytes()
    for key, start, end in top_members(data):
        if key == "items":
            return tuple(data[s:e] for s, e in elements(data, start, end))
    raise AssertionError(f"{body.name} has no items")


def scenario_event_bytes() -> list[bytes]:
    return [event for body in captured_bodies() for event in capture_event_bytes(body)]


def gz(data: bytes) -> bytes:
    """gzip at level 6, as CloudWatch Logs compresses what it hands to Firehose."""
    return gzip.compress(data, compresslevel=6, mtime=0)


def cwl_message(
    messages: Iterable[bytes | str],
    *,
    cluster: str = "prod-eu",
    log_group: str | None = None,
    stream: str = AUDIT_STREAM,
    first_id: int = 37_000_000_000_000_000_000_000_000_000_000_000_000_000_000_000_000,
    message_type: str = "DATA_MESSAGE",
) -> bytes:
    """A CloudWatch Logs subscription message (keys in the order CloudWatch Logs writes them)."""
    doc = {
        "messageType": message_type,
        "owner": "111111111111",
        "logGroup": log_group if log_group is not None else f"/aws/eks/{cluster}/cluster",
        "logStream": stream,
        "subscriptionFilters": ["ingress-audit"],
        "logEvents": [
            {
                "id": str(first_id + n),
                "timestamp": 1795530040457 + n,
                "message": m.decode() if isinstance(m, bytes) else m,
            }
            for n, m in enumerate(messages)
        ],
    }
    return orjson.dumps(doc)


def record(payload: bytes) -> dict[str, Any]:
    """One Firehose record: ``{"data": base64(payload)}``."""
    return {"data": base64.b64encode(payload).decode()}


def firehose_body(
    records: Sequence[dict[str, Any]],
    *,
    request_id: str = "ed4acda5-034f-9f42-bba1-f29aea6d7d8f",
    timestamp: int = 1795530041599,
) -> bytes:
    """A Firehose HTTP endpoint request body, as Firehose sends it (before Content-Encoding)."""
    return orjson.dumps({"requestId": request_id, "timestamp": timestamp, "records": list(records)})
