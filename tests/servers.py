"""Real servers for the sink tests: PostgreSQL, rsyslog, NATS JetStream and Alertmanager on loopback;
and a real Prometheus that scrapes ingress-audit and evaluates the shipped rules.

Each server runs from its own temporary directory on a free port, is waited for with a
deadline, and is stopped by the fixture that started it. A missing binary skips the tests on
a developer's machine and fails them under CI (``scripts/test.sh`` installs the packages).
Fixtures are registered in conftest.py by importing them from here.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import glob
import http.client
import os
import pwd
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
import trustme

from webhook.record.line import RecordLine

__all__ = [
    "Alertmanager",
    "Certs",
    "NatsServer",
    "Postgres",
    "Prometheus",
    "Rsyslog",
    "Serve",
    "alertmanager_server",
    "free_port",
    "make_certs",
    "make_record",
    "nats_server",
    "need_binary",
    "postgres_server",
    "require_binary",
    "rsyslog_server",
    "running_alertmanager",
    "running_nats",
    "running_postgres",
    "running_prometheus",
    "server_certs",
    "spawn",
    "spooled",
    "wait_drained",
    "wait_until",
]

START_TIMEOUT_S = 20.0


def free_port(kind: socket.SocketKind = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def need_binary(candidates: list[str], package: str) -> str:
    """The first that exists (a command, or a path); else fail under CI, skip elsewhere."""
    for candidate in candidates:
        found = shutil.which(candidate) or (candidate if os.path.isfile(candidate) else None)
        if found:
            return found
    message = f"{candidates[0]} not found: apt-get install {package} (scripts/test.sh does)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def require_binary(path: str, package: str) -> str:
    """A tool a test cannot do without: its absence fails the test, here as under CI."""
    if not os.path.isfile(path):
        pytest.fail(f"{path} not found: apt-get install {package} (scripts/test.sh does)")
    return path


def wait_until(check: Any, timeout_s: float, what: str, proc: subprocess.Popen[bytes] | None = None) -> None:
    """Poll ``check()`` until it is true; fail after ``timeout_s`` or when ``proc`` has exited."""
    deadline = time.monotonic() + timeout_s
    while not check():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"{what}: the process exited with {proc.returncode}")
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout_s} s")
        time.sleep(0.02)


def port_open(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
        return True
    return False


_PRCTL = ctypes.CDLL(None).prctl  # resolved here: the child only calls it


def _die_with_parent() -> None:
    """In the child: SIGTERM when the test process dies, even if it is killed (Linux prctl)."""
    _PRCTL(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def spawn(argv: list[str], directory: Path) -> subprocess.Popen[bytes]:
    """Start a server with its output in ``directory/output`` (read it when a test fails).

    A server outlives no test run: the fixtures stop it, and a killed pytest takes it along.
    """
    with open(directory / "output", "ab") as output:
        return subprocess.Popen(
            argv,
            stdout=output,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=_die_with_parent,
        )


def stop_process(proc: subprocess.Popen[bytes], timeout_s: float = 10.0) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout_s)


# -- certificates ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Certs:
    """A test CA, a server certificate for 127.0.0.1/localhost and a client certificate."""

    ca: trustme.CA
    ca_file: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def make_certs(directory: Path) -> Certs:
    directory.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    client = ca.issue_cert("ingress-audit.test")
    files = {
        "ca_file": (ca.cert_pem, "ca.pem"),
        "server_cert": (server.cert_chain_pems[0], "server.pem"),
        "server_key": (server.private_key_pem, "server.key"),
        "client_cert": (client.cert_chain_pems[0], "client.pem"),
        "client_key": (client.private_key_pem, "client.key"),
    }
    paths = {}
    for field, (blob, name) in files.items():
        blob.write_to_path(str(directory / name))
        os.chmod(directory / name, 0o644)
        paths[field] = directory / name
    return Certs(ca=ca, **paths)


@pytest.fixture(scope="session")
def server_certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("certs"))


# -- PostgreSQL ------------------------------------------------------------------------------


class Postgres:
    """initdb + pg_ctl as an unprivileged user (``postgres``, else ``nobody``) when we are root."""

    user = "postgres"
    password = "pg-test-password"

    def __init__(self, root: Path, certs: Certs) -> None:
        versions = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name))
        self.bin = Path(need_binary([f"{v}/pg_ctl" for v in reversed(versions)] or ["pg_ctl"], "postgresql"))
        self.bin = self.bin.parent
        self.root = root
        self.data = root / "data"
        self.port = free_port()
        self.password_file = root / "password"
        self.runas: list[str] = []
        owner = None
        if os.geteuid() == 0:
            name = "postgres" if _user_exists("postgres") else "nobody"
            owner = pwd.getpwnam(name)
            self.runas = ["runuser", "-u", name, "--"]
        self.password_file.write_text(self.password + "\n")
        for source, name in ((certs.server_cert, "server.pem"), (certs.server_key, "server.key")):
            shutil.copy(source, root / name)
            os.chmod(root / name, 0o600)
            if owner is not None:
                os.chown(root / name, owner.pw_uid, owner.pw_gid)
        if owner is not None:
            os.chown(root, owner.pw_uid, owner.pw_gid)
            os.chown(self.password_file, owner.pw_uid, owner.pw_gid)
        self._initdb()

    def _run(self, *args: str, timeout_s: float = 60.0) -> None:
        subprocess.run([*self.runas, *args], check=True, capture_output=True, timeout=timeout_s)

    def _initdb(self) -> None:
        self._run(
            str(self.bin / "initdb"),
            "-D", str(self.data), "-U", self.user, "--pwfile", str(self.password_file),
            "--auth-host=scram-sha-256", "--auth-local=trust", "--no-sync", "-E", "UTF8",
            "--locale=C.UTF-8",
        )  # fmt: skip
        settings = {
            "listen_addresses": "'127.0.0.1'",
            "port": str(self.port),
            "unix_socket_directories": "''",
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "max_connections": "60",
            "ssl": "on",
            "ssl_cert_file": f"'{self.root / 'server.pem'}'",
            "ssl_key_file": f"'{self.root / 'server.key'}'",
            "log_min_messages": "warning",
        }
        with open(self.data / "postgresql.conf", "a") as conf:
            conf.writelines(f"{key} = {value}\n" for key, value in settings.items())

    def start(self) -> None:
        self._run(
            str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.root / "log"),
            "-w", "-t", str(int(START_TIMEOUT_S)), "-s", "start",
        )  # fmt: skip

    def stop(self) -> None:
        """Fast shutdown: connections are cut, as when the database goes down for real."""
        with contextlib.suppress(subprocess.CalledProcessError, subprocess.TimeoutExpired):
            self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-w", "-s", "-m", "fast", "stop")
        pid_file = self.data / "postmaster.pid"
        if pid_file.exists():  # pg_ctl did not manage: do not leave it running
            with contextlib.suppress(ValueError, OSError):
                os.kill(int(pid_file.read_text().split()[0]), signal.SIGKILL)

    @property
    def dsn(self) -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/postgres"

    async def connect(self) -> Any:
        import asyncpg

        return await asyncpg.connect(self.dsn, password=self.password, ssl=False)


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


@contextlib.contextmanager
def running_postgres(certs: Certs) -> Iterator[Postgres]:
    root = Path(tempfile.mkdtemp(prefix="ingress-audit-pg-"))
    try:
        server = Postgres(root, certs)
        server.start()
        try:
            yield server
        finally:
            server.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server(server_certs: Certs) -> Iterator[Postgres]:
    with running_postgres(server_certs) as server:
        yield server


# -- rsyslog ---------------------------------------------------------------------------------

_RSYSLOG_CONF = """
global(workDirectory="{root}" maxMessageSize="256k"
       defaultNetstreamDriverCAFile="{ca}"
       defaultNetstreamDriverCertFile="{cert}"
       defaultNetstreamDriverKeyFile="{key}")
