"""A real nginx logs ingress-nginx's format to our syslog listener; we record and summarize.

nginx (Debian ``nginx-light``) runs in the foreground with a temp prefix, on loopback, with
``log_format`` set to ingress-nginx's ``log-format-upstream`` (its ``$proxy_upstream_name``
and friends are ``set`` variables here) and ``access_log syslog:server=…``. nginx sends
syslog over UDP only, so TCP is driven by a client speaking both RFC 6587 framings.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.access.access_lines import ingress_object, nginx_line
from tests.conftest import delivered, event_list, make_config, make_event
from tests.servers import free_port, need_binary, port_open, spawn, stop_process, wait_until
from webhook.access.settings import AccessConfig, AccessSyslogConfig
from webhook.config import Config
from webhook.server.app import RUNTIME, create_app

# ingress-nginx's default log-format-upstream (controller/config/config.go)
LOG_FORMAT = (
    '$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent '
    '"$http_referer" "$http_user_agent" $request_length $request_time [$proxy_upstream_name] '
    "[$proxy_alternative_upstream_name] $upstream_addr $upstream_response_length "
    "$upstream_response_time $upstream_status $req_id"
)
GOOD, UNAUTHORIZED, MISSING, DEAD = 20, 15, 5, 10


def _nginx_conf(root: Path, port: int, syslog_port: int, dead_port: int) -> str:
    temp = " ".join(f"{kind}_temp_path {root}/{kind};" for kind in ("client_body", "proxy"))
    return f"""
