"""GKE's ``methodName`` and ``resourceName``: the verb, objectRef and requestURI of a request.

``methodName`` is ``io.k8s.<group>.<version>.<resource>[.<subresource>].<verb>`` with a short
group (``core``, ``networking``, ``rbac.authorization``), or ``io.k8s.<verb>`` for a
non-resource path. ``resourceName`` is ``<group|core>/<version>[/namespaces/<ns>]/<resource>
[/<name>[/<subresource>...]]`` with the full group, or the bare path (``readyz``, ``api/v1``).
The method says which parts are resource and subresource, which the path alone cannot
(``namespaces/shop/status`` is a namespace's status, ``namespaces/shop/pods`` its pods).

The requestURI is rebuilt, not logged: a path the apiserver would have served, never a query.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final
from urllib.parse import quote

__all__ = ["K8sRequest", "UnparsableNameError", "parse_request"]

# methodName's short group → API group, for an entry whose resourceName does not say.
_GROUPS: Final = {
    "core": "",
    "admissionregistration": "admissionregistration.k8s.io",
    "apiextensions": "apiextensions.k8s.io",
    "apiregistration": "apiregistration.k8s.io",
    "authentication": "authentication.k8s.io",
    "authorization": "authorization.k8s.io",
    "certificates": "certificates.k8s.io",
    "coordination": "coordination.k8s.io",
    "discovery": "discovery.k8s.io",
    "events": "events.k8s.io",
    "flowcontrol": "flowcontrol.apiserver.k8s.io",
    "gateway.networking": "gateway.networking.k8s.io",
    "networking": "networking.k8s.io",
    "node": "node.k8s.io",
    "rbac.authorization": "rbac.authorization.k8s.io",
    "scheduling": "scheduling.k8s.io",
    "storage": "storage.k8s.io",
}
_COLLECTION_VERBS: Final = frozenset({"create", "list", "watch", "deletecollection"})
_VERSION: Final = re.compile(r"v\d+(?:(?:alpha|beta)\d+)?")
_WORD: Final = re.compile(r"[a-z][a-z0-9-]*")
_SAFE_PATH: Final = "!$&'()*+,;=:@-._~%"


class UnparsableNameError(ValueError):
    """The names do not describe a Kubernetes request; ``reason`` is the dead-letter reason."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class K8sRequest:
    verb: str
    object_ref: dict[str, str] | None  # None for a non-resource request
    request_uri: str


def parse_request(method_name: object, resource_name: object) -> K8sRequest:
    """The request the two names describe; raises ``UnparsableNameError``."""
    if resource_name is not None and not isinstance(resource_name, str):
        raise UnparsableNameError("malformed-log-entry", "protoPayload.resourceName is not a string")
    verb, call = _method(method_name)
    if call is not None:
        ref, uri = _object_ref(call, resource_name or "", verb)
        return K8sRequest(verb, ref, uri)
    if not resource_name:
        raise UnparsableNameError("malformed-log-entry", "protoPayload.resourceName is missing")
    return K8sRequest(verb, None, "/" + _quote(resource_name.lstrip("/")))


@dataclass(frozen=True, slots=True)
class _Call:
    """What a resource methodName says."""

    group_prefix: str
    version: str
    resource: str
    subresource: str | None


def _method(method: object) -> tuple[str, _Call | None]:
    bad = UnparsableNameError(
        "unknown-method", "protoPayload.methodName is not io.k8s.[<group>.<version>.<resource>.]<verb>"
    )
    if not isinstance(method, str) or not method.startswith("io.k8s."):
        raise bad
    parts = method[len("io.k8s.") :].split(".")
    verb = parts.pop()
    if not _WORD.fullmatch(verb):
        raise bad
    if not parts:
        return verb, None  # a non-resource request (/readyz, /api/v1, ...)
    at = next((i for i, part in enumerate(parts) if _VERSION.fullmatch(part)), None)
    tail = parts[at + 1 :] if at is not None else []
    if at is None or at == 0 or not 1 <= len(tail) <= 2 or not all(_WORD.fullmatch(p) for p in tail):
        raise bad
    return verb, _Call(".".join(parts[:at]), parts[at], tail[0], tail[1] if len(tail) == 2 else None)


def _object_ref(call: _Call, resource_name: str, verb: str) -> tuple[dict[str, str], str]:
    """objectRef and a rebuilt requestURI; resourceName gives the full group, namespace, name."""
    mismatch = UnparsableNameError(
        "malformed-log-entry", "protoPayload.resourceName does not match protoPayload.methodName"
    )
    group = _GROUPS.get(call.group_prefix, call.group_prefix)
    namespace = name = None
    extra: list[str] = []
    if resource_name:
        parts = resource_name.split("/")
        if len(parts) < 3 or not all(parts) or parts[1] != call.version:
            raise mismatch
        group = "" if parts[0] == "core" else parts[0]
        rest = parts[2:]
        if call.resource != "namespaces" and len(rest) >= 3 and rest[0] == "namespaces":
            namespace, rest = rest[1], rest[2:]
        if rest[0] != call.resource or (call.subresource is None and len(rest) > 2):
            raise mismatch
        name = rest[1] if len(rest) >= 2 else None
        if call.subresource is not None:
            if len(rest) < 3 or rest[2] != call.subresource:
                raise mismatch
            extra = rest[3:]
    if call.resource == "namespaces" and name and verb not in _COLLECTION_VERBS:
        namespace = name  # the apiserver's RequestInfo does the same for /api/v1/namespaces/<name>
    ref = {"resource": call.resource}
    if namespace:
        ref["namespace"] = namespace
    if name:
        ref["name"] = name
    if group:
        ref["apiGroup"] = group
    ref["apiVersion"] = call.version
    if call.subresource:
        ref["subresource"] = call.subresource
    segments = ["api", call.version] if not group else ["apis", group, call.version]
    if namespace and call.resource != "namespaces":
        segments += ["namespaces", namespace]
    segments.append(call.resource)
    if name and (call.subresource or verb not in _COLLECTION_VERBS):
        segments.append(name)
    if call.subresource:
        segments += [call.subresource, *extra]
    return ref, "/" + "/".join(_quote(s) for s in segments)


def _quote(path: str) -> str:
    """A path that cannot grow a query or fragment: ``?`` and ``#`` are percent-encoded."""
    return quote(path, safe="/" + _SAFE_PATH)
