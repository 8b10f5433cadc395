"""Each change finding: what raises it, what does not, and how the config changes it."""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest

from tests.paths import ROOT
from webhook.core.findings import CATALOG, Finding
from webhook.enrich.actor import Actor, Identity, classify
from webhook.enrich.dns import corefile_change
from webhook.enrich.rules import FindingRules, change_findings
from webhook.state import object_key

NGINX = "nginx.ingress.kubernetes.io/"
RULES = FindingRules(
    internal_hosts=("*.svc", "*.svc.cluster.local"),
    trusted_cidrs=("10.0.0.0/8",),
    automation_users=("system:serviceaccount:argocd:*", "ci-bot"),
)
KNOWN = frozenset({object_key("", "secrets", "shop", "shop-tls")})


def identity(username: str) -> Identity:
    kind, sa, node = classify(username)
    return Identity(username=username, uid=None, groups=(), kind=kind, service_account=sa, node=node)


def actor(username: str = "system:serviceaccount:argocd:app", *, as_user: str | None = None) -> Actor:
    return Actor(
        user=identity(username),
        impersonated=identity(as_user) if as_user else None,
        source_ips=("10.1.2.3",),
        user_agent=None,
        client=None,
    )


def ingress(annotations: dict[str, str] | None = None, **spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "ingressClassName": "nginx",
        "tls": [{"hosts": ["shop.example.test"], "secretName": "shop-tls"}],
        "rules": [
            {
                "host": "shop.example.test",
                "http": {
                    "paths": [{"path": "/", "backend": {"service": {"name": "web", "port": {"number": 80}}}}]
                },
            }
        ],
    }
    base.update(spec)
    return {
        "kind": "Ingress",
        "metadata": {"name": "web", "namespace": "shop", "annotations": annotations or {}},
        "spec": base,
    }


def findings(
    kind: str | None,
    old: dict[str, Any] | None,
    new: dict[str, Any] | None,
    who: Actor | None = None,
    **kw: Any,
) -> set[str]:
    who = who or actor()
    found = change_findings(
        RULES,
        kind=kind,
        old=old,
        new=new,
        actor=who,
        trust=RULES.trust(who.source_ips),
        known_secrets=KNOWN,
        **kw,
    )
    return {f.id for f in found}


