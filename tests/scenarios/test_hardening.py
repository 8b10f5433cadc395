"""Bad input of every kind gets its documented status; the server stays up, nothing valid is lost."""

from __future__ import annotations

import asyncio
import gzip
import io
import os
import stat
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web
from structlog.testing import capture_logs

from tests.conftest import Client, dead_letters_in, delivered, event_list, make_config, make_event
from webhook.config import Config
from webhook.server.app import create_app

JSON = {"Content-Type": "application/json"}
MakeClient = Callable[[web.Application], Awaitable[Client]]


async def _client(aiohttp_client: Any, config: Config) -> Client:
    client: Client = await aiohttp_client(create_app(config))
    return client


def _ingress(n: int, **extra: Any) -> dict[str, Any]:
    extra.setdefault("name", f"web-{n}")
    return make_event(audit_id=f"00000000-0000-4000-8000-{n:012d}", **extra)


async def _post(client: Client, body: bytes, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    data = io.BytesIO(body) if len(body) > 1024 * 1024 else body  # aiohttp warns on large bytes
    resp = await client.post("/audit?timeout=30s", data=data, headers=headers or JSON)
    payload = await resp.json() if resp.content_type == "application/json" else await resp.text()
    return resp.status, payload


async def _still_serving(client: Client, config: Config) -> None:
    before = len(await delivered(client, config))
    status, _ = await _post(client, event_list(_ingress(999_999, name="alive")))
    assert status == 200
    assert len(await delivered(client, config)) == before + 1


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"[" * 10_000 + b"]" * 10_000, "not-json"),
        (b'{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[', "not-json"),
        (b'{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[1e999}', "not-json"),
        (b'{"kind":"EventList\xff","apiVersion":"audit.k8s.io/v1","items":[1e999]}', "not-event-list"),
        (b'{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":{"a":1e999}}', "not-event-list"),
        (b"", "not-json"),
    ],
    ids=["nested-10k", "truncated", "unbalanced", "kind-undecodable", "items-not-a-list", "empty-body"],
)
async def test_undecodable_bodies_get_400(
    aiohttp_client: Any, tmp_path: Path, body: bytes, reason: str
) -> None:
    """Bodies that are not JSON get 400 with the reason, a dead letter, and the server goes on."""
    config = make_config(tmp_path)
    client = await _client(aiohttp_client, config)

    status, payload = await _post(client, body)

    assert status == 400
    assert payload["error"] == reason
    assert [d["reason"] for d in dead_letters_in(config)] == [reason]
    await _still_serving(client, config)


@pytest.mark.parametrize(
    ("item", "reason"),
    [
        (b'{"x":' * 5000 + b"1" + b"}" * 5000, "event-too-deep"),
        (b'{"a":' + b"\xff\xfe" + b"}", "event-not-json"),
        (b"NaN", "event-not-json"),
        (b"Infinity", "event-not-json"),
    ],
    ids=["nested-5k", "invalid-utf8", "nan", "infinity"],
)
async def test_undecodable_event_inside_a_valid_list(
    aiohttp_client: Any, tmp_path: Path, item: bytes, reason: str
) -> None:
    """An event that does not decode is dead-lettered alone; the rest of the list is recorded."""
    config = make_config(tmp_path)
    client = await _client(aiohttp_client, config)
    first, last = (orjson.dumps(_ingress(n)) for n in (1, 2))
    body = b'{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[%b,%b,%b]}' % (first, item, last)

    status, payload = await _post(client, body)

    assert status == 200, payload
    assert [r["object"]["name"] for r in await delivered(client, config)] == ["web-1", "web-2"]
    assert [(d["reason"], d["index"]) for d in dead_letters_in(config)] == [(reason, 1)]
    await _still_serving(client, config)


async def test_wide_and_huge_objects_are_recorded(aiohttp_client: Any, tmp_path: Path) -> None:
    """A 100k-key object and a 2 MB string in a kept event are summarised, not choked on."""
    config = make_config(tmp_path)
    client = await _client(aiohttp_client, config)
    wide = _ingress(1, requestObject={f"k{i}": i for i in range(100_000)})
    huge = _ingress(
        2, responseObject={"kind": "Ingress", "metadata": {"annotations": {"a": "x" * 2_000_000}}}
    )

    status, payload = await _post(client, event_list(wide, huge))

    assert status == 200, payload
    assert {r["object"]["name"] for r in await delivered(client, config)} == {"web-1", "web-2"}


