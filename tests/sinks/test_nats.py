"""The nats sink against a real nats-server with JetStream on loopback.

The session's server has no authentication; the credential, TLS and outage tests start their
own (a nats-server starts in a few milliseconds).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import nats
import nkeys  # type: ignore[import-untyped]
import orjson
import pytest
from nats.js import JetStreamContext
from nats.js.api import StreamConfig
from structlog.testing import capture_logs

from tests.conftest import captured_bodies, post_capture, read_jsonl, settle
from tests.servers import Certs, NatsServer, make_record, running_nats, spooled
from webhook.config import parse_config
from webhook.errors import ConfigError, PartialDeliveryError, SinkError
from webhook.server.app import create_app
from webhook.sinks.nats import NatsOptions, NatsSink, NatsTls, StreamOptions, subject_of


@pytest.fixture
def stream() -> str:
    return f"AUDIT_{uuid.uuid4().hex[:10]}"


async def _js(server: NatsServer, **connect: Any) -> tuple[Any, JetStreamContext]:
    nc = await nats.connect(server.url, **connect)
    return nc, nc.jetstream()


@pytest.fixture
async def js(nats_server: NatsServer) -> AsyncIterator[JetStreamContext]:
    nc, context = await _js(nats_server)
    yield context
    await nc.close()


async def _messages(js: JetStreamContext, stream: str) -> list[Any]:
    info = await js.stream_info(stream)
    return [await js.get_msg(stream, seq) for seq in range(info.state.first_seq, info.state.last_seq + 1)]


def _options(server: NatsServer, name: str, **overrides: Any) -> NatsOptions:
    prefix = name.lower()
    fields: dict[str, Any] = {
        "servers": (server.url,),
        "subject": prefix + ".{cluster}.{resource}.{namespace}",
        "create_stream": StreamOptions(name=name, subjects=(prefix + ".>",), duplicate_window_s=60),
        "connect_timeout_s": 2.0,
        "ack_timeout_s": 2.0,
    }
    return NatsOptions(**{**fields, **overrides})


async def _opened(server: NatsServer, name: str, **overrides: Any) -> NatsSink:
    sink = NatsSink("nats", _options(server, name, **overrides))
    await sink.open()
    return sink


async def test_every_publish_is_acked_and_a_resend_is_deduped(
    nats_server: NatsServer, stream: str, js: JetStreamContext
) -> None:
    """The stream is created; each record is one message with Nats-Msg-Id = id; a resend adds none."""
    docs = [make_record(cluster="prod", object={"resource": "ingresses", "namespace": ns}) for ns in "abc"]
    sink = await _opened(nats_server, stream)
    assert (await sink.health()).ok
    await sink.send(spooled(*docs))
    await sink.send(spooled(*docs))  # redelivery after a crash: same ids, inside the window
    await sink.aclose()

    messages = await _messages(js, stream)
    assert [m.headers["Nats-Msg-Id"] for m in messages] == [d["id"] for d in docs]
    assert [orjson.loads(m.data) for m in messages] == docs
    prefix = stream.lower()
    assert [m.subject for m in messages] == [f"{prefix}.prod.ingresses.{ns}" for ns in "abc"]
    info = await js.stream_info(stream)
    assert info.config.duplicate_window == 60


def test_subject_fields_become_safe_tokens() -> None:
    """Dots, spaces and wildcards cannot split or widen a subject; a missing field is '_'."""
    doc = make_record(cluster="prod.eu *>", object=None)
    assert subject_of("audit.{cluster}.{resource}.{namespace}", doc) == "audit.prod_eu___._._"


@pytest.mark.parametrize(
    "subject", ["audit.{user}", "audit.{cluster!r}", "audit.{cluster:>10}", "audit..x", "audit.*", "a {verb}"]
)
def test_only_allowed_subject_templates_load(subject: str) -> None:
    """Unknown fields, format specs, wildcards and empty tokens are config errors."""
    with pytest.raises(ConfigError):
        parse_config({"sinks": [{"type": "nats", "subject": subject}]})


async def test_a_subject_without_a_stream_is_retryable(nats_server: NatsServer, stream: str) -> None:
    """No stream listens on the subject: nothing was stored, so the batch is retried."""
    sink = await _opened(nats_server, stream, subject="nowhere.{verb}", create_stream=None)
    with pytest.raises(SinkError) as failure:
        await sink.send(spooled(make_record()))
    await sink.aclose()
    assert failure.value.retryable
    assert "NoStreamResponseError" in failure.value.message


async def test_a_message_the_stream_refuses_is_rejected_alone(
    nats_server: NatsServer, stream: str, js: JetStreamContext
) -> None:
    """Larger than the stream's max_msg_size: that record is refused for good, the others stored."""
    prefix = stream.lower()
    await js.add_stream(StreamConfig(name=stream, subjects=[prefix + ".>"], max_msg_size=1500))
    small, large = make_record(), make_record(request_uri="/" + "x" * 2000)
    sink = await _opened(nats_server, stream, create_stream=None, stream=stream)
    with pytest.raises(PartialDeliveryError) as failure:
        await sink.send(spooled(small, large))
    await sink.aclose()

    assert failure.value.retry == ()
    assert list(failure.value.rejected) == [1]
    assert "10054" in failure.value.rejected[1]
    assert [m.headers["Nats-Msg-Id"] for m in await _messages(js, stream)] == [small["id"]]


