"""The sink types: one module each, registered here by name.

A sink module defines ``SINK_TYPE``: its config options (a JSON Schema fragment and a parser
into a frozen dataclass) and how to build the sink. Modules import their client libraries
inside ``open()``, so loading the registry (for config validation) stays cheap.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pathlib import Path

    from webhook.sinks.base import Sink, SinkSettings

__all__ = ["SinkType", "sink_types"]

_MODULES = (
    "jsonl",
    "stdout",
    "syslog",
    "postgres",
    "nats",
    "http",
    "loki",
    "elasticsearch",
    "splunk_hec",
    "alertmanager",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class SinkType:
    name: str
    description: str
    properties: dict[str, Any]  # JSON Schema of the type's own options
    parse: Callable[[Mapping[str, Any]], Any]  # validated raw options -> frozen options
    build: Callable[[SinkSettings, Path], Sink]  # settings, data dir -> sink
    required: tuple[str, ...] = ()
    batch_defaults: dict[str, Any] = field(default_factory=dict)


@functools.cache
def sink_types() -> dict[str, SinkType]:
    types: dict[str, SinkType] = {}
    for module in _MODULES:
        sink_type: SinkType = importlib.import_module(f"webhook.sinks.{module}").SINK_TYPE
        types[sink_type.name] = sink_type
    return types
