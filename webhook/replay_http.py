"""``ingress-audit replay --server URL``: send log-backend files to a running server's ``/audit``.

A running server holds its data dir (the spool is locked), so a backfill into it goes through
its webhook, exactly as the apiserver would send the events: EventLists of up to 400 events.
The server filters, dedupes, redacts and records them; ``503`` answers are retried after their
``Retry-After``. Lines that are not events are counted and reported by file and line, never by
content.
"""

from __future__ import annotations

import asyncio
import ssl
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import aiohttp
import orjson

from webhook.errors import WebhookError
from webhook.replay import ReplaySummary, _Bad, _progress, _take, read_events

__all__ = ["ReplaySendError", "replay_to_server"]

_ATTEMPTS: Final = 30
_TIMEOUT: Final = aiohttp.ClientTimeout(total=60)


class ReplaySendError(WebhookError):
    """The server refused a batch for good, or stayed unavailable."""

    code = "send"


def _body(items: list[dict[str, Any]]) -> bytes:
    return orjson.dumps(
        {"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "metadata": {}, "items": items}
    )


async def _post(
    session: aiohttp.ClientSession, url: str, body: bytes, headers: dict[str, str]
) -> dict[str, Any]:
    for _ in range(_ATTEMPTS):
        try:
            async with session.post(url, data=body, headers=headers) as resp:
                if resp.status == 200:
                    answer: dict[str, Any] = await resp.json()
                    return answer
                if resp.status not in (408, 429, 503):
                    reason = (await resp.read())[:300].decode(errors="replace")
                    raise ReplaySendError(f"{url} answered {resp.status}: {reason}")
                delay = float(resp.headers.get("Retry-After", "1") or 1)
        except (aiohttp.ClientConnectionError, TimeoutError) as exc:
            delay = 1.0
            last = type(exc).__name__
        else:
            last = "busy"
        await asyncio.sleep(min(max(delay, 0.1), 10.0))
    raise ReplaySendError(f"{url} did not accept a batch after {_ATTEMPTS} attempts ({last})")


async def replay_to_server(
    url: str,
    files: Sequence[Path],
    *,
    token_file: Path | None = None,
    ca_file: Path | None = None,
    show_progress: bool = False,
    chunk_size: int = 400,
) -> ReplaySummary:
    headers = {"Content-Type": "application/json"}
    if token_file is not None:
        text = await asyncio.to_thread(token_file.read_text)
        headers["Authorization"] = f"Bearer {text.strip().splitlines()[0]}"
    context = ssl.create_default_context(cafile=str(ca_file)) if ca_file else None
    summary = ReplaySummary(files=len(files), sent_to=url)
    bar = _progress() if show_progress else None
    if bar is not None:
        bar.start()
    try:
        connector = aiohttp.TCPConnector(ssl=context) if context else aiohttp.TCPConnector()
        async with aiohttp.ClientSession(connector=connector, timeout=_TIMEOUT) as session:
            for path in files:
                position = [0]
                size = (await asyncio.to_thread(path.stat)).st_size
                task = bar.add_task(path.name, total=size) if bar is not None else None
                events = read_events(path, position)
                while chunk := await asyncio.to_thread(_take, events, chunk_size):
                    bad = [e for e in chunk if isinstance(e, _Bad)]
                    for item in bad:
                        sys.stderr.write(f"ingress-audit: skipped {item.detail}\n")
                    items = [e for e in chunk if not isinstance(e, _Bad)]
                    summary.events += len(chunk)
                    summary.dead_letters += len(bad)
                    if items:
                        answer = await _post(session, url, _body(items), headers)
                        summary.records += int(answer.get("records", 0))
                        summary.duplicates += int(answer.get("duplicates", 0))
                        summary.dead_letters += int(answer.get("dead_lettered", 0))
                        summary.matched += int(answer.get("records", 0)) + int(answer.get("duplicates", 0))
                    if bar is not None and task is not None:
                        bar.update(task, completed=position[0])
    finally:
        if bar is not None:
            bar.stop()
    return summary
