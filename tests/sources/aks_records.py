"""AKS diagnostic records built from the captured events, written the way Azure writes them.

Azure Monitor upper-cases ``resourceId``, escapes ``/`` as ``\\/`` in its JSON, and puts the
Event, as the apiserver's log backend wrote it (``kind`` and ``apiVersion`` first), in
``properties.log`` as a JSON string. Blobs hold one record per line; Event Hub messages one
``{"records": [...]}`` envelope. The record's ``time`` is the event's own stage time, so
nothing here depends on today's date.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Final

import orjson

from tests.conftest import capture_events, captured_bodies
from webhook.sources.aks import LOG_CUT_BYTES

__all__ = [
    "BLOB_CONTAINER",
    "SUBSCRIPTION",
    "aks_record",
    "big_event",
    "blob_lines",
    "blob_name",
    "cut_log",
    "envelope",
    "event_log",
    "klog_record",
    "record_line",
    "resource_id",
    "scenario_events",
]

SUBSCRIPTION: Final = "0f3c5a1e-8d2b-4c6f-9a7e-1b2c3d4e5f60"
BLOB_CONTAINER: Final = "insights-logs-kube-audit"
_OPERATION: Final = "Microsoft.ContainerService/managedClusters/diagnosticLogs/Read"


def scenario_events(bodies: Sequence[Path] | None = None) -> list[dict[str, Any]]:
    """Every event of the captures (scenario A), in the order the apiserver sent them."""
    return [event for body in bodies or captured_bodies() for event in capture_events(body.name)]


def resource_id(cluster: str, group: str = "rg-aks") -> str:
    return (
        f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{group}/providers/"
        f"Microsoft.ContainerService/managedClusters/{cluster}"
    ).upper()


def event_log(event: dict[str, Any]) -> str:
    """The Event as the log backend writes it: ``properties.log``."""
    return orjson.dumps({"kind": "Event", "apiVersion": "audit.k8s.io/v1", **event}).decode()


def aks_record(
    event: dict[str, Any] | str,
    *,
    cluster: str = "prod-eu",
    category: str = "kube-audit",
    group: str = "rg-aks",
) -> dict[str, Any]:
    """One record, keys in the order Azure writes them; ``event`` may be a ready log string."""
    log = event if isinstance(event, str) else event_log(event)
    when = "2026-11-24T14:20:20.303555Z"
    if isinstance(event, dict):
        when = event.get("stageTimestamp") or event.get("requestReceivedTimestamp") or when
    return {
        "category": category,
        "operationName": _OPERATION,
        "properties": {
            "log": log,
            "containerID": "0d1c2b3a4f5e6d7c8b9a0f1e2d3c4b5a6f7e8d9c0b1a2f3e4d5c6b7a8f9e0d1c",
            "stream": "stdout",
            "pod": "kube-apiserver-869d7bb754-kkg69",
        },
        "resourceId": resource_id(cluster, group),
        "serviceBuild": "na",
        "time": when,
    }


def klog_record(cluster: str = "prod-eu", category: str = "kube-apiserver") -> dict[str, Any]:
    """A record of another category: klog text in ``properties.log``, not JSON."""
    return aks_record(
        'I1124 14:20:20.303555       1 controller.go:616] quota admission added evaluator for: "leases"',
        cluster=cluster,
        category=category,
    )


def record_line(record: dict[str, Any], *, spaced: bool = False) -> bytes:
    """The record on one line, ``/`` escaped as Azure does (``spaced``: ``", "`` and ``": "``)."""
    text = json.dumps(record, ensure_ascii=False, separators=(", ", ": ") if spaced else (",", ":"))
    return text.replace("/", "\\/").encode()


def blob_lines(records: Iterable[dict[str, Any]], *, spaced: bool = False) -> bytes:
    """A ``PT1H.json`` blob: one record per line, each ending with a newline."""
    return b"".join(record_line(r, spaced=spaced) + b"\n" for r in records)


def envelope(records: Iterable[dict[str, Any]], *, indent: bool = False) -> bytes:
    """An Event Hub message: ``{"records": [...]}``, compact or indented."""
    doc = {"records": list(records)}
    text = json.dumps(doc, indent=2) if indent else json.dumps(doc, separators=(",", ":"))
    return text.replace("/", "\\/").encode()


def blob_name(cluster: str, hour: str, group: str = "rg-aks") -> str:
    """The blob of ``cluster`` for ``hour`` (``YYYY-MM-DDTHH``), as diagnostic settings name it."""
    day, hh = hour.split("T")
    y, m, d = day.split("-")
    return f"resourceId={resource_id(cluster, group)}/y={y}/m={m}/d={d}/h={hh}/m=00/PT1H.json"


def big_event(min_bytes: int = 3 * LOG_CUT_BYTES) -> dict[str, Any]:
    """A captured RequestResponse event with a responseObject grown past ``min_bytes``."""
    event = copy.deepcopy(
        max(scenario_events(), key=lambda e: len(orjson.dumps(e)) if "responseObject" in e else 0)
    )
    labels = event["responseObject"].setdefault("metadata", {}).setdefault("labels", {})
    for i in range(min_bytes // 40):
        labels[f"example.test/label-{i:05d}"] = f"value-{i:05d}"
    return event


def cut_log(event: dict[str, Any], at: int = LOG_CUT_BYTES) -> str:
    """``properties.log`` as AKS leaves it: the first ``at`` bytes of the Event's text."""
    return event_log(event).encode()[:at].decode("utf-8", "ignore")