module(load="imtcp" maxSessions="200")
module(load="imudp")
module(load="mmpstrucdata")
input(type="imtcp" address="127.0.0.1" port="{tcp}" name="tcp")
input(type="imtcp" address="127.0.0.1" port="{tls}" name="tls" streamDriver.name="gtls"
      streamDriver.mode="1" streamDriver.authMode="x509/certvalid")
input(type="imudp" address="127.0.0.1" port="{udp}" name="udp")
template(name="parsed" type="list" option.jsonf="on") {{
  property(outname="input" name="inputname" format="jsonf")
  property(outname="pri" name="pri" format="jsonf")
  property(outname="hostname" name="hostname" format="jsonf")
  property(outname="app_name" name="app-name" format="jsonf")
  property(outname="procid" name="procid" format="jsonf")
  property(outname="msgid" name="msgid" format="jsonf")
  property(outname="timestamp" name="timereported" dateFormat="rfc3339" format="jsonf")
  property(outname="structured_data" name="structured-data" format="jsonf")
  property(outname="sd" name="$!rfc5424-sd" format="jsonf")
  property(outname="msg" name="msg" format="jsonf")
}}
action(type="mmpstrucdata")
action(type="omfile" file="{out}" template="parsed")
"""


class Rsyslog:
    """rsyslogd with TCP, TLS (gtls, client certificates required) and UDP inputs.

    Every message it receives is written as one JSON line of rsyslog's own parse: PRI,
    HOSTNAME, APP-NAME, MSGID, the structured data (raw, and parsed by mmpstrucdata), MSG.
    """

    def __init__(self, root: Path, certs: Certs) -> None:
        self.binary = need_binary(["rsyslogd", "/usr/sbin/rsyslogd"], "rsyslog")
        need_binary(glob.glob("/usr/lib/*/rsyslog/lmnsd_gtls.so") or ["lmnsd_gtls.so"], "rsyslog-gnutls")
        self.root = root
        self.tcp_port, self.tls_port = free_port(), free_port()
        self.udp_port = free_port(socket.SOCK_DGRAM)
        self.output = root / "received.jsonl"
        self.conf = root / "rsyslog.conf"
        self.conf.write_text(
            _RSYSLOG_CONF.format(
                root=root,
                ca=certs.ca_file,
                cert=certs.server_cert,
                key=certs.server_key,
                tcp=self.tcp_port,
                tls=self.tls_port,
                udp=self.udp_port,
                out=self.output,
            )
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = spawn(
            [self.binary, "-n", "-f", str(self.conf), "-i", str(self.root / "rsyslogd.pid")], self.root
        )
        wait_until(
            lambda: port_open(self.tcp_port) and port_open(self.tls_port),
            START_TIMEOUT_S,
            "rsyslogd listening",
            self.proc,
        )

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)

    def received(self) -> list[dict[str, Any]]:
        """Every message so far; the parsed structured data as a dict under ``sd``."""
        if not self.output.exists():
            return []
        messages = []
        data = self.output.read_bytes()
        whole = data[: data.rfind(b"\n") + 1]  # rsyslog may be writing the last line right now
        for line in whole.splitlines():
            message = orjson.loads(line)
            message["sd"] = orjson.loads(message["sd"]) if message.get("sd") else {}
            messages.append(message)
        return messages

    def wait_for_ids(self, ids: set[str], timeout_s: float = 10.0) -> list[dict[str, Any]]:
        """The messages that carry these record ids, once all of them have arrived."""

        def mine() -> list[dict[str, Any]]:
            return [m for m in self.received() if _sd_param(m, "id") in ids]

        wait_until(lambda: {_sd_param(m, "id") for m in mine()} >= ids, timeout_s, "syslog messages arrive")
        return mine()


def _sd_param(message: dict[str, Any], name: str) -> Any:
    for params in message["sd"].values():
        if name in params:
            return params[name]
    return None


@pytest.fixture(scope="session")
def rsyslog_server(tmp_path_factory: pytest.TempPathFactory, server_certs: Certs) -> Iterator[Rsyslog]:
    server = Rsyslog(tmp_path_factory.mktemp("rsyslog"), server_certs)
    server.start()
    yield server
    server.stop()


# -- Alertmanager ----------------------------------------------------------------------------

_ALERTMANAGER_CONF = """
global:
  resolve_timeout: 5m
