"""The webhook end to end: every request kube-apiserver v1.26 sent in scenario A, replayed.

Expectations come from the fixture, not from the code: ``index.json`` (what each kubectl step
sent), ``steps.jsonl`` (when each step ran), ``README.md`` and ``manifests/`` (what each step
did), ``secrets.txt`` (values that must never be written).
"""

from __future__ import annotations

import asyncio
import base64
import errno
import logging
import math
import os
import re
import stat
import time
from collections import Counter
from collections.abc import MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import jsonschema
import orjson
import pytest
import yaml
from pytest_aiohttp import AiohttpClient
from structlog.testing import capture_logs

from tests.conftest import (
    CAPTURES,
    SCENARIO,
    Client,
    alerts_in,
    capture_events,
    capture_headers,
    captured_bodies,
    dead_letters_in,
    delivered,
    event_list,
    find_event,
    iter_files,
    make_config,
    make_event,
    post_capture,
    records_in,
    scenario_index,
    scenario_secrets,
    scenario_steps,
    settle,
)
from webhook.config import Config
from webhook.record.audit import record_schema
from webhook.server.admission import STATE
from webhook.server.app import RUNTIME, SOURCES, create_app
from webhook.sources.webhook import WebhookSource

JSON: Final = {"Content-Type": "application/json"}
APISERVER: Final = "system:apiserver"
GATEWAY_RESOURCES: Final = frozenset(
    {"gateways", "httproutes", "grpcroutes", "tlsroutes", "tcproutes", "referencegrants"}
)
FINAL_STAGES: Final = frozenset({"ResponseComplete", "Panic"})


def wanted_by_the_issue(event: dict[str, Any]) -> bool:
    """The default rules as the product states them, written independently of webhook.filter."""
    ref = event.get("objectRef") or {}
    group, resource = ref.get("apiGroup", ""), ref.get("resource")
    return (
        (group == "networking.k8s.io" and resource in {"ingresses", "ingressclasses"})
        or (group == "" and resource == "secrets")
        or (group == "gateway.networking.k8s.io" and resource in GATEWAY_RESOURCES)
        or (
            group == ""
            and resource == "configmaps"
            and (ref.get("namespace"), ref.get("name")) == ("kube-system", "coredns")
        )
        or (event.get("responseStatus") or {}).get("code") in {401, 403}
    )


def final_events() -> dict[str, dict[str, Any]]:
    """Each request's last event, from the captures: ResponseComplete/Panic, or the lone
    ResponseStarted of a request that failed authentication (NOTES.md). Watches still open when
    the capture ended have no final event yet."""
    by_id: dict[str, list[dict[str, Any]]] = {}
    for body in captured_bodies():
        for event in capture_events(body.name):
            by_id.setdefault(event["auditID"], []).append(event)
    finals = {}
    for audit_id, events in by_id.items():
        complete = [e for e in events if e["stage"] in FINAL_STAGES]
        if complete:
            (finals[audit_id],) = complete
        elif [e["stage"] for e in events] == ["ResponseStarted"] and not events[0]["user"]:
            finals[audit_id] = events[0]
    return finals


@dataclass
class Replay:
    config: Config
    client: Client
    answers: list[tuple[int, dict[str, Any]]]
    logs: list[MutableMapping[str, Any]]
    stdlib_logs: str

    @property
    def records(self) -> list[dict[str, Any]]:
        return records_in(self.config)


