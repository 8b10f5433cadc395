"""Reaching the storage account of an AKS diagnostic setting: options, credentials, the client.

Credentials come from files only (a SAS token, an account key, or a connection string), never
from the YAML itself, and each file is re-read before every poll, so a rotated token is used
from the next request on. Nothing here logs or raises with a credential or a URL carrying one:
storage errors are described by type, HTTP status and storage error code, never by their text.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

import structlog
from azure.core.credentials import AzureNamedKeyCredential, AzureSasCredential
from azure.storage.blob.aio import BlobServiceClient, ContainerClient

from webhook.core.files import read_secret_file
from webhook.errors import ConfigError
from webhook.sources.aks import AllowedClusters

__all__ = ["AksStorageOptions", "StorageAccess", "error_fields"]

log = structlog.get_logger(__name__)

_CONTAINER: Final = re.compile(r"[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9])){2,62}")
_MAX_CREDENTIAL_BYTES: Final = 8192
# The SDK logs each request's URL and headers (signatures redacted) to its own logger, at a
# level below any that log.py sets: never emitted, in case a redaction is ever missed.
_SDK_LOGGER: Final = logging.getLogger(f"{__name__}.sdk")
_SDK_HTTP_LOG_LEVEL: Final = 1


@dataclass(frozen=True, slots=True, kw_only=True)
class AksStorageOptions:
    """Where to read and how (``sources: aks:`` in the config)."""

    account_url: str | None = None  # https://<account>.blob.core.windows.net
    sas_token_file: Path | None = None  # a SAS with read and list on the container
    account_key_file: Path | None = None
    account_name: str | None = None  # with account_key_file; default: from account_url
    connection_string_file: Path | None = None  # instead of all of the above
    container: str = "insights-logs-kube-audit"
    poll_interval_s: float = 60.0
    clusters: tuple[str, ...] | None = None  # names or resource ids; None: any cluster
    state_file: Path = Path("aks-storage-state.json")  # the caller puts it in the data dir
    max_read_bytes: int = 4 * 1024 * 1024  # per download, and so the most held at once
    forget_after_s: float = 6 * 3600.0
    max_backoff_s: float = 300.0
    name: str = "aks"  # the ``source`` handed to the handler

    def check(self) -> None:
        """Raises ``ConfigError`` naming the first field that is wrong (never its value)."""
        by_url = (self.sas_token_file, self.account_key_file)
        if self.connection_string_file is not None:
            if self.account_url or any(by_url):
                raise ConfigError("connection_string_file: excludes account_url and the other credentials")
        elif not self.account_url:
            raise ConfigError("account_url: required (or connection_string_file)")
        elif sum(f is not None for f in by_url) != 1:
            raise ConfigError("account_url: needs exactly one of sas_token_file and account_key_file")
        else:
            _check_url(self.account_url)
            if self.account_key_file is not None and not self.resolved_account_name():
                raise ConfigError("account_name: required with account_key_file for this account_url")
        if not _CONTAINER.fullmatch(self.container):
            raise ConfigError("container: not a valid blob container name")
        if self.poll_interval_s <= 0 or self.max_backoff_s <= 0:
            raise ConfigError("poll_interval_s, max_backoff_s: must be positive")
        if self.max_read_bytes < 64 * 1024:
            raise ConfigError("max_read_bytes: must be at least 64 KiB (a record can be 20 KiB)")
        if self.forget_after_s < 2 * 3600:
            raise ConfigError("forget_after_s: must be at least 2 hours (a blob is written for an hour)")
        AllowedClusters.of(self.clusters or ())

    def resolved_account_name(self) -> str | None:
        """``account_name``, or the account in ``account_url``: the host's first label, or the
        first path segment of an emulator's path-style URL (an IP address or localhost)."""
        if self.account_name:
            return self.account_name
        parts = urlsplit(self.account_url or "")
        host = parts.hostname or ""
        if _is_ip(host) or host == "localhost":
            return parts.path.strip("/").split("/")[0] or None
        return host.split(".")[0] or None


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


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _check_url(url: str) -> None:
    parts = urlsplit(url)
    if parts.query or parts.fragment or parts.username or parts.password:
        raise ConfigError(
            "account_url: must not carry a query, fragment or user (a SAS goes in sas_token_file)"
        )
    host = parts.hostname or ""
    loopback = host == "localhost" or (_is_ip(host) and ipaddress.ip_address(host).is_loopback)
    if parts.scheme != "https" and not (parts.scheme == "http" and loopback):
        raise ConfigError("account_url: must be https (http only on loopback, for the emulator)")
