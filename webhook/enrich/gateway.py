"""Gateway API and IngressClass summaries: pure functions over redacted objects, lenient about
shapes (a part that is not what the API says is left out), copying names, hosts and ports only."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

__all__ = [
    "BackendRef",
    "GatewaySummary",
    "IngressClassSummary",
    "Listener",
    "ParentRef",
    "ReferenceGrantSummary",
    "RouteSummary",
    "gateway_summary",
    "ingress_class_summary",
    "reference_grant_summary",
    "route_summary",
]

DEFAULT_CLASS_ANNOTATION: Final = "ingressclass.kubernetes.io/is-default-class"
ROUTE_KINDS: Final = frozenset({"HTTPRoute", "GRPCRoute", "TLSRoute", "TCPRoute", "UDPRoute"})


def _dict(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


def _str(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


@dataclass(frozen=True, slots=True, kw_only=True)
class ObjectRefSummary:
    group: str | None
    kind: str | None
    namespace: str | None
    name: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Listener:
    name: str | None
    protocol: str | None
    port: int | None
    hostname: str | None
    tls_mode: str | None
    certificate_refs: tuple[ObjectRefSummary, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class GatewaySummary:
    gateway_class: str | None
    listeners: tuple[Listener, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class ParentRef:
    kind: str | None
    namespace: str | None
    name: str | None
    section_name: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class BackendRef:
    kind: str | None
    namespace: str | None
    name: str | None
    port: int | None


@dataclass(frozen=True, slots=True, kw_only=True)
class RouteSummary:
    kind: str
    parent_refs: tuple[ParentRef, ...]
    hostnames: tuple[str, ...]
    backend_refs: tuple[BackendRef, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class ReferenceGrantSummary:
    from_refs: tuple[ObjectRefSummary, ...]
    to_refs: tuple[ObjectRefSummary, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class IngressClassSummary:
    controller: str | None
    parameters: ObjectRefSummary | None
    is_default: bool


def _ref(raw: object) -> ObjectRefSummary:
    ref = _dict(raw)
    return ObjectRefSummary(
        group=_str(ref.get("group", ref.get("apiGroup"))),
        kind=_str(ref.get("kind")),
        namespace=_str(ref.get("namespace")),
        name=_str(ref.get("name")),
    )


def gateway_summary(gateway: dict[str, Any]) -> GatewaySummary:
    spec = _dict(gateway.get("spec"))
    listeners = tuple(
        Listener(
            name=_str(item.get("name")),
            protocol=_str(item.get("protocol")),
            port=_int(item.get("port")),
            hostname=_str(item.get("hostname")),
            tls_mode=_str(_dict(item.get("tls")).get("mode")) or ("Terminate" if item.get("tls") else None),
            certificate_refs=tuple(_ref(r) for r in _list(_dict(item.get("tls")).get("certificateRefs"))),
        )
        for item in map(_dict, _list(spec.get("listeners")))
    )
    return GatewaySummary(gateway_class=_str(spec.get("gatewayClassName")), listeners=listeners)


def route_summary(route: dict[str, Any]) -> RouteSummary:
    spec = _dict(route.get("spec"))
    backends = [
        BackendRef(
            kind=_str(ref.get("kind")) or "Service",
            namespace=_str(ref.get("namespace")),
            name=_str(ref.get("name")),
            port=_int(ref.get("port")),
        )
        for rule in map(_dict, _list(spec.get("rules")))
        for ref in map(_dict, _list(rule.get("backendRefs")))
    ]
    return RouteSummary(
        kind=_str(route.get("kind")) or "",
        parent_refs=tuple(
            ParentRef(
                kind=_str(ref.get("kind")) or "Gateway",
                namespace=_str(ref.get("namespace")),
                name=_str(ref.get("name")),
                section_name=_str(ref.get("sectionName")),
            )
            for ref in map(_dict, _list(spec.get("parentRefs")))
        ),
        hostnames=tuple(h for h in _list(spec.get("hostnames")) if isinstance(h, str)),
        backend_refs=tuple(dict.fromkeys(backends)),
    )


def reference_grant_summary(grant: dict[str, Any]) -> ReferenceGrantSummary:
    spec = _dict(grant.get("spec"))
    return ReferenceGrantSummary(
        from_refs=tuple(_ref(r) for r in _list(spec.get("from"))),
        to_refs=tuple(_ref(r) for r in _list(spec.get("to"))),
    )


def is_default_class(ingress_class: dict[str, Any]) -> bool:
    annotations = _dict(_dict(ingress_class.get("metadata")).get("annotations"))
    return str(annotations.get(DEFAULT_CLASS_ANNOTATION, "")).lower() == "true"


def ingress_class_summary(ingress_class: dict[str, Any]) -> IngressClassSummary:
    spec = _dict(ingress_class.get("spec"))
    parameters = spec.get("parameters")
    return IngressClassSummary(
        controller=_str(spec.get("controller")),
        parameters=_ref(parameters) if isinstance(parameters, dict) else None,
        is_default=is_default_class(ingress_class),
    )