@pytest.fixture
async def replay(aiohttp_client: AiohttpClient, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> Replay:
    """A fresh app that has been sent every capture of scenario A, in order, as sent."""
    caplog.set_level(logging.DEBUG)  # aiohttp's own (access, server) logs too
    config = make_config(tmp_path)
    client = await aiohttp_client(create_app(config))
    with capture_logs() as logs:
        answers = [await post_capture(client, body) for body in captured_bodies()]
        await settle(client)  # a 200 means spooled; the JSONL sink follows
    return Replay(config=config, client=client, answers=answers, logs=logs, stdlib_logs=caplog.text)


# --- the scenario ---------------------------------------------------------------------------


async def test_every_captured_batch_is_accepted(replay: Replay) -> None:
    """Each POST, with the apiserver's path and headers, gets 200 and counts all its events."""
    index = {f["file"]: f for f in scenario_index()["files"]}

    assert [status for status, _ in replay.answers] == [200] * len(index)
    accepted = [answer["accepted"] for _, answer in replay.answers]
    assert accepted == [index[body.name]["events"] for body in captured_bodies()]
    assert sum(answer["records"] for _, answer in replay.answers) == len(replay.records)
    assert sum(answer["dead_lettered"] for _, answer in replay.answers) == 0
    assert dead_letters_in(replay.config) == []


async def test_one_record_per_matched_request(replay: Replay) -> None:
    """Exactly the requests the rules select have a record, one each, from their final event."""
    wanted = {aid: e for aid, e in final_events().items() if wanted_by_the_issue(e)}

    records = replay.records

    assert Counter(r["audit_id"] for r in records) == Counter(wanted.keys())
    for record in records:
        assert record["stage"] == wanted[record["audit_id"]]["stage"]
    assert len(records) == 45  # 47 matching requests, minus 2 apiserver watches never completed


async def test_events_outside_the_rules_make_no_record(replay: Replay) -> None:
    """Lease updates, namespaces, discovery and RBAC objects leave nothing behind."""
    recorded = {r["audit_id"] for r in replay.records}
    outside = [
        e
        for e in final_events().values()
        if e.get("objectRef", {}).get("resource") in {"leases", "namespaces", "rolebindings", "roles"}
        or e["requestURI"].startswith(("/openapi/", "/apis?", "/api?"))
    ]
    by_kind = Counter(e.get("objectRef", {}).get("resource", "discovery") for e in outside)

    assert {"leases", "namespaces", "rolebindings", "discovery"} <= set(by_kind)  # the scenario has each
    assert [e["auditID"] for e in outside if e["auditID"] in recorded] == []
    assert {r["object"]["resource"] for r in replay.records if r["object"]} <= {
        "ingresses",
        "ingressclasses",
        "secrets",
        "configmaps",
        *GATEWAY_RESOURCES,
    }


def _target(record: dict[str, Any]) -> str:
    obj = record["object"] or {}
    resource = obj.get("resource") or ""
    return f"{resource}/{obj['subresource']}" if obj.get("subresource") else resource


def _step_of(record: dict[str, Any], windows: dict[str, tuple[str, str]]) -> str | None:
    at = record["request_received_at"]
    found = [step for step, (start, end) in windows.items() if start <= at <= end]
    return found[0] if found else None


def _wanted_request(key: str) -> bool:
    """``"create ingresses → 201"`` from index.json: does the issue's rule set select it?

    In the steps every configmaps request is on kube-system/coredns (A29, A30).
    """
    _, rest = key.split(" ", 1)
    target, code = rest.rsplit(" → ", 1)
    resource = target.split("/")[0]
    return int(code) in {401, 403} or resource in {
        "ingresses",
        "ingressclasses",
        "secrets",
        "configmaps",
        *GATEWAY_RESOURCES,
    }


async def test_records_per_step_match_the_index(replay: Replay) -> None:
    """Per kubectl step, the records are the step's selected requests (verb, resource, code)."""
    windows = {s["id"]: (s["start"], s["end"]) for s in scenario_steps().values()}
    got: dict[str, Counter[str]] = {step: Counter() for step in windows}
    background = []
    for record in replay.records:
        step = _step_of(record, windows)
        if step is None or record["actor"]["user"]["username"] == APISERVER:
            background.append(record)
            continue
        got[step][f"{record['verb']} {_target(record)} → {record['outcome']['code']}"] += 1

    for step in scenario_index()["steps"]:
        requests = step["requests_by_verb_resource_code"]
        expected = Counter({k: n for k, n in requests.items() if _wanted_request(k)})
        assert got[step["id"]] == expected, step["id"]
    assert {r["actor"]["user"]["username"] for r in background} == {APISERVER}


# What the scenario README says each step did, checked field by field. ``None`` means "absent".
KUBECTL: Final = {"name": "kubectl", "version": "v1.26.0"}


def _manifest(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((SCENARIO / "manifests" / name).read_text())
    return doc


def _manifest_hosts(name: str) -> list[str]:
    return [rule["host"] for rule in _manifest(name)["spec"]["rules"]]


def _manifest_tls(name: str) -> list[dict[str, Any]]:
    return [
        {"hosts": t["hosts"], "secret_name": t["secretName"]} for t in _manifest(name)["spec"].get("tls", [])
    ]


def _literal_keys(step: str) -> list[str]:
    """Key names from a step's ``--from-literal=KEY=value`` arguments."""
    return sorted(re.findall(r"--from-literal=([^=]+)=", scenario_steps()[step]["command"]))


def _patch(step: str) -> Any:
    """The ``-p '…'`` document of a ``kubectl patch`` step."""
    match = re.search(r" -p '(.*)'$", scenario_steps()[step]["command"])
    assert match is not None, step
    return orjson.loads(match.group(1))


def want(verb: str, resource: str, code: int, **fields: Any) -> dict[str, Any]:
    """One expected record: the request (verb, resource, code) and any fields to check."""
    return {"verb": verb, "resource": resource, "code": code, **fields}


def expectations() -> dict[str, list[dict[str, Any]]]:
    tls_web = _manifest_tls("ingress-tls.yaml")
    web_hosts = _manifest_hosts("ingress-tls.yaml")
    shop_web = {"namespace": "shop", "name": "shop-web"}
    db_creds = {"namespace": "shop", "name": "db-creds"}
    coredns = {"namespace": "kube-system", "name": "coredns"}
    merged_hosts = [rule["host"] for rule in _patch("A11")["spec"]["rules"]]  # A11 sets two rules
    (replace_host,) = [op for op in _patch("A12") if op["path"] == "/spec/rules/0/host"]
    patched_hosts = [replace_host["value"], *merged_hosts[1:]]  # A12 renames the first
    port = re.search(r"port\.number=(\d+)", scenario_steps()["A13"]["command"])
    assert port is not None
    return {
        "A03": [
            want(
                "create",
                "secrets",
                201,
                namespace="shop",
                name="shop-tls",
                secret={"type": "kubernetes.io/tls", "keys": ["tls.crt", "tls.key"]},
            ),
        ],
        "A04": [
            want(
                "create",
                "ingressclasses",
                201,
                namespace=None,
                name="nginx-test",
                field_manager="kubectl-create",
            ),
        ],
        "A05": [
            want(
                "create",
                "ingresses",
                201,
                **shop_web,
                ingress_class="nginx-test",
                hosts=web_hosts,
                tls=tls_web,
                tls_hosts=["shop.example.test"],
                backend={"service": "shop-frontend", "port": 80, "resource": None},
            ),
        ],
        "A06": [
            want(
                "create", "secrets", 201, **db_creds, secret={"type": "Opaque", "keys": _literal_keys("A06")}
            ),
        ],
        "A07": [
            want("get", "ingresses", 404, name="shop-api"),
            want(
                "create",
                "ingresses",
                201,
                namespace="shop",
                name="shop-api",
                field_manager="kubectl-client-side-apply",
                hosts=_manifest_hosts("ingress-api.yaml"),
                tls=[],
            ),
        ],
        "A08": [
            want("get", "secrets", 404, name="api-keys"),
            want(
                "create",
                "secrets",
                201,
                namespace="shop",
                name="api-keys",
                field_manager="kubectl-client-side-apply",
                secret={"type": "Opaque", "keys": sorted(_manifest("secret-apply.yaml")["data"])},
            ),
        ],
        "A09": [
            want("get", "ingresses", 200, name="shop-api"),
            want(
                "patch",
                "ingresses",
                200,
                name="shop-api",
                field_manager="kubectl-client-side-apply",
                hosts=_manifest_hosts("ingress-api-v2.yaml"),
                paths=["/v1", "/v2"],
            ),
        ],
        "A10": [
            want(
                "patch",
                "ingresses",
                201,
                namespace="shop",
                name="shop-admin",
                field_manager="kubectl",
                hosts=_manifest_hosts("ingress-ssa.yaml"),
                tls=[],
            ),
        ],
        "A11": [
            want("get", "ingresses", 200, **shop_web),
            want(
                "patch",
                "ingresses",
                200,
                **shop_web,
                field_manager="kubectl-patch",
                hosts=merged_hosts,
                tls=tls_web,
            ),
        ],
        "A12": [
            want("get", "ingresses", 200, **shop_web),
            want(
                "patch",
                "ingresses",
                200,
                **shop_web,
                field_manager="kubectl-patch",
                hosts=patched_hosts,
                tls=tls_web,
            ),
        ],
        "A13": [
            want("get", "ingresses", 200, **shop_web),
            want(
                "update",
                "ingresses",
                200,
                **shop_web,
                field_manager="kubectl-replace",
                tls=tls_web,
                backend={"service": "shop-frontend", "port": int(port.group(1)), "resource": None},
            ),
        ],
        "A14": [
            want("get", "ingresses", 200, **shop_web, tls=tls_web),
            want(
                "patch",
                "ingresses",
                200,
                **shop_web,
                field_manager="kubectl-patch",
                hosts=patched_hosts,
                tls=[],
                tls_hosts=[],
            ),
        ],
        "A15": [want("list", "secrets", 200, namespace="shop", name=None)],
        "A16": [want("get", "secrets", 200, **db_creds, secret=None)],
        "A17": [
            want("get", "secrets", 200, **db_creds, secret={"type": "Opaque", "keys": _literal_keys("A06")})
        ],
        "A18": [
            want("list", "ingresses", 200, namespace="shop", stage="ResponseComplete"),
            want("watch", "ingresses", 200, namespace="shop", stage="ResponseComplete"),
        ],
        "A19": [
            want(
                "get",
                "ingresses",
                200,
                **shop_web,
                decision="allow",
                username="alice",
                groups=["dev", "system:authenticated"],
            ),
        ],
        "A20": [want("get", "secrets", 403, **db_creds, decision="forbid", username="alice", message=None)],
        "A21": [
            want(
                "create",
                "ingresses",
                403,
                namespace="shop",
                decision="forbid",
                username="alice",
                ingress=None,
            ),
        ],
        "A22": [want("list", "ingresses", 403, namespace=None, decision="forbid", username="mallory")],
        "A23": [
            want(
                "list",
                "ingresses",
                401,
                namespace="shop",
                decision=None,
                stage="ResponseStarted",
                kind="unauthenticated",
                username=None,
                groups=[],
            ),
        ],
        "A24": [
            want(
                "get",
                "ingresses",
                403,
                **shop_web,
                decision="forbid",
                username="admin",
                impersonated="alice",
                impersonated_groups=["system:authenticated"],
            ),
        ],
        "A25": [
            want(
                "get",
                "ingresses",
                200,
                **shop_web,
                decision="allow",
                username="admin",
                impersonated="alice",
                impersonated_groups=["dev", "system:authenticated"],
                authorization_reason_mentions="dev-ingress-reader",
            ),
        ],
        "A28": [
            want(
                "get",
                "ingresses",
                403,
                **shop_web,
                decision="forbid",
                kind="service_account",
                username="system:serviceaccount:shop:builder",
                service_account={"namespace": "shop", "name": "builder"},
            ),
        ],
        "A29": [want("create", "configmaps", 201, **coredns)],
        "A30": [
            want("get", "configmaps", 200, **coredns),
            want("update", "configmaps", 200, **coredns, field_manager="kubectl-replace"),
        ],
        "A32": [
            want(
                "create",
                "gateways",
                201,
                api_group="gateway.networking.k8s.io",
                namespace="shop",
                name="shop-gw",
            ),
        ],
        "A33": [
            want(
                "create",
                "httproutes",
                201,
                api_group="gateway.networking.k8s.io",
                namespace="shop",
                name="shop-route",
            ),
        ],
        "A34": [
            want("get", "httproutes", 200, name="shop-route"),
            want(
                "patch", "httproutes", 200, namespace="shop", name="shop-route", field_manager="kubectl-patch"
            ),
        ],
        "A35": [
            want("delete", "secrets", 200, **db_creds, secret=None),
            want("get", "secrets", 404, **db_creds),
        ],
        "A36": [
            want("delete", "ingresses", 200, **shop_web, ingress=None),
            want("get", "ingresses", 404, **shop_web),
        ],
    }


def _observed(record: dict[str, Any]) -> dict[str, Any]:
    """The fields the expectations talk about, flattened."""
    obj, actor, outcome = record["object"] or {}, record["actor"], record["outcome"]
    user, imp, ingress = actor["user"], actor["impersonated"] or {}, record["ingress"] or {}
    rules = ingress.get("rules") or [{}]
    paths = [p for rule in rules for p in rule.get("paths", [])]
    return {
        "verb": record["verb"],
        "resource": obj.get("resource"),
        "api_group": obj.get("api_group"),
        "namespace": obj.get("namespace"),
        "name": obj.get("name"),
        "code": outcome["code"],
        "decision": outcome["decision"],
        "message": outcome["message"],
        "authorization_reason_mentions": outcome["authorization_reason"] or "",
        "stage": record["stage"],
        "field_manager": record["field_manager"],
        "kind": user["kind"],
        "username": user["username"],
        "groups": sorted(user["groups"]),
        "service_account": user["service_account"],
        "impersonated": imp.get("username"),
        "impersonated_groups": sorted(imp.get("groups", [])),
        "ingress": record["ingress"],
        "ingress_class": ingress.get("ingress_class"),
        "hosts": ingress.get("hosts"),
        "tls": ingress.get("tls"),
        "tls_hosts": ingress.get("tls_hosts"),
        "paths": [p["path"] for p in paths],
        "backend": paths[0]["backend"] if paths else None,
        "secret": {k: record["secret"][k] for k in ("type", "keys")} if record["secret"] else None,
    }


async def test_each_step_produces_what_the_readme_says(replay: Replay, subtests: pytest.Subtests) -> None:
    """Verb, object, actor, impersonation, outcome, ingress hosts/TLS and secret keys per step."""
    windows = {s["id"]: (s["start"], s["end"]) for s in scenario_steps().values()}
    by_step: dict[str, list[dict[str, Any]]] = {}
    for record in replay.records:
        if record["actor"]["user"]["username"] != APISERVER:
            by_step.setdefault(_step_of(record, windows) or "?", []).append(record)

    for step, wanted in expectations().items():
        with subtests.test(step=step):
            records = by_step.get(step, [])
            assert len(records) == len(wanted), [(r["verb"], _target(r)) for r in records]
            for expected in wanted:
                matches = [
                    seen
                    for seen in map(_observed, records)
                    if (seen["verb"], seen["resource"]) == (expected["verb"], expected["resource"])
                ]
                assert len(matches) == 1, expected
                (seen,) = matches
                defaults = {"stage": "ResponseComplete", "kind": "user", "username": "admin"}
                for field, value in {**defaults, **expected}.items():
                    if field == "authorization_reason_mentions":
                        assert value in seen[field], (step, field)
                    else:
                        assert seen[field] == value, (step, field, seen[field])
            for record in records:
                assert record["actor"]["client"] == KUBECTL
                assert record["actor"]["source_ips"] == ["127.0.0.1"]
                assert record["dry_run"] is False
                assert record["cluster"] == "test-cluster"

    steps_without_records = set(windows) - set(expectations())
    assert {s for s in steps_without_records if by_step.get(s)} == set()


async def test_the_watch_has_one_record_from_its_end(replay: Replay) -> None:
    """A18: the watch's ResponseStarted (4 s before the end) makes no record; its end does."""
    watch_events = [
        e for e in capture_events("0025.json") + capture_events("0026.json") if e["verb"] == "watch"
    ]
    (audit_id,) = {e["auditID"] for e in watch_events}
    assert sorted(e["stage"] for e in watch_events) == [
        "RequestReceived",
        "ResponseComplete",
        "ResponseStarted",
    ]

    records = [r for r in replay.records if r["audit_id"] == audit_id]

    assert [r["stage"] for r in records] == ["ResponseComplete"]


async def test_the_401_has_one_record(replay: Replay) -> None:
    """A23: the lone ResponseStarted of an unknown token is recorded, as unauthenticated."""
    event = find_event("0032.json", stage="ResponseStarted")
    assert event["responseStatus"]["code"] == 401

    (record,) = [r for r in replay.records if r["outcome"]["code"] == 401]

    assert record["audit_id"] == event["auditID"]
    assert record["stage"] == "ResponseStarted"
    assert record["actor"]["user"] == {
        "username": None,
        "uid": None,
        "groups": [],
        "kind": "unauthenticated",
        "service_account": None,
        "node": None,
    }


async def test_every_record_validates_against_the_shipped_schema(replay: Replay) -> None:
    """Every line written validates against record.schema.json (Draft 2020-12, formats on)."""
    validator = jsonschema.Draft202012Validator(
        record_schema(), format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )
    records = replay.records
    assert records

    errors = [
        f"{r['audit_id']} {list(e.absolute_path)}: {e.message}"
        for r in records
        for e in validator.iter_errors(r)
    ]

    assert errors == []
    assert len({r["id"] for r in records}) == len(records)


async def test_no_secret_value_is_written_or_logged(
    capsys: pytest.CaptureFixture[str], replay: Replay
) -> None:
    """No line of secrets.txt, plain or base64, is in any data-dir file, log, or answer."""
    secrets = scenario_secrets()
    assert len(secrets) > 10
    needles = {s.encode() for s in secrets} | {base64.b64encode(s.encode()) for s in secrets}
    written = {path.name: path.read_bytes() for path in iter_files(replay.config.data_dir)}
    assert written["records.jsonl"]
    captured = capsys.readouterr()
    haystacks = {
        **written,
        "logs": orjson.dumps(replay.logs, default=str),
        "stdlib logs": replay.stdlib_logs.encode(),
        "stdout": captured.out.encode(),
        "stderr": captured.err.encode(),
        "answers": orjson.dumps(replay.answers),
    }

    leaks = [(name, needle[:24]) for name, data in haystacks.items() for needle in needles if needle in data]

    assert leaks == []


async def test_logs_are_one_line_per_batch_without_bodies(replay: Replay) -> None:
    """Logging is counts and codes: batch.accepted lines covering every POST (one each, or one
    summing several when they come faster than 10 a second), nothing from the events."""
    source = replay.client.app[SOURCES]["/audit"]
    assert isinstance(source, WebhookSource)
    with capture_logs() as flushed:
        source.accepted_log.flush()  # what shutdown does with a pending sum
    accepted = [entry for entry in [*replay.logs, *flushed] if entry["event"] == "batch.accepted"]
    assert sum(entry["batches"] for entry in accepted) == len(captured_bodies())
    assert sum(entry["records"] for entry in accepted) == len(replay.records)
    logged = orjson.dumps(replay.logs, default=str)
    assert b"shop.example.test" not in logged
    assert b"test-webhook-bearer-token" not in logged


async def test_resending_every_batch_adds_nothing(replay: Replay) -> None:
    """The apiserver's byte-identical retries: no new record, and the answer says duplicates."""
    before = replay.config.data_dir.joinpath("records.jsonl").read_bytes()

    again = [await post_capture(replay.client, body) for body in captured_bodies()]
    await settle(replay.client)

    assert [status for status, _ in again] == [200] * len(again)
    assert sum(answer["records"] for _, answer in again) == 0
    assert sum(answer["duplicates"] for _, answer in again) == len(replay.records)
    assert replay.config.data_dir.joinpath("records.jsonl").read_bytes() == before


async def test_files_are_private(replay: Replay) -> None:
    """The data dir is 0700 and everything in it 0600."""
    data = replay.config.data_dir
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    modes = {str(p.relative_to(data)): stat.S_IMODE(p.stat().st_mode) for p in iter_files(data)}
    assert {"records.jsonl", "dead-letter.jsonl", "spool/cursors/jsonl.json"} <= set(modes)
    assert any(name.startswith("spool/") and name.endswith(".seg") for name in modes)
    assert set(modes.values()) == {0o600}
    dirs = [p for p in data.rglob("*") if p.is_dir()]
    assert dirs
    assert {stat.S_IMODE(p.stat().st_mode) for p in dirs} == {0o700}


async def test_metrics_count_the_replay(replay: Replay) -> None:
    """/metrics reports batches, events, records and the latency histogram in Prometheus format."""
    resp = await replay.client.get("/metrics")
    text = await resp.text()

    assert resp.status == 200
    assert resp.content_type == "text/plain"
    values = dict(re.findall(r"^(ingress_audit_\S+) (\S+)$", text, re.MULTILINE))
    assert float(values["ingress_audit_batches_received_total"]) == len(captured_bodies())
    cluster = f'{{cluster="{replay.config.cluster}"}}'
    events = scenario_index()["summary"]["events"]
    assert float(values[f"ingress_audit_events_received_total{cluster}"]) == events
    assert float(values[f"ingress_audit_records_written_total{cluster}"]) == len(replay.records)
    delivered = len(replay.records) + len(alerts_in(replay.config))  # the detections' alerts too
    assert float(values['ingress_audit_sink_delivered_records_total{sink="jsonl"}']) == delivered
    assert float(values['ingress_audit_sink_lag_records{sink="jsonl"}']) == 0
    assert float(values['ingress_audit_request_duration_seconds_count{code="200"}']) == len(captured_bodies())


# --- a single batch -------------------------------------------------------------------------


async def client_for(aiohttp_client: AiohttpClient, config: Config) -> Client:
    client: Client = await aiohttp_client(create_app(config))
    return client


async def test_a_repost_of_one_batch_is_a_duplicate(aiohttp_client: AiohttpClient, tmp_path: Path) -> None:
    """The second identical POST adds no record; its answer counts the duplicate."""
    config = make_config(tmp_path)
    client = await client_for(aiohttp_client, config)
    body = CAPTURES / "0009.json"

    first = await post_capture(client, body)
    second = await post_capture(client, body)

    assert first == (200, {"accepted": 6, "records": 1, "duplicates": 0, "dead_lettered": 0})
    assert second == (200, {"accepted": 6, "records": 0, "duplicates": 1, "dead_lettered": 0})
    assert len(await delivered(client, config)) == 1


async def test_v1beta1_is_accepted(aiohttp_client: AiohttpClient, tmp_path: Path) -> None:
    """An audit.k8s.io/v1beta1 EventList is recorded like a v1 one."""
    config = make_config(tmp_path)
    client = await client_for(aiohttp_client, config)

    resp = await client.post(
        "/audit", data=event_list(make_event(), api_version="audit.k8s.io/v1beta1"), headers=JSON
    )

    assert resp.status == 200
    assert [r["object"]["name"] for r in await delivered(client, config)] == ["web"]


@pytest.mark.parametrize(
    "body",
    [
        b'{"kind":"EventList","apiVersion":"audit.k8s.io/v1","metadata":{},"items":[]}\n',
        b'{"kind":"EventList","apiVersion":"audit.k8s.io/v1","metadata":{},"items":null}\n',
    ],
    ids=["empty", "null"],
)
async def test_empty_batches_are_fine(aiohttp_client: AiohttpClient, tmp_path: Path, body: bytes) -> None:
    """No events (``[]`` or Go's ``null``) is a 200 that writes nothing."""
    config = make_config(tmp_path)
    client = await client_for(aiohttp_client, config)

    resp = await client.post("/audit?timeout=30s", data=body, headers=JSON)

    assert resp.status == 200
    assert await resp.json() == {"accepted": 0, "records": 0, "duplicates": 0, "dead_lettered": 0}
    assert await delivered(client, config) == dead_letters_in(config) == []


async def test_content_type_parameters_are_fine(aiohttp_client: AiohttpClient, tmp_path: Path) -> None:
    """``application/json; charset=utf-8`` is JSON."""
    config = make_config(tmp_path)
    client = await client_for(aiohttp_client, config)

    resp = await client.post(
        "/audit", data=event_list(make_event()), headers={"Content-Type": "application/json; charset=utf-8"}
    )

    assert resp.status == 200


MARKER: Final = "s3cr3t-marker-value"


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b"{this is not json " + MARKER.encode(), "not-json"),
        (b'["' + MARKER.encode() + b'"]', "not-event-list"),
        (b'{"kind":"' + MARKER.encode() + b'","apiVersion":"audit.k8s.io/v1","items":[]}', "not-event-list"),
        (b'{"kind":"EventList","apiVersion":"audit.k8s.io/v2","items":[]}', "unsupported-api-version"),
        (b'{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":{"0":{}}}', "not-event-list"),
        (
            b'{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":"' + MARKER.encode() + b'"}',
            "not-event-list",
        ),
    ],
    ids=["not-json", "not-object", "wrong-kind", "wrong-api-version", "items-object", "items-string"],
)
async def test_a_body_that_is_not_an_event_list(
    aiohttp_client: AiohttpClient, tmp_path: Path, body: bytes, error: str
) -> None:
    """400 with ``{"error", "reason"}``, one dead letter with that reason, no value echoed."""
    config = make_config(tmp_path)
    client = await client_for(aiohttp_client, config)

    resp = await client.post("/audit?timeout=30s", data=body, headers=JSON)
    payload = await resp.json()

    assert resp.status == 400
    assert resp.content_type == "application/json"
    assert set(payload) == {"error", "reason"}
    assert payload["error"] == error
    assert payload["reason"]
    (letter,) = dead_letters_in(config)
    assert (letter["reason"], letter["detail"]) == (error, payload["reason"])
    assert MARKER not in orjson.dumps(payload).decode()
    assert MARKER not in config.data_dir.joinpath("dead-letter.jsonl").read_text()
    assert await delivered(client, config) == []


