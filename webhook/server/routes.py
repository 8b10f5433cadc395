"""The one wrapper around every HTTP source: counted in flight, admitted, received, answered.

Whatever the source, a request is in ``ingress_audit_requests_in_flight`` while it is handled
and in ``ingress_audit_request_duration_seconds`` (by status) once answered; a refusal is
counted by reason, logged as a folded ``batch.rejected`` line, and, when the sender will drop
the body after its retries, leaves a dead letter so that the gap can be seen.
"""

from __future__ import annotations

import time

from aiohttp import web

from webhook.errors import WebhookError
from webhook.record.time import now
from webhook.server.admission import ServerState, admit, count_refusal, refusal_response
from webhook.server.http_errors import respond
from webhook.sources.base import HttpSource
from webhook.spool.writer import RecordWriter

__all__ = ["serve"]


async def serve(
    request: web.Request, source: HttpSource, state: ServerState, writer: RecordWriter
) -> web.Response:
    """``request`` to ``source``, through admission; ``writer`` keeps a lost body's dead letter."""
    started = time.perf_counter()
    state.in_flight += 1  # ingress_audit_requests_in_flight reads it (ServerState)
    try:
        # No name holds the delivery here: the source can let go of a large body once decoded.
        response = respond(await source.receive(await admit(request, source, state)))
    except WebhookError as exc:
        count_refusal(state, exc)
        if isinstance(exc, source.lost):
            # The sender retries these, then drops the body: leave a trace of the gap.
            await writer.reject(exc, received_at=now())
        response = respond(source.refuse(exc, request.headers)) if source.refuse else refusal_response(exc)
    finally:
        state.in_flight -= 1
    state.observe_latency(response.status, time.perf_counter() - started)
    return response
