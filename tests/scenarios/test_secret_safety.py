"""No secret value leaves the process: every shape, through the whole app, into every output.

Hypothesis plants distinctive values (webhook-free marker prefix, unicode, binary, long) in
every shape a Secret reaches the webhook in (tests/secret_shapes.py), posts them through the
real app, and scans everything the process wrote or said — the JSONL records, the spool, the
dead letters, the HTTP answers and every log line — for each value in every encoding
webhook.redact.leaks knows (plain, base64, base64url, hex, JSON-escaped).
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import replace
from pathlib import Path
from typing import Any, Final

import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from structlog.testing import capture_logs

from tests.conftest import CAPTURES, dead_letters_in, make_config, scenario_secrets, settle
from tests.secret_shapes import (
    KEYS,
    LAST_APPLIED,
    SHAPES,
    Planted,
    SecretSpec,
    b64,
    copied_secret,
    copied_values,
    go_json,
)
from webhook.filter import FilterSpec, Rule
from webhook.redact.leaks import encodings, scan
from webhook.server.app import create_app

JSON = {"Content-Type": "application/json"}
SAFETY = settings(
    max_examples=20,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def _event_list(*events: dict[str, Any]) -> bytes:
    return orjson.dumps({"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "items": list(events)})


def _texts(values: tuple[str | bytes, ...]) -> list[str | bytes]:
    return [v for v in values if len(v) >= 4]


# Rules that keep every request's last event: a user's filter may keep any resource, and the
# redactor then sees what the default filter drops (Secrets inside other objects, tokens).
KEEP_ALL: Final = FilterSpec(include=(Rule(),))


async def _post_and_collect(
    tmp: Path, body: bytes, keep: FilterSpec | None = None
) -> tuple[list[bytes], Path]:
    """Post ``body`` to a fresh app (with the filter ``keep``, else the default one); return
    what it said (answer, logs) and its data dir."""
    config = make_config(tmp)
    if keep is not None:
        config = replace(config, filter=keep)
    client: TestClient[Any, Any] = TestClient(TestServer(create_app(config)))
    await client.start_server()
    try:
        with capture_logs() as logs:
            resp = await client.post("/audit?timeout=30s", data=body, headers=JSON)
            answer = await resp.read()
            await settle(client)
            metrics = await (await client.get("/metrics")).read()
            ready = await (await client.get("/readyz")).read()
    finally:
        await client.close()
    return [answer, metrics, ready, orjson.dumps(logs, default=str)], config.data_dir


def _leaks(said: list[bytes], data_dir: Path, values: list[str | bytes]) -> list[str]:
    texts = [v for v in values if isinstance(v, str)]
    found = [f"file {leak.file.name} as {leak.encoding}" for leak in scan([data_dir], texts)]
    said = [*said, *(p.read_bytes() for p in data_dir.rglob("*") if p.is_file())]  # binary values too
    for index, value in enumerate(values):
        forms = encodings(value)
        found.extend(f"output value {index}" for blob in said if any(form in blob for form in forms))
    return found


@pytest.mark.parametrize("shape", sorted(SHAPES))
@SAFETY
@given(data=st.data())
async def test_no_value_reaches_any_output(
    shape: str, data: st.DataObject, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Each shape, posted through the app: values are in no record, spool, dead letter, answer or log."""
    planted: Planted = data.draw(SHAPES[shape])
    values = _texts(planted.values)
    said, data_dir = await _post_and_collect(tmp_path_factory.mktemp(shape), _event_list(planted.event))

    assert _leaks(said, data_dir, values) == []


