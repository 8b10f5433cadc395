"""``POST /ingest/access``: Fluent Bit and Vector bodies in, durable access records out."""

from __future__ import annotations

import socket
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson

from tests.access.access_lines import nginx_line
from tests.conftest import dead_letters_in, delivered, make_config
from webhook.access.settings import AccessConfig, AccessSyslogConfig
from webhook.config import Config, _sink
from webhook.server.app import RUNTIME, create_app
from webhook.spool.settings import SpoolConfig

NDJSON = {"Content-Type": "application/x-ndjson"}


def access_config(tmp_path: Path, **access: Any) -> Config:
    """Access enabled with the syslog listeners off (their tests start them)."""
    syslog = AccessSyslogConfig(udp=None, tcp=None)
    return replace(make_config(tmp_path), access=replace(AccessConfig(enabled=True, syslog=syslog), **access))


def fluent_bit(*lines: bytes) -> bytes:
    """Fluent Bit's http output, ``format json_lines``: one record per line, the line under ``log``."""
    return b"\n".join(orjson.dumps({"date": 1764104400.0, "log": line.decode()}) for line in lines)


def lines_200_401() -> list[bytes]:
    return [nginx_line(status=s, req_id=f"{i:032x}") for i, s in enumerate([200, 200, 401, 401])]


async def test_kept_requests_are_recorded_and_a_resent_body_keeps_its_ids(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    """A 200 means the two 401s are in the spool; the same body again gives the same ids."""
    config = access_config(tmp_path)
    client = await aiohttp_client(create_app(config))
    body = fluent_bit(*lines_200_401())

    first = await client.post("/ingest/access", data=body, headers=NDJSON)
    again = await client.post("/ingest/access", data=body, headers=NDJSON)

    assert first.status == again.status == 200
    assert await first.json() == {"accepted": 4, "records": 2, "dead_lettered": 0}
    records = [r for r in await delivered(client, config) if r["type"] == "access"]
    assert [r["request"]["status"] for r in records] == [401, 401, 401, 401]
    assert [r["id"] for r in records[:2]] == [r["id"] for r in records[2:]]
    assert records[0]["input"] == "http"


async def test_vector_json_array_and_text_bodies(aiohttp_client: Any, tmp_path: Path) -> None:
    """Vector's json codec (an array of {message}) and its text codec are both read."""
    config = access_config(tmp_path)
    client = await aiohttp_client(create_app(config))
    array = orjson.dumps([{"message": line.decode()} for line in lines_200_401()])
    text = b"\n".join(lines_200_401())

    resp_array = await client.post("/ingest/access", data=array, headers={"Content-Type": "application/json"})
    resp_text = await client.post("/ingest/access", data=text, headers={"Content-Type": "text/plain"})

    assert (await resp_array.json())["records"] == (await resp_text.json())["records"] == 2


async def test_bad_items_are_dead_lettered_without_their_content(aiohttp_client: Any, tmp_path: Path) -> None:
    """A line that does not parse is a dead letter with a reason; its text is not kept."""
    config = access_config(tmp_path)
    client = await aiohttp_client(create_app(config))
    body = fluent_bit(b"GET /login?password=hunter2-secret nonsense", nginx_line(status=403))

    resp = await client.post("/ingest/access", data=body, headers=NDJSON)

    assert await resp.json() == {"accepted": 2, "records": 1, "dead_lettered": 1}
    letters = dead_letters_in(config)
    assert [letter["reason"] for letter in letters] == ["access-bad-format"]
    assert b"hunter2" not in (config.data_dir / "dead-letter.jsonl").read_bytes()
    metrics = await (await client.get("/metrics")).text()
    assert 'ingress_audit_access_lines_total{input="http",result="unparsed"} 1.0' in metrics
    assert 'ingress_audit_access_requests_total{ingress="shop/web"' not in metrics  # no index yet


async def test_method_type_and_disabled_route(aiohttp_client: Any, tmp_path: Path) -> None:
    """GET is 405, an unknown Content-Type 415; without access.enabled there is no route."""
    client = await aiohttp_client(create_app(access_config(tmp_path)))
    off = await aiohttp_client(create_app(make_config(tmp_path / "off")))

    assert (await client.get("/ingest/access")).status == 405
    bad_type = await client.post("/ingest/access", data=b"x", headers={"Content-Type": "image/png"})
    assert bad_type.status == 415
    assert (await off.post("/ingest/access", data=b"x", headers=NDJSON)).status == 404


async def test_a_full_spool_answers_503(aiohttp_client: Any, tmp_path: Path) -> None:
    """With a sink that is down and the spool at its cap, the shipper is told to retry."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the block ends: the sink cannot connect
    config = replace(
        access_config(tmp_path, keep_all=True),
        sinks=(_sink({"type": "http", "url": f"http://127.0.0.1:{port}/"}),),
        spool=SpoolConfig(max_bytes=256 * 1024, segment_bytes=32 * 1024),
    )
    client = await aiohttp_client(create_app(config))
    body = fluent_bit(*[nginx_line(req_id=f"{i:032x}") for i in range(50)])

    statuses = []
    for _ in range(100):
        resp = await client.post("/ingest/access", data=body, headers=NDJSON)
        statuses.append(resp.status)
        if resp.status != 200:
            break

    assert statuses[0] == 200
    assert statuses[-1] == 503
    assert resp.headers["Retry-After"] == "1"
    assert (await resp.json())["error"] == "spool-full"
    counted = client.app[RUNTIME].access.pipeline.aggregator
    before = sum(s.requests for w in counted._open.values() for s in w.hosts.values())
    again = await client.post("/ingest/access", data=body, headers=NDJSON)
    after = sum(s.requests for w in counted._open.values() for s in w.hosts.values())
    assert again.status == 503
    assert (await again.json())["error"] == "spool-full"
    assert after == before  # refused before counting: the resend will not be counted twice


async def test_too_many_lines_is_a_413_with_a_dead_letter(aiohttp_client: Any, tmp_path: Path) -> None:
    """One line over max_events_per_request: 413 before anything is kept, and a dead letter
    records the refused body, as /audit's refusals do (security review 15g)."""
    config = access_config(tmp_path)
    config = replace(config, server=replace(config.server, max_events_per_request=3))
    client = await aiohttp_client(create_app(config))

    resp = await client.post("/ingest/access", data=b"\n".join(lines_200_401()), headers=NDJSON)

    assert resp.status == 413
    assert await resp.json() == {"error": "body-too-large", "reason": "more than the limit of 3 lines"}
    assert [letter["reason"] for letter in dead_letters_in(config)] == ["body-too-large"]
    assert [r for r in await delivered(client, config) if r["type"] == "access"] == []
