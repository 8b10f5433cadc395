"""The first half of the pipeline for large batches, in worker processes: the second core.

A 400-event batch costs the event loop ~2.5 ms of decoding, checking and filtering alone, and
while it runs no other request is served; one process can use one core. With
``server.workers`` > 0, bodies of at least ``MIN_BODY_BYTES`` go whole to a pool of worker
processes that decode the EventList, check, filter, dedupe within the batch and redact
(``Pipeline.prepare``); the event loop gets back only the kept, already redacted events, the
dead letters and the counts, and does the rest (dedupe window, state, records, spool) as for
a small body. Small bodies (blocking mode: one event) stay in the event loop, where a round
trip to a worker would cost more than the work, and so do large ones while the workers start.

Each worker is a child process (``python -m webhook.pipeline.workers``) holding one end of a
socket pair; the event loop drives the other end itself. A batch goes as a small header and
the raw body bytes, unpickled and uncopied by any thread; the answer comes back as one pickle
of plain tuples. Requests to a worker are answered in order, so the event loop keeps a queue
of waiting futures per worker and sends each body to the worker with the fewest.

The raw body reaches a worker only through the socket pair between our own processes; what
comes back is redacted, and a kept event's raw form is replaced by ``event_ref`` (the
identifiers a dead letter may carry) before it leaves the worker. A worker that dies fails only
the batches it held: they are answered 503 (the apiserver resends them) and a new worker is
started in the background.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import pickle
import signal
import socket
import struct
import subprocess
import sys
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import structlog

import webhook
from webhook.core.heap import CycleCollector, return_large_blocks, tune_collector
from webhook.dedupe import Deduper
from webhook.errors import OverloadedError
from webhook.events import decode_event_list, event_ref
from webhook.log import LogConfig, configure_logging
from webhook.pipeline.stages import BatchResult, Pipeline, PipelineSettings, Prepared
from webhook.redact.redactor import RedactionResult, Redactor

__all__ = ["MIN_BODY_BYTES", "PreparePool", "PrepareSettings", "prepare_body"]

log = structlog.get_logger(__name__)

# Below this a body is prepared in the event loop: ~60 Metadata-level events, ~0.4 ms of work,
# about what the round trip to a worker costs the event loop.
MIN_BODY_BYTES: Final = 64 * 1024
_PR_SET_PDEATHSIG: Final = 1
_SOCKET_BUFFER: Final = 1 << 20
# parent -> worker: max_events, len(received_at), len(body); then both
_REQUEST: Final = struct.Struct("<IIQ")
# worker -> parent: len(pickle); then the pickle
_ANSWER: Final = struct.Struct("<Q")
_STOP_TIMEOUT_S: Final = 5.0
# Where this package was imported from: the workers import it from there too.
# the directory that holds the webhook package, so a plain checkout (no install) starts workers too
_ROOT: Final = str(Path(webhook.__file__).resolve().parents[1])


@dataclass(frozen=True, slots=True, kw_only=True)
class PrepareSettings:
    """What a worker process is sent at its start (with the fingerprint key): the settings of
    ``Pipeline.prepare`` and of its own logging, not the whole config."""

    pipeline: PipelineSettings
    log: LogConfig
    certificate_expiry_warning_days: int


def prepare_body(
    pipeline: Pipeline,
    body: bytes | bytearray,
    *,
    received_at: str,
    max_events: int,
    cluster: str | None = None,
) -> BatchResult:
    """Decode ``body`` (an EventList) and run ``pipeline.prepare`` on its items.

    Raises the ``BadRequestError`` of ``decode_event_list`` or ``BodyTooLargeError`` for more
    than ``max_events`` events, as the server answers them."""
    items = decode_event_list(body, max_events=max_events)
    return pipeline.prepare(items, received_at=received_at, cluster=cluster)


# The answer of a worker: plain tuples pickle several times faster than slotted dataclasses.
_Pending = tuple[int, dict[str, Any], str, dict[str, Any], tuple[Any, ...], tuple[str, ...]]


def _pack(result: BatchResult) -> tuple[Any, ...]:
    pending = [
        (p.index, event_ref(p.item), p.key, p.redacted.event, p.redacted.secrets, p.redacted.dropped)
        for p in result.pending
    ]
    return (
        result.events,
        result.matched,
        result.duplicates,
        result.received_at,
        result.dead_letters,
        pending,
    )


def _unpack(packed: tuple[Any, ...]) -> BatchResult:
    events, matched, duplicates, received_at, dead_letters, pending = packed
    entries: list[_Pending] = pending
    return BatchResult(
        events=events,
        matched=matched,
        duplicates=duplicates,
        received_at=received_at,
        dead_letters=dead_letters,
        pending=[
            Prepared(
                index=index,
                item=ref,
                key=key,
                redacted=RedactionResult(event=event, secrets=secrets, dropped=dropped),
            )
            for index, ref, key, event, secrets, dropped in entries
        ],
    )


# --- the worker process ---------------------------------------------------------------------


def _die_with(parent: int) -> None:
    """Have the kernel kill this worker when the serve process dies (kill -9, OOM)."""
    if sys.platform == "linux":
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # it died before the line above
        os._exit(1)


def _receive(sock: socket.socket, size: int) -> bytearray | None:
    """Exactly ``size`` bytes, or None at the end of the stream."""
    buffer = bytearray(size)
    view = memoryview(buffer)
    got = 0
    while got < size:
        n = sock.recv_into(view[got:])
        if n == 0:
            return None
        got += n
    return buffer


def _send(sock: socket.socket, payload: bytes) -> None:
    sock.sendall(_ANSWER.pack(len(payload)))
    sock.sendall(payload)


def _answer(pipeline: Pipeline, body: bytearray, received_at: str, max_events: int) -> bytes:
    try:
        result = prepare_body(pipeline, body, received_at=received_at, max_events=max_events)
        return pickle.dumps((True, _pack(result)), protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as exc:  # noqa: BLE001 - the event loop raises it (a 400, or a 503)
        try:
            return pickle.dumps((False, exc), protocol=pickle.HIGHEST_PROTOCOL)
        except Exception:  # noqa: BLE001 - an exception that does not pickle
            failure = OverloadedError(f"worker failed: {type(exc).__name__}")
            return pickle.dumps((False, failure), protocol=pickle.HIGHEST_PROTOCOL)


def worker_main(fd: int, parent: int) -> None:
    """A worker's life: read its settings, say it is ready, answer batches until EOF."""
    _die_with(parent)
    return_large_blocks()
    sock = socket.socket(fileno=fd)
    header = _receive(sock, _ANSWER.size)
    if header is None:
        return
    (size,) = _ANSWER.unpack(header)
    settings = _receive(sock, size)
    if settings is None:
        return
    prepare: PrepareSettings
    prepare, key = pickle.loads(settings)  # noqa: S301 - from the serve process that started us
    configure_logging(prepare.log.level, prepare.log.format)
    redactor = Redactor(key, expiry_warning_days=prepare.certificate_expiry_warning_days)
    # The dedupe window lives in the event loop's process; here only duplicates within a batch.
    pipeline = Pipeline(prepare.pipeline, Deduper(max_entries=1, ttl_s=0.0), redactor)
    del settings, key
    tune_collector()
    collector = CycleCollector()
    _send(sock, pickle.dumps(os.getpid()))
    while (header := _receive(sock, _REQUEST.size)) is not None:
        max_events, text_size, body_size = _REQUEST.unpack(header)
        text = _receive(sock, text_size)
        body = _receive(sock, body_size)
        if text is None or body is None:
            return
        answer = _answer(pipeline, body, text.decode(), max_events)
        del body
        _send(sock, answer)
        collector.maybe_collect()