route:
  receiver: {receiver}
  group_by: [alertname, cluster]
  group_wait: 100ms
  group_interval: 500ms
  repeat_interval: 1h
receivers:
  - name: none
  - name: hook
    webhook_configs:
      - url: "{webhook_url}"
        send_resolved: true
"""


class Alertmanager:
    """prometheus-alertmanager alone (no gossip), alerts kept in memory, data in ``root``.

    With ``webhook_url`` every notification (grouped by alertname and cluster, sent 100 ms
    after the first alert and every 500 ms after a change, resolved ones too) is POSTed there.
    With ``certs`` it serves HTTPS only and requires a client certificate from the test CA.
    """

    def __init__(
        self,
        root: Path,
        *,
        webhook_url: str | None = None,
        port: int | None = None,
        certs: Certs | None = None,
    ) -> None:
        self.binary = need_binary(["prometheus-alertmanager", "alertmanager"], "prometheus-alertmanager")
        self.root = root
        self.port = port or free_port()
        self.certs = certs
        self.web_conf = root / "web.yml"
        if certs is not None:
            self.web_conf.write_text(
                "tls_server_config:\n"
                f"  cert_file: {certs.server_cert}\n"
                f"  key_file: {certs.server_key}\n"
                "  client_auth_type: RequireAndVerifyClientCert\n"
                f"  client_ca_file: {certs.ca_file}\n"
            )
        self.conf = root / "alertmanager.yml"
        self.conf.write_text(
            _ALERTMANAGER_CONF.format(
                receiver="hook" if webhook_url else "none",
                webhook_url=webhook_url or "http://127.0.0.1:9/unused",
            )
        )
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"{'https' if self.certs else 'http'}://127.0.0.1:{self.port}"

    def _context(self) -> ssl.SSLContext | None:
        if self.certs is None:
            return None
        context = ssl.create_default_context(cafile=str(self.certs.ca_file))
        context.load_cert_chain(self.certs.client_cert, self.certs.client_key)
        return context

    def _ready(self) -> bool:
        url = f"{self.url}/-/ready"
        try:
            with urllib.request.urlopen(url, timeout=1, context=self._context()) as resp:  # noqa: S310
                return bool(resp.status == 200)
        except OSError:
            return False

    def start(self) -> None:
        argv = [
            self.binary,
            f"--config.file={self.conf}",
            f"--storage.path={self.root / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--cluster.listen-address=",
            "--log.level=warn",
        ]
        if self.certs is not None:
            argv.append(f"--web.config.file={self.web_conf}")
        self.proc = spawn(argv, self.root)
        wait_until(self._ready, START_TIMEOUT_S, "alertmanager ready", self.proc)

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)

    def alerts(self, **matchers: str) -> list[dict[str, Any]]:
        """``GET /api/v2/alerts`` (active, unresolved) with a ``label="value"`` filter per matcher."""
        query = urllib.parse.urlencode([("filter", f'{k}="{v}"') for k, v in matchers.items()])
        url = f"{self.url}/api/v2/alerts?{query}"
        with urllib.request.urlopen(url, timeout=5, context=self._context()) as resp:  # noqa: S310
            alerts: list[dict[str, Any]] = orjson.loads(resp.read())
        return alerts


@contextlib.contextmanager
def running_alertmanager(
    root: Path, *, webhook_url: str | None = None, port: int | None = None, certs: Certs | None = None
) -> Iterator[Alertmanager]:
    server = Alertmanager(root, webhook_url=webhook_url, port=port, certs=certs)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def alertmanager_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Alertmanager]:
    """No receiver: the tests read its API; each test uses its own ``cluster`` label."""
    with running_alertmanager(tmp_path_factory.mktemp("alertmanager")) as server:
        yield server


# -- NATS ------------------------------------------------------------------------------------


class NatsServer:
    """nats-server with JetStream; ``extra`` is appended to its config (authorization, tls)."""

    def __init__(self, root: Path, extra: str = "") -> None:
        self.binary = need_binary(["nats-server"], "nats-server")
        self.root = root
        self.port = free_port()
        self.conf = root / "nats.conf"
        self.conf.write_text(
            f'listen: "127.0.0.1:{self.port}"\n'
            f'jetstream {{ store_dir: "{root / "js"}", max_memory_store: 64MB, max_file_store: 256MB }}\n'
            f"{extra}\n"
        )
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.proc = spawn([self.binary, "-c", str(self.conf)], self.root)
        wait_until(lambda: port_open(self.port), START_TIMEOUT_S, "nats-server listening", self.proc)

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)


@contextlib.contextmanager
def running_nats(root: Path, extra: str = "") -> Iterator[NatsServer]:
    server = NatsServer(root, extra)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    """No authentication: the credential and TLS tests start their own servers."""
    with running_nats(tmp_path_factory.mktemp("nats")) as server:
        yield server


# -- records to send -------------------------------------------------------------------------


def make_record(**fields: Any) -> dict[str, Any]:
    """A record shaped like schema v1 (docs/record.md) with a fresh id; ``fields`` override."""
    import uuid

    doc: dict[str, Any] = {
        "schema_version": 1,
        "type": "audit",
        "id": str(uuid.uuid4()),
        "audit_id": str(uuid.uuid4()),
        "stage": "ResponseComplete",
        "level": "Metadata",
        "cluster": "test-cluster",
        "time": "2026-11-24T14:20:40.463683Z",
        "request_received_at": "2026-11-24T14:20:40.457086Z",
        "received_at": "2026-11-24T14:20:41.000000Z",
        "verb": "patch",
        "dry_run": False,
        "request_uri": "/apis/networking.k8s.io/v1/namespaces/shop/ingresses/shop-web",
        "field_manager": "kubectl-patch",
        "outcome": {
            "code": 200,
            "status": None,
            "reason": None,
            "message": None,
            "decision": "allow",
            "authorization_reason": None,
        },
        "object": {
            "api_group": "networking.k8s.io",
            "api_version": "v1",
            "resource": "ingresses",
            "subresource": None,
            "namespace": "shop",
            "name": "shop-web",
            "uid": None,
            "resource_version": None,
        },
        "actor": {
            "user": {
                "username": "admin",
                "uid": None,
                "groups": ["system:masters"],
                "kind": "user",
                "service_account": None,
                "node": None,
            },
            "impersonated": None,
            "source_ips": ["127.0.0.1"],
            "user_agent": "kubectl/v1.26.0",
            "client": {"name": "kubectl", "version": "v1.26.0"},
        },
        "ingress": None,
        "secret": None,
        "findings": [],
    }
    doc.update(fields)
    return doc


def spooled(*docs: dict[str, Any]) -> list[RecordLine]:
    """Records as the delivery loop hands them to a sink."""
    return [RecordLine(orjson.dumps(doc)) for doc in docs]


# -- ingress-audit itself --------------------------------------------------------------------


class Serve:
    """The real ``ingress-audit serve`` process (the console script next to sys.executable)."""

    def __init__(self, config: Path, port: int) -> None:
        """Its output goes to ``output`` next to ``config``."""
        self.argv = [str(Path(sys.executable).parent / "ingress-audit"), "serve", "--config", str(config)]
        self.port = port
        self.log = config.parent / "output"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout_s: float = START_TIMEOUT_S) -> None:
        with open(self.log, "ab") as output:
            self.proc = subprocess.Popen(
                self.argv, stdout=output, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        wait_until(
            lambda: _get_status(self.port, "/healthz") == 200, timeout_s, "ingress-audit serve", self.proc
        )

    def kill(self) -> None:
        """SIGKILL: no cleanup, no drain, as when the node or the OOM killer takes the pod."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, timeout_s=30)

    def rss_kib(self) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError("no VmRSS")


