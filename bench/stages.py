"""Where the time goes per event, stage by stage, in-process (no HTTP, no writes).

``python -m bench.stages`` splits the generated events into unmatched, matched (ordinary size)
and very large list responses, posts nothing, and times per event: decoding (``orjson`` via
``decode_event_list``), the shallow check, the compiled filter, the whole ``Pipeline.process``
(check, filter, digest, dedupe lookup, redaction, record) as the server runs it, serializing
the records (``to_json``), and freeing the decoded batch. Medians of five passes.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import orjson

from bench.generate import Pool, build_pool
from bench.report import table
from webhook.config import Config
from webhook.events import check_event, decode_event_list
from webhook.filter import DEFAULT_FILTER, compile_filter
from webhook.record.line import to_json
from webhook.runtime import Runtime

__all__ = ["main", "stage_costs"]

_RECEIVED_AT = "2026-11-24T14:30:00.000000Z"
_API_VERSION = "audit.k8s.io/v1"


def _split(pool: Pool) -> dict[str, list[bytes]]:
    """Bodies of up to 400 events of one kind each, stamped so that no two events repeat."""
    keep = compile_filter(DEFAULT_FILTER)
    kinds: dict[str, list[dict[str, Any]]] = {"unmatched": [], "matched": [], "large list": []}
    for n, body in enumerate(pool.singles):
        event = orjson.loads(body.render(n))["items"][0]
        kind = "unmatched" if not keep(event) else "large list" if body.size > 200_000 else "matched"
        kinds[kind].append(event)
    bodies: dict[str, list[bytes]] = {}
    for kind, events in kinds.items():
        size = 400 if kind == "unmatched" else 20 if kind == "matched" else 1
        bodies[kind] = [
            orjson.dumps(
                {"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "items": events[i : i + size]}
            )
            for i in range(0, len(events), size)
        ]
    return bodies


def _time_per_event(bodies: Sequence[bytes], run: Callable[[list[Any]], object], repeats: int) -> float:
    """Median over ``repeats`` passes of the µs per event spent in ``run(items)``; decoding excluded."""
    runs = []
    for _ in range(repeats):
        spent = 0.0
        events = 0
        for body in bodies:
            items = decode_event_list(body)
            started = time.perf_counter()
            run(items)
            spent += time.perf_counter() - started
            events += len(items)
        runs.append(spent / events * 1e6)
    return statistics.median(runs)


def _decode_and_free(bodies: Sequence[bytes], repeats: int) -> tuple[float, float]:
    decode, free = [], []
    for _ in range(repeats):
        spent_decode = spent_free = 0.0
        events = 0
        for body in bodies:
            started = time.perf_counter()
            items = decode_event_list(body)
            decoded = time.perf_counter()
            events += len(items)
            del items
            spent_free += time.perf_counter() - decoded
            spent_decode += decoded - started
        decode.append(spent_decode / events * 1e6)
        free.append(spent_free / events * 1e6)
    return statistics.median(decode), statistics.median(free)


async def stage_costs(pool: Pool, *, repeats: int = 5) -> dict[str, dict[str, float]]:
    """µs per event, per stage and kind of event."""
    keep = compile_filter(DEFAULT_FILTER)
    costs: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="ingress-audit-stages-") as tmp:
        runtime = await Runtime.open(Config(data_dir=Path(tmp)))
        try:
            pipeline = runtime.ingestor.pipeline
            for kind, bodies in _split(pool).items():
                if not bodies:
                    continue

                def process(items: list[Any]) -> object:
                    # The dedupe window fills only once a write succeeds (AuditIngestor.ingest), so
                    # passing the same events again builds every record again.
                    return pipeline.process(items, received_at=_RECEIVED_AT)

                decode, free = _decode_and_free(bodies, repeats)
                records = [
                    r
                    for body in bodies
                    for r in pipeline.process(decode_event_list(body), received_at=_RECEIVED_AT).records
                ]
                started = time.perf_counter()
                for record in records:
                    to_json(record)
                serialize = (
                    (time.perf_counter() - started) / sum(len(decode_event_list(b)) for b in bodies) * 1e6
                )
                costs[kind] = {
                    "decode (orjson)": decode,
                    "free the decoded batch": free,
                    "check_event": _time_per_event(
                        bodies, lambda items: [check_event(e) for e in items], repeats
                    ),
                    "filter": _time_per_event(bodies, lambda items: [keep(e) for e in items], repeats),
                    "Pipeline.process (all of it)": _time_per_event(bodies, process, repeats),
                    "to_json of the records": serialize,
                }
        finally:
            await runtime.aclose()
    return costs


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.stages", description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, default=20261124)
    parser.add_argument("--batches", type=int, default=48)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    pool = build_pool(seed=args.seed, batches=args.batches)
    gc.collect()
    costs = asyncio.run(stage_costs(pool, repeats=args.repeats))
    kinds = list(costs)
    stages = list(next(iter(costs.values())))
    rows = [[stage, *(f"{costs[k][stage]:,.2f}" for k in kinds)] for stage in stages]
    sys.stdout.write("µs per event (median of passes); Pipeline.process excludes decoding and freeing\n")
    sys.stdout.write(table(["stage", *kinds], rows) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
