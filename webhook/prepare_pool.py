"""The first half of the pipeline for large batches, in worker processes: the second core.

A 400-event batch costs the event loop ~2.5 ms of decoding, checking and filtering alone, and
while it runs no other request is served; one process can use one core. With
``server.workers`` > 0, bodies of at least ``MIN_BODY_BYTES`` go whole to a pool of worker
processes that decode the EventList, check, filter, dedupe within the batch and redact
(``Pipeline.prepare``); the event loop gets back only the kept, already redacted events, the
dead letters and the counts, and does the rest (dedupe window, state, records, spool) as for
a small body. Small bodies (blocking mode: one event) stay in the event loop, where a round
trip to a worker would cost more than the work, and so do large ones while the workers start.

The raw body reaches a worker only through a pipe between our own processes; what comes back
is redacted, and a kept event's raw form is replaced by ``event_ref`` (the identifiers a dead
letter may carry) before it leaves the worker. A worker that dies fails only the batches it
held: they are answered 503 (the apiserver resends them) and the pool is started again.
"""

from __future__ import annotations

import asyncio
import ctypes
import gc
import multiprocessing
import os
import signal
import sys
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import replace
from typing import Final

import structlog

from webhook.config import Config
from webhook.dedupe import Deduper
from webhook.errors import BodyTooLargeError, OverloadedError
from webhook.events import decode_event_list, event_ref
from webhook.pipeline import BatchResult, Pipeline
from webhook.redact import Redactor

__all__ = ["MIN_BODY_BYTES", "PreparePool", "prepare_body"]

log = structlog.get_logger(__name__)

# Below this a body is prepared in the event loop: ~60 Metadata-level events, ~0.4 ms of work,
# about what the round trip to a worker costs the event loop.
MIN_BODY_BYTES: Final = 64 * 1024
_PR_SET_PDEATHSIG: Final = 1

_pipeline: Pipeline | None = None  # the worker process's own, built by _start_worker


def prepare_body(pipeline: Pipeline, body: bytes, *, received_at: str, max_events: int) -> BatchResult:
    """Decode ``body`` (an EventList) and run ``pipeline.prepare`` on its items.

    Raises the ``BadRequestError`` of ``decode_event_list`` or ``BodyTooLargeError`` for more
    than ``max_events`` events, as the server answers them."""
    items = decode_event_list(body)
    if len(items) > max_events:
        raise BodyTooLargeError(f"{len(items)} events is more than the limit of {max_events}")
    return pipeline.prepare(items, received_at=received_at)


def _die_with(parent: int) -> None:
    """Have the kernel kill this worker when the serve process dies (kill -9, OOM): the pool's
    queues hold both ends of their pipes, so a worker would otherwise wait for work forever."""
    if sys.platform == "linux":
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # it died before the line above
        os._exit(1)


def _start_worker(config: Config, key: bytes, parent: int) -> None:
    from webhook.log import configure_logging

    _die_with(parent)
    global _pipeline  # one pipeline per worker process, built once
    configure_logging(config.log.level, config.log.format)
    redaction = config.redaction
    redactor = Redactor(key, expiry_warning_days=redaction.certificate_expiry_warning_days)
    # The dedupe window lives in the event loop's process; here only duplicates within a batch.
    _pipeline = Pipeline(config, Deduper(max_entries=1, ttl_s=0.0), redactor)
    gc.collect()
    gc.freeze()
    gc.set_threshold(100_000, 50, 100)


def _prepare_in_worker(body: bytes, received_at: str, max_events: int) -> BatchResult:
    if _pipeline is None:
        raise RuntimeError("worker not started")
    result = prepare_body(_pipeline, body, received_at=received_at, max_events=max_events)
    # Only redacted data goes back: the raw event is needed later for a dead letter's ref only.
    result.pending = [replace(p, item=event_ref(p.item)) for p in result.pending]
    return result


def _ping() -> int:
    return os.getpid()


class PreparePool:
    """``server.workers`` processes, started in the background on the first large body.

    Until every worker has started (imports, pipeline built: about a second), and again after
    one died, large bodies are prepared in the event loop as small ones are: nobody waits for a
    process to start."""

    def __init__(self, config: Config, key: bytes) -> None:
        self._config = config
        self._key = key
        self._workers = config.server.workers
        self._executor: ProcessPoolExecutor | None = None
        self._starting: asyncio.Task[None] | None = None
        self._ready = False

    @property
    def enabled(self) -> bool:
        return self._workers > 0

    def wants(self, body: bytes) -> bool:
        """Whether ``body`` should go to a worker now; starts the workers if they are not."""
        if self._workers == 0 or len(body) < MIN_BODY_BYTES:
            return False
        if not self._ready and self._starting is None:
            self._starting = asyncio.get_running_loop().create_task(self.start())
        return self._ready

    def pids(self) -> list[int]:
        """The worker processes running now (for tests and the benchmark)."""
        executor = self._executor
        processes = getattr(executor, "_processes", None) or {}
        return [p.pid for p in processes.values() if p.pid is not None]

    def _pool(self) -> ProcessPoolExecutor:
        if self._executor is None:
            self._executor = ProcessPoolExecutor(
                max_workers=self._workers,
                # Not fork: the event loop's process has threads (executor, spool, state store).
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_start_worker,
                initargs=(self._config, self._key, os.getpid()),
            )
        return self._executor

    def _broken(self, executor: ProcessPoolExecutor) -> None:
        log.error("prepare_pool.broken", workers=self._workers)
        self._ready = False
        if self._executor is executor:
            self._executor = None
            executor.shutdown(wait=False, cancel_futures=True)

    async def start(self) -> None:
        """Start the workers and wait until each has answered once."""
        if self._workers == 0 or self._ready:
            return
        executor = self._pool()
        loop = asyncio.get_running_loop()
        try:
            await asyncio.gather(*(loop.run_in_executor(executor, _ping) for _ in range(self._workers)))
        except BrokenProcessPool:
            self._broken(executor)  # the next large body tries again
        else:
            self._ready = True
        finally:
            self._starting = None

    async def prepare(self, body: bytes, *, received_at: str, max_events: int) -> BatchResult:
        executor = self._pool()
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(executor, _prepare_in_worker, body, received_at, max_events)
        except BrokenProcessPool:
            self._broken(executor)
            raise OverloadedError("a worker process failed; retry") from None

    async def aclose(self) -> None:
        starting, self._starting = self._starting, None
        if starting is not None:
            starting.cancel()
            await asyncio.gather(starting, return_exceptions=True)
        self._ready = False
        executor, self._executor = self._executor, None
        if executor is not None:
            await asyncio.to_thread(executor.shutdown, wait=True, cancel_futures=True)
