"""``sources: aks:``: which storage container to follow, for which clusters (docs/managed.md).

The section's dataclass is the follower's own options. The schema offers only the keys an
operator needs; the read size, the backoff and the state file's name keep their defaults here.
The state file lives in the data dir. Nothing here imports the Azure SDK: the config (and so
every worker process) loads this module.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

from webhook.core.paths import in_data_dir
from webhook.errors import ConfigError
from webhook.sources.aks import AllowedClusters

__all__ = ["AksStorageOptions", "describe_aks", "parse_aks", "with_data_dir"]

_CONTAINER: Final = re.compile(r"[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9])){2,62}")
_CREDENTIAL_FILES: Final = ("sas_token_file", "account_key_file", "connection_string_file")
_INVALID: Final = "sources.aks section is not valid"


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


def parse_aks(raw: Mapping[str, Any] | None) -> AksStorageOptions | None:
    """The options, or None when the section is absent. An empty ``clusters`` is refused: it
    would read nothing, and none at all (read every cluster) is not offered."""
    if raw is None:
        return None
    options = dict(raw)
    for key in _CREDENTIAL_FILES:
        if options.get(key) is not None:
            options[key] = Path(options[key])
    clusters = tuple(options.pop("clusters", ()))
    if not clusters:
        problem = "$.sources.aks.clusters: empty; list the clusters to read (an empty list reads nothing)"
        raise ConfigError(_INVALID, (problem,))
    aks = AksStorageOptions(**options, clusters=clusters)
    try:
        aks.check()
    except ConfigError as exc:  # its message starts with the key, never quotes a value
        raise ConfigError(_INVALID, (f"$.sources.aks.{exc.message}",)) from None
    return aks


def with_data_dir(options: AksStorageOptions, data_dir: Path) -> AksStorageOptions:
    """The options with the state file in ``data_dir`` (a relative one, as every config path)."""
    return replace(options, state_file=in_data_dir(data_dir, options.state_file))


def describe_aks(options: AksStorageOptions) -> str:
    """What ``serve`` will follow, for ``check-config``: names and paths, never a credential."""
    if options.connection_string_file is not None:
        where = f"the account in connection_string_file {options.connection_string_file}"
    else:
        credential = next(k for k in _CREDENTIAL_FILES if getattr(options, k) is not None)
        where = f"{options.account_url} with {credential} {getattr(options, credential)}"
    clusters = ", ".join(options.clusters or ())
    return (
        f"sources.aks: follows container {options.container} of {where}, "
        f"every {options.poll_interval_s:g} s, for clusters {clusters}; state in {options.state_file}"
    )


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