async def test_oversized_event_is_dead_lettered_alone(aiohttp_client: Any, tmp_path: Path) -> None:
    """An event over max_event_bytes goes to the dead letters; the rest of the batch is kept."""
    config = make_config(tmp_path, max_event_bytes=64 * 1024)
    client = await _client(aiohttp_client, config)
    big = _ingress(1, responseObject={"kind": "Ingress", "spec": {"blob": "x" * 100_000}})

    status, payload = await _post(client, event_list(_ingress(0), big, _ingress(2)))

    assert status == 200
    assert payload["dead_lettered"] == 1
    assert [r["object"]["name"] for r in await delivered(client, config)] == ["web-0", "web-2"]
    (letter,) = dead_letters_in(config)
    assert letter["reason"] == "event-too-large"
    assert letter["index"] == 1
    assert "x" * 100 not in orjson.dumps(letter).decode()


async def test_duplicate_keys_take_the_last_value(aiohttp_client: Any, tmp_path: Path) -> None:
    """JSON with duplicate keys decodes like Go's encoder would read it: the last one wins."""
    config = make_config(tmp_path)
    client = await _client(aiohttp_client, config)
    event = orjson.dumps(_ingress(1)).decode()
    doubled = event[:-1] + ',"verb":"delete"}'
    body = ('{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[' + doubled + "]}").encode()

    status, _ = await _post(client, body)

    assert status == 200
    assert [r["verb"] for r in await delivered(client, config)] == ["delete"]


async def test_event_count_limit(aiohttp_client: Any, tmp_path: Path) -> None:
    """More events than max_events_per_request is refused whole (413) and leaves a dead letter."""
    config = make_config(tmp_path, max_events_per_request=1000)
    client = await _client(aiohttp_client, config)
    filler = make_event(resource="pods", api_group="", code=200, verb="get")

    status, payload = await _post(client, event_list(*[filler] * 1001))

    assert status == 413
    assert payload["error"] == "body-too-large"
    assert dead_letters_in(config)[0]["reason"] == "body-too-large"


async def test_a_100k_event_list_is_processed(aiohttp_client: Any, tmp_path: Path) -> None:
    """A 100,000-event batch within the configured limits is answered 200 with every record."""
    config = make_config(tmp_path, max_events_per_request=200_000)
    client = await _client(aiohttp_client, config)
    noise = make_event(resource="pods", api_group="", code=200, verb="get")
    items = [noise] * 99_990 + [_ingress(n) for n in range(10)]

    status, payload = await _post(client, event_list(*items))

    assert status == 200
    assert payload == {"accepted": 100_000, "records": 10, "duplicates": 0, "dead_lettered": 0}


async def test_gzip_body_is_decompressed(aiohttp_client: Any, tmp_path: Path) -> None:
    """A gzip-encoded body is accepted like a plain one."""
    config = make_config(tmp_path)
    client = await _client(aiohttp_client, config)
    headers = {**JSON, "Content-Encoding": "gzip"}

    status, _ = await _post(client, gzip.compress(event_list(_ingress(1))), headers)

    assert status == 200
    assert len(await delivered(client, config)) == 1


async def test_gzip_bomb_hits_the_body_limit(aiohttp_client: Any, tmp_path: Path) -> None:
    """The body limit applies to the decompressed size."""
    config = make_config(tmp_path, max_body_bytes=1024 * 1024)
    client = await _client(aiohttp_client, config)
    padding = b" " * (8 * 1024 * 1024)
    bomb = gzip.compress(event_list(_ingress(1))[:-2] + padding + b"]}")
    assert len(bomb) < 1024 * 1024
    headers = {**JSON, "Content-Encoding": "gzip"}

    status, _ = await _post(client, bomb, headers)

    assert status == 413
    await _still_serving(client, config)


async def _raw(client: Client) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    server = client.server
    return await asyncio.open_connection(server.host, server.port)


