"""What a source is: how audit events and access lines come in, one module each, as sinks send out.

An ``HttpSource`` is served by the server at a path. The server admits each request first (the
caller's authentication, ``POST``, the Content-Type, the number in flight, the size, the body read
in time) and hands the source a ``Delivery``; the source hands what it decodes to the pipeline
(the audit ingestor, the access service) and returns the ``Answer`` once that is durable.
Refusals are raised as ``WebhookError``s, which the server counts and answers. A ``StreamSource``
takes its input itself (listeners, followers): it is only started and closed. Sources import
nothing of the server or the runtime, which build them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from webhook.errors import WebhookError

__all__ = [
    "Answer",
    "Authenticate",
    "Delivery",
    "Headers",
    "HttpSource",
    "Principal",
    "Refuse",
    "StreamSource",
]

# The request's headers, looked up without regard to case (aiohttp's are).
Headers = Mapping[str, str]


@dataclass(frozen=True, slots=True)
class Principal:
    """Who sent a delivery, as the check that admitted it proved; never a credential.

    ``method`` is the server's ``none``, ``client-cert`` or ``token``, or a source's own check
    (an access key, a push token); ``name`` the certificate's subject, a key's file, an account.
    ``clusters``: the clusters the caller may speak for, when its credential says (a key bound to
    some); None leaves it to the source's configuration."""

    method: str
    name: str
    clusters: frozenset[str] | None = None

    @property
    def cluster(self) -> str | None:
        """The one cluster the credential proves, when it is bound to exactly one."""
        if self.clusters is not None and len(self.clusters) == 1:
            return next(iter(self.clusters))
        return None


@dataclass(frozen=True, slots=True, kw_only=True)
class Delivery:
    """One admitted request: the whole body (decompressed), its headers, when it arrived, and who
    sent it. The body can be the size limit: a source lets go of it once decoded."""

    body: bytes
    headers: Headers
    received_at: str
    caller: Principal


@dataclass(frozen=True, slots=True, kw_only=True)
class Answer:
    """What the server sends back: a status, a JSON body, and the headers the status needs."""

    status: int = 200
    body: bytes
    headers: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def json(
        cls, doc: Mapping[str, Any], status: int = 200, headers: Mapping[str, str] | None = None
    ) -> Answer:
        """Every JSON answer: compact, one line, ending in a newline (a shell prompt after
        ``curl`` starts on its own line)."""
        body = orjson.dumps(doc, option=orjson.OPT_APPEND_NEWLINE)
        return cls(status=status, body=body, headers=dict(headers or {}))


# A source's own check of its callers, from the request's headers alone (before the body is
# read): the principal, or UnauthorizedError (401), ForbiddenError (403), another WebhookError.
Authenticate = Callable[[Headers], Awaitable[Principal]]
# A source's own answer to a refusal, for a sender that expects its own shape of error.
Refuse = Callable[[WebhookError, Headers], Answer]


class HttpSource(Protocol):
    """A source the server serves at a path (the server's registry says which)."""

    name: str  # in the source's own logs and metrics
    content_types: frozenset[str]  # what it reads; any other Content-Type is refused (415)
    content_type_error: str  # the 415's reason, naming the types a sender should use
    # Refusals its sender retries and then drops for good: each leaves a dead letter.
    lost: tuple[type[WebhookError], ...]
    # None: the server's client authentication (certificate, bearer token). A source whose
    # senders cannot present those (a managed cloud's) checks its callers itself.
    authenticate: Authenticate | None
    refuse: Refuse | None  # None: the server's answer, {"error": <code>, "reason": <message>}

    async def receive(self, delivery: Delivery) -> Answer:
        """Hand the delivery's contents on; answer once they are durable, or raise WebhookError."""
        ...

    async def aclose(self) -> None:
        """After the last request: write out what it holds (a pending log line, say)."""
        ...


class StreamSource(Protocol):
    """A source that takes its input itself: listeners, a storage follower."""

    name: str

    async def start(self) -> None:
        """Bind or connect and hand on what arrives; ConfigError when it cannot."""
        ...

    async def aclose(self) -> None:
        """Stop taking input; harmless on a source that never started, or started half way."""
        ...
