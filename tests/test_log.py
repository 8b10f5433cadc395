"""The libraries' stdlib log records come out as JSON lines, with nothing a message carried."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import orjson

SECRET = "c2VjcmV0LXZhbHVlLTQy"  # what an exception or a log argument might carry

_PROGRAM = """
import asyncio, gc, logging, sys, warnings
from webhook.log import configure_logging

configure_logging(sys.argv[1], sys.argv[2])
if len(sys.argv) > 3:
    configure_logging(sys.argv[1], sys.argv[2])  # configured twice: still one line per record
SECRET = {secret!r}

def connect():
    raise OSError(f"connect failed for postgresql://ingress:{{SECRET}}@db/audit")

try:
    connect()
except OSError:
    logging.getLogger("asyncpg.pool").warning(
        "Failed to restore the pool connection floor; retrying", exc_info=True
    )
logging.getLogger("aiohttp.server").error("Error handling request\\nbody: %s", SECRET)
logging.getLogger("some.library").debug("below the level: %s", SECRET)
warnings.warn("an old API", DeprecationWarning, stacklevel=1)

async def fails():
    raise ValueError(SECRET)

async def main():
    task = asyncio.get_running_loop().create_task(fails())
    await asyncio.sleep(0.01)
    del task
    gc.collect()  # "Task exception was never retrieved"

asyncio.run(main())
"""


def _run(level: str, fmt: str, *extra: str) -> str:
    result = subprocess.run(
        [sys.executable, "-W", "always", "-c", _PROGRAM.format(secret=SECRET), level, fmt, *extra],
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout == ""
    return result.stderr


def _lines(level: str = "info", *extra: str) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in _run(level, "json", *extra).splitlines()]


def test_every_line_is_one_json_object_and_no_message_text_leaks() -> None:
    stderr = _run("info", "json")
    assert SECRET not in stderr
    lines = [orjson.loads(line) for line in stderr.splitlines()]  # each line parses alone
    events = {line["logger"]: line for line in lines}
    assert set(events) == {"asyncpg.pool", "aiohttp.server", "py.warnings", "asyncio"}


def test_an_exception_is_named_with_where_it_was_raised() -> None:
    pool = next(line for line in _lines() if line["logger"] == "asyncpg.pool")
    assert pool["event"] == "Failed to restore the pool connection floor; retrying"
    assert pool["level"] == "warning"
    assert pool["error"] == "OSError"
    line = next(n for n, text in enumerate(_PROGRAM.splitlines(), 1) if "raise OSError" in text)
    assert pool["raised_at"] == f"<string>:{line} in connect"
    assert "timestamp" in pool


def test_only_the_first_line_of_a_message_without_its_arguments() -> None:
    server = next(line for line in _lines() if line["logger"] == "aiohttp.server")
    assert server["event"] == "Error handling request"
    assert server["level"] == "error"
    unretrieved = next(line for line in _lines() if line["logger"] == "asyncio")
    assert unretrieved["event"] == "Task exception was never retrieved"
    assert unretrieved["error"] == "ValueError"


def test_the_configured_level_applies_to_library_records() -> None:
    assert {line["logger"] for line in _lines("error")} == {"aiohttp.server", "asyncio"}
    assert any(line["logger"] == "some.library" for line in _lines("debug"))


def test_configuring_twice_does_not_double_the_lines() -> None:
    assert len(_lines("info", "again")) == len(_lines("info"))


def test_the_console_format_carries_no_traceback_either() -> None:
    stderr = _run("info", "console")
    assert SECRET not in stderr
    assert "Traceback" not in stderr
    assert "Failed to restore the pool connection floor; retrying" in stderr