def _head(length: int) -> bytes:
    return (
        f"POST /audit?timeout=30s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {length}\r\n\r\n"
    ).encode()


async def test_slow_body_times_out_with_408(aiohttp_client: Any, tmp_path: Path) -> None:
    """A body that does not arrive within body_timeout_s is answered 408; nothing is written."""
    config = make_config(tmp_path, body_timeout_s=0.3)
    client = await _client(aiohttp_client, config)
    body = event_list(_ingress(1))
    reader, writer = await _raw(client)

    writer.write(_head(len(body)) + body[:10])
    await writer.drain()
    status_line = await asyncio.wait_for(reader.readline(), timeout=5)
    writer.close()

    assert status_line.split()[1] == b"408"
    assert await delivered(client, config) == []
    await _still_serving(client, config)


async def test_connection_dropped_mid_body(aiohttp_client: Any, tmp_path: Path) -> None:
    """A client that goes away mid-body leaves no record and no crash."""
    config = make_config(tmp_path)
    client = await _client(aiohttp_client, config)
    body = event_list(_ingress(1))
    _, writer = await _raw(client)

    writer.write(_head(len(body)) + body[: len(body) // 2])
    await writer.drain()
    writer.close()
    await writer.wait_closed()
    await asyncio.sleep(0.05)

    assert await delivered(client, config) == []
    await _still_serving(client, config)


async def test_requests_over_the_concurrency_limit_get_503(aiohttp_client: Any, tmp_path: Path) -> None:
    """Beyond max_concurrent_requests the answer is 503 + Retry-After, before reading the body."""
    config = make_config(tmp_path, max_concurrent_requests=1, body_timeout_s=5)
    client = await _client(aiohttp_client, config)
    body = event_list(_ingress(1))
    reader, writer = await _raw(client)
    writer.write(_head(len(body)) + body[:5])  # holds the only slot
    await writer.drain()
    await asyncio.sleep(0.05)

    resp = await client.post("/audit", data=event_list(_ingress(2)), headers=JSON)
    assert resp.status == 503
    assert resp.headers["Retry-After"] == "1"
    assert (await resp.json())["error"] == "overloaded"

    writer.write(body[5:])
    await writer.drain()
    assert (await asyncio.wait_for(reader.readline(), timeout=5)).split()[1] == b"200"
    writer.close()
    assert [r["object"]["name"] for r in await delivered(client, config)] == ["web-1"]


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH"])
async def test_wrong_methods(aiohttp_client: Any, tmp_path: Path, method: str) -> None:
    """Anything but POST on /audit is 405 with Allow: POST."""
    client = await _client(aiohttp_client, make_config(tmp_path))

    resp = await client.request(method, "/audit", data=event_list(), headers=JSON)

    assert resp.status == 405
    assert resp.headers["Allow"] == "POST"


async def test_unknown_paths_are_404(aiohttp_client: Any, tmp_path: Path) -> None:
    """Only the documented paths exist."""
    client = await _client(aiohttp_client, make_config(tmp_path))

    resp = await client.post("/audit/extra", data=event_list(), headers=JSON)

    assert resp.status == 404


async def test_an_event_that_breaks_record_building_is_dead_lettered(
    aiohttp_client: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unexpected exception in one event costs that event, not the batch, and never a 500."""
    config = make_config(tmp_path)
    client = await _client(aiohttp_client, config)
    from webhook.record import audit as record

    original = record.Record.from_event.__func__  # type: ignore[attr-defined]

    def flaky(cls: type[record.Record], /, event: dict[str, Any], **kw: Any) -> record.Record:
        if event["objectRef"].get("name") == "web-1":
            raise RuntimeError("boom")
        result: record.Record = original(cls, event, **kw)
        return result

    monkeypatch.setattr(record.Record, "from_event", classmethod(flaky))

    status, payload = await _post(client, event_list(_ingress(0), _ingress(1), _ingress(2)))

    assert status == 200
    assert payload["dead_lettered"] == 1
    assert [d["reason"] for d in dead_letters_in(config)] == ["internal"]
    assert [r["object"]["name"] for r in await delivered(client, config)] == ["web-0", "web-2"]


async def test_a_failure_outside_events_is_503_with_a_correlation_id(
    aiohttp_client: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An exception outside per-event work answers 503 + Retry-After and logs one line."""
    config = make_config(tmp_path)
    client = await _client(aiohttp_client, config)
    from webhook.pipeline.stages import Pipeline

    def broken(self: Pipeline, items: Any, *, received_at: str) -> Any:
        raise RuntimeError("secret-looking detail")

    monkeypatch.setattr(Pipeline, "prepare", broken)

    with capture_logs() as logs:
        resp = await client.post("/audit", data=event_list(_ingress(1)), headers=JSON)
        payload = await resp.json()

    assert resp.status == 503
    assert resp.headers["Retry-After"] == "1"
    assert payload["error"] == "internal"
    (line,) = [entry for entry in logs if entry["event"] == "request.failed"]
    assert line["correlation_id"] == payload["correlation_id"]
    assert "secret-looking detail" not in orjson.dumps(logs).decode()
    assert "secret-looking detail" not in orjson.dumps(payload).decode()


@pytest.mark.parametrize("name", ["dead-letter.jsonl", "state.sqlite3", "state.sqlite3-wal", "spool/lock"])
async def test_planted_symlinks_in_the_data_dir_stop_the_start(tmp_path: Path, name: str) -> None:
    """F2 (13): a link planted in a fresh data dir is refused at start with a clear error; the
    file it points to is neither written, truncated nor chmod'ed."""
    from webhook.errors import WebhookError
    from webhook.server.app import start_server

    config = make_config(tmp_path, port=0)
    victim = tmp_path / "victim"
    victim.write_bytes(b"IMPORTANT\n")
    victim.chmod(0o644)
    planted = config.data_dir / name
    planted.parent.mkdir(parents=True, mode=0o700)
    planted.symlink_to(victim)

    with pytest.raises(WebhookError, match="symbolic link"):
        await start_server(config)

    assert victim.read_bytes() == b"IMPORTANT\n"
    assert victim.stat().st_mode & 0o777 == 0o644


async def test_a_planted_records_file_is_never_written(aiohttp_client: Any, tmp_path: Path) -> None:
    """F2 (13): ``records.jsonl`` as a link: the JSONL sink refuses to open it and says why
    (records wait in the spool); the victim is neither appended to nor chmod'ed."""
    config = make_config(tmp_path)
    victim = tmp_path / "victim"
    victim.write_bytes(b"IMPORTANT\n")
    victim.chmod(0o644)
    config.data_dir.mkdir(mode=0o700)
    (config.data_dir / "records.jsonl").symlink_to(victim)
    client = await _client(aiohttp_client, config)

    with capture_logs() as logs:
        status, _ = await _post(client, event_list(_ingress(1)))
        for _ in range(100):
            if any(e["event"] == "sink.send_failed" for e in logs):
                break
            await asyncio.sleep(0.05)

    assert status == 200
    (failed,) = [e for e in logs if e["event"] == "sink.send_failed"]
    assert "symbolic link" in failed["reason"]
    assert victim.read_bytes() == b"IMPORTANT\n"
    assert victim.stat().st_mode & 0o777 == 0o644


async def test_data_dir_files_are_private_under_umask_000(aiohttp_client: Any, tmp_path: Path) -> None:
    """Section 6 of the security review: under ``umask 000`` every file the server writes
    (records, dead letters, spool, cursors, state, key, lock) is 0600 and every directory 0700."""
    config = make_config(tmp_path)
    previous = os.umask(0)
    try:
        client = await _client(aiohttp_client, config)
        assert (await _post(client, event_list(_ingress(1))))[0] == 200
        assert (await _post(client, b"not json"))[0] == 400  # a dead letter too
        await delivered(client, config)
    finally:
        os.umask(previous)

    written = [config.data_dir, *config.data_dir.rglob("*")]
    assert {p.name for p in written} >= {
        "records.jsonl",
        "dead-letter.jsonl",
        "fingerprint.key",
        "state.sqlite3",
    }
    for path in written:
        mode = stat.S_IMODE(path.lstat().st_mode)
        assert mode == (0o700 if path.is_dir() else 0o600), (path, oct(mode))
