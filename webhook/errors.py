"""The errors ingress-audit raises, each with a stable code and the HTTP status it maps to.

::

    WebhookError                      internal         500 (never sent: answered as 503)
    ├── ConfigError                   config           (start-up only)
    ├── BadRequestError               bad-request      400  the batch as a whole is unusable
    │   ├── NotJSONError              not-json
    │   ├── NotEventListError         not-event-list
    │   └── UnsupportedVersionError   unsupported-api-version
    ├── MethodNotAllowedError         method-not-allowed  405
    ├── UnsupportedMediaTypeError     unsupported-media-type 415
    ├── BodyTooLargeError             body-too-large   413
    ├── MalformedEventError           malformed-event  (one event: dead-lettered, never an answer)
    └── StorageError                  storage          503  we cannot keep the batch durably

Messages name a field or a path, never a value taken from the request.
"""

from __future__ import annotations

from typing import ClassVar

__all__ = [
    "BadRequestError",
    "BodyTooLargeError",
    "ConfigError",
    "MalformedEventError",
    "MethodNotAllowedError",
    "NotEventListError",
    "NotJSONError",
    "StorageError",
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


class MethodNotAllowedError(WebhookError):
    code = "method-not-allowed"
    http_status = 405


class UnsupportedMediaTypeError(WebhookError):
    code = "unsupported-media-type"
    http_status = 415


class BodyTooLargeError(WebhookError):
    code = "body-too-large"
    http_status = 413


class MalformedEventError(WebhookError):
    """One event of an otherwise valid list cannot be used; it goes to the dead letters."""

    code = "malformed-event"
    http_status = 400


class StorageError(WebhookError):
    """We cannot keep the batch durably; 503 makes the apiserver retry it later."""

    code = "storage"
    http_status = 503
