"""Structured logging, configured once: JSON lines on stderr by default, or a console renderer.

Log lines carry counts, ids and codes; never an event body, a header or a credential.

The libraries' own loggers (asyncio, aiohttp, asyncpg, redis, ``warnings``) go through the same
renderer, so every line on stderr is one JSON object: without that, Python printed their
records as bare text with multi-line tracebacks between the JSON lines. Their records keep to
the same rule: the first line of the message as written in the library (never the arguments
logged with it for interpolation) and, for an exception, its type and where it was raised,
never its text (which can hold a URL, a row or a part of a request).

Lines written once per request (``batch.accepted``, ``batch.rejected``) go through a
``FoldingLog``: one line per request until requests come faster than a person reads, then one
line a second sums them up. In batch mode an apiserver posts at most a few requests a second,
and a line per request is what an operator wants to see. In blocking mode it posts one request
per API call, thousands a second: a line each would flood the cluster's log pipeline with our
own logs and cost the event loop a measurable share of its time; so would a sender with a wrong
token, or anyone posting junk. So each line spends a token from a bucket that refills at
``per_second`` (and holds as many); a request that finds it empty is added to a pending sum
instead, logged ``interval_s`` after the first request it holds (one line per key: per reason
and status for refusals). Every line says how many requests it covers (``batches``,
``requests``), so summing any field over the lines gives the same total whatever was folded.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final, Generic, Literal, Protocol, Self, TypeVar

import orjson
import structlog

__all__ = ["LINES_PER_SECOND", "FoldingLog", "LogConfig", "configure_logging"]

LINES_PER_SECOND: Final = 10.0

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


@dataclass(frozen=True, slots=True, kw_only=True)
class LogConfig:
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["json", "console"] = "json"


def configure_logging(level: str = "info", fmt: Literal["json", "console"] = "json") -> None:
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    processors: list[structlog.types.Processor]
    factory: Any
    if fmt == "console":
        processors = [*shared, structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())]
        factory = structlog.PrintLoggerFactory(file=sys.stderr)
    else:
        processors = [
            *shared,
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(serializer=orjson.dumps),
        ]
        factory = structlog.BytesLoggerFactory(file=sys.stderr.buffer)
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level]),
        logger_factory=factory,
        cache_logger_on_first_use=True,
    )
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, _LibraryRecords)]:
        root.removeHandler(handler)
    root.addHandler(_LibraryRecords())
    root.setLevel(_LEVELS[level])
    logging.captureWarnings(True)


class _LibraryRecords(logging.Handler):
    """A library's ``logging`` record, logged again through structlog with what is safe to show."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            fields: dict[str, Any] = {"logger": record.name}
            if record.exc_info is not None and record.exc_info[1] is not None:
                fields["error"] = type(record.exc_info[1]).__name__
                where = _raised_at(record.exc_info[2])
                if where is not None:
                    fields["raised_at"] = where
            structlog.get_logger(record.name).log(record.levelno, _first_line(record.msg), **fields)
        except Exception:  # noqa: BLE001 - logging must never take the caller down
            self.handleError(record)


def _first_line(message: object) -> str:
    """The message as the library wrote it, without the arguments logged with it."""
    if not isinstance(message, str):
        return type(message).__name__
    return message.strip().split("\n", 1)[0][:200]


def _raised_at(tb: TracebackType | None) -> str | None:
    """``file.py:line in function`` of the innermost frame."""
    if tb is None:
        return None
    while tb.tb_next is not None:
        tb = tb.tb_next
    code = tb.tb_frame.f_code
    return f"{os.path.basename(code.co_filename)}:{tb.tb_lineno} in {code.co_name}"


class _Sums(Protocol):
    def add(self, other: Self) -> None: ...


K = TypeVar("K", bound=Hashable)
S = TypeVar("S", bound=_Sums)


class FoldingLog(Generic[K, S]):
    """``add(key, sums)`` per request; ``write(key, sums)`` logs one line (see the module doc)."""

    def __init__(
        self,
        write: Callable[[K, S], None],
        *,
        per_second: float = LINES_PER_SECOND,
        interval_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._write = write
        self.per_second = per_second
        self.interval_s = interval_s
        self._clock = clock
        self._tokens = per_second
        self._refilled = clock()
        self._pending: dict[K, S] = {}
        self._timer: asyncio.TimerHandle | None = None

    def add(self, key: K, sums: S) -> None:
        if not self._pending and self._take():
            self._write(key, sums)
            return
        if not self._pending:
            self._timer = asyncio.get_running_loop().call_later(self.interval_s, self.flush)
        pending = self._pending.get(key)
        if pending is None:
            self._pending[key] = sums
        else:
            pending.add(sums)

    def flush(self) -> None:
        """Log the pending sums now, if there are any (the timer, and shutdown)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        pending, self._pending = self._pending, {}
        for key, sums in pending.items():
            self._write(key, sums)

    def _take(self) -> bool:
        now = self._clock()
        self._tokens = min(self.per_second, self._tokens + (now - self._refilled) * self.per_second)
        self._refilled = now
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True