async def test_items_that_are_not_objects(aiohttp_client: AiohttpClient, tmp_path: Path) -> None:
    """200; each bad item is a dead letter with its index; the rest of the batch is recorded."""
    config = make_config(tmp_path)
    client = await client_for(aiohttp_client, config)
    items = [make_event(name="first"), 42, MARKER, None, [make_event()], make_event(name="last")]

    resp = await client.post("/audit", data=event_list(*items), headers=JSON)

    assert resp.status == 200
    assert await resp.json() == {"accepted": 6, "records": 2, "duplicates": 0, "dead_lettered": 4}
    assert [r["object"]["name"] for r in await delivered(client, config)] == ["first", "last"]
    letters = dead_letters_in(config)
    assert [(d["index"], d["reason"]) for d in letters] == [(i, "malformed-event") for i in (1, 2, 3, 4)]
    assert MARKER not in config.data_dir.joinpath("dead-letter.jsonl").read_text()


def _without(event: dict[str, Any], field: str) -> dict[str, Any]:
    return {k: v for k, v in event.items() if k != field}


@pytest.mark.parametrize(
    ("event", "field"),
    [
        (_without(make_event(), "auditID"), "auditID"),
        (_without(make_event(), "stage"), "stage"),
        (_without(make_event(), "verb"), "verb"),
        (make_event(user={"username": "admin", "groups": "system:masters"}), "user.groups"),
        (make_event(responseStatus={"code": "403"}), "responseStatus.code"),
        (make_event(objectRef=["networking.k8s.io", "ingresses"]), "objectRef"),
        (make_event(stage="Finished"), "stage"),
    ],
    ids=["no-auditID", "no-stage", "no-verb", "groups-string", "code-string", "objectRef-list", "bad-stage"],
)
async def test_a_malformed_event_is_dead_lettered_alone(
    aiohttp_client: Any, tmp_path: Path, event: dict[str, Any], field: str
) -> None:
    """The dead letter names the field; its neighbours are recorded; the answer is 200."""
    config = make_config(tmp_path)
    client = await client_for(aiohttp_client, config)
    before = make_event(audit_id="00000000-0000-4000-8000-00000000000a", name="before")
    after = make_event(audit_id="00000000-0000-4000-8000-00000000000c", name="after")

    resp = await client.post("/audit?timeout=30s", data=event_list(before, event, after), headers=JSON)

    assert resp.status == 200
    assert (await resp.json())["dead_lettered"] == 1
    assert [r["object"]["name"] for r in await delivered(client, config)] == ["before", "after"]
    (letter,) = dead_letters_in(config)
    assert letter["index"] == 1
    assert letter["reason"] == "malformed-event"
    assert letter["detail"].split()[0] == field
    assert set(letter["event"]) <= {"auditID", "stage", "verb", "objectRef"}


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
async def test_wrong_method_is_405_with_allow(
    aiohttp_client: AiohttpClient, tmp_path: Path, method: str
) -> None:
    """Only POST is accepted on /audit; the answer says so in Allow and in JSON."""
    config = make_config(tmp_path)
    client = await client_for(aiohttp_client, config)

    resp = await client.request(method, "/audit?timeout=30s", data=event_list(make_event()), headers=JSON)
    payload = await resp.json()

    assert resp.status == 405
    assert resp.headers["Allow"] == "POST"
    assert payload["error"] == "method-not-allowed"
    assert await delivered(client, config) == []


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
async def test_wrong_content_type_is_415(
    aiohttp_client: AiohttpClient, tmp_path: Path, content_type: str | None
) -> None:
    """A body not declared as JSON is refused with 415 and a JSON reason; nothing is recorded."""
    config = make_config(tmp_path)
    client = await client_for(aiohttp_client, config)
    headers = {"Content-Type": content_type} if content_type else {}

    resp = await client.post(
        "/audit", data=event_list(make_event()), headers=headers, skip_auto_headers=["Content-Type"]
    )
    payload = await resp.json()

    assert resp.status == 415
    assert set(payload) == {"error", "reason"}
    assert payload["error"] == "unsupported-media-type"
    assert await delivered(client, config) == []
    assert [d["reason"] for d in dead_letters_in(config)] == ["unsupported-media-type"]


