"""The load: forked sender processes, one aiohttp session each, posting pre-serialized bodies.

Each sender process runs ``connections`` tasks that post back to back (a closed loop, as the
apiserver does: one request per connection at a time) from ``start_at`` until ``end_at``, both
on the system-wide monotonic clock. Every answered request is kept as (end time, latency,
events, matched) so that the caller can cut the run into windows; the sender's own CPU time
is reported too, to show that the load generator is not the bottleneck.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import multiprocessing
import resource
import time
from array import array
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Final

import aiohttp

from bench.generate import Body

__all__ = ["LoadPlan", "LoadResult", "RunningLoad", "start_load"]

# What kube-apiserver sends (tests/fixtures/apiserver-v1.26/README.md), minus Host and length.
_HEADERS: Final = {
    "User-Agent": "Go-http-client/1.1",
    "Accept": "application/json, */*",
    "Content-Type": "application/json",
    "Accept-Encoding": "gzip",
}
_PATH: Final = "/audit?timeout=30s"
_REQUEST_TIMEOUT_S: Final = 60.0


@dataclass(frozen=True, slots=True)
class LoadPlan:
    url: str
    bodies: Sequence[Body]  # empty: GET /healthz instead (the HTTP round trip alone)
    connections: int
    processes: int
    start_at: float
    end_at: float
    rate: float = 0.0  # events/s over all connections; 0 sends as fast as answers come
    first_stamp: int = 0  # loads sent to one server in turns start where the last left room


@dataclass(slots=True)
class LoadResult:
    ends: array[float] = field(default_factory=lambda: array("d"))
    latencies: array[float] = field(default_factory=lambda: array("d"))
    events: array[int] = field(default_factory=lambda: array("L"))
    matched: array[int] = field(default_factory=lambda: array("L"))
    errors: Counter[str] = field(default_factory=Counter)
    cpu_s: float = 0.0

    def merge(self, other: LoadResult) -> None:
        self.ends.extend(other.ends)
        self.latencies.extend(other.latencies)
        self.events.extend(other.events)
        self.matched.extend(other.matched)
        self.errors.update(other.errors)
        self.cpu_s += other.cpu_s


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _send(
    session: aiohttp.ClientSession,
    plan: LoadPlan,
    task: int,
    first: int,
    stamps: Iterator[int],
    result: LoadResult,
) -> None:
    bodies = plan.bodies
    per_task_rate = plan.rate / plan.connections if plan.rate else 0.0
    sent_events = 0
    index = first
    while (now := time.monotonic()) < plan.end_at:
        if per_task_rate:
            # Tasks are staggered over one interval, so that paced sends do not come in bursts.
            due = plan.start_at + (sent_events + task / plan.connections) / per_task_rate
            if due > now:
                await asyncio.sleep(min(due - now, plan.end_at - now))
                continue
        body = bodies[index % len(bodies)] if bodies else None
        index += 1
        started = time.perf_counter()
        try:
            if body is None:
                async with session.get("/healthz") as resp:
                    await resp.read()
            else:
                async with session.post(_PATH, data=body.render(next(stamps)), headers=_HEADERS) as resp:
                    await resp.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            result.errors[type(exc).__name__] += 1
            await asyncio.sleep(0.05)  # the server is gone or refusing: do not spin
            continue
        latency = time.perf_counter() - started
        if resp.status != 200:
            result.errors[str(resp.status)] += 1
            continue
        result.ends.append(time.monotonic())
        result.latencies.append(latency)
        result.events.append(body.events if body else 0)
        result.matched.append(body.matched if body else 0)
        sent_events += body.events if body else 1


async def _process_main(plan: LoadPlan, process: int) -> LoadResult:
    result = LoadResult()
    connections = [c for c in range(plan.connections) if c % plan.processes == process]
    connector = aiohttp.TCPConnector(limit=len(connections))
    timeout = aiohttp.ClientTimeout(total=_REQUEST_TIMEOUT_S)
    async with aiohttp.ClientSession(plan.url, connector=connector, timeout=timeout) as session:

        async def warm() -> None:
            async with session.get("/healthz") as resp:
                await resp.read()

        await asyncio.gather(*(warm() for _ in connections))  # open the connections before the clock
        await asyncio.sleep(max(plan.start_at - time.monotonic(), 0))
        cpu = _cpu()
        spread = max(len(plan.bodies) // max(plan.connections, 1), 1)
        first, step = plan.first_stamp, plan.connections
        await asyncio.gather(
            *(
                # Stamps differ across tasks (c, c + n, c + 2n, ...), so every auditID sent is unique.
                _send(session, plan, c, c * spread, itertools.count(first + c, step), result)
                for c in connections
            )
        )
        result.cpu_s = _cpu() - cpu
    return result


def _child(plan: LoadPlan, process: int, conn: Connection) -> None:
    try:
        conn.send(asyncio.run(_process_main(plan, process)))
    finally:
        conn.close()


@dataclass(slots=True)
class RunningLoad:
    plan: LoadPlan
    children: list[tuple[BaseProcess, Connection]]

    def collect(self) -> LoadResult:
        """Wait for the senders (bounded), merge what they saw; stop any that hang."""
        merged = LoadResult()
        grace = _REQUEST_TIMEOUT_S + 10
        for child, receive in self.children:
            with contextlib.suppress(EOFError):
                if receive.poll(max(self.plan.end_at - time.monotonic(), 0) + grace):
                    merged.merge(receive.recv())
                else:
                    merged.errors["sender-timeout"] += 1
            child.join(5)
            if child.is_alive():
                child.terminate()
                child.join(5)
        return merged


def start_load(plan: LoadPlan) -> RunningLoad:
    """Fork the senders; they inherit the bodies and start sending at ``plan.start_at``."""
    context = multiprocessing.get_context("fork")
    children: list[tuple[BaseProcess, Connection]] = []
    for process in range(plan.processes):
        receive, send = context.Pipe(duplex=False)
        child = context.Process(target=_child, args=(plan, process, send), daemon=True)
        child.start()
        send.close()
        children.append((child, receive))
    return RunningLoad(plan, children)
