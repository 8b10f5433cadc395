"""The postgres sink against a real PostgreSQL (initdb + pg_ctl in a temp dir) on loopback.

Each test writes to its own table, so the session's one server serves them all.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import pytest
import trustme
from structlog.testing import capture_logs

from tests.conftest import (
    captured_bodies,
    dead_letters_in,
    event_list,
    make_event,
    post_capture,
    read_jsonl,
    settle,
)
from tests.servers import Certs, Postgres, free_port, make_record, spooled
from webhook.config import parse_config
from webhook.errors import PartialDeliveryError, SinkError
from webhook.server.app import create_app
from webhook.sinks.postgres import MIGRATIONS, PostgresOptions, PostgresSink, classify


@pytest.fixture
def table() -> str:
    return f"records_{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def db(postgres_server: Postgres) -> AsyncIterator[Any]:
    conn = await postgres_server.connect()
    yield conn
    await conn.close()


async def _rows(db: Any, table: str, where: str = "TRUE", *args: Any) -> list[Any]:
    rows: list[Any] = await db.fetch(f'SELECT * FROM "{table}" WHERE {where}', *args)  # noqa: S608 - our names
    return rows


def _options(server: Postgres, table: str, **overrides: Any) -> PostgresOptions:
    fields: dict[str, Any] = {
        "dsn": server.dsn,
        "password_file": server.password_file,
        "table": table,
        "sslmode": "disable",
        "connect_timeout_s": 5.0,
    }
    return PostgresOptions(**{**fields, **overrides})


async def _opened(server: Postgres, table: str, **overrides: Any) -> PostgresSink:
    sink = PostgresSink("postgres", _options(server, table, **overrides))
    await sink.open()
    return sink


async def test_open_creates_the_table_and_records_its_version(
    postgres_server: Postgres, table: str, db: Any
) -> None:
    """open() migrates an empty database to the newest version, once, also with two replicas."""
    first = await _opened(postgres_server, table)
    second = await _opened(postgres_server, table)  # a second replica finds it done
    await first.aclose()
    await second.aclose()

    version = await db.fetchval(
        "SELECT version FROM ingress_audit_schema_version WHERE table_name = $1", table
    )
    assert version == len(MIGRATIONS)
    columns = dict(
        await db.fetch(
            "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = $1", table
        )
    )
    assert columns == {
        "id": "uuid",
        "time": "timestamp with time zone",
        "received_at": "timestamp with time zone",
        "cluster": "text",
        "username": "text",
        "verb": "text",
        "resource": "text",
        "namespace": "text",
        "name": "text",
        "findings": "ARRAY",
        "code": "integer",
        "record": "jsonb",
        "type": "text",
        "detection": "text",
        "severity": "text",
        "status": "text",
    }
    indexes = {
        r["indexname"] for r in await db.fetch("SELECT indexname FROM pg_indexes WHERE tablename = $1", table)
    }
    assert {f"{table}_{i}_idx" for i in ("time", "username", "verb", "object", "findings", "code")} <= indexes


async def test_a_role_that_may_only_write_can_run_once_the_table_exists(
    postgres_server: Postgres, table: str, db: Any, tmp_path: Path
) -> None:
    """After the first migration, INSERT and SELECT on the tables are all the sink needs."""
    await (await _opened(postgres_server, table)).aclose()
    role = f"writer_{table}"
    await db.execute(f"CREATE ROLE {role} LOGIN PASSWORD 'writer-password'")
    await db.execute(f'GRANT SELECT, INSERT ON "{table}", ingress_audit_schema_version TO {role}')
    (tmp_path / "password").write_text("writer-password")
    dsn = postgres_server.dsn.replace(f"//{postgres_server.user}@", f"//{role}@")
    assert not await db.fetchval("SELECT has_schema_privilege($1, 'public', 'CREATE')", role)

    sink = await _opened(postgres_server, table, dsn=dsn, password_file=tmp_path / "password")
    await sink.send(spooled(make_record()))
    assert (await sink.health()).ok
    await sink.aclose()
    assert len(await _rows(db, table)) == 1


async def test_rows_carry_the_indexed_columns_and_the_whole_record(
    postgres_server: Postgres, table: str, db: Any
) -> None:
    """Columns are derived from the record; the JSONB is the record, byte for byte in meaning."""
    doc = make_record(
        findings=[{"id": "wildcard-host", "severity": "high"}, {"id": "no-tls", "severity": "low"}]
    )
    plain = make_record(object=None, time=None, outcome={"code": None})
    sink = await _opened(postgres_server, table)
    await sink.send(spooled(doc, plain))
    await sink.aclose()

    (row,) = await _rows(db, table, "id = $1", uuid.UUID(doc["id"]))
    assert row["time"].isoformat() == "2026-11-24T14:20:40.463683+00:00"
    assert (row["username"], row["verb"], row["resource"], row["namespace"], row["name"], row["code"]) == (
        "admin",
        "patch",
        "ingresses",
        "shop",
        "shop-web",
        200,
    )
    assert row["findings"] == ["wildcard-host", "no-tls"]
    assert row["cluster"] == "test-cluster"
    assert orjson.loads(row["record"]) == doc
    (other,) = await _rows(db, table, "id = $1", uuid.UUID(plain["id"]))
    assert other["time"] == other["received_at"]  # no stage time: the time we received it
    assert (other["resource"], other["code"], other["findings"]) == (None, None, [])


async def test_redelivery_is_idempotent(postgres_server: Postgres, table: str, db: Any) -> None:
    """The same records again, and twice within one batch: each id is in the table once."""
    docs = [make_record() for _ in range(5)]
    sink = await _opened(postgres_server, table)
    await sink.send(spooled(*docs))
    await sink.send(spooled(*docs))
    await sink.send(spooled(docs[0], docs[0], make_record(id=docs[1]["id"])))
    await sink.aclose()

    rows = await _rows(db, table)
    assert len(rows) == len({r["id"] for r in rows}) == 5


async def test_a_record_postgres_refuses_is_isolated(postgres_server: Postgres, table: str, db: Any) -> None:
    """A data error (NUL in a JSON string, which jsonb refuses) rejects that record only."""
    good = [make_record(), make_record()]
    bad = make_record(actor={"user": {"username": "a\u0000b"}})
    sink = await _opened(postgres_server, table)
    with pytest.raises(PartialDeliveryError) as failure:
        await sink.send(spooled(good[0], bad, good[1]))
    await sink.aclose()

    assert failure.value.retry == ()
    assert list(failure.value.rejected) == [1]
    assert "UntranslatableCharacterError (22P05)" in failure.value.rejected[1]
    assert not failure.value.retryable
    ids = {str(r["id"]) for r in await _rows(db, table)}
    assert ids == {d["id"] for d in good}


async def test_tls_verify_full_against_the_servers_ca(
    postgres_server: Postgres, server_certs: Certs, table: str, tmp_path: Path
) -> None:
    """verify-full with the CA file connects; another CA is a retryable failure, never plaintext."""
    sink = await _opened(postgres_server, table, sslmode="verify-full", ca_file=server_certs.ca_file)
    await sink.send(spooled(make_record()))
    assert (await sink.health()).ok
    await sink.aclose()

    other = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other))
    wrong = PostgresSink("postgres", _options(postgres_server, table, sslmode="verify-full", ca_file=other))
    with pytest.raises(SinkError) as failure:
        await wrong.open()
    assert failure.value.retryable
    assert "SSLCertVerificationError" in failure.value.message


async def test_the_connection_really_is_encrypted(
    postgres_server: Postgres, server_certs: Certs, table: str, db: Any
) -> None:
    """pg_stat_ssl shows our connections (by application name) as TLS with sslmode require."""
    sink = await _opened(
        postgres_server, table, sslmode="require", dsn=postgres_server.dsn + "?application_name=tls-probe"
    )
    await sink.send(spooled(make_record()))
    rows = await db.fetch(
        "SELECT s.ssl FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)"
        " WHERE a.application_name = 'tls-probe'"
    )
    await sink.aclose()
    assert rows
    assert all(r["ssl"] for r in rows)


async def test_a_wrong_password_is_retryable_and_never_logged(
    postgres_server: Postgres, table: str, tmp_path: Path
) -> None:
    """Bad credentials may be fixed (rotated file): retried; the password appears nowhere."""
    secret_file = tmp_path / "password"
    secret_file.write_text("not-the-password-7f3a\n")
    sink = PostgresSink("postgres", _options(postgres_server, table, password_file=secret_file))
    with capture_logs() as logs, pytest.raises(SinkError) as failure:
        await sink.open()
    assert failure.value.retryable
    assert "InvalidPasswordError" in failure.value.message
    assert "7f3a" not in failure.value.message + repr(logs) + repr(sink.options)

    secret_file.write_text(postgres_server.password)  # rotated: the next attempt reads it again
    await sink.open()
    await sink.send(spooled(make_record()))
    await sink.aclose()


async def test_a_server_that_is_not_there_is_retryable(table: str) -> None:
    """Connection refused: retryable, with the exception's class as the reason."""
    sink = PostgresSink(
        "postgres", PostgresOptions(dsn=f"postgresql://x@127.0.0.1:{free_port()}/x", table=table)
    )
    with pytest.raises(SinkError) as failure:
        await sink.open()
    assert failure.value.retryable
    assert "ConnectionRefusedError" in failure.value.message
    assert not (await sink.health()).ok


