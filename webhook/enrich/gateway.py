"""Gateway API and IngressClass summaries: pure functions over redacted objects, lenient about
shapes (a part that is not what the API says is left out), copying names, hosts and ports only."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from webhook.core.values import as_dict, as_int, as_list, as_str, as_strs

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
    ref = as_dict(raw)
    return ObjectRefSummary(
        group=as_str(ref.get("group", ref.get("apiGroup"))),
        kind=as_str(ref.get("kind")),
        namespace=as_str(ref.get("namespace")),
        name=as_str(ref.get("name")),
    )


def gateway_summary(gateway: dict[str, Any]) -> GatewaySummary:
    spec = as_dict(gateway.get("spec"))
    listeners = tuple(
        Listener(
            name=as_str(item.get("name")),
            protocol=as_str(item.get("protocol")),
            port=as_int(item.get("port")),
            hostname=as_str(item.get("hostname")),
            tls_mode=as_str(as_dict(item.get("tls")).get("mode"))
            or ("Terminate" if item.get("tls") else None),
            certificate_refs=tuple(_ref(r) for r in as_list(as_dict(item.get("tls")).get("certificateRefs"))),
        )
        for item in map(as_dict, as_list(spec.get("listeners")))
    )
    return GatewaySummary(gateway_class=as_str(spec.get("gatewayClassName")), listeners=listeners)


def route_summary(route: dict[str, Any]) -> RouteSummary:
    spec = as_dict(route.get("spec"))
    backends = [
        BackendRef(
            kind=as_str(ref.get("kind")) or "Service",
            namespace=as_str(ref.get("namespace")),
            name=as_str(ref.get("name")),
            port=as_int(ref.get("port")),
        )
        for rule in map(as_dict, as_list(spec.get("rules")))
        for ref in map(as_dict, as_list(rule.get("backendRefs")))
    ]
    return RouteSummary(
        kind=as_str(route.get("kind")) or "",
        parent_refs=tuple(
            ParentRef(
                kind=as_str(ref.get("kind")) or "Gateway",
                namespace=as_str(ref.get("namespace")),
                name=as_str(ref.get("name")),
                section_name=as_str(ref.get("sectionName")),
            )
            for ref in map(as_dict, as_list(spec.get("parentRefs")))
        ),
        hostnames=as_strs(spec.get("hostnames")),
        backend_refs=tuple(dict.fromkeys(backends)),
    )


def reference_grant_summary(grant: dict[str, Any]) -> ReferenceGrantSummary:
    spec = as_dict(grant.get("spec"))
    return ReferenceGrantSummary(
        from_refs=tuple(_ref(r) for r in as_list(spec.get("from"))),
        to_refs=tuple(_ref(r) for r in as_list(spec.get("to"))),
    )


def is_default_class(ingress_class: dict[str, Any]) -> bool:
    annotations = as_dict(as_dict(ingress_class.get("metadata")).get("annotations"))
    return str(annotations.get(DEFAULT_CLASS_ANNOTATION, "")).lower() == "true"


def ingress_class_summary(ingress_class: dict[str, Any]) -> IngressClassSummary:
    spec = as_dict(ingress_class.get("spec"))
    parameters = spec.get("parameters")
    return IngressClassSummary(
        controller=as_str(spec.get("controller")),
        parameters=_ref(parameters) if isinstance(parameters, dict) else None,
        is_default=is_default_class(ingress_class),
    )
