"""What the object of an event says: Ingress summaries (Secrets: webhook/enrich/secrets.py).

Objects are arbitrary JSON written by clients, so these functions are lenient: a part with an
unexpected shape is left out of the summary rather than failing the record. They only ever
copy names, hosts, paths and ports.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from webhook.core.values import as_dict, as_list, as_str, as_strs

__all__ = [
    "Backend",
    "IngressPath",
    "IngressRule",
    "IngressSummary",
    "IngressTLS",
    "ingress_summary",
    "object_of",
]

_LEGACY_CLASS_ANNOTATION: Final = "kubernetes.io/ingress.class"


@dataclass(frozen=True, slots=True, kw_only=True)
class Backend:
    service: str | None = None
    port: int | str | None = None
    resource: str | None = None  # "<apiGroup>/<kind>/<name>" for resource backends


@dataclass(frozen=True, slots=True, kw_only=True)
class IngressPath:
    path: str | None
    path_type: str | None
    backend: Backend | None


@dataclass(frozen=True, slots=True, kw_only=True)
class IngressRule:
    host: str | None
    paths: tuple[IngressPath, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class IngressTLS:
    hosts: tuple[str, ...]
    secret_name: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class IngressSummary:
    ingress_class: str | None
    hosts: tuple[str, ...]
    rules: tuple[IngressRule, ...]
    default_backend: Backend | None
    tls: tuple[IngressTLS, ...]
    tls_hosts: tuple[str, ...]

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> IngressSummary:
        """The summary a record's ``ingress`` field was written from."""
        return cls(
            ingress_class=doc["ingress_class"],
            hosts=tuple(doc["hosts"]),
            rules=tuple(
                IngressRule(
                    host=rule["host"],
                    paths=tuple(
                        IngressPath(
                            path=path["path"],
                            path_type=path["path_type"],
                            backend=_written_backend(path["backend"]),
                        )
                        for path in rule["paths"]
                    ),
                )
                for rule in doc["rules"]
            ),
            default_backend=_written_backend(doc["default_backend"]),
            tls=tuple(IngressTLS(hosts=tuple(t["hosts"]), secret_name=t["secret_name"]) for t in doc["tls"]),
            tls_hosts=tuple(doc["tls_hosts"]),
        )


def _written_backend(doc: Mapping[str, Any] | None) -> Backend | None:
    """A ``Backend`` as records write it (not as the Ingress spells it: ``_backend``)."""
    if doc is None:
        return None
    return Backend(service=doc["service"], port=doc["port"], resource=doc["resource"])


def object_of(event: dict[str, Any], kind: str) -> dict[str, Any] | None:
    """The full object of ``kind`` the event carries: the stored one if present, else the sent one.

    A patch's ``requestObject`` is the patch, not an object; a delete's ``responseObject`` is a
    ``Status``. Both are skipped by the kind check.
    """
    for key in ("responseObject", "requestObject"):
        obj = event.get(key)
        if isinstance(obj, dict) and obj.get("kind") == kind:
            return obj
    return None


def _backend(raw: object) -> Backend | None:
    backend = as_dict(raw)
    if not backend:
        return None
    service = as_dict(backend.get("service"))
    if service:
        port = as_dict(service.get("port"))
        number = port.get("number")
        return Backend(
            service=as_str(service.get("name")),
            port=number if isinstance(number, int) else as_str(port.get("name")),
        )
    resource = as_dict(backend.get("resource"))
    if resource:
        parts = (
            as_str(resource.get("apiGroup")) or "",
            as_str(resource.get("kind")) or "",
            as_str(resource.get("name")) or "",
        )
        return Backend(resource="/".join(parts))
    # networking.k8s.io/v1beta1 shape, still found in old manifests and last-applied annotations
    legacy_port = backend.get("servicePort")
    return Backend(
        service=as_str(backend.get("serviceName")),
        port=legacy_port if isinstance(legacy_port, int | str) else None,
    )


def ingress_summary(ingress: dict[str, Any]) -> IngressSummary:
    spec = as_dict(ingress.get("spec"))
    annotations = as_dict(as_dict(ingress.get("metadata")).get("annotations"))
    rules = tuple(
        IngressRule(
            host=as_str(rule.get("host")),
            paths=tuple(
                IngressPath(
                    path=as_str(path.get("path")),
                    path_type=as_str(path.get("pathType")),
                    backend=_backend(path.get("backend")),
                )
                for path in map(as_dict, as_list(as_dict(rule.get("http")).get("paths")))
            ),
        )
        for rule in map(as_dict, as_list(spec.get("rules")))
    )
    tls = tuple(
        IngressTLS(hosts=as_strs(entry.get("hosts")), secret_name=as_str(entry.get("secretName")))
        for entry in map(as_dict, as_list(spec.get("tls")))
    )
    return IngressSummary(
        ingress_class=as_str(spec.get("ingressClassName"))
        or as_str(annotations.get(_LEGACY_CLASS_ANNOTATION)),
        hosts=tuple(dict.fromkeys(rule.host for rule in rules if rule.host)),
        rules=rules,
        default_backend=_backend(spec.get("defaultBackend") or spec.get("backend")),
        tls=tls,
        tls_hosts=tuple(dict.fromkeys(host for entry in tls for host in entry.hosts)),
    )