# --- the event loop's side ------------------------------------------------------------------


class _Worker:
    """One child process and the event loop's end of its socket pair."""

    def __init__(
        self, process: asyncio.subprocess.Process, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.process = process
        self.pid = process.pid
        self._reader = reader
        self._writer = writer
        self._waiting: deque[asyncio.Future[BatchResult]] = deque()
        self._answers: asyncio.Task[None] | None = None
        self._on_exit: Callable[[_Worker], None] | None = None
        self.alive = True

    @property
    def load(self) -> int:
        return len(self._waiting)

    async def ready(self) -> None:
        """Wait for the worker's first answer (its pid): imports done, pipeline built."""
        await self._read_answer()

    def listen(self, on_exit: Callable[[_Worker], None]) -> None:
        """Read answers from now on; ``on_exit`` once the worker fails, however that is seen."""
        self._on_exit = on_exit
        self._answers = asyncio.get_running_loop().create_task(self._read_answers())

    async def _read_answer(self) -> Any:
        header = await self._reader.readexactly(_ANSWER.size)
        (size,) = _ANSWER.unpack(header)
        return pickle.loads(await self._reader.readexactly(size))  # noqa: S301 - our own worker

    async def _read_answers(self) -> None:
        try:
            while True:
                ok, payload = await self._read_answer()
                future = self._waiting.popleft()
                if future.done():  # the request was cancelled (client gone); drop its answer
                    continue
                if ok:
                    future.set_result(_unpack(payload))
                else:
                    future.set_exception(payload)
        except (asyncio.IncompleteReadError, ConnectionError, OSError, EOFError, pickle.UnpicklingError):
            pass
        finally:
            self._fail()

    def _fail(self) -> None:
        """The worker is gone: fail what waits for it, and tell the pool at once (a failed write
        can see it before the reader does; the next batch must not be sent to it again)."""
        self.alive = False
        while self._waiting:
            future = self._waiting.popleft()
            if not future.done():
                future.set_exception(OverloadedError("a worker process failed; retry"))
        self._writer.close()
        on_exit, self._on_exit = self._on_exit, None
        if on_exit is not None:
            on_exit(self)

    async def prepare(self, body: bytes, *, received_at: str, max_events: int) -> BatchResult:
        if not self.alive:
            raise OverloadedError("a worker process failed; retry")
        text = received_at.encode()
        future: asyncio.Future[BatchResult] = asyncio.get_running_loop().create_future()
        self._waiting.append(future)
        writer = self._writer
        writer.write(_REQUEST.pack(max_events, len(text), len(body)) + text)
        writer.write(body)
        try:
            await writer.drain()
        except (ConnectionError, OSError):
            self._fail()
        return await future

    async def stop(self) -> None:
        """Close the socket (the worker exits at EOF); kill it if it does not."""
        self.alive = False
        self._writer.close()
        if self._answers is not None:
            self._answers.cancel()
            await asyncio.gather(self._answers, return_exceptions=True)
        await _reap(self.process)


async def _reap(process: asyncio.subprocess.Process) -> None:
    try:
        async with asyncio.timeout(_STOP_TIMEOUT_S):
            await process.wait()
    except TimeoutError:
        process.kill()
        await process.wait()


class PreparePool:
    """``server.workers`` processes, started in the background on the first large body.

    Until a worker has started (imports, pipeline built: about a second), and while none is
    running after they died, large bodies are prepared in the event loop as small ones are:
    nobody waits for a process to start."""

    def __init__(self, settings: PrepareSettings, key: bytes, *, workers: int) -> None:
        self._settings = settings
        self._key = key
        self._workers = workers
        self._running: list[_Worker] = []
        self._starting: asyncio.Task[None] | None = None
        self._closed = False
        self._reaping: set[asyncio.Task[None]] = set()

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def enabled(self) -> bool:
        return self._workers > 0

    def wants(self, body: bytes) -> bool:
        """Whether ``body`` should go to a worker now; starts the workers if they are not."""
        if self._workers == 0 or len(body) < MIN_BODY_BYTES:
            return False
        if len(self._running) < self._workers and self._starting is None and not self._closed:
            self._starting = asyncio.get_running_loop().create_task(self._start_missing())
        return bool(self._running)

    def pids(self) -> list[int]:
        """The worker processes running now (for tests and the benchmark)."""
        return [worker.pid for worker in self._running if worker.alive]

    async def _spawn(self) -> _Worker:
        ours, theirs = socket.socketpair()
        for end in (ours, theirs):
            end.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, _SOCKET_BUFFER)
            end.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _SOCKET_BUFFER)
        # rich (for the report) is never used here, and structlog imports it when it can: a
        # worker without it is ~5 MB smaller.
        code = (
            f"import sys; sys.modules['rich'] = None; "
            f"root = {_ROOT!r}; root in sys.path or sys.path.insert(0, root); "
            f"from {worker_main.__module__} import worker_main; worker_main({theirs.fileno()}, {os.getpid()})"
        )
        try:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-c",
                code,
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
            )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        try:
            ours.setblocking(False)
            reader, writer = await asyncio.open_connection(sock=ours)
        except BaseException:
            ours.close()
            process.kill()
            raise
        worker = _Worker(process, reader, writer)
        settings = pickle.dumps((self._settings, self._key), protocol=pickle.HIGHEST_PROTOCOL)
        writer.write(_ANSWER.pack(len(settings)) + settings)
        try:
            await writer.drain()
            await worker.ready()
        except BaseException:  # failed, or cancelled by aclose: leave no process behind
            process.kill()
            await asyncio.shield(worker.stop())
            raise
        return worker

    async def start(self) -> None:
        """Start the missing workers and wait until each has answered once (or failed to)."""
        if self._workers == 0 or self._closed:
            return
        if self._starting is None:
            if len(self._running) >= self._workers:
                return
            self._starting = asyncio.get_running_loop().create_task(self._start_missing())
        await asyncio.shield(self._starting)

    async def _start_missing(self) -> None:
        try:
            missing = self._workers - len(self._running)
            started = await asyncio.gather(
                *(self._start_one() for _ in range(missing)), return_exceptions=True
            )
            for outcome in started:
                if isinstance(outcome, BaseException):
                    log.error("prepare_pool.start_failed", error=type(outcome).__name__)
        finally:
            self._starting = None

    async def _start_one(self) -> None:
        # Registered as soon as it answers: a cancelled start loses no running worker.
        worker = await self._spawn()
        if self.closed:
            await worker.stop()
        else:
            self._running.append(worker)
            worker.listen(self._exited)

    def _exited(self, worker: _Worker) -> None:
        if self._closed or worker not in self._running:
            return  # stopped by aclose, which reaps it
        self._running.remove(worker)
        log.error("prepare_pool.worker_exited", pid=worker.pid, code=worker.process.returncode)
        # Reap it in the background; the next large body starts a new one.
        task = asyncio.get_running_loop().create_task(_reap(worker.process))
        self._reaping.add(task)
        task.add_done_callback(self._reaping.discard)

    async def prepare(self, body: bytes, *, received_at: str, max_events: int) -> BatchResult:
        if not self._running:
            raise OverloadedError("no worker process is running; retry")
        worker = min(self._running, key=lambda w: w.load)
        return await worker.prepare(body, received_at=received_at, max_events=max_events)

    async def aclose(self) -> None:
        self._closed = True
        starting, self._starting = self._starting, None
        if starting is not None:
            starting.cancel()
            await asyncio.gather(starting, return_exceptions=True)
        running, self._running = self._running, []
        await asyncio.gather(*(worker.stop() for worker in running), *self._reaping)
