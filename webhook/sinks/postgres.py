"""Records as rows of a PostgreSQL table that the sink creates and migrates itself.

One ``INSERT … SELECT … FROM unnest($1::jsonb[]) ON CONFLICT (id) DO NOTHING`` per batch:
the columns are derived from the record in SQL, and a redelivered record (after a crash or a
retry) is skipped by its primary key, so the table holds each record once. A record that
PostgreSQL refuses (a data error) is isolated and dead-lettered; everything else is retried.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal
from urllib.parse import urlsplit

import structlog

from webhook.errors import ConfigError, PartialDeliveryError, SinkError
from webhook.record.line import RecordLine
from webhook.sinks import SinkType
from webhook.sinks.base import Health, SinkSettings

if TYPE_CHECKING:
    import asyncpg
    from asyncpg import Record
    from asyncpg.pool import PoolConnectionProxy

__all__ = ["MIGRATIONS", "PostgresOptions", "PostgresSink", "classify"]

log = structlog.get_logger(__name__)

SslMode = Literal["disable", "prefer", "require", "verify-ca", "verify-full"]

_IDENTIFIER: Final = r"[a-z_][a-z0-9_]{0,39}"
_TABLE: Final = re.compile(rf"(?:({_IDENTIFIER})\.)?({_IDENTIFIER})")
_VERSION_TABLE: Final = "ingress_audit_schema_version"

# Each entry moves the table one version up; never edit one that has shipped, append.
# {table} is the quoted (schema-qualified) table, {name} its bare name for index names.
MIGRATIONS: Final = (
    """
    CREATE TABLE {table} (
        id uuid PRIMARY KEY,
        time timestamptz NOT NULL,
        received_at timestamptz NOT NULL,
        cluster text,
        username text,
        verb text,
        resource text,
        namespace text,
        name text,
        findings text[] NOT NULL DEFAULT '{{}}',
        code integer,
        record jsonb NOT NULL
    );
    CREATE INDEX {name}_time_idx ON {table} (time);
    CREATE INDEX {name}_username_idx ON {table} (username, time);
    CREATE INDEX {name}_verb_idx ON {table} (verb, time);
    CREATE INDEX {name}_object_idx ON {table} (resource, namespace, name, time);
    CREATE INDEX {name}_namespace_idx ON {table} (namespace, time);
    CREATE INDEX {name}_name_idx ON {table} (name);
    CREATE INDEX {name}_findings_idx ON {table} USING gin (findings);
    CREATE INDEX {name}_code_idx ON {table} (code, time);
    """,
    # alert records (docs/record.md) share the table: their own columns, null for audit records
    """
    ALTER TABLE {table}
        ADD COLUMN type text NOT NULL DEFAULT 'audit',
        ADD COLUMN detection text,
        ADD COLUMN severity text,
        ADD COLUMN status text;
    CREATE INDEX {name}_alert_idx ON {table} (detection, time) WHERE type = 'alert';
    """,
)

_INSERT: Final = """
INSERT INTO {table} (id, time, received_at, cluster, username, verb, resource, namespace, name,
                     findings, code, record, type, detection, severity, status)