async def test_credentials_from_files_and_never_logged(tmp_path: Path, stream: str) -> None:
    """user + password file and an nkey seed file authenticate; a wrong password is retryable."""
    seed = nkeys.encode_seed(os.urandom(32), nkeys.PREFIX_BYTE_USER)
    public = nkeys.from_seed(seed).public_key.decode()
    (tmp_path / "seed").write_bytes(seed)
    (tmp_path / "password").write_text("right-password-91c2\n")
    (tmp_path / "wrong").write_text("wrong-password-5e0d\n")
    users = (
        'authorization { users = [ {user: "audit", password: "right-password-91c2"}, '
        f'{{nkey: "{public}"}} ] }}'
    )
    with running_nats(tmp_path, users) as server:
        for credentials in (
            {"user": "audit", "password_file": tmp_path / "password"},
            {"nkey_seed_file": tmp_path / "seed"},
        ):
            sink = await _opened(server, stream, **credentials)
            await sink.send(spooled(make_record()))
            await sink.aclose()

        wrong_password = _options(
            server, stream, user="audit", password_file=tmp_path / "wrong", connect_timeout_s=0.5
        )
        wrong = NatsSink("nats", wrong_password)
        with capture_logs() as logs, pytest.raises(SinkError) as failure:
            await wrong.open()
        assert failure.value.retryable
        assert "5e0d" not in failure.value.message + repr(logs)
        assert "91c2" not in repr(logs)


async def test_a_token_file(tmp_path: Path, stream: str) -> None:
    """token_file authenticates against a server that wants a token."""
    (tmp_path / "token").write_text("t0ken-3b9f\n")
    with running_nats(tmp_path, 'authorization { token: "t0ken-3b9f" }') as server:
        sink = await _opened(server, stream, token_file=tmp_path / "token")
        await sink.send(spooled(make_record()))
        await sink.aclose()
        with pytest.raises(SinkError):
            await NatsSink("nats", _options(server, stream, connect_timeout_s=0.5)).open()


async def test_tls_with_a_client_certificate(tmp_path: Path, stream: str, server_certs: Certs) -> None:
    """The server is verified against ca_file and verifies our certificate."""
    tls = (
        f'tls {{ cert_file: "{server_certs.server_cert}", key_file: "{server_certs.server_key}",'
        f' ca_file: "{server_certs.ca_file}", verify: true }}'
    )
    client = NatsTls(
        ca_file=server_certs.ca_file, cert_file=server_certs.client_cert, key_file=server_certs.client_key
    )
    with running_nats(tmp_path, tls) as server:
        sink = await _opened(server, stream, servers=(f"tls://127.0.0.1:{server.port}",), tls=client)
        await sink.send(spooled(make_record()))
        assert (await sink.health()).ok
        await sink.aclose()
        without = NatsTls(ca_file=server_certs.ca_file)
        with pytest.raises(SinkError):
            await _opened(
                server,
                stream,
                servers=(f"tls://127.0.0.1:{server.port}",),
                tls=without,
                connect_timeout_s=0.5,
            )


async def test_an_outage_is_retryable_and_the_sink_reconnects(tmp_path: Path, stream: str) -> None:
    """The server goes away: publishes fail retryably and health says so; back, they succeed."""
    with running_nats(tmp_path) as server:
        sink = await _opened(server, stream, ack_timeout_s=0.5)
        await sink.send(spooled(make_record()))
        server.stop()
        with pytest.raises(SinkError) as failure:
            await sink.send(spooled(make_record()))
        assert failure.value.retryable
        assert not (await sink.health()).ok

        server.start()  # same port, same store
        later = make_record()
        for _ in range(50):
            try:
                await sink.send(spooled(later))
                break
            except SinkError:
                continue
        else:
            pytest.fail("no publish succeeded after the server came back")
        await sink.aclose()
        nc, js = await _js(server)
        assert (await js.stream_info(stream)).state.messages == 2
        await nc.close()


async def test_end_to_end_every_record_once_even_from_a_second_spool(
    aiohttp_client: Any, tmp_path: Path, nats_server: NatsServer, stream: str, js: JetStreamContext
) -> None:
    """The captured scenario through two apps with separate spools (as after losing a cursor):
    the stream holds each record of the JSONL file once, deduped by the server."""
    prefix = stream.lower()
    sinks = [
        {"type": "jsonl"},
        {
            "type": "nats",
            "servers": [nats_server.url],
            "subject": prefix + ".{cluster}.{resource}",
            "create_stream": {"name": stream, "subjects": [prefix + ".>"], "duplicate_window_s": 60},
        },
    ]
    for run in ("first", "second"):
        data_dir = tmp_path / run
        config = parse_config({"cluster": "nats-e2e", "data_dir": str(data_dir), "sinks": sinks})
        client = await aiohttp_client(create_app(config))
        for body in captured_bodies():
            assert (await post_capture(client, body))[0] == 200
        await settle(client)
        await client.close()

    ids = [r["id"] for r in read_jsonl(tmp_path / "first" / "records.jsonl")]
    assert ids == [r["id"] for r in read_jsonl(tmp_path / "second" / "records.jsonl")]
    messages = await _messages(js, stream)
    assert sorted(m.headers["Nats-Msg-Id"] for m in messages) == sorted(ids)
    assert len(ids) == len(set(ids)) > 10
