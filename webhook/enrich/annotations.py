"""Risky ingress-nginx annotations and Traefik middleware changes, old object against new.

Each check looks at what the write added or changed, so an unrelated update of an Ingress
does not raise the same finding again. Messages name annotation keys and hosts, not values.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import Any, Final
from urllib.parse import urlsplit

from webhook.core.findings import Finding
from webhook.enrich.diff import pointer

__all__ = ["annotations_of", "nginx_findings", "traefik_findings"]

NGINX: Final = "nginx.ingress.kubernetes.io/"
TRAEFIK_MIDDLEWARES: Final = "traefik.ingress.kubernetes.io/router.middlewares"
_AUTH_KINDS: Final = ("basicAuth", "forwardAuth", "digestAuth")
_OPEN_RANGES: Final = (ipaddress.ip_network("0.0.0.0/0"), ipaddress.ip_network("::/0"))

# ingress-nginx annotations (without the ``nginx.ingress.kubernetes.io/`` prefix) that were
# the injection point of a published CVE; docs/findings.md cites each advisory.
NGINX_CVE_ANNOTATIONS: Final[dict[str, tuple[str, ...]]] = {
    "configuration-snippet": ("CVE-2021-25742", "CVE-2023-5043"),
    "server-snippet": ("CVE-2021-25742",),
    "auth-snippet": ("CVE-2021-25742",),
    "location-snippet": ("CVE-2021-25742",),
    "stream-snippet": ("CVE-2021-25742",),
    "modsecurity-snippet": ("CVE-2021-25742",),
    "permanent-redirect": ("CVE-2023-5044",),
    "auth-tls-match-cn": ("CVE-2025-1097",),
    "mirror-target": ("CVE-2025-1098",),
    "mirror-host": ("CVE-2025-1098",),
    "auth-url": ("CVE-2025-24514",),
    "auth-proxy-set-headers": ("CVE-2025-15566",),
}

Raise = Callable[[str, str, str], Finding]


def annotations_of(obj: dict[str, Any] | None) -> dict[str, str]:
    meta = obj.get("metadata") if isinstance(obj, dict) else None
    annotations = meta.get("annotations") if isinstance(meta, dict) else None
    if not isinstance(annotations, dict):
        return {}
    return {k: v for k, v in annotations.items() if isinstance(k, str) and isinstance(v, str)}


def _path(key: str) -> str:
    return pointer(("metadata", "annotations", key))


def _host(value: str) -> str | None:
    """The host of an absolute URL (``http://x/…``, ``//x/…``); None for a path."""
    text = value.strip()
    if "://" not in text and not text.startswith("//"):
        return None
    try:
        return urlsplit(text if "://" in text else "http:" + text).hostname
    except ValueError:
        return "(unparseable)"


def _ranges(value: str | None) -> list[str]:
    return [part.strip() for part in (value or "").split(",") if part.strip()]


def _is_open(cidr: str) -> bool:
    try:
        network = ipaddress.ip_network(cidr, strict=False)
    except ValueError:
        return False
    return network.prefixlen == 0 or network in _OPEN_RANGES


def nginx_findings(
    old: dict[str, Any] | None, new: dict[str, Any], *, internal: Callable[[str], bool], make: Raise
) -> list[Finding]:
    before, after = annotations_of(old), annotations_of(new)
    changed = {k: v for k, v in after.items() if k.startswith(NGINX) and before.get(k) != v}
    found: list[Finding] = []
    for key in sorted(changed):
        name = key.removeprefix(NGINX)
        value = changed[key]
        if name.endswith("-snippet"):
            found.append(
                make("nginx-snippet-annotation", f"annotation {key} set: raw nginx configuration", _path(key))
            )
        if name in ("auth-url", "auth-signin"):
            host = _host(value)
            if host and not internal(host):
                found.append(
                    make(
                        "nginx-auth-url-external",
                        f"annotation {key} points outside the cluster, to {host}",
                        _path(key),
                    )
                )
        if name in ("ssl-redirect", "force-ssl-redirect") and value.strip().lower() == "false":
            found.append(
                make(
                    "nginx-ssl-redirect-disabled",
                    f"annotation {key} turned off: plain HTTP is served",
                    _path(key),
                )
            )
        if name in ("whitelist-source-range", "allowlist-source-range") and any(
            map(_is_open, _ranges(value))
        ):
            found.append(
                make("nginx-source-range-widened", f"annotation {key} now allows every address", _path(key))
            )
        if name == "backend-protocol" and value.strip().upper() == "HTTP":
            found.append(
                make("nginx-backend-protocol-http", f"annotation {key} changed to plain HTTP", _path(key))
            )
        if name in ("permanent-redirect", "temporal-redirect", "rewrite-target", "app-root"):
            host = _host(value)
            if host and not internal(host):
                found.append(
                    make(
                        "nginx-external-redirect",
                        f"annotation {key} redirects to the external host {host}",
                        _path(key),
                    )
                )
        if name in ("mirror-target", "mirror-host"):
            found.append(
                make(
                    "nginx-mirror-target", f"annotation {key} set: requests are copied elsewhere", _path(key)
                )
            )
        if name in NGINX_CVE_ANNOTATIONS:
            cves = ", ".join(NGINX_CVE_ANNOTATIONS[name])
            found.append(
                make("nginx-cve-annotation", f"annotation {key} set: injection point of {cves}", _path(key))
            )
    for key in sorted(before):
        name = key.removeprefix(NGINX)
        if not key.startswith(NGINX) or key in after:
            continue
        if name in ("whitelist-source-range", "allowlist-source-range"):
            found.append(
                make(
                    "nginx-source-range-widened",
                    f"annotation {key} removed: every address is allowed",
                    _path(key),
                )
            )
        if name == "backend-protocol" and before[key].strip().upper() != "HTTP":
            found.append(
                make(
                    "nginx-backend-protocol-http",
                    f"annotation {key} removed: the backend is spoken to in plain HTTP",
                    _path(key),
                )
            )
    return found


def _middlewares(value: str | None) -> list[str]:
    return [part.strip() for part in (value or "").split(",") if part.strip()]


def _route_middlewares(obj: dict[str, Any] | None) -> set[str]:
    spec = obj.get("spec") if isinstance(obj, dict) else None
    routes = spec.get("routes") if isinstance(spec, dict) else None
    names: set[str] = set()
    for route in routes if isinstance(routes, list) else []:
        for ref in (route.get("middlewares") or []) if isinstance(route, dict) else []:
            if isinstance(ref, dict) and isinstance(ref.get("name"), str):
                names.add(ref["name"])
    return names


def _auth_kinds(obj: dict[str, Any] | None) -> set[str]:
    spec = obj.get("spec") if isinstance(obj, dict) else None
    return {kind for kind in _AUTH_KINDS if isinstance(spec, dict) and spec.get(kind)}


def traefik_findings(old: dict[str, Any] | None, new: dict[str, Any] | None, *, make: Raise) -> list[Finding]:
    """A Middleware that loses (or is deleted with) basicAuth/forwardAuth/digestAuth, or an
    auth middleware (its name contains ``auth``) taken out of a router's chain."""
    if old is None:
        return []
    kind = old.get("kind")
    found: list[Finding] = []
    if kind == "Middleware":
        for lost in sorted(_auth_kinds(old) - _auth_kinds(new)):
            verb = "deleted" if new is None else "removed"
            found.append(
                make(
                    "traefik-auth-removed",
                    f"middleware {verb}: {lost} no longer applies",
                    pointer(("spec", lost)),
                )
            )
        return found
    if new is None:
        return found
    if kind == "IngressRoute":
        removed = _route_middlewares(old) - _route_middlewares(new)
        where = pointer(("spec", "routes"))
    else:
        removed = set(_middlewares(annotations_of(old).get(TRAEFIK_MIDDLEWARES))) - set(
            _middlewares(annotations_of(new).get(TRAEFIK_MIDDLEWARES))
        )
        where = _path(TRAEFIK_MIDDLEWARES)
    found.extend(
        make("traefik-auth-removed", f"auth middleware {name} removed from the router", where)
        for name in sorted(n for n in removed if "auth" in n.lower())
    )
    return found