BASE = ingress()
CASES: list[tuple[str, dict[str, Any] | None, dict[str, Any], bool]] = [
    ("ingress-without-tls", BASE, ingress(tls=[]), True),
    ("ingress-without-tls", BASE, ingress(), False),
    ("tls-removed", BASE, ingress(tls=[]), True),
    ("tls-removed", None, ingress(tls=[]), False),
    ("host-without-tls", BASE, ingress(rules=[*BASE["spec"]["rules"], {"host": "beta.example.test"}]), True),
    (
        "host-without-tls",
        BASE,
        ingress(
            tls=[{"hosts": ["*.example.test"], "secretName": "shop-tls"}],
            rules=[{"host": "beta.example.test"}],
        ),
        False,
    ),
    (
        "tls-secret-unknown",
        None,
        ingress(tls=[{"hosts": ["shop.example.test"], "secretName": "other"}]),
        True,
    ),
    ("tls-secret-unknown", None, ingress(), False),
    ("wildcard-host", BASE, ingress(rules=[{"host": "*.example.test"}]), True),
    ("wildcard-host", BASE, ingress(rules=[{"host": "www.example.test"}]), False),
    ("catch-all-rule", BASE, ingress(rules=[{"http": {"paths": [{"path": "/"}]}}]), True),
    ("catch-all-rule", BASE, BASE, False),
    (
        "default-backend-added",
        BASE,
        ingress(defaultBackend={"service": {"name": "x", "port": {"number": 80}}}),
        True,
    ),
    ("default-backend-added", None, BASE, False),
    (
        "backend-changed",
        BASE,
        ingress(
            rules=[
                {
                    "host": "shop.example.test",
                    "http": {
                        "paths": [
                            {"path": "/", "backend": {"service": {"name": "web", "port": {"number": 8443}}}}
                        ]
                    },
                }
            ]
        ),
        True,
    ),
    ("backend-changed", BASE, ingress(annotations={"a": "b"}), False),
    ("ingress-class-changed", BASE, ingress(ingressClassName="traefik"), True),
    ("ingress-class-changed", None, ingress(ingressClassName="traefik"), False),
    ("nginx-snippet-annotation", BASE, ingress({NGINX + "server-snippet": "x"}), True),
    (
        "nginx-snippet-annotation",
        ingress({NGINX + "server-snippet": "x"}),
        ingress({NGINX + "server-snippet": "x"}),
        False,
    ),
    ("nginx-auth-url-external", BASE, ingress({NGINX + "auth-url": "https://auth.evil.example/check"}), True),
    (
        "nginx-auth-url-external",
        BASE,
        ingress({NGINX + "auth-url": "http://oauth2-proxy.auth.svc.cluster.local/check"}),
        False,
    ),
    ("nginx-ssl-redirect-disabled", BASE, ingress({NGINX + "force-ssl-redirect": "false"}), True),
    ("nginx-ssl-redirect-disabled", BASE, ingress({NGINX + "ssl-redirect": "true"}), False),
    ("nginx-source-range-widened", ingress({NGINX + "whitelist-source-range": "192.0.2.0/24"}), BASE, True),
    (
        "nginx-source-range-widened",
        BASE,
        ingress({NGINX + "allowlist-source-range": "10.0.0.0/8, ::/0"}),
        True,
    ),
    ("nginx-source-range-widened", BASE, ingress({NGINX + "allowlist-source-range": "10.0.0.0/8"}), False),
    (
        "nginx-backend-protocol-http",
        ingress({NGINX + "backend-protocol": "HTTPS"}),
        ingress({NGINX + "backend-protocol": "HTTP"}),
        True,
    ),
    ("nginx-backend-protocol-http", ingress({NGINX + "backend-protocol": "HTTPS"}), BASE, True),
    ("nginx-backend-protocol-http", BASE, ingress({NGINX + "backend-protocol": "GRPCS"}), False),
    (
        "nginx-external-redirect",
        BASE,
        ingress({NGINX + "permanent-redirect": "https://phish.example/"}),
        True,
    ),
    ("nginx-external-redirect", BASE, ingress({NGINX + "rewrite-target": "/$2"}), False),
    (
        "nginx-mirror-target",
        BASE,
        ingress({NGINX + "mirror-target": "https://copy.example$request_uri"}),
        True,
    ),
    ("nginx-mirror-target", BASE, BASE, False),
    ("nginx-cve-annotation", BASE, ingress({NGINX + "auth-tls-match-cn": "CN=x"}), True),
    ("nginx-cve-annotation", BASE, ingress({NGINX + "proxy-body-size": "8m"}), False),
    (
        "traefik-auth-removed",
        ingress(
            {
                "traefik.ingress.kubernetes.io/router.middlewares": "shop-basic-auth@kubernetescrd,"
                "shop-gzip@kubernetescrd"
            }
        ),
        ingress({"traefik.ingress.kubernetes.io/router.middlewares": "shop-gzip@kubernetescrd"}),
        True,
    ),
    (
        "traefik-auth-removed",
        ingress({"traefik.ingress.kubernetes.io/router.middlewares": "shop-gzip@kubernetescrd"}),
        BASE,
        False,
    ),
]


@pytest.mark.parametrize(
    ("finding", "old", "new", "raised"), CASES, ids=lambda v: v if isinstance(v, str) else None
)
def test_ingress_findings(
    finding: str, old: dict[str, Any] | None, new: dict[str, Any], raised: bool
) -> None:
    """Raised by what the write added or changed, not by what was there before."""
    assert (finding in findings("Ingress", old, new)) is raised


