"""Shared helpers: the real apiserver captures, a test config, and readers for what we wrote.

The captures are the project's own test data, kept in the repository under
``tests/fixtures/apiserver-v1.26`` (see its README.md): a plain clone runs the suite.
"""

from __future__ import annotations

import asyncio
import copy
import signal
from collections.abc import Iterator, Sequence
from dataclasses import replace
from functools import cache
from pathlib import Path
from typing import Any, Final

import orjson
import pytest
import structlog
from aiohttp.test_utils import TestClient

from tests.redis_server import redis_url  # noqa: F401 - fixture
from tests.servers import (  # noqa: F401 - fixtures
    alertmanager_server,
    nats_server,
    postgres_server,
    rsyslog_server,
    server_certs,
)
from webhook.config import Config, ServerConfig, jsonl_sink_for
from webhook.enrich.enricher import Enricher, Enrichment
from webhook.enrich.settings import ActorsConfig, ChangeConfig, FindingsConfig
from webhook.redact.model import SecretDetails
from webhook.redact.redactor import RedactionResult
from webhook.server.app import RUNTIME

__all__ = [
    "CAPTURES",
    "FIXTURES",
    "SCENARIO",
    "Client",
    "alerts_in",
    "capture_bytes",
    "capture_events",
    "capture_headers",
    "capture_path",
    "captured_bodies",
    "dead_letters_in",
    "delivered",
    "enrichment_of",
    "event_list",
    "find_event",
    "iter_files",
    "make_config",
    "make_event",
    "post_capture",
    "read_jsonl",
    "records_in",
    "scenario_index",
    "scenario_secrets",
    "scenario_steps",
    "settle",
]


def pytest_configure(config: pytest.Config) -> None:
    """A suite started in the background by a script (``nohup ... &``) inherits SIGINT ignored,
    and so would every process it starts: the tests that stop ``tail`` with Ctrl-C's signal
    would wait for it in vain. Run as from a terminal."""
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


FIXTURES: Final = Path(__file__).resolve().parent / "fixtures" / "apiserver-v1.26"
SCENARIO: Final = FIXTURES / "scenario-a"
CAPTURES: Final = SCENARIO / "captures"

Client = TestClient[Any, Any]

ENRICHER: Final = Enricher(change=ChangeConfig(), actors=ActorsConfig(), findings=FindingsConfig())

# Hop-by-hop or computed by the client: sending the captured values would be wrong.
_DROPPED_HEADERS: Final = frozenset({"host", "content-length"})


def make_config(tmp_path: Path, **server: Any) -> Config:
    """Defaults, with the data dir under ``tmp_path`` and any ``ServerConfig`` field overridden."""
    return Config(
        cluster="test-cluster",
        data_dir=tmp_path / "data",
        server=replace(ServerConfig(), **server),
    )


def captured_bodies() -> list[Path]:
    """Every ``NNNN.json`` of scenario A in the order the apiserver sent them."""
    return sorted(p for p in CAPTURES.glob("[0-9][0-9][0-9][0-9].json"))


def capture_headers(body: Path) -> dict[str, str]:
    """The headers the apiserver sent with ``body``, minus Host and Content-Length."""
    meta = orjson.loads(body.with_name(f"{body.stem}.headers.json").read_bytes())
    return {name: value for name, value in meta["headers"] if name.lower() not in _DROPPED_HEADERS}


def capture_bytes(body: Path) -> bytes:
    """The captured request body, byte for byte."""
    return body.read_bytes()


def capture_path(body: Path) -> str:
    """The request target the apiserver used (``/audit?timeout=30s``)."""
    path: str = orjson.loads(body.with_name(f"{body.stem}.headers.json").read_bytes())["path"]
    return path


@cache
def _events(name: str) -> tuple[dict[str, Any], ...]:
    return tuple(orjson.loads((CAPTURES / name).read_bytes())["items"])


