"""The errors ingress-audit raises, each with a stable code and the HTTP status it maps to.

::

    WebhookError                      internal         500 (never sent: answered as 503)
    ├── ConfigError                   config           (start-up only)
    ├── BadRequestError               bad-request      400  the batch as a whole is unusable
    │   ├── NotJSONError              not-json
    │   ├── NotEventListError         not-event-list
    │   ├── UnsupportedVersionError   unsupported-api-version
    │   └── UndecodableBodyError      undecodable-body  the body does not decode as its Content-Encoding says
    ├── UnauthorizedError             unauthenticated  401  no valid client certificate or token
    ├── ForbiddenError                forbidden        403  authenticated, but not allowed
    ├── MethodNotAllowedError         method-not-allowed  405
    ├── UnsupportedMediaTypeError     unsupported-media-type 415
    ├── BodyTooLargeError             body-too-large   413  (also: too many events in one request)
    ├── BodyTimeoutError              body-timeout     408  the body did not arrive in time
    ├── OverloadedError               overloaded       503  too many requests in flight
    ├── ClientGoneError               client-gone      (the client left mid-request: nobody to answer)
    ├── MalformedEventError           malformed-event  (one event: dead-lettered, never an answer)
    │   ├── EventTooLargeError        event-too-large
    │   ├── EventNotJSONError         event-not-json   its bytes do not decode (the rest of the body does)
    │   └── EventTooDeepError         event-too-deep   nested deeper than an event can be handled
    ├── StateError                    state            503  the state store failed (records kept, no baseline)
    ├── StorageError                  storage          503  we cannot keep the batch durably
    │   ├── SpoolFullError            spool-full       503  the spool is at its cap (a sink is behind)
    │   └── SinkError                 sink             (a sink could not deliver; never an answer)
    │       └── PartialDeliveryError  sink             some records delivered: which to resend, which refused
    ├── RecordsNotFoundError          not-found        (tail, report: the records file is not there)
    ├── UnreadableFileError           input            (a records or log file cannot be read)
    └── ReplaySendError               send             (replay --server: a batch refused for good)

Messages name a field or a path, never a value taken from the request.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import ClassVar

__all__ = [
    "BadRequestError",
    "BodyTimeoutError",
    "BodyTooLargeError",
    "ClientGoneError",
    "ConfigError",
    "EventNotJSONError",
    "EventTooDeepError",
    "EventTooLargeError",
    "ForbiddenError",
    "MalformedEventError",
    "MethodNotAllowedError",
    "NotEventListError",
    "NotJSONError",
    "OverloadedError",
    "PartialDeliveryError",
    "RecordsNotFoundError",
    "ReplaySendError",
    "SinkError",
    "SpoolFullError",
    "StateError",
    "StorageError",
    "UnauthorizedError",
    "UndecodableBodyError",
    "UnreadableFileError",
    "UnsupportedMediaTypeError",
    "UnsupportedVersionError",
    "WebhookError",
]


class WebhookError(Exception):
    """Base class: ``code`` is a kebab-case metric label and dead-letter reason."""

    code: ClassVar[str] = "internal"
    http_status: ClassVar[int] = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ConfigError(WebhookError):
    """The configuration cannot be loaded or does not validate."""

    code = "config"

    def __init__(self, message: str, errors: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.errors = errors


class BadRequestError(WebhookError):
    """The body is not a usable EventList; 400 tells the sender what is wrong."""

    code = "bad-request"
    http_status = 400


class NotJSONError(BadRequestError):
    code = "not-json"


class NotEventListError(BadRequestError):
    code = "not-event-list"


class UnsupportedVersionError(BadRequestError):
    code = "unsupported-api-version"


class UndecodableBodyError(BadRequestError):
    """The body is not what its ``Content-Encoding`` says (``deflate`` on a gzip stream)."""

    code = "undecodable-body"


class UnauthorizedError(WebhookError):
    code = "unauthenticated"
    http_status = 401


class ForbiddenError(WebhookError):
    code = "forbidden"
    http_status = 403


class MethodNotAllowedError(WebhookError):
    code = "method-not-allowed"
    http_status = 405


class UnsupportedMediaTypeError(WebhookError):
    code = "unsupported-media-type"
    http_status = 415


class BodyTooLargeError(WebhookError):
    code = "body-too-large"
    http_status = 413


class BodyTimeoutError(WebhookError):
    code = "body-timeout"
    http_status = 408


class OverloadedError(WebhookError):
    """More requests in flight than configured; 503 + Retry-After spreads the load."""

    code = "overloaded"
    http_status = 503


class ClientGoneError(WebhookError):
    """The client closed the connection before its request was read: its fault, not ours.

    499 (nginx's "client closed request") is only a log and metric key; nothing is sent."""

    code = "client-gone"
    http_status = 499


class MalformedEventError(WebhookError):
    """One event of an otherwise valid list cannot be used; it goes to the dead letters."""

    code = "malformed-event"
    http_status = 400


class EventTooLargeError(MalformedEventError):
    """One kept event is over ``server.max_event_bytes``; it is dead-lettered, the batch goes on."""

    code = "event-too-large"


class EventNotJSONError(MalformedEventError):
    """One event's bytes do not decode (a lone surrogate, invalid UTF-8, a number out of range)."""

    code = "event-not-json"


class EventTooDeepError(MalformedEventError):
    """One event nests deeper than JSON can be decoded or encoded here (orjson's limits)."""

    code = "event-too-deep"


class StateError(WebhookError):
    """The state store cannot be reached; records are written without a baseline meanwhile."""

    code = "state"
    http_status = 503


class StorageError(WebhookError):
    """We cannot keep the batch durably; 503 makes the apiserver retry it later."""

    code = "storage"
    http_status = 503


class SpoolFullError(StorageError):
    """The spool is at its size cap because a sink is behind; 503 makes the apiserver wait."""

    code = "spool-full"


class SinkError(StorageError):
    """A sink could not deliver; ``retryable`` says whether the same batch may succeed later.

    ``retry_after_s`` is the receiver's own wait (an HTTP ``Retry-After``): the next attempt
    comes no sooner than that.
    """

    code = "sink"

    def __init__(self, message: str, *, retryable: bool = True, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.retry_after_s = retry_after_s


class PartialDeliveryError(SinkError):
    """Some records were delivered; ``retry`` lists indexes to resend, ``rejected`` the refused."""

    def __init__(self, message: str, *, retry: Sequence[int], rejected: Mapping[int, str]) -> None:
        super().__init__(message, retryable=bool(retry))
        self.retry = tuple(retry)
        self.rejected = dict(rejected)


class RecordsNotFoundError(WebhookError):
    """The records file is not there (with ``--no-follow``; otherwise tail waits for it)."""

    code = "not-found"


class UnreadableFileError(WebhookError):
    """A file (of records, or a log to replay) cannot be opened or decompressed; named by its
    path, never quoting its content."""

    code = "input"


class ReplaySendError(WebhookError):
    """The server refused a batch for good, or stayed unavailable."""

    code = "send"