def gateway(
    protocol: str = "HTTPS",
    hostname: str = "shop.example.test",
    tls: bool = True,
    secret: str = "shop-tls",  # noqa: S107 - a Secret's name
) -> dict[str, Any]:
    listener: dict[str, Any] = {"name": "web", "protocol": protocol, "port": 443, "hostname": hostname}
    if tls:
        listener["tls"] = {"mode": "Terminate", "certificateRefs": [{"kind": "Secret", "name": secret}]}
    return {
        "kind": "Gateway",
        "metadata": {"name": "gw", "namespace": "shop"},
        "spec": {"listeners": [listener]},
    }


@pytest.mark.parametrize(
    ("finding", "old", "new", "raised"),
    [
        ("listener-without-tls", None, gateway("HTTP", tls=False), True),
        ("listener-without-tls", None, gateway(), False),
        ("tls-removed", gateway(), gateway(tls=False), True),
        ("tls-removed", gateway(), gateway(), False),
        ("wildcard-host", None, gateway(hostname="*.shop.example.test"), True),
        (
            "wildcard-host",
            gateway(hostname="*.shop.example.test"),
            gateway(hostname="*.shop.example.test"),
            False,
        ),
        ("tls-secret-unknown", None, gateway(secret="nobody-made-this"), True),
        ("tls-secret-unknown", None, gateway(), False),
    ],
)
def test_gateway_findings(
    finding: str, old: dict[str, Any] | None, new: dict[str, Any], raised: bool
) -> None:
    """Listeners: plain protocols, TLS removed, wildcard hostnames, unknown certificate Secrets."""
    assert (finding in findings("Gateway", old, new)) is raised


def route(hostnames: list[str], port: int = 8080) -> dict[str, Any]:
    return {
        "kind": "HTTPRoute",
        "spec": {"hostnames": hostnames, "rules": [{"backendRefs": [{"name": "api", "port": port}]}]},
    }


@pytest.mark.parametrize(
    ("finding", "old", "new", "raised"),
    [
        ("wildcard-host", route(["a.test"]), route(["*.test"]), True),
        ("wildcard-host", route(["a.test"]), route(["b.test"]), False),
        ("backend-changed", route(["a.test"]), route(["a.test"], 9090), True),
        ("backend-changed", route(["a.test"]), route(["b.test"]), False),
    ],
)
def test_route_findings(finding: str, old: dict[str, Any], new: dict[str, Any], raised: bool) -> None:
    """Routes: wildcard hostnames added, backend refs changed."""
    assert (finding in findings("HTTPRoute", old, new)) is raised


def ingress_class(default: str | None) -> dict[str, Any]:
    annotations = {} if default is None else {"ingressclass.kubernetes.io/is-default-class": default}
    return {"kind": "IngressClass", "metadata": {"name": "nginx", "annotations": annotations}, "spec": {}}


@pytest.mark.parametrize(
    ("old", "new", "raised"),
    [
        (ingress_class("false"), ingress_class("true"), True),
        (None, ingress_class("true"), True),
        (ingress_class("true"), None, True),  # the default class deleted
        (ingress_class("false"), ingress_class(None), False),
        (ingress_class("true"), ingress_class("true"), False),
    ],
)
def test_default_ingress_class_changed(
    old: dict[str, Any] | None, new: dict[str, Any] | None, raised: bool
) -> None:
    """The is-default-class annotation turning on or off (or the default class deleted)."""
    assert ("default-ingress-class-changed" in findings("IngressClass", old, new)) is raised


def middleware(**spec: Any) -> dict[str, Any]:
    return {"kind": "Middleware", "metadata": {"name": "auth"}, "spec": spec}