def capture_events(name: str) -> list[dict[str, Any]]:
    """A deep copy of the events in capture ``name`` (e.g. ``"0009.json"``)."""
    return copy.deepcopy(list(_events(name)))


def find_event(name: str, **match: Any) -> dict[str, Any]:
    """The one event of capture ``name`` whose top-level fields (or objectRef.resource) match."""
    resource = match.pop("resource", None)
    found = [
        e
        for e in capture_events(name)
        if all(e.get(k) == v for k, v in match.items())
        and (resource is None or e.get("objectRef", {}).get("resource") == resource)
    ]
    assert len(found) == 1, f"{name}: {len(found)} events match {match} resource={resource}"
    return found[0]


def scenario_index() -> dict[str, Any]:
    index: dict[str, Any] = orjson.loads((SCENARIO / "index.json").read_bytes())
    return index


def scenario_steps() -> dict[str, dict[str, Any]]:
    """steps.jsonl by step id (A01 …): command, start, end."""
    lines = (SCENARIO / "steps.jsonl").read_bytes().splitlines()
    return {step["id"]: step for step in map(orjson.loads, filter(None, lines))}


def scenario_secrets() -> list[str]:
    """Every secret value that occurs in the captures (``secrets.txt``)."""
    return [line for line in (SCENARIO / "secrets.txt").read_text("utf-8").splitlines() if line]


def ingress_changes() -> list[dict[str, Any]]:
    """Two successful writes of one captured Ingress, in order, each with its object."""
    events = [
        event
        for body in captured_bodies()
        for event in capture_events(body.name)
        if (event.get("objectRef") or {}).get("resource") == "ingresses"
        and event["stage"] == "ResponseComplete"
        and event["verb"] in ("create", "update", "patch")
        and event.get("responseObject", {}).get("kind") == "Ingress"
    ]
    first = events[0]
    same = [e for e in events[1:] if e["objectRef"]["name"] == first["objectRef"]["name"]]
    return [first, same[0]]


def assert_diffed_against(lines: Sequence[bytes], earlier: dict[str, Any]) -> None:
    """The one record of ``lines`` was diffed against the state ``earlier`` (an event of
    ``ingress_changes``) left."""
    (record,) = [orjson.loads(line) for line in lines]
    assert record["change"]["baseline"] == "state"
    assert record["change"]["baseline_audit_id"] == earlier["auditID"]


def make_event(
    *,
    stage: str = "ResponseComplete",
    verb: str = "create",
    api_group: str = "networking.k8s.io",
    resource: str | None = "ingresses",
    namespace: str | None = "shop",
    name: str | None = "web",
    code: int | None = 201,
    username: str | None = "admin",
    groups: tuple[str, ...] = ("system:masters", "system:authenticated"),
    audit_id: str = "00000000-0000-4000-8000-000000000001",
    **extra: Any,
) -> dict[str, Any]:
    """A synthetic event shaped like the captured ones (keys in the apiserver's order)."""
    event: dict[str, Any] = {
        "level": "Metadata",
        "auditID": audit_id,
        "stage": stage,
        "requestURI": f"/apis/{api_group}/v1/namespaces/{namespace}/{resource}",
        "verb": verb,
        "user": {} if username is None else {"username": username, "groups": list(groups)},
        "sourceIPs": ["127.0.0.1"],
        "userAgent": "kubectl/v1.26.0 (linux/amd64) kubernetes/b46a3f8",
    }
    if resource is not None:
        ref = {"resource": resource, "apiGroup": api_group, "apiVersion": "v1"}
        if api_group == "":
            del ref["apiGroup"]
        if namespace is not None:
            ref["namespace"] = namespace
        if name is not None:
            ref["name"] = name
        event["objectRef"] = ref
    if code is not None and stage != "RequestReceived":
        event["responseStatus"] = {"metadata": {}, "code": code}
    event["requestReceivedTimestamp"] = "2026-11-24T14:20:40.457086Z"
    event["stageTimestamp"] = "2026-11-24T14:20:40.463683Z"
    if stage != "RequestReceived" and username is not None:
        event["annotations"] = {
            "authorization.k8s.io/decision": "allow" if code is None or code < 400 else "forbid",
            "authorization.k8s.io/reason": "",
        }
    event.update(extra)
    return event


