"""Loopback stand-ins for the stores no test here can run: a generic receiver, Loki, Elasticsearch
and a Splunk HEC.

Each implements its documented request format and answers (Loki push API, Elasticsearch
``_bulk``, HEC ``/services/collector/event`` with status codes and indexer acknowledgement)
closely enough to catch a malformed request, plus failure modes on command: scripted answers
(``Fault``: 429 + Retry-After, 5xx, a slow answer), refused credentials, and TLS (trustme).
They run in-process on 127.0.0.1 through aiohttp's test server.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import trustme
from aiohttp import web
from aiohttp.test_utils import TestServer

from tests.conftest import enrichment_of, make_event
from webhook.config import Config, parse_config
from webhook.record.audit import Record, record_id
from webhook.record.line import RecordLine

__all__ = [
    "FakeElasticsearch",
    "FakeHec",
    "FakeLoki",
    "FakeReceiver",
    "Fault",
    "Seen",
    "TlsSetup",
    "app_config",
    "base_url",
    "events",
    "sample_records",
    "tls_setup",
]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class Fault:
    """The next request gets this answer (``status`` 0: after ``delay_s``, the normal one)."""

    status: int = 503
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes  # after gzip decoding
    at: float = field(default_factory=time.monotonic)


class _Fake:
    """Request log, credential check, scripted faults and an outage switch, for every fake."""

    def __init__(self, *, authorization: str | None = None) -> None:
        self.authorization = authorization
        self.faults: list[Fault] = []
        self.requests: list[Seen] = []
        self.down = False  # every request answered 503 while set
        self._arrived = asyncio.Condition()

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware])
        self.routes(app.router)
        return app

    def routes(self, router: web.UrlDispatcher) -> None:
        raise NotImplementedError

    def refuse(self, request: web.Request) -> web.Response:
        return web.Response(status=401, text="unauthorized")

    async def wait_for_requests(self, count: int, timeout_s: float = 5.0) -> None:
        """Until ``count`` requests have arrived (whatever their answer)."""
        async with asyncio.timeout(timeout_s), self._arrived:
            await self._arrived.wait_for(lambda: len(self.requests) >= count)

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        body = await request.read()
        self.requests.append(Seen(request.method, request.path, dict(request.headers), body))
        async with self._arrived:
            self._arrived.notify_all()
        if self.down:
            return web.Response(status=503, text="down")
        if self.faults:
            fault = self.faults.pop(0)
            await asyncio.sleep(fault.delay_s)
            if fault.status:
                return web.Response(status=fault.status, body=fault.body, headers=fault.headers)
        if self.authorization is not None and request.headers.get("Authorization") != self.authorization:
            return self.refuse(request)
        return await handler(request)


class FakeReceiver(_Fake):
    """Any HTTP endpoint: ``POST /ingest`` takes a JSON array or NDJSON, by Content-Type."""

    def __init__(self, *, authorization: str | None = None) -> None:
        super().__init__(authorization=authorization)
        self.records: list[dict[str, Any]] = []

    def routes(self, router: web.UrlDispatcher) -> None:
        router.add_post("/ingest", self._ingest)
        router.add_get("/healthz", self._healthz)

    async def _ingest(self, request: web.Request) -> web.Response:
        body = await request.read()
        if request.content_type == "application/json":
            docs = orjson.loads(body)
            assert isinstance(docs, list)
        elif request.content_type == "application/x-ndjson":
            assert body.endswith(b"\n")
            docs = [orjson.loads(line) for line in body.splitlines()]
        else:
            return web.Response(status=415)
        self.records.extend(docs)
        return web.Response(status=202)

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok")


class FakeLoki(_Fake):
    """``POST /loki/api/v1/push`` (JSON) and ``GET /ready``.

    Like Loki, an entry whose timestamp and line equal one already in its stream is ignored,
    a stream needs at least one label, and with ``tenant`` set a push without that
    ``X-Scope-OrgID`` is refused (401, "no org id").
    """

    def __init__(self, *, tenant: str | None = None, authorization: str | None = None) -> None:
        super().__init__(authorization=authorization)
        self.tenant = tenant
        self.ready = True
        self.streams: dict[frozenset[tuple[str, str]], list[tuple[int, str]]] = {}

    def routes(self, router: web.UrlDispatcher) -> None:
        router.add_post("/loki/api/v1/push", self._push)
        router.add_get("/ready", self._ready)

    def lines(self) -> list[dict[str, Any]]:
        return [orjson.loads(line) for entries in self.streams.values() for _, line in entries]

    async def _push(self, request: web.Request) -> web.Response:
        if self.tenant is not None and request.headers.get("X-Scope-OrgID") != self.tenant:
            return web.Response(status=401, text="no org id")
        if request.content_type != "application/json":
            return web.Response(status=415)
        try:
            doc = orjson.loads(await request.read())
            streams = doc["streams"]
            for stream in streams:
                labels = stream["stream"]
                if not labels or not all(isinstance(v, str) and v for v in labels.values()):
                    return web.Response(status=400, text="error at least one label pair is required")
                for ts, line in stream["values"]:
                    if not (isinstance(ts, str) and ts.isdigit() and isinstance(line, str)):
                        return web.Response(status=400, text="bad entry")
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            return web.Response(status=400, text="bad request")
        for stream in streams:
            entries = self.streams.setdefault(frozenset(stream["stream"].items()), [])
            for ts, line in stream["values"]:
                if (int(ts), line) not in entries:
                    entries.append((int(ts), line))
        return web.Response(status=204)

    async def _ready(self, request: web.Request) -> web.Response:
        if self.ready:
            return web.Response(text="ready")
        return web.Response(status=503, text="Ingester not ready")


class FakeElasticsearch(_Fake):
    """``POST /_bulk`` (NDJSON ``index``/``create`` actions) and ``GET /``.

    ``item_faults`` maps a document id (or the record's object name) to the statuses its next
    attempts get, e.g. ``{"web-1": [429]}`` (throttled once) or ``[400]`` (a mapping error).
    ``answers`` keeps every bulk answer.
    """

    def __init__(self, *, authorization: str | None = None) -> None:
        super().__init__(authorization=authorization)
        self.indices: dict[str, dict[str, dict[str, Any]]] = {}
        self.item_faults: dict[str, list[int]] = {}
        self.answer_errors_flag: bool | None = None  # force the top-level "errors" value
        self.answers: list[dict[str, Any]] = []

    def routes(self, router: web.UrlDispatcher) -> None:
        router.add_post("/_bulk", self._bulk)
        router.add_get("/", self._root)

    def documents(self) -> list[dict[str, Any]]:
        return [doc for index in self.indices.values() for doc in index.values()]

    def refuse(self, request: web.Request) -> web.Response:
        error = {"type": "security_exception", "reason": "missing authentication credentials"}
        return web.json_response({"error": error, "status": 401}, status=401)

    async def _bulk(self, request: web.Request) -> web.Response:
        if request.content_type not in ("application/x-ndjson", "application/json"):
            return web.json_response({"error": "Content-Type header is not supported"}, status=406)
        body = await request.read()
        if not body.endswith(b"\n"):
            return web.json_response(
                {"error": "The bulk request must be terminated by a newline"}, status=400
            )
        lines = body.splitlines()
        items = []
        for action_line, source_line in zip(lines[::2], lines[1::2], strict=True):
            action = orjson.loads(action_line)
            ((op, meta),) = action.items()
            assert op in ("index", "create"), op
            index, doc_id = meta["_index"], meta["_id"]
            items.append(
                {op: {"_index": index, "_id": doc_id, **self._apply(op, index, doc_id, source_line)}}
            )
        errors = any(next(iter(i.values()))["status"] >= 300 for i in items)
        if self.answer_errors_flag is not None:
            errors = self.answer_errors_flag
        self.answers.append({"took": 1, "errors": errors, "items": items})
        return web.json_response(self.answers[-1])

    def _apply(self, op: str, index: str, doc_id: str, source: bytes) -> dict[str, Any]:
        name = (orjson.loads(source).get("object") or {}).get("name")
        faults = self.item_faults.get(doc_id) or self.item_faults.get(str(name))
        if faults:
            status = faults.pop(0)
            kind = {429: "es_rejected_execution_exception", 400: "document_parsing_exception"}
            error = {
                "type": kind.get(status, "exception"),
                "reason": f"failed to parse field [x] value {doc_id}",
            }
            return {"status": status, "error": error}
        docs = self.indices.setdefault(index, {})
        if doc_id in docs and op == "create":
            error = {"type": "version_conflict_engine_exception", "reason": "document already exists"}
            return {"status": 409, "error": error}
        result = "updated" if doc_id in docs else "created"
        docs[doc_id] = orjson.loads(source)
        return {"status": 200 if result == "updated" else 201, "result": result}

    async def _root(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "name": "fake",
                "cluster_name": "fake",
                "version": {"number": "8.15.0"},
                "tagline": "You Know, for Search",
            }
        )


class FakeHec(_Fake):
    """``/services/collector/event``, ``/services/collector/ack`` and ``/services/collector/health``.

    Events are JSON objects one after the other; each needs an ``event``. With ``ack`` on, an
    event request needs an ``X-Splunk-Request-Channel`` and gets an ``ackId``, which the ack
    endpoint reports indexed after ``ack_after_polls`` polls (never when ``None``).
    """

    def __init__(self, *, token: str, ack: bool = False) -> None:
        super().__init__()
        self.token = token
        self.ack = ack
        self.ack_after_polls: int | None = 0
        self.busy = False
        self.events: list[dict[str, Any]] = []
        self.channels: set[str] = set()
        self._next_ack = 0
        self._polls: dict[int, int] = {}

    def routes(self, router: web.UrlDispatcher) -> None:
        router.add_post("/services/collector/event", self._event)
        router.add_post("/services/collector/ack", self._ack)
        router.add_get("/services/collector/health", self._health)

    def _auth_problem(self, request: web.Request) -> web.Response | None:
        given = request.headers.get("Authorization")
        if given is None:
            return web.json_response({"text": "Token is required", "code": 2}, status=401)
        if given != f"Splunk {self.token}":
            return web.json_response({"text": "Invalid token", "code": 4}, status=403)
        return None

    async def _event(self, request: web.Request) -> web.Response:
        problem = self._auth_problem(request)
        if problem is not None:
            return problem
        channel = request.headers.get("X-Splunk-Request-Channel")
        if self.ack and channel is None:
            return web.json_response({"text": "Data channel is missing", "code": 10}, status=400)
        text = (await request.read()).decode("utf-8")
        if not text.strip():
            return web.json_response({"text": "No data", "code": 5}, status=400)
        decoder = json.JSONDecoder()
        events: list[dict[str, Any]] = []
        pos = 0
        while pos < len(text):
            while pos < len(text) and text[pos].isspace():
                pos += 1
            if pos == len(text):
                break
            try:
                doc, pos = decoder.raw_decode(text, pos)
            except json.JSONDecodeError:
                return web.json_response(
                    {"text": "Invalid data format", "code": 6, "invalid-event-number": len(events)},
                    status=400,
                )
            if "event" not in doc:
                return web.json_response(
                    {"text": "Event field is required", "code": 12, "invalid-event-number": len(events)},
                    status=400,
                )
            events.append(doc)
        self.events.extend(events)
        if not (self.ack and channel is not None):
            return web.json_response({"text": "Success", "code": 0})
        self.channels.add(channel)
        ack_id = self._next_ack
        self._next_ack += 1
        self._polls[ack_id] = 0
        return web.json_response({"text": "Success", "code": 0, "ackId": ack_id})

    async def _ack(self, request: web.Request) -> web.Response:
        problem = self._auth_problem(request)
        if problem is not None:
            return problem
        if not self.ack:
            return web.json_response({"text": "ACK is disabled", "code": 14}, status=400)
        if request.headers.get("X-Splunk-Request-Channel") not in self.channels:
            return web.json_response({"text": "Invalid data channel", "code": 11}, status=400)
        acks = {}
        for ack_id in (await request.json())["acks"]:
            self._polls[ack_id] = self._polls.get(ack_id, 0) + 1
            after = self.ack_after_polls
            acks[str(ack_id)] = after is not None and self._polls[ack_id] > after
        return web.json_response({"acks": acks})

    async def _health(self, request: web.Request) -> web.Response:
        if self.busy:
            return web.json_response({"text": "HEC is unhealthy, queues are full", "code": 18}, status=503)
        return web.json_response({"text": "HEC is healthy", "code": 17})


def base_url(server: TestServer) -> str:
    return f"{server.scheme}://{server.host}:{server.port}"


@dataclass(frozen=True)
class TlsSetup:
    """A CA (``ca_file``), a server context for 127.0.0.1, and a client certificate it signed."""

    ca: trustme.CA
    ca_file: Path
    cert_file: Path
    key_file: Path

    def server_context(self, *, require_client_cert: bool = False) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
        if require_client_cert:
            context.verify_mode = ssl.CERT_REQUIRED
            self.ca.configure_trust(context)
        return context


def tls_setup(directory: Path) -> TlsSetup:
    ca = trustme.CA()
    client = ca.issue_cert("ingress-audit@example.test")
    setup = TlsSetup(ca, directory / "ca.pem", directory / "client.crt", directory / "client.key")
    ca.cert_pem.write_to_path(str(setup.ca_file))
    client.cert_chain_pems[0].write_to_path(str(setup.cert_file))
    client.private_key_pem.write_to_path(str(setup.key_file))
    return setup


def events(count: int, *, start: int = 0, **fields: Any) -> list[dict[str, Any]]:
    """Distinct Ingress create events the default filter keeps, in two namespaces."""
    return [
        make_event(
            audit_id=f"00000000-0000-4000-8000-{i:012d}",
            name=f"web-{i}",
            namespace=("shop", "blog")[i % 2],
            stageTimestamp=f"2026-11-24T14:20:{i % 60:02d}.{i:06d}Z",
            **fields,
        )
        for i in range(start, start + count)
    ]


def sample_records(count: int, **fields: Any) -> list[RecordLine]:
    """Records as the delivery loop hands them to a sink: spooled JSON lines."""
    return [
        RecordLine.of(
            Record.from_event(
                event,
                record_id=record_id(event["auditID"], event["stage"], "digest"),
                cluster="test-cluster",
                received_at="2026-11-24T14:21:00.000000Z",
                enrichment=enrichment_of(event),
            )
        )
        for event in events(count, **fields)
    ]


def app_config(tmp_path: Path, *sinks: dict[str, Any]) -> Config:
    """A validated config with a JSONL sink (the reference) and ``sinks``, retrying fast."""
    fast = {"retry": {"initial_backoff_s": 0.01, "max_backoff_s": 0.05}, "batch": {"timeout_s": 0}}
    return parse_config(
        {
            "cluster": "test-cluster",
            "data_dir": str(tmp_path / "data"),
            "sinks": [{"type": "jsonl"}, *({**fast, **sink} for sink in sinks)],
        }
    )
