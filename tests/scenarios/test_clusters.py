"""Scenario A from two clusters into one receiver, interleaved: each cluster's records, diffs and
alerts are those a receiver of that cluster alone writes."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, Final

import pytest

from tests.conftest import alerts_in, captured_bodies, make_config, records_in
from webhook.config import Config
from webhook.runtime import Runtime
from webhook.state.settings import StateConfig

BODIES: Final = captured_bodies()
LAG: Final = 3  # prod-eu sends each batch three batches after the configured cluster
EU: Final = "prod-eu"
# What differs between a cluster's records and the same events' records from a receiver of that
# cluster alone: the cluster's name, and the ids it is part of.
_NAMED: Final = ("id", "cluster", "fingerprint", "records")


def _received(index: int) -> str:
    return f"2026-11-24T14:{20 + index // 60:02d}:{index % 60:02d}.000000Z"


async def _run(config: Config, batches: Sequence[tuple[int, str | None]]) -> None:
    """Ingest each (capture index, cluster) in order, as the /audit handler would."""
    runtime = await Runtime.open(config, replay=True)  # detections on the records' own time
    try:
        for index, cluster in batches:
            await runtime.ingestor.ingest_body(
                BODIES[index].read_bytes(), received_at=_received(index), max_events=10_000, cluster=cluster
            )
    finally:
        await runtime.aclose(drain_timeout_s=10)


def _anonymous(docs: list[dict[str, Any]], *also: str) -> list[dict[str, Any]]:
    return [{k: v for k, v in doc.items() if k not in _NAMED and k not in also} for doc in docs]


def _of(docs: list[dict[str, Any]], cluster: str) -> list[dict[str, Any]]:
    return [doc for doc in docs if doc["cluster"] == cluster]


@pytest.mark.parametrize("state", ["sqlite", "redis"])
async def test_two_clusters_interleaved_each_read_as_alone(
    tmp_path: Path, request: pytest.FixtureRequest, state: str
) -> None:
    """Both clusters send every capture (the same events, so the same objects and audit ids),
    prod-eu lagging behind: no baseline, dedupe key or detection window is shared, so each
    cluster's diffs, findings and alerts equal a single-cluster run's."""
    alone = make_config(tmp_path / "alone")
    both = make_config(tmp_path / "both")
    if state == "redis":
        url = request.getfixturevalue("redis_url")
        alone = replace(
            alone, state=StateConfig(type="redis", url=url, key_prefix=f"t{uuid.uuid4().hex[:8]}")
        )
        both = replace(both, state=StateConfig(type="redis", url=url, key_prefix=f"t{uuid.uuid4().hex[:8]}"))
    indexes = range(len(BODIES))
    interleaved = [
        batch
        for i in range(len(BODIES) + LAG)
        for batch in ((i, None), (i - LAG, EU))
        if 0 <= batch[0] < len(BODIES)
    ]

    await _run(alone, [(i, None) for i in indexes])
    key = alone.in_data_dir(alone.redaction.fingerprint_key_file)
    both.data_dir.mkdir(mode=0o700, parents=True)
    shutil.copy2(key, both.in_data_dir(both.redaction.fingerprint_key_file))  # the same fingerprints
    await _run(both, interleaved)

    single, records = records_in(alone), records_in(both)
    assert any(r["change"] and r["change"]["operations"] for r in single)  # diffs to compare
    assert _of(records, alone.cluster) == single  # the configured cluster's, ids and all
    assert _anonymous(_of(records, EU)) == _anonymous(single)
    assert not {r["id"] for r in _of(records, EU)} & {r["id"] for r in single}
    alerts = alerts_in(both)
    assert alerts_in(alone)  # scenario A fires detections
    wanted = _anonymous(alerts_in(alone), "received_at")  # an alert's received_at is the clock's
    assert _anonymous(_of(alerts, alone.cluster), "received_at") == wanted
    assert _anonymous(_of(alerts, EU), "received_at") == wanted
    eu_ids = {r["id"] for r in _of(records, EU)}
    assert all(set(a["records"]) <= eu_ids for a in _of(alerts, EU))
