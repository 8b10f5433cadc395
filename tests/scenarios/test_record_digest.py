"""Scenario A through the stages: the record lines stay byte for byte what they were.

``DIGEST`` is the SHA-256 of every record line (``\\n``-joined) of the three runs below. It was
produced by running this module's ``record_lines()`` on the code before enrichment moved into
``webhook.enrich.enricher`` (when ``Record.from_event`` and ``Pipeline._build`` each did half
of it). It must change only with a deliberate change to what records hold; then recompute it
with ``record_lines()`` and say why in the commit.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, Final

import orjson

from tests.conftest import captured_bodies
from webhook.config import Config
from webhook.dedupe import Deduper
from webhook.enrich.settings import ActorsConfig, FindingsConfig
from webhook.filter import FilterSpec, Rule
from webhook.pipeline.stages import Pipeline
from webhook.redact.redactor import Redactor
from webhook.runtime import pipeline_settings
from webhook.state.base import StoredObject

DIGEST: Final = "5e092445e8bf0287e514c08a981514475084f957abb89c73089f3238104c907b"
COUNTS: Final = (45, 579, 45)

RECEIVED: Final = "2026-11-24T14:30:00.000000Z"
NOW: Final = datetime(2026, 11, 24, 14, 30, tzinfo=UTC)
KEY: Final = b"record-digest-fingerprint-key-0123"

# Everything kept, a trust list the captures' 127.0.0.1 is outside of, an automation user, one
# finding disabled and one re-graded: the branches the default config leaves untaken.
_CONFIGURED: Final = Config(
    cluster="scenario-a",
    filter=FilterSpec(stages="final", include=(Rule(),)),
    actors=ActorsConfig(
        trusted_cidrs=("10.0.0.0/8", "192.0.2.0/24"),
        automation_users=("system:serviceaccount:*",),
        automation_groups=("ci",),
    ),
    findings=FindingsConfig(disabled=frozenset({"wildcard-host"}), severity={"change-by-human": "high"}),
)


def _run(config: Config, *, available: bool) -> list[bytes]:
    """Every capture in order, one batch each, with the state carried as the ingestor does."""
    pipeline = Pipeline(
        pipeline_settings(config),
        Deduper(max_entries=10_000, ttl_s=3600),
        Redactor(KEY, now=lambda: NOW),
    )
    store: dict[str, StoredObject] = {}
    lines: list[bytes] = []
    for body in captured_bodies():
        items: list[Any] = orjson.loads(body.read_bytes())["items"]
        result = pipeline.prepare(items, received_at=RECEIVED)
        keys = pipeline.lookups(result)
        states = {k: store[k] for k in keys if k in store} if available else {}
        pipeline.finish(result, states=states, available=available)
        assert result.dead_letters == [], body.name
        if available:
            store.update(result.state_updates)
        lines += result.lines
    return lines


def record_lines() -> list[list[bytes]]:
    """The record lines of scenario A under the default config, a configured one, and no state."""
    default = Config(cluster="scenario-a")
    return [
        _run(default, available=True),
        _run(_CONFIGURED, available=True),
        _run(replace(default, cluster="no-state"), available=False),
    ]


def test_scenario_a_records_are_unchanged() -> None:
    """Every record line of every capture is byte-identical to the recorded digest."""
    runs = record_lines()

    assert tuple(len(lines) for lines in runs) == COUNTS
    assert hashlib.sha256(b"\n".join(line for lines in runs for line in lines)).hexdigest() == DIGEST