def enrichment_of(
    event: dict[str, Any], *, secrets: Sequence[SecretDetails] = (), dropped: Sequence[str] = ()
) -> Enrichment:
    """What the default config's enricher makes of ``event`` with nothing stored, given what
    redaction reported for it."""
    return ENRICHER.enrich(RedactionResult(event=event, secrets=tuple(secrets), dropped=tuple(dropped)), {})


def event_list(*items: Any, api_version: str = "audit.k8s.io/v1") -> bytes:
    """An EventList body as the apiserver writes it (compact, trailing newline)."""
    doc = {"kind": "EventList", "apiVersion": api_version, "metadata": {}, "items": list(items)}
    return orjson.dumps(doc) + b"\n"


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Every line of a JSONL file, parsed; a partial last line fails the parse."""
    if not path.exists():
        return []
    data = path.read_bytes()
    assert not data or data.endswith(b"\n"), f"{path.name} ends with a partial line"
    return [orjson.loads(line) for line in data.splitlines()]


def sink_records(config: Config) -> list[dict[str, Any]]:
    """The lines of the first JSONL file that takes each record type: records.jsonl, and with
    access logs on, access.jsonl (a second sink taking the same types is not read again)."""
    found = (jsonl_sink_for(config, kind) for kind in ("audit", "alert", "access", "access_summary"))
    return [r for path in dict.fromkeys(p for p in found if p is not None) for r in read_jsonl(path)]


def records_in(config: Config) -> list[dict[str, Any]]:
    """The records in the JSONL sinks but the alerts (``alerts_in``): audit, access, summaries."""
    return [r for r in sink_records(config) if r.get("type") != "alert"]


def alerts_in(config: Config) -> list[dict[str, Any]]:
    """The alert records in the JSONL sinks (docs/detections.md)."""
    return [r for r in sink_records(config) if r.get("type") == "alert"]


async def settle(client: Client, timeout_s: float = 10.0) -> None:
    """Wait until every sink has delivered what the spool holds (a 200 means spooled) and the
    state store has what the answers left behind them (it lingers for more batches)."""
    runtime = client.app[RUNTIME]
    assert await runtime.sinks.drain(timeout_s), "sinks did not catch up"
    await asyncio.wait_for(runtime.state_writes.drain(), timeout_s)


async def delivered(client: Client, config: Config) -> list[dict[str, Any]]:
    """The records but the alerts in the JSONL sink once delivery has caught up."""
    await settle(client)
    return records_in(config)


def dead_letters_in(config: Config) -> list[dict[str, Any]]:
    return read_jsonl(config.data_dir / "dead-letter.jsonl")


async def post_capture(client: Client, body: Path) -> tuple[int, dict[str, Any]]:
    """POST one capture as the apiserver did (path, headers, bytes); return status and JSON."""
    data = capture_bytes(body)
    resp = await client.post(capture_path(body), data=data, headers=capture_headers(body))
    payload: dict[str, Any] = await resp.json()
    return resp.status, payload


def iter_files(root: Path) -> Iterator[Path]:
    """Every regular file below ``root``."""
    return (p for p in sorted(root.rglob("*")) if p.is_file())


@pytest.fixture(autouse=True)
def _logging_left_as_found() -> Iterator[None]:
    """A test that runs a command in-process (``main(["serve", …])``) configures this process's
    logging as the command does: at ``warning``, with loggers cached on first use, so every
    later test that checks info lines would see none. Such a test fails here, naming the cause;
    run the command as a subprocess instead."""
    before = structlog.get_config()
    yield
    after = structlog.get_config()
    if after != before:
        structlog.configure(**before)
        pytest.fail("this test configured logging in-process; run the command as a subprocess")
