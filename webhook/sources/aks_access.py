"""Reaching the storage account of an AKS diagnostic setting: credentials and the client.

Credentials come from files only (a SAS token, an account key, or a connection string), never
from the YAML itself, and each file is re-read before every poll, so a rotated token is used
from the next request on. Nothing here logs or raises with a credential or a URL carrying one:
storage errors are described by type, HTTP status and storage error code, never by their text.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Final

import aiohttp
import structlog
from azure.core.credentials import AzureNamedKeyCredential, AzureSasCredential
from azure.core.exceptions import AzureError, ResourceNotFoundError
from azure.storage.blob.aio import BlobServiceClient, ContainerClient

from webhook.core.files import read_secret_file
from webhook.errors import ConfigError
from webhook.sources.aks_settings import AksStorageOptions

__all__ = ["StorageAccess", "error_fields"]

log = structlog.get_logger(__name__)

_MAX_CREDENTIAL_BYTES: Final = 8192
# The SDK logs each request's URL and headers (signatures redacted) to its own logger, at a
# level below any that log.py sets: never emitted, in case a redaction is ever missed.
_SDK_LOGGER: Final = logging.getLogger(f"{__name__}.sdk")
_SDK_HTTP_LOG_LEVEL: Final = 1


class StorageAccess:
    """The account's client, built from the credential file and rebuilt when it changes."""

    def __init__(self, options: AksStorageOptions) -> None:
        self.options = options
        self._client: BlobServiceClient | None = None
        self._credential: AzureSasCredential | AzureNamedKeyCredential | None = None
        self._secret: bytes | None = None

    async def open(self) -> None:
        """Read the credential file; ``ConfigError`` when it cannot be read or is too open."""
        if self._client is None:
            secret = await asyncio.to_thread(self._read_secret)
            self._client = self._new_client(secret)

    async def refresh(self) -> None:
        """Re-read the credential file: a rotated SAS token or key is used from now on."""
        secret = await asyncio.to_thread(self._read_secret)
        if secret == self._secret:
            return
        text = secret.decode("utf-8", "replace")
        if isinstance(self._credential, AzureSasCredential):
            self._credential.update(text.lstrip("?"))
            self._secret = secret
        elif isinstance(self._credential, AzureNamedKeyCredential):
            self._credential.update(self.options.resolved_account_name() or "", text)
            self._secret = secret
        else:
            await self.aclose()
            self._client = self._new_client(secret)
        log.info("aks_storage.credential_reloaded", container=self.options.container)

    def container(self) -> ContainerClient:
        if self._client is None:
            raise RuntimeError("StorageAccess.open() has not run")
        return self._client.get_container_client(self.options.container)

    async def problem(self) -> str | None:
        """Why a poll could not list the container, or None: one listing, as ``check-config
        --connect`` asks. Described as storage errors are logged, never by their text."""
        try:
            pages = self.container().list_blobs(name_starts_with="resourceId=", results_per_page=1)
            async for _ in pages.by_page():
                break
        except ResourceNotFoundError:
            return f"container {self.options.container} not found (Azure creates it with its first record)"
        except (AzureError, aiohttp.ClientError) as exc:
            described = ", ".join(f"{key} {value}" for key, value in error_fields(exc).items())
            return f"cannot list container {self.options.container}: {described}"
        return None

    async def aclose(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await client.close()

    def _read_secret(self) -> bytes:
        options = self.options
        for what, path in (
            ("connection_string_file", options.connection_string_file),
            ("sas_token_file", options.sas_token_file),
            ("account_key_file", options.account_key_file),
        ):
            if path is not None:
                try:
                    return read_secret_file(path, what, max_bytes=_MAX_CREDENTIAL_BYTES).strip()
                except OSError as exc:
                    raise ConfigError(f"{what} {path}: cannot be read ({exc.strerror})") from None
        raise ConfigError("account_url: no credential file is configured")

    def _new_client(self, secret: bytes) -> BlobServiceClient:
        self._secret = secret
        text = secret.decode("utf-8", "replace")
        sdk: dict[str, Any] = {"http_logging_level": _SDK_HTTP_LOG_LEVEL, "logger": _SDK_LOGGER}
        if self.options.connection_string_file is not None:
            try:
                return BlobServiceClient.from_connection_string(text, **sdk)
            except ValueError:
                raise ConfigError("connection_string_file: not a storage connection string") from None
        if self.options.sas_token_file is not None:
            self._credential = AzureSasCredential(text.lstrip("?"))
        else:
            self._credential = AzureNamedKeyCredential(self.options.resolved_account_name() or "", text)
        return BlobServiceClient(self.options.account_url or "", credential=self._credential, **sdk)


def error_fields(exc: BaseException) -> dict[str, Any]:
    """The type, HTTP status and storage error code: never the message, which can hold a URL."""
    fields: dict[str, Any] = {"error": type(exc).__name__}
    status = getattr(exc, "status_code", None)
    if isinstance(status, int):
        fields["status"] = status
    code = getattr(exc, "error_code", None)
    if code is not None:
        fields["error_code"] = str(getattr(code, "value", code))[:64]
    return fields
