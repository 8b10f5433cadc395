"""Which ingress serves a host and path, its TLS state, and the last change that touched it.

Maintained from the audit records as the audit ingestor writes them (``observe``), loaded at
start-up from the state store's stored Ingress objects (``load``), so an access line names the
ingress as the audit trail last saw it. The last change per host (ingress, its TLS Secret, its
IngressClass) is remembered for change correlation. Bounded by the cluster's own ingresses:
hosts come from Ingress objects, never from access lines.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from webhook.enrich.objects import IngressSummary, ingress_summary
from webhook.record.access import AccessIngress
from webhook.state.base import StoredObject

__all__ = ["INGRESS_PREFIXES", "ChangeRef", "HostIndex", "Served"]

INGRESS_PREFIXES: Final = ("networking.k8s.io/ingresses/", "extensions/ingresses/")
_CHANGING_VERBS: Final = frozenset({"create", "update", "patch", "delete"})
_MAX_PATHS: Final = 20
_MAX_CHANGES: Final = 100_000  # hosts remembered after their ingress is gone; the oldest go first


@dataclass(frozen=True, slots=True, kw_only=True)
class ChangeRef:
    """An audit record that changed what serves a host: enough to name it in an alert."""

    record_id: str
    time: str | None
    actor: str | None  # the effective username
    verb: str
    resource: str  # ingresses, secrets, ingressclasses
    namespace: str | None
    name: str | None
    finding_ids: tuple[str, ...]
    changed_paths: tuple[str, ...]  # RFC 6901 paths of the diff, at most 20


@dataclass(frozen=True, slots=True, eq=False)
class Served:
    """One (host rule, ingress) pair; compared by identity, so it is a cheap aggregation key."""

    host: str  # the rule's host: exact, ``*.example.com``, or "" for rules without a host
    ingress: AccessIngress


@dataclass(frozen=True, slots=True)
class _Route:
    path: str
    exact: bool
    served: Served


def _key(served: Served) -> tuple[str, str]:
    return (served.ingress.namespace, served.ingress.name)


def _route_order(route: _Route) -> tuple[bool, int]:
    return (not route.exact, -len(route.path))


class HostIndex:
    def __init__(self) -> None:
        self._routes: dict[str, list[_Route]] = {}  # host ("" = any host) -> longest path first
        self._ingresses: dict[tuple[str, str], tuple[str, ...]] = {}  # -> its hosts
        self._summaries: dict[tuple[str, str], IngressSummary] = {}
        self._changes: dict[str, ChangeRef] = {}
        # ingress-nginx's $proxy_upstream_name, namespace-service-port: its default log
        # format has no $host, so this is how its lines find their ingress.
        self._upstreams: dict[str, Served] = {}

    def __len__(self) -> int:
        return len(self._ingresses)

    def lookup(self, host: str | None, path: str | None, upstream: str | None = None) -> Served | None:
        """The ingress whose rule matches; exact host, then ``*.`` wildcard, then host-less rules.

        Without a host, the upstream name (ingress-nginx) names the backend, hence the ingress.
        """
        if not host and upstream:
            return self._upstreams.get(upstream)
        routes = None
        if host:
            routes = self._routes.get(host)
            if routes is None and "." in host:
                routes = self._routes.get("*." + host.split(".", 1)[1])
        if routes is None:
            routes = self._routes.get("")
            if routes is None:
                return None
        path = path or "/"
        for route in routes:
            if route.exact:
                if path == route.path:
                    return route.served
            elif path.startswith(route.path) and (
                len(path) == len(route.path) or route.path.endswith("/") or path[len(route.path)] == "/"
            ):
                return route.served
        return None

    def last_change(self, host: str) -> ChangeRef | None:
        return self._changes.get(host)

    def hosts_of(self, namespace: str, name: str) -> tuple[str, ...]:
        return self._ingresses.get((namespace, name), ())

    def load(self, objects: Mapping[str, StoredObject]) -> int:
        """Index stored Ingress objects (state store keys ``group/ingresses/ns/name``)."""
        loaded = 0
        for key, stored in objects.items():
            parts = key.split("/")
            if len(parts) != 4 or stored.deleted or stored.object is None:
                continue
            self._put(parts[2], parts[3], ingress_summary(stored.object))
            loaded += 1
        return loaded

    def observe(self, records: Iterable[Mapping[str, Any]]) -> None:
        """Follow the audit records the audit ingestor wrote, as their JSON documents (other
        record types are ignored)."""
        for record in records:
            if record.get("type") == "audit":
                self._observe(record)

    def _observe(self, record: Mapping[str, Any]) -> None:
        ref = record["object"]
        verb = record["verb"]
        if ref is None or ref["name"] is None or verb not in _CHANGING_VERBS or record["dry_run"]:
            return
        code = record["outcome"]["code"]
        if code is not None and not 200 <= code < 300:
            return
        namespace, name, resource = ref["namespace"] or "", ref["name"], ref["resource"]
        if resource == "ingresses":
            before = self._ingresses.get((namespace, name), ())
            if verb == "delete":
                self._drop(namespace, name)
            elif record["ingress"] is not None:
                self._put(namespace, name, IngressSummary.from_json(record["ingress"]))
            hosts = set(before) | set(self._ingresses.get((namespace, name), ()))
        elif resource == "secrets":
            hosts = {
                host
                for (ns, _), summary in self._summaries.items()
                if ns == namespace
                for tls in summary.tls
                if tls.secret_name == name
                for host in tls.hosts
            }
        elif resource == "ingressclasses":
            hosts = {
                host
                for key, summary in self._summaries.items()
                if summary.ingress_class == name
                for host in self._ingresses.get(key, ())
            }
        else:
            return
        if not hosts:
            return
        actor = record["actor"]
        change = record["change"]
        change_ref = ChangeRef(
            record_id=record["id"],
            time=record["time"],
            actor=(actor["impersonated"] or actor["user"])["username"],  # the effective identity
            verb=verb,
            resource=resource,
            namespace=ref["namespace"],
            name=name,
            finding_ids=tuple(f["id"] for f in record["findings"]),
            changed_paths=tuple(op["path"] for op in change["operations"][:_MAX_PATHS])
            if change is not None
            else (),
        )
        for host in hosts:
            self._changes.pop(host, None)  # re-insert: the dict's order is the age of the change
            self._changes[host] = change_ref
        while len(self._changes) > _MAX_CHANGES:
            del self._changes[next(iter(self._changes))]

    def _drop(self, namespace: str, name: str) -> None:
        key = (namespace, name)
        for upstream in [u for u, served in self._upstreams.items() if _key(served) == key]:
            del self._upstreams[upstream]
        for host in self._ingresses.pop(key, ()):
            kept = [r for r in self._routes.get(host, []) if _key(r.served) != key]
            if kept:
                self._routes[host] = kept
            else:
                self._routes.pop(host, None)
        self._summaries.pop(key, None)

    def _put(self, namespace: str, name: str, summary: IngressSummary) -> None:
        self._drop(namespace, name)
        secrets = {host: tls.secret_name for tls in summary.tls for host in tls.hosts}
        hosts: dict[str, None] = {}
        for rule in summary.rules:
            host = (rule.host or "").lower()
            ingress = AccessIngress(
                namespace=namespace,
                name=name,
                ingress_class=summary.ingress_class,
                tls=host in secrets if host else None,
                tls_secret=secrets.get(host) if host else None,
            )
            served = Served(host=host, ingress=ingress)
            routes = [
                _Route(path=p.path or "/", exact=p.path_type == "Exact", served=served) for p in rule.paths
            ] or [_Route(path="/", exact=False, served=served)]
            for p in rule.paths:
                if p.backend is not None and p.backend.service and p.backend.port is not None:
                    self._upstreams.setdefault(f"{namespace}-{p.backend.service}-{p.backend.port}", served)
            self._routes[host] = sorted([*self._routes.get(host, []), *routes], key=_route_order)
            hosts[host] = None
        if summary.default_backend is not None and not summary.rules:
            ingress = AccessIngress(namespace=namespace, name=name, ingress_class=summary.ingress_class)
            route = _Route(path="/", exact=False, served=Served(host="", ingress=ingress))
            backend = summary.default_backend
            if backend.service and backend.port is not None:
                self._upstreams.setdefault(f"{namespace}-{backend.service}-{backend.port}", route.served)
            self._routes[""] = sorted([*self._routes.get("", []), route], key=_route_order)
            hosts[""] = None
        self._ingresses[(namespace, name)] = tuple(hosts)
        self._summaries[(namespace, name)] = summary
