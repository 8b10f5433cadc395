"""``POST /ingest/access``: access lines from Fluent Bit's and Vector's http outputs.

The same authentication, limits and answers as ``/audit`` (webhook/server/app.py): 200 once the
kept records, the closed windows' summaries and the dead letters are durable, else 503 with
Retry-After so the shipper resends; records have stable ids, so a resent body adds nothing.
"""

from __future__ import annotations

from typing import Final

import structlog
from aiohttp import web

from webhook.errors import (
    BodyTimeoutError,
    BodyTooLargeError,
    OverloadedError,
    UnsupportedMediaTypeError,
    WebhookError,
)
from webhook.record.dead_letter import DeadLetter
from webhook.record.time import now
from webhook.server.app import (
    CONFIG,
    METRICS,
    RUNTIME,
    STATE,
    ServerState,
    read_admitted_body,
    rejection_response,
)
from webhook.server.batch_log import Rejections
from webhook.server.http_errors import json_answer
from webhook.sources.access_body import IngestError, decode_body

__all__ = ["receive_access"]

log = structlog.get_logger(__name__)

_ACCESS_TYPES: Final = frozenset(
    {
        "application/json",
        "application/x-ndjson",
        "application/ndjson",
        "application/jsonlines",
        "application/json-lines",
        "application/x-json-stream",
        "text/plain",
    }
)
# Refusals the shipper may retry and finally drop, as /audit's: each leaves a dead letter.
_LOST_BODY: Final = (BodyTooLargeError, BodyTimeoutError, UnsupportedMediaTypeError)


async def receive_access(request: web.Request) -> web.Response:
    """``POST /ingest/access``: Fluent Bit / Vector bodies of access lines, with /audit's rules.

    200 once the kept records, the closed windows' summaries and the dead letters are durable;
    503 + Retry-After when they cannot be kept, so the shipper sends the body again (the
    records' ids are stable, so a resent body adds no duplicates downstream)."""
    state = request.app[STATE]
    state.in_flight += 1
    try:
        response = await _receive_access(request, state)
    except WebhookError as exc:
        request.app[METRICS].rejects.labels(reason=exc.code).inc()
        # Folded with /audit's refusals: a wrong shipper token or junk cannot flood the log.
        state.rejected_log.add((exc.code, exc.http_status), Rejections(requests=1))
        if isinstance(exc, _LOST_BODY):
            await request.app[RUNTIME].writer.reject(exc, received_at=now())
        response = rejection_response(exc)
    finally:
        state.in_flight -= 1
    return response


async def _receive_access(request: web.Request, state: ServerState) -> web.Response:
    server = request.app[CONFIG].server
    body = await read_admitted_body(
        request,
        state,
        content_types=_ACCESS_TYPES,
        type_error="Content-Type must be application/json, application/x-ndjson or text/plain",
    )
    runtime = request.app[RUNTIME]
    access = runtime.access
    if access is None:  # the route exists only with access.enabled
        raise OverloadedError("access logs are not ready")
    # Refuse before counting: a body counted in the windows and then refused would be counted
    # again when the shipper resends it.
    refusal = runtime.writer.refusal()
    if refusal is not None:
        raise refusal
    received_at = now()
    lines = []
    rejected = []
    # Stops at line max_events_per_request + 1 with a 413, before splitting the rest.
    for item in decode_body(body, max_items=server.max_events_per_request):
        if isinstance(item, IngestError):
            rejected.append(
                DeadLetter(
                    reason=f"access-{item.reason}",
                    detail=f"http: {item.message}",
                    received_at=received_at,
                    index=item.index,
                    event={"input": "http"},
                )
            )
        else:
            lines.append(item.value)
    del body
    batch = await access.ingest(lines, input="http", rejected=rejected)
    log.info(
        "access.accepted",
        lines=batch.lines,
        records=len(batch.records),
        summaries=len(batch.summaries),
        dead_lettered=len(batch.dead_letters) + len(rejected),
    )
    return json_answer(
        {
            "accepted": batch.lines,
            "records": len(batch.records),
            "dead_lettered": len(batch.dead_letters) + len(rejected) + batch.suppressed,
        }
    )