async def test_a_pool_that_lost_track_of_its_connections_is_replaced(
    postgres_server: Postgres, table: str, db: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """asyncpg's InternalClientError (its pool's state broke): retryable, and the retry runs on
    a new pool instead of the broken one."""
    sink = await _opened(postgres_server, table)
    broken = sink._pool
    assert broken is not None

    acquire = asyncpg.pool.Pool.acquire

    def broken_acquire(self: asyncpg.Pool, *args: Any, **kwargs: Any) -> Any:
        if self is broken:
            raise asyncpg.InternalClientError("PoolConnectionHolder.connect() called while another exists")
        return acquire(self, *args, **kwargs)

    monkeypatch.setattr(asyncpg.pool.Pool, "acquire", broken_acquire)
    assert not (await sink.health()).ok
    doc = make_record()
    with pytest.raises(SinkError) as failure:
        await sink.send(spooled(doc))
    assert failure.value.retryable
    assert failure.value.message == "postgres: InternalClientError"
    await sink.send(spooled(doc))
    assert sink._pool is not None
    assert sink._pool is not broken
    assert broken.is_closing()
    assert (await sink.health()).ok
    await sink.aclose()
    assert len(await _rows(db, table)) == 1


@pytest.mark.parametrize(
    ("exc", "retryable"),
    [
        (asyncpg.SerializationError("x"), True),
        (asyncpg.DeadlockDetectedError("x"), True),
        (asyncpg.TooManyConnectionsError("x"), True),
        (asyncpg.CannotConnectNowError("x"), True),
        (asyncpg.AdminShutdownError("x"), True),
        (asyncpg.InsufficientPrivilegeError("x"), True),
        (ConnectionResetError(), True),
        (asyncpg.UntranslatableCharacterError("x"), False),
        (asyncpg.NotNullViolationError("x"), False),
    ],
)
def test_errors_are_classified(exc: BaseException, retryable: bool) -> None:
    """Connection, serialization, capacity and permission problems retry; data errors do not."""
    assert classify(exc).retryable is retryable


async def test_health_reads_the_table_and_a_dropped_table_comes_back(
    postgres_server: Postgres, table: str, db: Any
) -> None:
    """health() reads the table; if someone drops it, send fails retryably and re-creates it."""
    sink = await _opened(postgres_server, table)
    assert (await sink.health()).ok
    await db.execute(f'DROP TABLE "{table}"')
    await db.execute("DELETE FROM ingress_audit_schema_version WHERE table_name = $1", table)

    health = await sink.health()
    assert not health.ok
    assert "UndefinedTableError" in health.detail
    doc = make_record()
    with pytest.raises(SinkError) as failure:
        await sink.send(spooled(doc))
    assert failure.value.retryable
    await sink.send(spooled(doc))
    await sink.aclose()
    assert len(await _rows(db, table)) == 1


async def test_end_to_end_every_record_once_and_refused_ones_dead_lettered(
    aiohttp_client: Any, tmp_path: Path, postgres_server: Postgres, table: str, db: Any
) -> None:
    """The captured scenario through the app, twice: the table holds each JSONL record once, and
    a record PostgreSQL refuses ends in the dead letters instead of blocking the sink."""
    config = parse_config(
        {
            "cluster": "pg-e2e",
            "data_dir": str(tmp_path / "data"),
            "sinks": [
                {"type": "jsonl"},
                {
                    "type": "postgres",
                    "dsn": postgres_server.dsn,
                    "password_file": str(postgres_server.password_file),
                    "table": table,
                    "sslmode": "disable",
                    "batch": {"max_events": 7},
                },
            ],
        }
    )
    client = await aiohttp_client(create_app(config))
    for _ in range(2):
        for body in captured_bodies():
            assert (await post_capture(client, body))[0] == 200
    nul = make_event(audit_id=str(uuid.uuid4()), userAgent="kubectl\u0000evil")
    resp = await client.post("/audit", data=event_list(nul), headers={"Content-Type": "application/json"})
    assert resp.status == 200
    await settle(client)

    records = read_jsonl(tmp_path / "data" / "records.jsonl")
    ids = {r["id"] for r in records if r.get("audit_id") != nul["auditID"]}  # alerts too
    assert len(records) == len(ids) + 1
    rows = await _rows(db, table)
    assert sorted(str(r["id"]) for r in rows) == sorted(ids)
    (letter,) = [d for d in dead_letters_in(config) if d["reason"] == "sink-rejected"]
    assert letter["record"]["audit_id"] == nul["auditID"]
    assert letter["detail"] == "postgres: UntranslatableCharacterError (22P05)"