async def wait_drained(session: aiohttp.ClientSession, url: str, timeout_s: float) -> dict[str, Any]:
    """Poll /readyz until every sink's lag is 0."""
    deadline = time.monotonic() + timeout_s
    while True:
        async with session.get(url + "/readyz") as resp:
            body: dict[str, Any] = await resp.json()
        if resp.status == 200 and all(s["lag_records"] == 0 for s in body["sinks"].values()):
            return body
        assert time.monotonic() < deadline, f"sinks did not drain: {body}"
        await asyncio.sleep(0.05)


def _get_status(port: int, path: str) -> int | None:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
    try:
        connection.request("GET", path)
        return connection.getresponse().status
    except OSError:
        return None
    finally:
        connection.close()


# -- Prometheus ------------------------------------------------------------------------------


class Prometheus:
    """Prometheus scraping ``targets`` as job ``ingress-audit`` every second and evaluating
    ``rule_files`` every second, with its TSDB in ``root``."""

    def __init__(self, root: Path, targets: list[str], rule_files: list[Path]) -> None:
        self.binary = require_binary("/usr/bin/prometheus", "prometheus")
        self.root = root
        self.port = free_port()
        self.conf = root / "prometheus.yml"
        config = {
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(path) for path in rule_files],
            "scrape_configs": [{"job_name": "ingress-audit", "static_configs": [{"targets": targets}]}],
        }
        self.conf.write_bytes(orjson.dumps(config))  # JSON is YAML
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.proc = spawn(
            [
                self.binary,
                f"--config.file={self.conf}",
                f"--storage.tsdb.path={self.root / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--log.level=warn",
            ],
            self.root,
        )
        wait_until(
            lambda: _get_status(self.port, "/-/ready") == 200, START_TIMEOUT_S, "prometheus ready", self.proc
        )

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)

    async def api(self, session: aiohttp.ClientSession, path: str, **params: str) -> Any:
        """The ``data`` of a successful API answer; anything else fails with Prometheus' error."""
        async with session.get(self.url + "/api/v1/" + path, params=params) as resp:
            body: dict[str, Any] = await resp.json()
        assert body.get("status") == "success", (path, params, body)
        return body["data"]

    async def query(self, session: aiohttp.ClientSession, expr: str) -> list[dict[str, Any]]:
        data = await self.api(session, "query", query=expr)
        result: list[dict[str, Any]] = data["result"]
        return result

    async def firing(self, session: aiohttp.ClientSession) -> dict[str, dict[str, Any]]:
        """Alerts firing now, by name."""
        alerts = (await self.api(session, "alerts"))["alerts"]
        return {a["labels"]["alertname"]: a for a in alerts if a["state"] == "firing"}


@contextlib.contextmanager
def running_prometheus(targets: list[str], rule_files: list[Path]) -> Iterator[Prometheus]:
    root = Path(tempfile.mkdtemp(prefix="ingress-audit-prom-"))
    try:
        server = Prometheus(root, targets, rule_files)
        server.start()
        try:
            yield server
        finally:
            server.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)