SELECT (r->>'id')::uuid,
       coalesce((r->>'time')::timestamptz, (r->>'received_at')::timestamptz),
       (r->>'received_at')::timestamptz,
       r->>'cluster',
       coalesce(r#>>'{{actor,user,username}}', r#>>'{{actor,username}}'),
       r->>'verb',
       r#>>'{{object,resource}}',
       coalesce(r#>>'{{object,namespace}}', r->>'namespace'),
       r#>>'{{object,name}}',
       ARRAY(SELECT coalesce(f->>'id', f#>>'{{}}')
             FROM jsonb_array_elements(CASE jsonb_typeof(r->'findings')
                                       WHEN 'array' THEN r->'findings' ELSE '[]' END) AS f),
       (r#>>'{{outcome,code}}')::integer,
       r,
       coalesce(r->>'type', 'audit'),
       r->>'detection',
       r->>'severity',
       r->>'status'
FROM unnest($1::jsonb[]) AS u(r)
ON CONFLICT (id) DO NOTHING
"""


@dataclass(frozen=True, slots=True, kw_only=True)
class PostgresOptions:
    dsn: str  # postgresql://user@host:port/database, without the password
    password_file: Path | None = None
    table: str = "ingress_audit_records"
    sslmode: SslMode = "prefer"
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    pool_size: int = 4
    connect_timeout_s: float = 10.0
    command_timeout_s: float = 30.0


def classify(exc: BaseException) -> SinkError:
    """Connection, server-state and permission problems are retried: the same batch can succeed
    once they are fixed. Data errors (SQLSTATE class 22, 23) are not: ``send`` isolates them."""
    import asyncpg

    data_error = isinstance(exc, asyncpg.DataError | asyncpg.IntegrityConstraintViolationError)
    return SinkError(f"postgres: {_detail(exc)}", retryable=not data_error)


def _detail(exc: BaseException) -> str:
    """The class and SQLSTATE: PostgreSQL's messages may quote the value."""
    state = getattr(exc, "sqlstate", None)
    return type(exc).__name__ + (f" ({state})" if state else "")


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def _tls(options: PostgresOptions) -> ssl.SSLContext | Literal["prefer", False]:
    """libpq's sslmode, with the CA and client certificate from files."""
    if options.sslmode == "disable":
        return False
    if options.sslmode == "prefer" and options.cert_file is None:
        return "prefer"  # TLS if the server offers it, unverified (libpq's default)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    verify = options.sslmode in ("verify-ca", "verify-full") or options.ca_file is not None
    if verify:
        if options.ca_file is not None:
            context.load_verify_locations(cafile=options.ca_file)
        else:
            context.load_default_certs()
        context.check_hostname = options.sslmode == "verify-full"
        context.verify_mode = ssl.CERT_REQUIRED
    else:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if options.cert_file is not None:
        context.load_cert_chain(options.cert_file, options.key_file)
    return context


class PostgresSink:
    def __init__(self, name: str, options: PostgresOptions) -> None:
        self.name = name
        self.options = options
        match = _TABLE.fullmatch(options.table)
        assert match is not None  # noqa: S101 - checked by the schema
        schema, self._bare = match.group(1), match.group(2)
        self._table = f"{_quote(schema)}.{_quote(self._bare)}" if schema else _quote(self._bare)
        self._versions = f"{_quote(schema)}.{_VERSION_TABLE}" if schema else _VERSION_TABLE
        # Identifiers below are checked by the schema's pattern and quoted.
        self._insert = _INSERT.format(table=self._table)
        self._probe = f"SELECT 1 FROM {self._table} LIMIT 0"  # noqa: S608
        self._get_version = f"SELECT version FROM {self._versions} WHERE table_name = $1"  # noqa: S608
        self._set_version = (
            f"INSERT INTO {self._versions} (table_name, version) VALUES ($1, $2)"  # noqa: S608
            " ON CONFLICT (table_name) DO UPDATE SET version = $2, migrated_at = now()"
        )
        self._pool: asyncpg.Pool | None = None

    async def open(self) -> None:
        import asyncpg

        try:
            tls = await asyncio.to_thread(_tls, self.options)
        except (OSError, ssl.SSLError) as exc:
            raise SinkError(f"postgres: cannot load the TLS files: {type(exc).__name__}") from None
        try:
            pool = await asyncpg.create_pool(
                self.options.dsn,
                min_size=1,
                max_size=self.options.pool_size,
                password=self._password if self.options.password_file else None,
                ssl=tls,
                timeout=self.options.connect_timeout_s,
                command_timeout=self.options.command_timeout_s,
                max_inactive_connection_lifetime=300.0,
            )
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError) as exc:
            raise SinkError(classify(exc).message) from None  # retried, whatever it was
        try:
            await self._migrate(pool)
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError) as exc:
            await pool.close()
            raise SinkError(classify(exc).message) from None  # retried, whatever it was
        self._pool = pool

    async def _password(self) -> str:
        """Read at each new connection, so a rotated password file is picked up."""
        assert self.options.password_file is not None  # noqa: S101 - only used when set
        try:
            text = await asyncio.to_thread(self.options.password_file.read_text, "utf-8")
        except OSError as exc:
            raise SinkError(f"postgres: cannot read password_file: {exc.strerror}") from None
        return text.strip()

    async def _migrate(self, pool: asyncpg.Pool) -> None:
        """Bring the table to the newest version, one replica at a time (advisory lock)."""
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", f"ingress-audit:{self._table}")
            if await conn.fetchval("SELECT to_regclass($1) IS NULL", self._versions):
                # Only then: CREATE needs a privilege that a role which only writes lacks.
                await conn.execute(
                    f"CREATE TABLE {self._versions} ("
                    " table_name text PRIMARY KEY, version integer NOT NULL,"
                    " migrated_at timestamptz NOT NULL DEFAULT now())"
                )
            current = await conn.fetchval(self._get_version, self.options.table) or 0
            if current > len(MIGRATIONS):
                log.warning("postgres.newer_schema", sink=self.name, version=current, known=len(MIGRATIONS))
                return
            for version in range(current + 1, len(MIGRATIONS) + 1):
                await conn.execute(MIGRATIONS[version - 1].format(table=self._table, name=self._bare))
                await conn.execute(self._set_version, self.options.table, version)
                log.info("postgres.migrated", sink=self.name, version=version)

    async def send(self, batch: Sequence[RecordLine]) -> None:
        import asyncpg

        if not batch:
            return
        if self._pool is None:  # dropped after asyncpg lost track of its connections
            await self.open()
        pool = self._opened()
        lines = [record.json.decode("utf-8", "replace") for record in batch]
        try:
            async with pool.acquire(timeout=self.options.connect_timeout_s) as conn:
                try:
                    await conn.execute(self._insert, lines)
                except (asyncpg.DataError, asyncpg.IntegrityConstraintViolationError):
                    await self._one_by_one(conn, lines)  # alone or not: the same refusal detail
        except asyncpg.UndefinedTableError as exc:
            await self._remigrate()
            raise classify(exc) from None
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError) as exc:
            raise classify(exc) from None
        except asyncpg.InternalClientError as exc:
            # The pool's own state broke (seen when the server went away under load, as the
            # pool restored its minimum size): start again from a new pool on the retry.
            self._drop_pool()
            raise classify(exc) from None

    async def _one_by_one(self, conn: PoolConnectionProxy[Record], lines: Sequence[str]) -> None:
        """A batch that PostgreSQL refused: insert what it takes, name what it refuses."""
        import asyncpg

        rejected: dict[int, str] = {}
        for index, line in enumerate(lines):
            try:
                await conn.execute(self._insert, [line])
            except (asyncpg.DataError, asyncpg.IntegrityConstraintViolationError) as exc:
                rejected[index] = _detail(exc)
        if rejected:
            raise PartialDeliveryError(
                f"postgres refused {len(rejected)} of {len(lines)} records", retry=(), rejected=rejected
            )

    async def _remigrate(self) -> None:
        """Someone dropped the table: create it again before the retry."""
        import asyncpg

        if self._pool is not None:
            with contextlib.suppress(asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError):
                await self._migrate(self._pool)  # if it fails, the retry will tell

    async def health(self) -> Health:
        """A connection from the pool and a read of the table (which checks the grants too)."""
        import asyncpg

        if self._pool is None:
            return Health(ok=False, detail="not connected")
        try:
            async with self._pool.acquire(timeout=self.options.connect_timeout_s) as conn:
                await conn.execute(self._probe)
        except (
            asyncpg.PostgresError,
            asyncpg.InterfaceError,
            asyncpg.InternalClientError,
            OSError,
            TimeoutError,
        ) as exc:
            return Health(ok=False, detail=classify(exc).message)
        return Health(ok=True)

    def _drop_pool(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.terminate()

    async def aclose(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            try:
                async with asyncio.timeout(5.0):
                    await pool.close()
            except TimeoutError:
                pool.terminate()

    def _opened(self) -> asyncpg.Pool:
        if self._pool is None:
            raise SinkError("postgres: not connected")
        return self._pool


def _parse(raw: Mapping[str, Any]) -> PostgresOptions:
    options = dict(raw)
    for key in ("password_file", "ca_file", "cert_file", "key_file"):
        if key in options:
            options[key] = Path(options[key])
    problems = []
    if urlsplit(options["dsn"]).password is not None:
        problems.append("$.dsn: holds a password; put it in password_file")
    if ("cert_file" in options) != ("key_file" in options):
        problems.append("$.cert_file: cert_file and key_file go together")
    if problems:
        raise ConfigError("postgres sink is not valid", tuple(problems))
    return PostgresOptions(**options)


def _build(settings: SinkSettings, data_dir: Path) -> PostgresSink:
    return PostgresSink(settings.name, settings.options)


_FILE: Final = {"type": "string", "minLength": 1}

SINK_TYPE = SinkType(
    name="postgres",
    description="rows in a PostgreSQL table (created and migrated by the sink), one per record id",
    properties={
        "dsn": {"type": "string", "pattern": "^postgres(ql)?://", "description": "Without the password."},
        "password_file": _FILE,
        "table": {"type": "string", "pattern": f"^{_TABLE.pattern}$", "description": "[schema.]name"},
        "sslmode": {"enum": ["disable", "prefer", "require", "verify-ca", "verify-full"]},
        "ca_file": _FILE,
        "cert_file": _FILE,
        "key_file": _FILE,
        "pool_size": {"type": "integer", "minimum": 1, "maximum": 100},
        "connect_timeout_s": {"type": "number", "exclusiveMinimum": 0},
        "command_timeout_s": {"type": "number", "exclusiveMinimum": 0},
    },
    required=("dsn",),
    parse=_parse,
    build=_build,
    batch_defaults={"timeout_s": 0.2},
)
