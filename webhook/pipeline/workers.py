"""Most of the pipeline for large batches, in worker processes: the second core.

A 400-event batch costs the event loop ~2.5 ms of decoding, checking and filtering alone, and
while it runs no other request is served; one process can use one core. With
``server.workers`` > 0, bodies of at least ``MIN_BODY_BYTES`` go whole to a pool of worker
processes, and a batch makes two round trips to its worker:

1. **prepare**: the worker decodes the EventList, checks, filters, dedupes within the batch and
   redacts (``Pipeline.prepare``), and keeps the kept events; the event loop gets back only
   their record ids and the state-store keys their records need (``Pipeline.lookups``). A batch
   with nothing kept is finished right there and comes back whole.
2. **finish**: the event loop drops the ids its dedupe window already holds, reads the
   previous states in the order of the objects (``AuditIngestor``) and sends them; the worker
   diffs, enriches and builds each record and its JSON line (``Pipeline.finish``) and sends
   back the lines, the new states and the dead letters.

The event loop keeps what must be one: admission, the dedupe window, the per-object order, the
state store, the spool append and what reads the durable records (detections, metrics, the
access host index, which parse the lines). Small bodies (blocking mode: one event) stay in the
event loop, where a round trip to a worker would cost more than the work, and so do large ones
while the workers start. The layout was chosen by measurement: docs/architecture.md.

Each worker is a child process (``python -m webhook.pipeline.workers``) holding one end of a
socket pair; the event loop drives the other end itself. A request goes as a small header and
raw bytes (the body, or a pickle of plain values); the answer comes back as one pickle of
plain values: bytes lines, not record objects. A worker reads whatever requests have come
before it takes the next, and answers finishes ahead of prepares (a finish frees a batch, and its
request has waited a round trip already); the event loop keeps the waiting futures per worker
by batch number and kind, and sends each body to the worker with the fewest. A batch's finish
goes to the worker that prepared it.

The raw body reaches a worker only through the socket pair between our own processes; what
comes back is redacted. A worker that dies fails only the batches it held: they are answered
503 (the apiserver resends them) and a new worker is started in the background.
"""

from __future__ import annotations

import asyncio
import ctypes
import heapq
import itertools
import os
import pickle
import select
import signal
import socket
import struct
import subprocess
import sys
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import orjson
import structlog

import webhook
from webhook.core.heap import CycleCollector, return_large_blocks, tune_collector
from webhook.dedupe import Deduper
from webhook.errors import OverloadedError
from webhook.events import decode_event_list, event_ref
from webhook.log import LogConfig, configure_logging
from webhook.pipeline.stages import BatchResult, Pipeline, PipelineSettings
from webhook.redact.redactor import Redactor
from webhook.state.base import StoredObject, lay_newer

__all__ = ["MIN_BODY_BYTES", "PreparePool", "PrepareSettings", "Remote", "prepare_body"]

log = structlog.get_logger(__name__)

# Below this a body is prepared in the event loop: ~60 Metadata-level events, ~0.4 ms of work,
# about what the round trip to a worker costs the event loop.
MIN_BODY_BYTES: Final = 64 * 1024
_PR_SET_PDEATHSIG: Final = 1
_SOCKET_BUFFER: Final = 1 << 20
# parent -> worker: kind, batch number, max_events, len(received_at), len(cluster), len(payload);
# then those three (prepare: the body; finish and drop: a pickle)
_REQUEST: Final = struct.Struct("<BIIIIQ")
_PREPARE: Final = 1
_FINISH: Final = 2
_DROP: Final = 3
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


# A finished batch as a worker sends it: plain tuples pickle several times faster than slotted
# dataclasses, and records travel as their JSON lines.
_Finished = tuple[int, int, int, str, list[Any], list[bytes], list[str], dict[str, Any], int, int]


def _finished(result: BatchResult) -> _Finished:
    return (
        result.events,
        result.matched,
        result.duplicates,
        result.cluster,
        result.dead_letters,
        result.lines,
        result.keys,
        result.state_updates,
        result.list_item_hits,
        result.list_item_misses,
    )


