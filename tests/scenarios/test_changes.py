"""Scenario A replayed in order: diffs and findings tell what was done to the cluster's ingress,
across a restart (sqlite) and across two replicas sharing Redis."""

from __future__ import annotations

import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from pytest_aiohttp import AiohttpClient

from tests.conftest import (
    Client,
    captured_bodies,
    make_config,
    post_capture,
    records_in,
    settle,
)
from webhook.config import Config
from webhook.server.app import create_app
from webhook.state.settings import StateConfig

BODIES = captured_bodies()


def writes(records: list[dict[str, Any]]) -> dict[tuple[str, str, str], dict[str, Any]]:
    """The records of successful writes by (capture-independent) verb, resource and name."""
    found = {}
    for record in records:
        obj = record["object"] or {}
        if record["change"] is not None:
            found[(record["verb"], obj["resource"], obj["name"])] = record
    return found


def ops(record: dict[str, Any]) -> set[tuple[str, str]]:
    return {(op["op"], op["path"]) for op in record["change"]["operations"]}


def ids(record: dict[str, Any]) -> set[str]:
    return {finding["id"] for finding in record["findings"]}


async def replay(client: Client, bodies: list[Path]) -> list[tuple[int, dict[str, Any]]]:
    answers = [await post_capture(client, body) for body in bodies]
    await settle(client)
    return answers


def check_story(records: list[dict[str, Any]]) -> None:
    """What scenario-a/README.md says each write did."""
    by = [r for r in records if r["change"] is not None]
    patches = [r for r in by if (r["verb"], r["object"]["name"]) == ("patch", "shop-web")]
    a11, a12, a14 = patches
    assert a11["change"]["baseline"] == "state"
    assert ("add", "/metadata/annotations/nginx.ingress.kubernetes.io~1configuration-snippet") in ops(a11)
    assert ("add", "/spec/rules/1") in ops(a11)  # the new host
    assert {"nginx-snippet-annotation", "nginx-cve-annotation", "host-without-tls"} <= ids(a11)
    host = next(op for op in a12["change"]["operations"] if op["path"] == "/spec/rules/0/host")
    assert (host["op"], host["old"], host["new"]) == ("replace", "shop.example.test", "www.shop.example.test")
    assert ("add", "/metadata/annotations/nginx.ingress.kubernetes.io~1server-snippet") in ops(a12)
    assert "nginx-snippet-annotation" in ids(a12)
    (a13,) = [r for r in by if (r["verb"], r["object"]["name"]) == ("update", "shop-web")]
    port = next(op for op in a13["change"]["operations"] if op["path"].endswith("/port/number"))
    assert (port["old"], port["new"]) == (80, 8443)
    assert ("add", "/metadata/labels/tier") in ops(a13)
    assert "backend-changed" in ids(a13)
    assert ops(a14) == {("remove", "/spec/tls")}
    assert {"tls-removed", "ingress-without-tls"} <= ids(a14)
    w = writes(records)
    a30 = w[("update", "configmaps", "coredns")]
    assert a30["change"]["baseline"] == "state"
    directives = {(d["directive"], d["change"], d["line"]) for d in a30["dns"]["directives"]}
    assert ("forward", "added", "forward . 203.0.113.53") in directives
    assert ("forward", "removed", "forward . /etc/resolv.conf") in directives
    assert any(d == "rewrite" and c == "added" for d, c, _ in directives)
    assert {"dns-forwarder-changed", "dns-rewrite-changed"} <= ids(a30)
    a34 = w[("patch", "httproutes", "shop-route")]
    assert a34["route"]["hostnames"] == ["api.shop.example.test", "admin.shop.example.test"]
    assert [(o["op"], o["path"], o["new"]) for o in a34["change"]["operations"]] == [
        ("add", "/spec/hostnames/1", "admin.shop.example.test")
    ]
    a35 = w[("delete", "secrets", "db-creds")]
    data = next(op for op in a35["change"]["operations"] if op["path"] == "/data")
    assert data["op"] == "remove"
    assert sorted(data["old"]) == ["password", "username"]
    assert all(v.startswith("hmac-sha256:") for v in data["old"].values())
    a36 = w[("delete", "ingresses", "shop-web")]
    assert {("remove", "/spec"), ("remove", "/metadata/annotations"), ("remove", "/metadata/labels")} <= ops(
        a36
    )
    gateway = w[("create", "gateways", "shop-gw")]
    assert gateway["gateway"]["listeners"][0]["certificate_refs"][0]["name"] == "shop-tls"
    assert "wildcard-host" in ids(gateway)
    assert "tls-secret-unknown" not in ids(gateway)  # shop-tls was created in A03
    ingress_class = w[("create", "ingressclasses", "nginx-test")]
    assert ingress_class["ingress_class"] == {
        "controller": "k8s.io/ingress-nginx",
        "parameters": None,
        "is_default": False,
    }
    creates = [r for r in by if r["verb"] == "create"]
    assert {r["change"]["baseline"] for r in creates} == {"none"}


