"""Audit records for the detection tests: the JSON shape the pipeline writes, a few knobs."""

from __future__ import annotations

import itertools
from typing import Any, Final

from tests.servers import make_record
from webhook.config import Config, parse_config
from webhook.detect.audit import build_rules
from webhook.detect.engine import Detector

__all__ = ["T0", "audit", "detector"]

T0: Final = 1_795_000_000.0  # 2026-11-18T11:06:40Z, a Wednesday
_SEQ = itertools.count()


def audit(
    *,
    code: int | None = 200,
    verb: str = "patch",
    user: str | None = "admin",
    groups: tuple[str, ...] = ("system:masters",),
    impersonated: str | None = None,
    ips: tuple[str, ...] = ("127.0.0.1",),
    trust: str | None = None,
    api_group: str = "networking.k8s.io",
    resource: str | None = "ingresses",
    namespace: str | None = "shop",
    name: str | None = "shop-web",
    findings: tuple[tuple[str, str], ...] = (),
    time: str | None = "2026-11-24T14:20:40.463683Z",
    **fields: Any,
) -> dict[str, Any]:
    """One audit record dict; ids are unique and stable within a test run's order."""
    n = next(_SEQ)
    doc = make_record(
        id=f"00000000-0000-5000-8000-{n:012d}",
        verb=verb,
        time=time,
        outcome={"code": code, "status": None, "reason": None, "message": None, "decision": None},
        object=None
        if resource is None
        else {
            "api_group": api_group,
            "api_version": "v1",
            "resource": resource,
            "subresource": None,
            "namespace": namespace,
            "name": name,
            "uid": None,
            "resource_version": None,
        },
        findings=[{"id": f, "severity": s, "message": f"{f} on {name}", "path": None} for f, s in findings],
    )
    actor = doc["actor"]
    actor["user"] = {
        "username": user,
        "uid": None,
        "groups": list(groups) if user else [],
        "kind": "user" if user else "unauthenticated",
        "service_account": None,
        "node": None,
    }
    if impersonated is not None:
        actor["impersonated"] = {**actor["user"], "username": impersonated, "groups": []}
    actor["source_ips"] = list(ips)
    if trust is not None:
        actor["source_ip_trust"] = [{"ip": ip, "trust": trust} for ip in ips]
    doc.update(fields)
    return doc


def detector(raw: dict[str, Any] | None = None, *, trusted_cidrs: tuple[str, ...] = ()) -> Detector:
    """A detector built from a ``detections:`` section (and actors.trusted_cidrs), wall time T0."""
    config: Config = parse_config({"detections": raw or {}, "actors": {"trusted_cidrs": list(trusted_cidrs)}})
    rules = build_rules(config.detections, trusted_cidrs=config.actors.trusted_cidrs)
    return Detector(rules, cluster="test-cluster", wall=lambda: T0)