async def test_body_over_the_limit_is_413(aiohttp_client: AiohttpClient, tmp_path: Path) -> None:
    """A declared Content-Length over max_body_bytes is refused (413) before reading."""
    config = make_config(tmp_path, max_body_bytes=4096)
    client = await client_for(aiohttp_client, config)
    body = CAPTURES / "0003.json"
    assert body.stat().st_size > 4096

    resp = await client.post("/audit?timeout=30s", data=body.read_bytes(), headers=capture_headers(body))
    payload = await resp.json()

    assert resp.status == 413
    assert payload["error"] == "body-too-large"
    assert "4096" in payload["reason"]
    assert await delivered(client, config) == []
    assert [d["reason"] for d in dead_letters_in(config)] == ["body-too-large"]


async def test_chunked_body_over_the_limit_is_413(aiohttp_client: AiohttpClient, tmp_path: Path) -> None:
    """Without a Content-Length the limit is enforced while reading."""
    config = make_config(tmp_path, max_body_bytes=4096)
    client = await client_for(aiohttp_client, config)
    data = (CAPTURES / "0003.json").read_bytes()

    async def chunks() -> Any:
        for start in range(0, len(data), 1000):
            yield data[start : start + 1000]

    resp = await client.post("/audit", data=chunks(), headers=JSON)

    assert resp.status == 413
    assert (await resp.json())["error"] == "body-too-large"
    assert await delivered(client, config) == []
    assert [d["reason"] for d in dead_letters_in(config)] == ["body-too-large"]


