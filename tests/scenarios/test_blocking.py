"""Blocking mode: one event per request, many requests at once, as kube-apiserver sends them."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from pathlib import Path
from typing import Any

import orjson

from tests.conftest import Client, captured_bodies, delivered, event_list, make_config
from webhook.events import check_event
from webhook.filter import DEFAULT_FILTER, compile_filter
from webhook.server.app import create_app

KEEP = compile_filter(DEFAULT_FILTER)
CONCURRENCY = 8


def _object_key(event: dict[str, Any]) -> tuple[str, ...]:
    ref = event.get("objectRef", {})
    return (ref.get("resource", ""), ref.get("namespace", ""), ref.get("name", "") or event["auditID"])


async def test_one_event_per_request_concurrently(aiohttp_client: Any, tmp_path: Path) -> None:
    """Every captured event posted alone, 8 at a time: each kept one recorded once, in order per object."""
    config = make_config(tmp_path)
    client: Client = await aiohttp_client(create_app(config))
    per_object: dict[tuple[str, ...], list[dict[str, Any]]] = defaultdict(list)
    for body in captured_bodies()[2:]:  # after the two 400-event start-up batches
        for event in orjson.loads(body.read_bytes())["items"]:
            per_object[_object_key(event)].append(event)
    gate = asyncio.Semaphore(CONCURRENCY)

    async def send_in_order(events: list[dict[str, Any]]) -> None:
        for event in events:  # the apiserver waits for each answer before the API call goes on
            async with gate:
                resp = await client.post(
                    "/audit?timeout=30s", data=event_list(event), headers={"Content-Type": "application/json"}
                )
                assert resp.status == 200

    await asyncio.gather(*(send_in_order(events) for events in per_object.values()))

    expected = {
        key: [e["auditID"] for e in events if KEEP(check_event(e))] for key, events in per_object.items()
    }
    recorded: dict[tuple[str, ...], list[str]] = defaultdict(list)
    for record in await delivered(client, config):
        obj = record["object"] or {}
        key: tuple[str, ...] = (
            obj.get("resource") or "",
            obj.get("namespace") or "",
            obj.get("name") or record["audit_id"],
        )
        recorded[key].append(record["audit_id"])
    assert sum(map(len, expected.values())) >= 40
    for key, audit_ids in expected.items():
        if audit_ids:
            assert recorded.get(_fix_create_key(key, recorded, audit_ids), []) == audit_ids, key


def _fix_create_key(
    key: tuple[str, ...], recorded: dict[tuple[str, ...], list[str]], audit_ids: list[str]
) -> tuple[str, ...]:
    """A create's objectRef has no name until ResponseComplete; the record takes it from the object."""
    if key in recorded:
        return key
    for other, ids in recorded.items():
        if ids == audit_ids:
            return other
    return key