async def test_the_scenario_reads_like_a_story(aiohttp_client: AiohttpClient, tmp_path: Path) -> None:
    """Each write of scenario A carries the diff and findings its README implies."""
    config = make_config(tmp_path)
    client = await aiohttp_client(create_app(config))
    await replay(client, BODIES)
    check_story(records_in(config))


async def _halves(aiohttp_client: AiohttpClient, first: Config, second: Config) -> list[dict[str, Any]]:
    half = BODIES.index(next(b for b in BODIES if b.name == "0017.json"))
    client = await aiohttp_client(create_app(first))
    await replay(client, BODIES[:half])
    await client.close()
    client = await aiohttp_client(create_app(second))
    again = await replay(client, BODIES[half - 3 : half])  # retries of batches from before
    assert sum(answer["records"] for _, answer in again) == 0
    assert sum(answer["duplicates"] for _, answer in again) > 0
    await replay(client, BODIES[half:])
    await client.close()
    return records_in(second)


async def test_diffs_and_dedupe_continue_across_a_restart(
    aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    """A new app on the same data dir (sqlite state) diffs against what the old one saw."""
    config = make_config(tmp_path)
    records = await _halves(aiohttp_client, config, config)
    check_story(records)


async def test_two_replicas_share_redis(
    aiohttp_client: AiohttpClient, tmp_path: Path, redis_url: str
) -> None:
    """Replica B diffs against what replica A saw and drops A's batches when they are retried."""
    state = StateConfig(type="redis", url=redis_url, key_prefix=f"t{uuid.uuid4().hex[:8]}")
    a = replace(make_config(tmp_path / "a"), state=state)
    b = replace(make_config(tmp_path / "b"), state=state)
    records = await _halves(aiohttp_client, a, b)
    check_story(records_in(a) + records)


async def test_a_failed_write_does_not_advance_baselines(
    aiohttp_client: AiohttpClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch answered 503 leaves no dedupe key and no baseline: its retry is recorded and diffed."""
    from webhook.errors import StorageError
    from webhook.spool.segments import Spool

    config = make_config(tmp_path)
    client = await aiohttp_client(create_app(config))
    index = BODIES.index(next(b for b in BODIES if b.name == "0019.json"))  # A14: TLS removed
    await replay(client, BODIES[:index])
    real = Spool.append

    async def failing(self: Spool, lines: Any) -> None:
        raise StorageError("disk full")

    monkeypatch.setattr(Spool, "append", failing)
    status, _ = await post_capture(client, BODIES[index])
    assert status == 503
    monkeypatch.setattr(Spool, "append", real)
    status, answer = await post_capture(client, BODIES[index])
    await settle(client)
    assert (status, answer["duplicates"]) == (200, 0)
    (a14,) = [
        r
        for r in records_in(config)
        if r["verb"] == "patch" and r["change"] and ops(r) == {("remove", "/spec/tls")}
    ]
    assert "tls-removed" in ids(a14)
