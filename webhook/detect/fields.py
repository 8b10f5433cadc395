"""Reading an audit record's JSON dict defensively, for the detections (docs/record.md).

Every accessor tolerates a missing or mistyped field: a record that lacks what a rule needs
simply does not match it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from typing import Any, Final

from webhook.core.net import Network
from webhook.core.values import as_int, as_mapping, as_nonempty_str
from webhook.record.alert import AlertActor, AlertObject

__all__ = [
    "CHANGES",
    "READS",
    "Record",
    "actor_of",
    "code_of",
    "identity",
    "in_networks",
    "is_change",
    "object_of",
    "source_ips",
    "succeeded",
    "where",
]

Record = Mapping[str, Any]

CHANGES: Final = frozenset({"create", "update", "patch", "delete", "deletecollection"})
READS: Final = frozenset({"get", "list", "watch"})


def code_of(record: Record) -> int | None:
    return as_int(as_mapping(record.get("outcome")).get("code"))


def succeeded(record: Record) -> bool:
    code = code_of(record)
    return code is None or code < 400


def is_change(record: Record) -> bool:
    return record.get("verb") in CHANGES and not record.get("dry_run") and succeeded(record)


def source_ips(record: Record) -> list[str]:
    ips = as_mapping(record.get("actor")).get("source_ips")
    return [ip for ip in ips if isinstance(ip, str)] if isinstance(ips, list) else []


def identity(record: Record, *, effective: bool) -> Mapping[str, Any]:
    actor = as_mapping(record.get("actor"))
    if effective and actor.get("impersonated"):
        return as_mapping(actor.get("impersonated"))
    return as_mapping(actor.get("user"))


def actor_of(record: Record, *, effective: bool = False) -> AlertActor:
    who = identity(record, effective=effective)
    return AlertActor(
        username=as_nonempty_str(who.get("username")),
        kind=as_nonempty_str(who.get("kind")),
        source_ips=tuple(source_ips(record)[:10]),
    )


def object_of(record: Record) -> AlertObject | None:
    obj = record.get("object")
    if not isinstance(obj, Mapping):
        return None
    return AlertObject(
        api_group=as_nonempty_str(obj.get("api_group")) or "",
        resource=as_nonempty_str(obj.get("resource")),
        namespace=as_nonempty_str(obj.get("namespace")),
        name=as_nonempty_str(obj.get("name")),
    )


def where(obj: AlertObject | None) -> str:
    if obj is None:
        return "an unknown object"
    kind = obj.resource or "object"
    if obj.name:
        return f"{kind} {obj.namespace}/{obj.name}" if obj.namespace else f"{kind} {obj.name}"
    return f"{kind} in {obj.namespace}" if obj.namespace else f"{kind} in all namespaces"


def in_networks(ip: str, networks: Sequence[Network]) -> bool:
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return False
    return any(address in network for network in networks)