def _batch(finished: _Finished, received_at: str) -> BatchResult:
    """The event loop's BatchResult of a worker's finished batch: lines, and what observers read
    of them (their parsed JSON); no record objects."""
    events, matched, duplicates, scope, dead_letters, lines, keys, updates, hits, misses = finished
    return BatchResult(
        events=events,
        matched=matched,
        duplicates=duplicates,
        received_at=received_at,
        cluster=scope,
        dead_letters=dead_letters,
        lines=lines,
        keys=keys,
        state_updates=updates,
        documents=[orjson.loads(line) for line in lines],
        list_item_hits=hits,
        list_item_misses=misses,
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


class _Batches:
    """A worker's prepared batches, waiting for their finish (at most the requests in flight),
    and the new states of its latest finishes that the event loop had not seen yet.

    Per-object order among one worker's batches is kept here: the states the event loop sends
    with a finish were read before it knew of the finishes still on their way back to it, so
    the newer states those revealed are laid over them (``seen``: the last finish the event
    loop had received; older ones are its to know, and are dropped here)."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline
        self.waiting: dict[int, BatchResult] = {}
        self.finishes = 0
        self.unseen: deque[tuple[int, dict[str, StoredObject]]] = deque()

    def prepare(
        self, number: int, body: bytearray, *, received_at: str, max_events: int, cluster: str
    ) -> tuple[int, list[str], list[str]] | _Finished:
        pipeline = self.pipeline
        result = prepare_body(
            pipeline, body, received_at=received_at, max_events=max_events, cluster=cluster or None
        )
        lookups = pipeline.lookups(result)  # dead-letters an event whose keys cannot be read
        if not result.pending:
            pipeline.finish(result, states={})
            return _finished(result)
        for prepared in result.pending:
            # Kept until the finish: its redacted form, and of the raw event only what a dead
            # letter may carry (a list response's raw form is megabytes, and holds the values).
            prepared.item = event_ref(prepared.item)
        self.waiting[number] = result
        return (number, [prepared.key for prepared in result.pending], lookups)

    def finish(
        self,
        number: int,
        skip: list[str],
        states: dict[str, StoredObject],
        duplicates: set[str],
        available: bool,
        seen: int,
    ) -> tuple[int, _Finished]:
        result = self.waiting.pop(number)
        if skip:  # the event loop's dedupe window holds these
            dropped = frozenset(skip)
            kept = [prepared for prepared in result.pending if prepared.key not in dropped]
            result.duplicates += len(result.pending) - len(kept)
            result.pending = kept
        unseen = self.unseen
        while unseen and unseen[0][0] <= seen:
            unseen.popleft()
        if available:
            for _, updates in unseen:
                lay_newer(states, updates)
        self.pipeline.finish(result, states=states, duplicates=duplicates, available=available)
        self.finishes += 1
        if result.state_updates:
            unseen.append((self.finishes, result.state_updates))
        return self.finishes, _finished(result)

    def answer(
        self, kind: int, number: int, max_events: int, text: str, cluster: str, payload: bytearray
    ) -> bytes:
        try:
            if kind == _PREPARE:
                answer: Any = self.prepare(
                    number, payload, received_at=text, max_events=max_events, cluster=cluster
                )
            elif kind == _FINISH:
                answer = self.finish(number, *pickle.loads(payload))  # noqa: S301 - the serve process's
            else:
                self.waiting.pop(number, None)
                answer = None
            return pickle.dumps((kind, number, True, answer), protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as exc:  # noqa: BLE001 - the event loop raises it (a 400, or a 503)
            self.waiting.pop(number, None)
            try:
                return pickle.dumps((kind, number, False, exc), protocol=pickle.HIGHEST_PROTOCOL)
            except Exception:  # noqa: BLE001 - an exception that does not pickle
                failure = OverloadedError(f"worker failed: {type(exc).__name__}")
                return pickle.dumps((kind, number, False, failure), protocol=pickle.HIGHEST_PROTOCOL)


_Request = tuple[int, int, int, str, str, bytearray]


def _read_request(sock: socket.socket) -> _Request | None:
    """The next request, whole; None at the end of the stream."""
    header = _receive(sock, _REQUEST.size)
    if header is None:
        return None
    kind, number, max_events, text_size, cluster_size, payload_size = _REQUEST.unpack(header)
    text = _receive(sock, text_size)
    cluster = _receive(sock, cluster_size)
    payload = _receive(sock, payload_size)
    if text is None or cluster is None or payload is None:
        return None
    return (kind, number, max_events, text.decode(), cluster.decode(), payload)


class _Requests:
    """The requests a worker has read, finishes and drops first: a finish frees a batch, and its
    request has waited a round trip already. Each kind in its order; whatever has arrived is
    read before the next is chosen, no thread needed."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._heap: list[tuple[int, int, _Request]] = []
        self._order = itertools.count()
        self._ended = False

    def _push(self, request: _Request | None) -> None:
        if request is None:
            self._ended = True
        else:
            heapq.heappush(self._heap, (1 if request[0] == _PREPARE else 0, next(self._order), request))

    def next(self) -> _Request | None:
        if not self._heap and not self._ended:
            self._push(_read_request(self._sock))  # wait for one
        while not self._ended and select.select([self._sock], [], [], 0)[0]:
            self._push(_read_request(self._sock))  # and take what else has come
        return heapq.heappop(self._heap)[2] if self._heap else None


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
    batches = _Batches(pipeline)
    tune_collector()
    collector = CycleCollector()
    _send(sock, pickle.dumps(os.getpid()))
    requests = _Requests(sock)
    while (request := requests.next()) is not None:
        answer = batches.answer(*request)
        del request
        _send(sock, answer)
        collector.maybe_collect()


# --- the event loop's side ------------------------------------------------------------------


@dataclass(slots=True, eq=False)
class Remote:
    """A batch a worker prepared and holds: what the event loop needs to finish it there.

    ``finish`` once, or ``drop`` (the worker forgets it) if it is not to be finished."""

    worker: _Worker
    number: int
    received_at: str
    keys: list[str]  # the record ids (dedupe keys) of its kept events
    lookups: list[str]  # the state-store keys their records need
    sent: bool = False

    async def finish(
        self,
        skip: list[str],
        states: Mapping[str, Any],
        duplicates: frozenset[str] | set[str],
        available: bool,
    ) -> BatchResult:
        """Records built by the worker: without ``skip`` (the dedupe window's), against ``states``."""
        self.sent = True
        worker = self.worker
        payload = pickle.dumps(
            (skip, dict(states), set(duplicates), available, worker.seen), protocol=pickle.HIGHEST_PROTOCOL
        )
        received_at = self.received_at

        def unpack(answer: tuple[int, _Finished]) -> BatchResult:
            finish, finished = answer
            worker.seen = max(worker.seen, finish)
            return _batch(finished, received_at)

        result: BatchResult = await worker.call(_FINISH, self.number, payload, unpack=unpack)
        return result

    def drop(self) -> None:
        if not self.sent:
            self.sent = True
            self.worker.forget(self.number)


class _Worker:
    """One child process and the event loop's end of its socket pair."""

    def __init__(
        self, process: asyncio.subprocess.Process, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.process = process
        self.pid = process.pid
        self._reader = reader
        self._writer = writer
        # (kind, batch number) -> the request's future and how to read its answer: a worker
        # answers finishes ahead of prepares.
        self._waiting: dict[tuple[int, int], tuple[asyncio.Future[Any], Callable[[Any], Any]]] = {}
        self._answers: asyncio.Task[None] | None = None
        self._on_exit: Callable[[_Worker], None] | None = None
        self._numbers = itertools.count(1)
        self.seen = 0  # the number of the last finish answered (the worker counts them)
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
                kind, number, ok, payload = await self._read_answer()
                future, unpack = self._waiting.pop((kind, number))
                if future.done():  # the request was cancelled (client gone); drop its answer
                    continue
                if ok:
                    future.set_result(unpack(payload))
                else:
                    future.set_exception(payload)
        except (
            asyncio.IncompleteReadError,
            ConnectionError,
            OSError,
            EOFError,
            pickle.UnpicklingError,
            KeyError,  # an answer to no request: not our worker any more
        ):
            pass
        finally:
            self._fail()

    def _fail(self) -> None:
        """The worker is gone: fail what waits for it, and tell the pool at once (a failed write
        can see it before the reader does; the next batch must not be sent to it again)."""
        self.alive = False
        waiting, self._waiting = self._waiting, {}
        for future, _ in waiting.values():
            if not future.done():
                future.set_exception(OverloadedError("a worker process failed; retry"))
        self._writer.close()
        on_exit, self._on_exit = self._on_exit, None
        if on_exit is not None:
            on_exit(self)

    def _request(
        self,
        kind: int,
        number: int,
        payload: bytes,
        *,
        unpack: Callable[[Any], Any],
        max_events: int = 0,
        text: bytes = b"",
        cluster: bytes = b"",
    ) -> asyncio.Future[Any]:
        if not self.alive:
            raise OverloadedError("a worker process failed; retry")
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting[(kind, number)] = (future, unpack)
        head = _REQUEST.pack(kind, number, max_events, len(text), len(cluster), len(payload))
        self._writer.write(head + text + cluster)
        self._writer.write(payload)
        return future

    async def call(
        self, kind: int, number: int, payload: bytes, *, unpack: Callable[[Any], Any], **fields: Any
    ) -> Any:
        future = self._request(kind, number, payload, unpack=unpack, **fields)
        try:
            await self._writer.drain()
        except (ConnectionError, OSError):
            self._fail()
        return await future

    def forget(self, number: int) -> None:
        """Have the worker drop a batch it prepared; nobody waits for the answer."""
        if self.alive:
            future = self._request(_DROP, number, b"", unpack=lambda _: None)
            future.add_done_callback(lambda done: done.cancelled() or done.exception())

    async def prepare(
        self, body: bytes, *, received_at: str, max_events: int, cluster: str | None
    ) -> Remote | BatchResult:
        number = next(self._numbers)

        def unpack(answer: Any) -> Remote | BatchResult:
            if len(answer) == 3:  # kept events: the worker holds them until the finish
                _, keys, lookups = answer
                return Remote(worker=self, number=number, received_at=received_at, keys=keys, lookups=lookups)
            return _batch(answer, received_at)

        result: Remote | BatchResult = await self.call(
            _PREPARE,
            number,
            body,
            unpack=unpack,
            max_events=max_events,
            text=received_at.encode(),
            cluster=(cluster or "").encode(),
        )
        return result

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
    """``server.workers`` processes, started in the background when the server starts
    (``start_soon``) and again on the first large body after one died.

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

    @property
    def starting(self) -> bool:
        """Whether workers are being started now."""
        return self._starting is not None

    def wants(self, body: bytes) -> bool:
        """Whether ``body`` should go to a worker now; starts the workers if they are not."""
        if self._workers == 0 or len(body) < MIN_BODY_BYTES:
            return False
        self.start_soon()
        return bool(self._running)

    def start_soon(self) -> None:
        """Start the missing workers in the background, unless they are starting already."""
        if len(self._running) < self._workers and self._starting is None and not self._closed:
            self._starting = asyncio.get_running_loop().create_task(self._start_missing())

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

    async def prepare(
        self, body: bytes, *, received_at: str, max_events: int, cluster: str | None = None
    ) -> Remote | BatchResult:
        """The first round trip: a ``Remote`` to finish, or the batch whole when nothing was kept.

        ``cluster``: the one the sender proved (None: the configured one)."""
        if not self._running:
            raise OverloadedError("no worker process is running; retry")
        worker = min(self._running, key=lambda w: w.load)
        return await worker.prepare(body, received_at=received_at, max_events=max_events, cluster=cluster)

    async def aclose(self) -> None:
        self._closed = True
        starting, self._starting = self._starting, None
        if starting is not None:
            starting.cancel()
            await asyncio.gather(starting, return_exceptions=True)
        running, self._running = self._running, []
        await asyncio.gather(*(worker.stop() for worker in running), *self._reaping)
