"""The ``access:`` section of the config: inputs, trust, aggregation windows and keep rules.

Kept apart from webhook/config.py (which builds it) because only the access pipeline reads it.
Syslog has no authentication, so the listeners default to loopback and refuse any other
address unless ``syslog.allow_remote`` says the network in between is trusted.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from webhook.core.net import NetworkError, is_loopback, parse_networks, split_address
from webhook.errors import ConfigError

__all__ = [
    "AccessConfig",
    "AccessKeepConfig",
    "AccessRateLimitConfig",
    "AccessSyslogConfig",
    "check_syslog_listen",
    "parse_access",
]

DEFAULT_MAX_LINE_BYTES: Final = 65536


@dataclass(frozen=True, slots=True, kw_only=True)
class AccessRateLimitConfig:
    """Per syslog peer: ``lines_per_s`` sustained, ``burst`` at once (0 lines/s: no limit).

    A busy controller pod sends a few thousand lines a second; a forged flood sends tens of
    thousands. ``max_peers`` bounds the table whatever source addresses arrive."""

    lines_per_s: float = 5000.0
    burst: int = 10000
    max_peers: int = 1024


@dataclass(frozen=True, slots=True, kw_only=True)
class AccessSyslogConfig:
    """``host:port`` to listen on (``[::1]:5514`` for IPv6); null turns that transport off."""

    udp: str | None = "127.0.0.1:5514"
    tcp: str | None = "127.0.0.1:5514"
    allow_remote: bool = False
    max_connections: int = 64
    idle_timeout_s: float = 300.0
    rate_limit: AccessRateLimitConfig = field(default_factory=AccessRateLimitConfig)


@dataclass(frozen=True, slots=True, kw_only=True)
class AccessKeepConfig:
    """Which requests become individual ``access`` records (the rest only count in summaries)."""

    statuses: tuple[int, ...] = (401, 403)
    sensitive_hosts: tuple[str, ...] = ()
    sensitive_paths: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class AccessConfig:
    enabled: bool = False
    format: str = "nginx-ingress"
    field_map: Mapping[str, str] = field(default_factory=dict)
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES
    syslog: AccessSyslogConfig = field(default_factory=AccessSyslogConfig)
    http: bool = True
    trusted_cidrs: tuple[str, ...] = ()  # empty: actors.trusted_cidrs
    trusted_proxies: tuple[str, ...] = ()
    window_s: float = 60.0
    max_clients: int = 1000
    max_hosts: int = 1000
    max_metric_ingresses: int = 100
    keep_all: bool = False
    keep: AccessKeepConfig = field(default_factory=AccessKeepConfig)


def parse_access(raw: Mapping[str, Any] | None) -> AccessConfig:
    """Build the section from schema-valid YAML; raises ConfigError naming each bad entry."""
    options = dict(raw or {})
    syslog_raw = dict(options.pop("syslog", None) or {})
    rate_limit = AccessRateLimitConfig(**(syslog_raw.pop("rate_limit", None) or {}))
    syslog = AccessSyslogConfig(**syslog_raw, rate_limit=rate_limit)
    keep_raw = dict(options.pop("keep", None) or {})
    keep = AccessKeepConfig(**{key: tuple(value) for key, value in keep_raw.items()})
    for key in ("trusted_cidrs", "trusted_proxies"):
        if key in options:
            options[key] = tuple(options[key])
    if "field_map" in options:
        options["field_map"] = dict(options["field_map"])
    config = AccessConfig(**options, syslog=syslog, keep=keep)
    problems: list[str] = []
    for key in ("trusted_cidrs", "trusted_proxies"):
        try:
            parse_networks(getattr(config, key), where=f"$.access.{key}")
        except NetworkError as exc:
            problems.extend(exc.problems)
    for key in ("udp", "tcp"):
        address = getattr(syslog, key)
        if address is None:
            continue
        try:
            split_address(address)
        except ValueError as exc:
            problems.append(f"$.access.syslog.{key}: {exc}")
    if problems:
        raise ConfigError("access section is not valid", tuple(problems))
    return config


def check_syslog_listen(config: AccessConfig) -> None:
    """Syslog carries no credentials: only loopback unless ``allow_remote`` is set."""
    if config.syslog.allow_remote:
        return
    for key in ("udp", "tcp"):
        address = getattr(config.syslog, key)
        if address is not None and not is_loopback(split_address(address)[0]):
            raise ConfigError(
                f"refusing to listen for syslog on {address} ({key}): syslog has no authentication; "
                "set access.syslog.allow_remote: true if the network in between is trusted"
            )