daemon off;
master_process off;
worker_processes 1;
pid {root}/nginx.pid;
error_log {root}/error.log info;
events {{ worker_connections 64; }}
http {{
    {temp}
    fastcgi_temp_path {root}/fastcgi; uwsgi_temp_path {root}/uwsgi; scgi_temp_path {root}/scgi;
    log_format upstreaminfo '{LOG_FORMAT}';
    access_log syslog:server=127.0.0.1:{syslog_port},tag=nginx upstreaminfo;
    upstream dead {{ server 127.0.0.1:{dead_port}; }}
    server {{
        listen 127.0.0.1:{port};
        server_name shop.example.com;
        set $proxy_upstream_name "shop-web-80";
        set $proxy_alternative_upstream_name "";
        set $req_id $request_id;
        location = /ok {{ return 200 "ok\\n"; }}
        location /admin {{ return 401; }}
        location /api {{ proxy_pass http://dead; proxy_connect_timeout 1s; }}
        location / {{ root {root}/www; }}
    }}
}}
"""


@pytest.fixture
def nginx(tmp_path: Path) -> Iterator[tuple[int, int]]:
    """(nginx's HTTP port, the UDP syslog port it logs to); nginx is stopped afterwards."""
    binary = need_binary(["/usr/sbin/nginx", "nginx"], "nginx-light")
    root = tmp_path / "nginx"
    (root / "www").mkdir(parents=True)
    port, syslog_port, dead_port = free_port(), free_port(socket.SOCK_DGRAM), free_port()
    (root / "nginx.conf").write_text(_nginx_conf(root, port, syslog_port, dead_port), "utf-8")
    proc = spawn(
        [binary, "-e", str(root / "error.log"), "-p", str(root), "-c", str(root / "nginx.conf")], root
    )
    try:
        wait_until(lambda: port_open(port), 10, "nginx", proc)
        yield port, syslog_port
    finally:
        stop_process(proc)
        assert proc.returncode is not None


def _config(tmp_path: Path, udp_port: int, tcp_port: int) -> Config:
    syslog = AccessSyslogConfig(udp=f"127.0.0.1:{udp_port}", tcp=f"127.0.0.1:{tcp_port}")
    return replace(make_config(tmp_path), access=AccessConfig(enabled=True, syslog=syslog))


async def _drive(port: int) -> None:
    """Bounded requests: good ones, 401s, 404s and 502s from the dead upstream."""
    plan = [("/ok", GOOD), ("/admin/login", UNAUTHORIZED), ("/missing", MISSING), ("/api/items", DEAD)]
    async with aiohttp.ClientSession() as session:
        for path, count in plan:
            for _ in range(count):
                async with session.get(f"http://127.0.0.1:{port}{path}?token=t0ps3cret") as resp:
                    await resp.read()


async def _lines_parsed(client: Any, want: int, input: str) -> None:
    for _ in range(200):  # bounded: at most ~10 s
        text = await (await client.get("/metrics")).text()
        prefix = f'ingress_audit_access_lines_total{{input="{input}",result="parsed"}} '
        got = next((float(line.split()[-1]) for line in text.splitlines() if line.startswith(prefix)), 0.0)
        if got >= want:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"only {got} of {want} {input} lines arrived")


async def test_nginx_over_udp_syslog(aiohttp_client: Any, tmp_path: Path, nginx: tuple[int, int]) -> None:
    """Every request nginx logs is counted; 401s are records naming the ingress; one summary."""
    port, udp_port = nginx
    config = _config(tmp_path, udp_port, free_port())
    client = await aiohttp_client(create_app(config))
    created = make_event(level="RequestResponse", responseObject=ingress_object())
    json = {"Content-Type": "application/json"}
    assert (await client.post("/audit", data=event_list(created), headers=json)).status == 200

    await _drive(port)
    await _lines_parsed(client, GOOD + UNAUTHORIZED + MISSING + DEAD, "syslog-udp")
    await client.app[RUNTIME].access.flush(everything=True)
    records = await delivered(client, config)

    access = [r for r in records if r["type"] == "access"]
    assert len(access) == UNAUTHORIZED
    assert {r["request"]["status"] for r in access} == {401}
    assert {r["input"] for r in access} == {"syslog-udp"}
    assert access[0]["ingress"]["name"] == "web"
    assert access[0]["request"]["path"] == "/admin/login"
    hosts = [r for r in records if r["type"] == "access_summary" and r["scope"] == "host"]
    assert len(hosts) == 1
    summary = hosts[0]
    assert summary["host"] == "shop.example.com"
    assert summary["requests"] == GOOD + UNAUTHORIZED + MISSING + DEAD
    assert summary["statuses"] == {"2xx": GOOD, "4xx": UNAUTHORIZED + MISSING, "5xx": DEAD}
    assert summary["auth_failures"] == UNAUTHORIZED
    (clients,) = [r for r in records if r["type"] == "access_summary" and r["scope"] == "clients"]
    assert clients["clients"][0]["ip"] == "127.0.0.1"
    assert clients["clients"][0]["auth_failures"] == UNAUTHORIZED
    assert b"t0ps3cret" not in (config.data_dir / "records.jsonl").read_bytes()
    metrics = await (await client.get("/metrics")).text()
    assert f'ingress_audit_access_requests_total{{ingress="shop/web",status_class="5xx"}} {DEAD}.0' in metrics


async def test_tcp_syslog_both_framings(aiohttp_client: Any, tmp_path: Path) -> None:
    """Octet-counted RFC 5424 and newline-framed RFC 3164 messages on one connection."""
    tcp_port = free_port()
    config = _config(tmp_path, free_port(socket.SOCK_DGRAM), tcp_port)
    client = await aiohttp_client(create_app(config))
    lines = [nginx_line(status=401, req_id=f"{i:032x}") for i in range(4)]
    rfc5424 = [b"<190>1 2026-11-25T21:00:00Z node-1 nginx - - - " + line for line in lines[:2]]
    octets = b"".join(str(len(m)).encode() + b" " + m for m in rfc5424)
    newline = b"".join(b"<190>Nov 25 21:00:00 node-1 nginx: " + line + b"\n" for line in lines[2:])

    _, writer = await asyncio.open_connection("127.0.0.1", tcp_port)
    writer.write(octets + newline[:10])
    await writer.drain()
    writer.write(newline[10:])
    await writer.drain()
    await _lines_parsed(client, 4, "syslog-tcp")
    writer.close()
    await writer.wait_closed()
    await client.app[RUNTIME].access.flush(everything=True)
    records = await delivered(client, config)

    access = [r for r in records if r["type"] == "access"]
    assert sorted(r["request"]["request_id"] for r in access) == [f"{i:032x}" for i in range(4)]
    assert {r["input"] for r in access} == {"syslog-tcp"}


async def test_a_broken_tcp_stream_is_closed_and_counted(aiohttp_client: Any, tmp_path: Path) -> None:
    """A bad octet count closes that connection; the listener keeps serving others."""
    tcp_port = free_port()
    config = _config(tmp_path, free_port(socket.SOCK_DGRAM), tcp_port)
    client = await aiohttp_client(create_app(config))

    reader, writer = await asyncio.open_connection("127.0.0.1", tcp_port)
    writer.write(b"99999999999 <13>x\n")
    await writer.drain()
    async with asyncio.timeout(5):
        assert await reader.read() == b""  # closed by the server
    writer.close()
    _, second = await asyncio.open_connection("127.0.0.1", tcp_port)
    second.write(b"<190>Nov 25 21:00:00 node-1 nginx: " + nginx_line(status=403) + b"\n")
    await second.drain()
    await _lines_parsed(client, 1, "syslog-tcp")
    second.close()

    metrics = await (await client.get("/metrics")).text()
    assert (
        'ingress_audit_access_unparsed_lines_total{input="syslog-tcp",reason="syslog-bad-length"} 1.0'
        in metrics
    )


def test_non_loopback_syslog_is_refused_without_allow_remote() -> None:
    """Syslog has no authentication: a routable address needs access.syslog.allow_remote."""
    from webhook.access.settings import check_syslog_listen
    from webhook.errors import ConfigError

    remote = AccessConfig(enabled=True, syslog=AccessSyslogConfig(udp="0.0.0.0:5514", tcp=None))
    with pytest.raises(ConfigError, match="allow_remote"):
        check_syslog_listen(remote)
    check_syslog_listen(replace(remote, syslog=replace(remote.syslog, allow_remote=True)))