@pytest.mark.parametrize(
    ("old", "new", "raised"),
    [
        (middleware(basicAuth={"secret": "users"}), None, True),
        (middleware(forwardAuth={"address": "http://a"}), middleware(headers={}), True),
        (middleware(basicAuth={"secret": "users"}), middleware(basicAuth={"secret": "other"}), False),
        (middleware(headers={}), None, False),
    ],
)
def test_traefik_middleware_losing_auth(
    old: dict[str, Any], new: dict[str, Any] | None, raised: bool
) -> None:
    """A Middleware deleted with, or losing, basicAuth/forwardAuth/digestAuth."""
    assert ("traefik-auth-removed" in findings("Middleware", old, new)) is raised


@pytest.mark.parametrize(
    ("line", "finding"),
    [
        ("forward . 203.0.113.53", "dns-forwarder-changed"),
        ("rewrite name a.test b.svc.cluster.local", "dns-rewrite-changed"),
        ("hosts /etc/extra", "dns-hosts-changed"),
    ],
)
def test_corefile_findings(line: str, finding: str) -> None:
    """Each named Corefile directive added raises its finding; a cache change raises none."""
    old = ".:53 {\n  cache 30\n}\n"
    new = f".:53 {{\n  cache 30\n  {line}\n}}\n"
    assert finding in findings(None, None, None, dns=corefile_change(old, new))
    assert findings(None, None, None, dns=corefile_change(old, old.replace("30", "60"))) == set()


def test_stub_domain_added() -> None:
    """A new server block is a stub domain."""
    dns = corefile_change(".:53 {\n}\n", ".:53 {\n}\ncorp.test:53 {\n  forward . 10.0.0.1\n}\n")
    assert {"dns-stub-domain-changed", "dns-forwarder-changed"} <= findings(None, None, None, dns=dns)


@pytest.mark.parametrize(
    ("who", "expected"),
    [
        (actor("alice"), {"change-by-human"}),
        (actor("ci-bot"), set()),
        (actor("system:serviceaccount:argocd:app"), set()),
        (actor("admin", as_user="alice"), {"change-by-impersonation"}),
        (actor("system:anonymous"), {"change-by-anonymous"}),
    ],
)
def test_who_made_the_change(who: Actor, expected: set[str]) -> None:
    """Impersonation, anonymous, or a human directly (not a configured automation identity)."""
    assert findings(None, None, None, who) == expected


def test_untrusted_source_ips() -> None:
    """Each source IP is classified; an untrusted one raises; without trusted_cidrs all are unknown."""
    assert [s.trust for s in RULES.trust(["10.1.1.1", "192.0.2.7", "not-an-ip"])] == [
        "trusted",
        "untrusted",
        "unknown",
    ]
    assert [s.trust for s in FindingRules().trust(["192.0.2.7"])] == ["unknown"]
    outsider = Actor(
        user=identity("ci-bot"), impersonated=None, source_ips=("192.0.2.7",), user_agent=None, client=None
    )
    assert findings(None, None, None, outsider) == {"untrusted-source-ip"}


def test_config_disables_and_regrades() -> None:
    """findings.disabled drops an id; findings.severity changes its severity; for every stage's findings."""
    rules = FindingRules(disabled=("change-by-human",), severity={"certificate-self-signed": "critical"})
    found = rules.apply(
        [
            Finding(id="change-by-human", severity="low", message="m"),
            Finding(id="certificate-self-signed", severity="low", message="m"),
        ]
    )
    assert [(f.id, f.severity) for f in found] == [("certificate-self-signed", "critical")]


def test_inputs_are_not_mutated() -> None:
    """Findings are pure: the objects passed in are left as they were."""
    old, new = ingress(), ingress({NGINX + "server-snippet": "x"}, tls=[])
    before = copy.deepcopy((old, new))
    findings("Ingress", old, new)
    assert (old, new) == before


def test_every_finding_is_documented() -> None:
    """docs/findings.md has a row for each id in the catalog, with its default severity."""
    text = (ROOT / "docs" / "findings.md").read_text("utf-8")
    rows = dict(re.findall(r"^\| `([a-z0-9-]+)` \| (\w+) \|", text, re.MULTILINE))
    assert rows == CATALOG