async def test_a_chunked_body_over_the_limit_that_came_with_its_head_is_413(
    aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    """A body already received whole when the request is handled is taken as it lies, and
    still counted against the limit: with no Content-Length nothing was checked before."""
    config = make_config(tmp_path, max_body_bytes=4096)
    client = await client_for(aiohttp_client, config)
    data = (CAPTURES / "0003.json").read_bytes()
    assert len(data) > 4096
    head = b"POST /audit HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    head += b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    raw = head + f"{len(data):x}\r\n".encode() + data + b"\r\n0\r\n\r\n"
    assert client.server.port is not None
    reader, writer = await asyncio.open_connection("127.0.0.1", client.server.port)
    writer.write(raw)  # one write: the handler finds the whole body received
    await writer.drain()
    async with asyncio.timeout(10):
        answer = await reader.read()
    writer.close()

    assert answer.startswith(b"HTTP/1.1 413 ")
    assert b'"body-too-large"' in answer
    assert await delivered(client, config) == []
    assert [d["reason"] for d in dead_letters_in(config)] == ["body-too-large"]


async def test_a_body_just_under_the_limit_is_fine(aiohttp_client: AiohttpClient, tmp_path: Path) -> None:
    """The limit is a limit, not a guess: a body of exactly max_body_bytes is accepted."""
    body = event_list(make_event())
    config = make_config(tmp_path, max_body_bytes=len(body))
    client = await client_for(aiohttp_client, config)

    resp = await client.post("/audit", data=body, headers=JSON)

    assert resp.status == 200


# --- storage failures -----------------------------------------------------------------------


def fail_writes_to(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``os.write`` and ``os.pwrite`` on ``path`` write half their data, then fail with ENOSPC
    (a full disk)."""
    real_write, real_pwrite = os.write, os.pwrite
    target = path.stat()

    def ours(fd: int) -> bool:
        info = os.fstat(fd)
        return (info.st_dev, info.st_ino) == (target.st_dev, target.st_ino)

    def write(fd: int, data: bytes | memoryview) -> int:
        if not ours(fd):
            return real_write(fd, data)
        real_write(fd, bytes(data[: len(data) // 2]))
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def pwrite(fd: int, data: bytes | memoryview, offset: int) -> int:
        if not ours(fd):
            return real_pwrite(fd, data, offset)
        real_pwrite(fd, bytes(data[: len(data) // 2]), offset)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "write", write)
    monkeypatch.setattr(os, "pwrite", pwrite)


async def test_a_full_disk_is_503_and_the_retry_is_recorded(
    aiohttp_client: AiohttpClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failed spool write answers 503 + Retry-After, leaves whole lines only, and is not deduped away."""
    config = make_config(tmp_path)
    client = await client_for(aiohttp_client, config)
    assert (await post_capture(client, CAPTURES / "0007.json"))[0] == 200
    await settle(client)
    (segment,) = (config.data_dir / "spool").glob("*.seg")
    before = segment.read_bytes()
    fail_writes_to(segment, monkeypatch)

    with capture_logs() as logs:
        resp = await client.post("/audit?timeout=30s", data=event_list(make_event()), headers=JSON)
        payload = await resp.json()
        ready = await client.get("/readyz")

    assert resp.status == 503
    assert resp.headers["Retry-After"].isdigit()
    assert set(payload) == {"error", "reason"}
    assert "ENOSPC" in payload["reason"]
    assert segment.read_bytes().rstrip(b"\0") == before.rstrip(b"\0")  # but for the zeros ahead
    assert ready.status == 503
    assert "spool" in (await ready.json())["problems"]
    assert "spool.write_failed" in [entry["event"] for entry in logs]

    monkeypatch.undo()
    status, _ = await post_capture(client, CAPTURES / "0009.json")
    resp = await client.post("/audit", data=event_list(make_event()), headers=JSON)

    assert status == 200
    assert resp.status == 200
    assert (await resp.json())["records"] == 1  # the failed batch was not remembered
    assert [r["object"]["name"] for r in await delivered(client, config)] == ["shop-tls", "shop-web", "web"]
    assert (await client.get("/readyz")).status == 200


async def test_a_full_disk_under_the_jsonl_file_delays_it_but_loses_nothing(
    aiohttp_client: AiohttpClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The JSONL sink's write fails: the batch is still acknowledged (it is spooled) and the
    sink catches up, whole lines only, once the disk has room again."""
    config = make_config(tmp_path)
    client = await client_for(aiohttp_client, config)
    assert (await post_capture(client, CAPTURES / "0007.json"))[0] == 200
    await settle(client)
    records = config.data_dir / "records.jsonl"
    fail_writes_to(records, monkeypatch)

    resp = await client.post("/audit?timeout=30s", data=event_list(make_event()), headers=JSON)
    assert resp.status == 200
    assert not await client.app[RUNTIME].sinks.drain(0.3)
    assert len(records_in(config)) == 1  # whole lines only: the failed write was cut back

    monkeypatch.undo()
    assert [r["object"]["name"] for r in await delivered(client, config)] == ["shop-tls", "web"]


async def test_an_unexpected_failure_is_503_without_a_traceback(
    aiohttp_client: AiohttpClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug outside per-event work is answered 503 + Retry-After with a stable log event."""
    config = make_config(tmp_path)
    client = await client_for(aiohttp_client, config)

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise ZeroDivisionError(MARKER)

    monkeypatch.setattr("webhook.pipeline.workers.decode_event_list", broken)
    with capture_logs() as logs:
        resp = await client.post("/audit", data=event_list(make_event()), headers=JSON)
        text = await resp.text()

    assert resp.status == 503
    assert resp.headers["Retry-After"].isdigit()
    assert orjson.loads(text)["error"] == "internal"
    assert "Traceback" not in text
    assert MARKER not in text
    assert [(e["event"], e["error"]) for e in logs if e["event"] == "request.failed"] == [
        ("request.failed", "ZeroDivisionError")
    ]
    assert MARKER not in orjson.dumps(logs, default=str).decode()


# --- operations -----------------------------------------------------------------------------


async def test_health_and_readiness(aiohttp_client: AiohttpClient, tmp_path: Path) -> None:
    """/healthz says the process is up; /readyz that the files can be written."""
    client = await client_for(aiohttp_client, make_config(tmp_path))

    health = await client.get("/healthz")
    ready = await client.get("/readyz")

    assert (health.status, await health.json()) == (200, {"status": "ok"})
    assert ready.status == 200
    assert await ready.json() == {
        "status": "ready",
        "sinks": {"jsonl": {"ok": True, "detail": "", "lag_records": 0}},
        "state": {"store": "sqlite", "ok": True, "detail": ""},
    }


async def test_refusals_are_logged_without_flooding(aiohttp_client: AiohttpClient, tmp_path: Path) -> None:
    """A sender posting junk as fast as it can: at most 10 batch.rejected lines for the burst
    plus a summing line per reason, and their counts add up to every refusal."""
    client = await client_for(aiohttp_client, make_config(tmp_path))
    started = time.monotonic()
    with capture_logs() as logs:
        for _ in range(40):
            await client.post("/audit", data=b"nope", headers=JSON)
        for _ in range(5):
            await client.get("/audit")
        client.app[STATE].rejected_log.flush()
    rejected = [entry for entry in logs if entry["event"] == "batch.rejected"]
    by_reason: dict[str, int] = {}
    for entry in rejected:
        by_reason[entry["reason"]] = by_reason.get(entry["reason"], 0) + entry["requests"]
    assert by_reason == {"not-json": 40, "method-not-allowed": 5}
    # 10 from the full bucket, then a summing line a second per reason, and 10 more a second.
    assert len(rejected) <= 12 + 12 * math.ceil(time.monotonic() - started)


async def test_metrics_count_rejects_dead_letters_and_dedupe(
    aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    """Rejects by reason, dead letters by reason and dedupe hits are exported."""
    client = await client_for(aiohttp_client, make_config(tmp_path))
    await client.post("/audit", data=b"nope", headers=JSON)
    await client.post("/audit", data=event_list(make_event(), make_event(), "junk"), headers=JSON)

    text = await (await client.get("/metrics")).text()

    values = dict(re.findall(r"^(ingress_audit_\S+) (\S+)$", text, re.MULTILINE))
    assert float(values['ingress_audit_requests_rejected_total{reason="not-json"}']) == 1
    assert float(values['ingress_audit_dead_letters_total{reason="not-json"}']) == 1
    assert float(values['ingress_audit_dead_letters_total{reason="malformed-event"}']) == 1
    assert float(values["ingress_audit_dedupe_hits_total"]) == 1
    assert float(values["ingress_audit_events_matched_total"]) == 2


async def test_every_json_answer_is_one_line_with_a_newline(aiohttp_client: Any, tmp_path: Path) -> None:
    """The batch answer, the probes and a refusal: compact JSON, one line, a final newline (a
    shell prompt after ``curl`` starts on a line of its own)."""
    client = await aiohttp_client(create_app(make_config(tmp_path)))
    answers = [
        await client.post("/audit", data=event_list(), headers={"Content-Type": "application/json"}),
        await client.get("/healthz"),
        await client.get("/readyz"),
        await client.post("/audit", data=b"{}", headers={"Content-Type": "text/plain"}),
    ]

    for resp in answers:
        body = await resp.read()
        assert resp.content_type == "application/json"
        assert body.endswith(b"\n")
        assert body.count(b"\n") == 1
        assert b": " not in body
        assert b", " not in body
