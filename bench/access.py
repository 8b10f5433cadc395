"""``python -m bench --mode access``: access lines parsed and aggregated per core, and memory.

In-process, one core, default ``access`` settings (format nginx-ingress, 60 s windows, 1000
client counters): ingress-nginx lines from a seed (90 % 2xx, 4 % 404, 3 % 401, 1 % 403, 2 %
502; 8 ingresses; request times spread over four windows), each client address seen twice,
generated in chunks outside the timed part. Lines/s is lines over the CPU time of
``AccessPipeline.process`` and ``flush``; RSS is sampled as the distinct clients grow, to
show that memory stays flat (the client counters are bounded by ``max_clients``).
"""

from __future__ import annotations

import random
import resource
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final

from webhook.access.hosts import HostIndex
from webhook.access.pipeline import AccessPipeline
from webhook.access.service import build_access_parser
from webhook.access.settings import AccessConfig
from webhook.state.base import StoredObject

__all__ = ["ACCESS_TARGET", "AccessResult", "run_access"]

ACCESS_TARGET: Final = 100_000  # lines/s per core: parsed and aggregated
CHUNK: Final = 2000
_START: Final = datetime(2026, 11, 25, 21, 0, tzinfo=UTC).timestamp()
_INGRESSES: Final = 8
_STATUSES: Final = (200,) * 90 + (404,) * 4 + (401,) * 3 + (403,) + (502,) * 2


@dataclass(slots=True)
class AccessResult:
    lines: int
    clients: int
    cpu_s: float
    records: int
    summaries: int
    rss_mb: list[tuple[int, float]] = field(default_factory=list)  # (lines done, RSS MB)

    @property
    def lines_per_s(self) -> float:
        return self.lines / self.cpu_s if self.cpu_s else 0.0


def _rss_mb() -> float:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _index() -> HostIndex:
    index = HostIndex()
    objects = {}
    for n in range(_INGRESSES):
        backend = {"service": {"name": f"svc-{n}", "port": {"number": 80}}}
        spec = {
            "rules": [
                {"host": f"app-{n}.example.com", "http": {"paths": [{"path": "/", "backend": backend}]}}
            ]
        }
        obj = {"kind": "Ingress", "metadata": {"name": f"app-{n}", "namespace": "prod"}, "spec": spec}
        objects[f"networking.k8s.io/ingresses/prod/app-{n}"] = StoredObject(
            object=obj, resource_version="1", audit_id="bench", time=None
        )
    index.load(objects)
    return index


def _chunks(lines: int, clients: int, seed: int) -> Iterator[list[bytes]]:
    """Lines in order of time over ten windows; client n is 10.a.b.c for n < clients, twice."""
    rng = random.Random(seed)  # noqa: S311 - a benchmark's load, not a secret
    span = 240.0  # four 60 s windows, so a window holds ~500k lines at the default size
    chunk: list[bytes] = []
    for i in range(lines):
        n = i % clients
        addr = f"{10 + (n >> 24)}.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}"
        status = _STATUSES[rng.randrange(100)]
        t = _START + span * i / lines
        stamp = time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(t))
        took = rng.randrange(1, 400) / 1000
        app = rng.randrange(_INGRESSES)
        chunk.append(
            f'{addr} - - [{stamp}] "GET /api/v1/items/{i % 977}?page={i % 7} HTTP/1.1" {status} '
            f'{rng.randrange(100, 9000)} "-" "Mozilla/5.0 (X11; Linux x86_64) bench/1.0" 412 {took:.3f} '
            f"[prod-svc-{app}-80] [] 10.244.{app}.17:8080 612 {took:.3f} {status} {i:032x}".encode()
        )
        if len(chunk) == CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def run_access(*, lines: int, clients: int, seed: int = 12, samples: int = 10) -> AccessResult:
    config = AccessConfig(enabled=True)
    pipeline = AccessPipeline(
        config,
        cluster="bench",
        parser=build_access_parser(config),
        index=_index(),
        trusted_cidrs=("10.0.0.0/8",),
    )
    result = AccessResult(lines=0, clients=min(clients, lines), cpu_s=0.0, records=0, summaries=0)
    every = max(1, lines // samples)
    next_sample = every
    for chunk in _chunks(lines, clients, seed):
        started = time.process_time()
        batch = pipeline.process(chunk, input="replay", received_at="bench", now=None)
        closed = pipeline.flush(pipeline.latest)
        result.cpu_s += time.process_time() - started
        result.lines += batch.parsed
        result.records += len(batch.records)
        result.summaries += len(closed)
        if result.lines >= next_sample:
            result.rss_mb.append((result.lines, _rss_mb()))
            next_sample += every
    started = time.process_time()
    result.summaries += len(pipeline.flush(pipeline.latest, everything=True))
    result.cpu_s += time.process_time() - started
    return result


def report(result: AccessResult) -> list[str]:
    rss = [mb for _, mb in result.rss_mb]
    growth = (rss[-1] - rss[len(rss) // 2]) if len(rss) >= 2 else 0.0
    verdict = "met" if result.lines_per_s >= ACCESS_TARGET else "MISSED"
    return [
        f"access: {result.lines:,} lines, {result.clients:,} distinct clients, default settings, 1 core",
        f"  parsed + aggregated: {result.lines_per_s:,.0f} lines/s ({verdict}: ≥ {ACCESS_TARGET:,}), "
        f"{1e6 / result.lines_per_s if result.lines_per_s else 0:.1f} µs/line",
        f"  records kept: {result.records:,} (401/403), summaries: {result.summaries:,}",
        "  RSS (MB) as clients grow: " + ", ".join(f"{n // 1000:,}k: {mb:.0f}" for n, mb in result.rss_mb),
        f"  RSS growth over the second half: {growth:+.1f} MB",
    ]