@pytest.mark.parametrize("shape", sorted(SHAPES))
@settings(SAFETY, max_examples=8)
@given(data=st.data())
async def test_no_value_reaches_any_output_when_every_resource_is_kept(
    shape: str, data: st.DataObject, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The same with a filter that keeps everything: each shape becomes a record, whatever its
    resource, and still no value reaches an output."""
    planted: Planted = data.draw(SHAPES[shape])
    said, data_dir = await _post_and_collect(
        tmp_path_factory.mktemp(shape), _event_list(planted.event), KEEP_ALL
    )

    assert _leaks(said, data_dir, _texts(planted.values)) == []
    if planted.event.get("stage") == "ResponseComplete":
        lines = (data_dir / "records.jsonl").read_bytes().splitlines()
        assert [line.startswith(b'{"schema_version":1,"type":"audit"') for line in lines].count(True) == 1


@pytest.mark.parametrize("shape", sorted(SHAPES))
@settings(SAFETY, max_examples=8)
@given(data=st.data())
async def test_malformed_secret_events_leak_nothing(
    shape: str, data: st.DataObject, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """A secret event broken in a field the record needs is dead-lettered without its values."""
    planted: Planted = data.draw(SHAPES[shape])
    event = copy.deepcopy(planted.event)
    event["user"] = {"username": "admin", "groups": "not-a-list"}
    said, data_dir = await _post_and_collect(tmp_path_factory.mktemp(shape), _event_list(event))

    assert _leaks(said, data_dir, _texts(planted.values)) == []
    records = data_dir / "records.jsonl"
    assert not records.exists() or records.read_bytes() == b""  # the broken event became no record
    if event.get("objectRef", {}).get("resource") == "secrets":
        assert (data_dir / "dead-letter.jsonl").read_bytes().count(b"\n") == 1


async def test_the_captured_scenario_leaks_nothing(tmp_path: Path) -> None:
    """Every capture of scenario A, posted in order: no line of secrets.txt in any output."""
    config = make_config(tmp_path)
    client: TestClient[Any, Any] = TestClient(TestServer(create_app(config)))
    await client.start_server()
    said: list[bytes] = []
    try:
        with capture_logs() as logs:
            for body in sorted(CAPTURES.glob("[0-9][0-9][0-9][0-9].json")):
                resp = await client.post("/audit?timeout=30s", data=body.read_bytes(), headers=JSON)
                said.append(await resp.read())
            await settle(client)
    finally:
        await client.close()
    said.append(orjson.dumps(logs, default=str))
    secrets: list[str | bytes] = list(scenario_secrets())

    assert _leaks(said, config.data_dir, secrets) == []
    assert dead_letters_in(config) == []
    records = [orjson.loads(x) for x in (config.data_dir / "records.jsonl").read_bytes().splitlines()]
    fingerprinted = [
        r for r in records if r["type"] == "audit" and r["secret"] and r["secret"]["fingerprints"]
    ]
    assert fingerprinted, "the secret events were recorded with fingerprints"


async def test_a_secrets_stored_state_and_its_diffs_hold_no_value(tmp_path: Path) -> None:
    """Create, update, delete a Secret: the state store and the diffs hold fingerprints only."""
    import base64

    from tests.conftest import make_event
    from webhook.server.app import RUNTIME

    values = ["s3cr3t-first-value-Q9", "s3cr3t-second-value-Z7"]

    def secret(value: str, rv: str) -> dict[str, Any]:
        return {
            "kind": "Secret",
            "apiVersion": "v1",
            "metadata": {"name": "db", "namespace": "shop", "resourceVersion": rv},
            "type": "Opaque",
            "data": {"password": base64.b64encode(value.encode()).decode()},
        }

    def event(n: int, verb: str, obj: dict[str, Any] | None) -> dict[str, Any]:
        extra: dict[str, Any] = {"requestObject": obj, "responseObject": obj} if obj else {}
        return make_event(
            verb=verb,
            api_group="",
            resource="secrets",
            name="db",
            code=201 if verb == "create" else 200,
            level="RequestResponse",
            audit_id=f"00000000-0000-4000-8000-00000000010{n}",
            stageTimestamp=f"2026-11-24T14:2{n}:00Z",
            **extra,
        )

    config = make_config(tmp_path)
    client: TestClient[Any, Any] = TestClient(TestServer(create_app(config)))
    await client.start_server()
    try:
        for n, (verb, obj) in enumerate(
            [("create", secret(values[0], "1")), ("update", secret(values[1], "2")), ("delete", None)]
        ):
            resp = await client.post("/audit", data=_event_list(event(n, verb, obj)), headers=JSON)
            assert resp.status == 200
        await settle(client)
        store = client.app[RUNTIME].state
        (tomb,) = (await store.get_many(["/secrets/shop/db"])).values()
    finally:
        await client.close()

    assert tomb.deleted
    records = [orjson.loads(x) for x in (config.data_dir / "records.jsonl").read_bytes().splitlines()]
    update, delete = (r["change"] for r in records[1:])
    (op,) = update["operations"]
    assert (op["path"], op["old"][:12], op["new"][:12]) == ("/data/password", "hmac-sha256:", "hmac-sha256:")
    removed = {o["path"]: o["old"] for o in delete["operations"]}
    assert removed["/data"]["password"].startswith("hmac-sha256:")
    assert (config.data_dir / "state.sqlite3").exists()
    assert _leaks([], config.data_dir, list(values)) == []


async def test_alerts_leak_nothing(tmp_path: Path) -> None:
    """Scenario A with every detection at its most eager: many alerts, no secret value in any."""
    from dataclasses import replace

    from webhook.config import parse_config

    raw = {
        "actors": {"trusted_cidrs": ["10.0.0.0/8"]},  # 127.0.0.1 is untrusted
        "detections": {
            "findings_min_severity": "info",
            "deployment_identities": {"users": ["gitops"]},
            "change_windows": [{"days": ["sun"], "start": "00:00", "end": "00:01"}],
            "rules": {
                "brute-force-source-ip": {"threshold": 1},
                "brute-force-user": {"threshold": 1},
                "secret-enumeration": {"threshold": 1, "namespace_threshold": 1},
                "ingress-change-burst": {"threshold": 1},
            },
        },
    }
    parsed = parse_config(raw)
    config = replace(make_config(tmp_path), actors=parsed.actors, detections=parsed.detections)
    client: TestClient[Any, Any] = TestClient(TestServer(create_app(config)))
    await client.start_server()
    try:
        with capture_logs() as logs:
            for body in sorted(CAPTURES.glob("[0-9][0-9][0-9][0-9].json")):
                resp = await client.post("/audit?timeout=30s", data=body.read_bytes(), headers=JSON)
                assert resp.status == 200
            await settle(client)
    finally:
        await client.close()

    lines = (config.data_dir / "records.jsonl").read_bytes().splitlines()
    alerts = [r for r in map(orjson.loads, lines) if r["type"] == "alert"]
    assert {a["detection"] for a in alerts} == {
        "brute-force-source-ip",
        "brute-force-user",
        "secret-enumeration",
        "untrusted-source-change",
        "drift-identity",
        "drift-change-window",
        "ingress-change-burst",
        "high-severity-finding",
    }
    assert _leaks([orjson.dumps(logs, default=str)], config.data_dir, list(scenario_secrets())) == []


# -- review finding 3: values copied into other annotations of the same Secret -------------------

# S2/S3/S4 of the review: escaped by JSON or Go inside a manifest annotation, or short.
REVIEW_CREATE: Final = ("RT&SECRET-61<xyz>", 'RT"SECRET-63-xyz', "RT\\SECRET-65-xyz", "RTpin67", "RTpw5")
REVIEW_UPDATE: Final = ("RT&SECRET-62<xyz>", 'RT"SECRET-64-xyz', "RT\\SECRET-66-xyz", "RTpin68", "RTpw6")
KAPP: Final = "kapp.k14s.io/original"


def _review_secret(values: tuple[str, ...], rv: str, *, padding: int) -> dict[str, Any]:
    """A Secret applied by kapp (Go-escaped copy) after kubectl apply, its values also copied
    by hand into annotations and a label."""
    string_data = {f"k{i}": v for i, v in enumerate(values)}
    manifest = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "db", "namespace": "shop"},
        "stringData": string_data,
        "type": "Opaque",
    }
    annotations = {
        KAPP: go_json(manifest),
        LAST_APPLIED: json.dumps(manifest) + "\n",
        "example.test/pin": values[3],
        "example.test/note": f"pw={values[4]}",
        "example.test/escaped": json.dumps(values[1])[1:-1],
        "kubernetes.io/service-account.name": "builder",
    }
    if padding:
        annotations["example.test/padding"] = "x" * padding
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": "db",
            "namespace": "shop",
            "resourceVersion": rv,
            "annotations": annotations,
            "labels": {"pin": values[4], "app": "shop"},
        },
        "type": "Opaque",
        "data": {k: b64(v) for k, v in string_data.items()},
    }


def _review_event(n: int, verb: str, obj: dict[str, Any]) -> dict[str, Any]:
    from tests.conftest import make_event

    return make_event(
        verb=verb,
        api_group="",
        resource="secrets",
        name="db",
        code=201 if verb == "create" else 200,
        level="RequestResponse",
        audit_id=f"00000000-0000-4000-8000-00000000020{n}",
        stageTimestamp=f"2026-11-24T14:3{n}:00Z",
        requestObject=obj,
        responseObject=obj,
    )


@pytest.mark.parametrize("path", ["in-process", "worker-process"])
async def test_review_escaped_and_short_copies_reach_no_output(path: str, tmp_path: Path) -> None:
    """Create then update a Secret whose values are copied, escaped or short, into its other
    annotations: records (change.operations old/new), spool, state.sqlite3 and dead letters
    hold none of them, through the event loop and through the worker processes."""
    from webhook.pipeline.workers import MIN_BODY_BYTES
    from webhook.server.app import RUNTIME

    padding = MIN_BODY_BYTES if path == "worker-process" else 0
    config = make_config(tmp_path, workers=1)
    client: TestClient[Any, Any] = TestClient(TestServer(create_app(config)))
    await client.start_server()
    said: list[bytes] = []
    try:
        pool = client.app[RUNTIME].prepare_pool
        if padding:
            await pool.start()
        with capture_logs() as logs:
            for n, (verb, values) in enumerate([("create", REVIEW_CREATE), ("update", REVIEW_UPDATE)]):
                obj = _review_secret(values, str(n + 1), padding=padding)
                body = _event_list(_review_event(n, verb, obj))
                assert pool.wants(body) is bool(padding)
                resp = await client.post("/audit?timeout=30s", data=body, headers=JSON)
                said.append(await resp.read())
                assert resp.status == 200
            await settle(client)
        said.append(orjson.dumps(logs, default=str))
    finally:
        await client.close()

    assert _leaks(said, config.data_dir, [*REVIEW_CREATE, *REVIEW_UPDATE]) == []
    assert dead_letters_in(config) == []
    assert list(config.data_dir.glob("state.sqlite3*"))
    lines = (config.data_dir / "records.jsonl").read_bytes().splitlines()
    _, update = (r for r in map(orjson.loads, lines) if r["type"] == "audit")
    operations = {op["path"]: op for op in update["change"]["operations"]}
    assert operations["/metadata/annotations/example.test~1pin"]["new"] == operations["/data/k3"]["new"]
    kapp = operations["/metadata/annotations/kapp.k14s.io~1original"]
    old, new = json.loads(kapp["old"]), json.loads(kapp["new"])  # parsed, not one fingerprint
    assert set(old["stringData"]) == set(new["stringData"]) == {f"k{i}" for i in range(5)}
    assert old["stringData"]["k0"] != new["stringData"]["k0"]
    assert all(v.startswith("hmac-sha256:") for v in new["stringData"].values())


@pytest.mark.parametrize("path", ["in-process", "worker-process"])
@settings(SAFETY, max_examples=6)
@given(data=st.data())
async def test_copied_values_in_any_form_leak_nowhere_on_create_and_update(
    path: str, data: st.DataObject, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Values of any characters, 4 to 16 long, copied raw, escaped once or twice, by Go or
    in base64 into a Secret's annotations, labels and manifests: after a create and an update,
    no form of any of them is in the records, the spool, the state or the dead letters."""
    from webhook.pipeline.workers import MIN_BODY_BYTES
    from webhook.server.app import RUNTIME

    keys = data.draw(st.lists(KEYS, min_size=1, max_size=3, unique=True))
    specs = [
        SecretSpec(name="db", namespace="shop", data={k: data.draw(copied_values) for k in keys})
        for _ in range(2)
    ]
    config = make_config(tmp_path_factory.mktemp(path), workers=1)
    client: TestClient[Any, Any] = TestClient(TestServer(create_app(config)))
    await client.start_server()
    said: list[bytes] = []
    try:
        pool = client.app[RUNTIME].prepare_pool
        if path == "worker-process":
            await pool.start()
        with capture_logs() as logs:
            for n, (verb, spec) in enumerate(zip(("create", "update"), specs, strict=True)):
                obj = copied_secret(data.draw, spec)
                obj["metadata"]["resourceVersion"] = str(n + 1)
                if path == "worker-process":
                    obj["metadata"]["annotations"]["example.test/padding"] = "x" * MIN_BODY_BYTES
                body = _event_list(_review_event(n, verb, obj))
                assert pool.wants(body) is (path == "worker-process")
                resp = await client.post("/audit?timeout=30s", data=body, headers=JSON)
                said.append(await resp.read())
            await settle(client)
        said.append(orjson.dumps(logs, default=str))
    finally:
        await client.close()

    values = [v for spec in specs for v in spec.values]
    assert _leaks(said, config.data_dir, _texts(tuple(values))) == []
    assert dead_letters_in(config) == []


@pytest.mark.parametrize("path", ["in-process", "worker-process"])
@settings(SAFETY, max_examples=6)
@given(data=st.data())
async def test_a_list_of_secrets_listed_again_leaks_nothing(
    path: str, data: st.DataObject, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The same Secrets listed twice (the second time from the redactor's memory of list items),
    through the event loop and through the worker process: no value in any output, and the two
    records say the same of the Secrets."""
    from webhook.pipeline.workers import MIN_BODY_BYTES
    from webhook.server.app import RUNTIME

    planted: Planted = data.draw(SHAPES["secret-list"])
    first, second = (copy.deepcopy(planted.event) for _ in range(2))
    second["auditID"] = "9a1d2c3b-4e5f-4a6b-8c7d-0e1f2a3b4c5d"
    filler = []
    if path == "worker-process":  # a body the server hands to its worker
        padding = {"kind": "ConfigMap", "metadata": {"name": "filler"}, "data": {"pad": "x" * MIN_BODY_BYTES}}
        filler = [
            {
                **planted.event,
                "auditID": "0b1c2d3e-0000-4a6b-8c7d-0e1f2a3b4c5d",
                "objectRef": {"resource": "configmaps", "namespace": "shop", "name": "filler"},
                "responseObject": padding,
            }
        ]
    config = make_config(tmp_path_factory.mktemp(path), workers=1)
    client: TestClient[Any, Any] = TestClient(TestServer(create_app(config)))
    await client.start_server()
    said: list[bytes] = []
    try:
        runtime = client.app[RUNTIME]
        if filler:
            await runtime.prepare_pool.start()
        with capture_logs() as logs:
            for event in (first, second):
                body = _event_list(event, *filler)
                assert runtime.prepare_pool.wants(body) is bool(filler)
                resp = await client.post("/audit?timeout=30s", data=body, headers=JSON)
                said.append(await resp.read())
                assert resp.status == 200
            await settle(client)
            metrics = (await (await client.get("/metrics")).read()).decode()
        said.append(orjson.dumps(logs, default=str))
        said.append(metrics.encode())
        remembered = runtime.ingestor.pipeline.redactor.list_items.hits
    finally:
        await client.close()

    assert _leaks(said, config.data_dir, _texts(planted.values)) == []
    lines = (config.data_dir / "records.jsonl").read_bytes().splitlines()
    records = [
        r for r in map(orjson.loads, lines) if r["type"] == "audit" and r["object"]["resource"] == "secrets"
    ]
    assert len(records) == 2
    assert records[0]["secret_list"] == records[1]["secret_list"]
    assert records[0]["findings"] == records[1]["findings"]
    items = len(planted.event["responseObject"]["items"])
    assert remembered == (0 if filler else items)  # in the worker, the worker's own memory
    counted = {
        result: float(value)
        for result, value in re.findall(
            r'^ingress_audit_redaction_list_items_total\{result="(hit|miss)"\} (\S+)$', metrics, re.M
        )
    }
    assert counted == ({"hit": items, "miss": items} if items else {})  # from the worker too
