"""``ingress-audit serve`` with access logs on: syslog in, and the open window summarized at SIGTERM."""

from __future__ import annotations

import socket
import time
import urllib.request
from pathlib import Path

import yaml

from tests.access.access_lines import nginx_line
from tests.conftest import read_jsonl
from tests.servers import Serve, free_port, wait_until


def _parsed(port: int) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    prefix = 'ingress_audit_access_lines_total{input="syslog-udp",result="parsed"} '
    return next((float(line.split()[-1]) for line in text.splitlines() if line.startswith(prefix)), 0.0)


def test_serve_summarizes_the_open_window_when_stopped(tmp_path: Path) -> None:
    """Lines sent over UDP become records; SIGTERM writes the summary of the window still open."""
    port, udp = free_port(), free_port(socket.SOCK_DGRAM)
    config = tmp_path / "config.yaml"
    access = {"enabled": True, "syslog": {"udp": f"127.0.0.1:{udp}", "tcp": None}, "window_s": 3600}
    config.write_text(
        yaml.safe_dump({"data_dir": str(tmp_path / "data"), "server": {"port": port}, "access": access})
    )
    serve = Serve(config, port)
    serve.start()
    now = time.time()
    statuses = [200] * 7 + [401] * 3
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            for i, status in enumerate(statuses):
                line = nginx_line(t=now, status=status, req_id=f"{i:032x}")
                sock.sendto(b"<190>Nov 25 21:00:00 node-1 nginx: " + line, ("127.0.0.1", udp))
        wait_until(lambda: _parsed(port) >= len(statuses), 10, "the lines to arrive")
    finally:
        serve.stop()

    assert serve.proc is not None
    assert serve.proc.returncode == 0
    records = read_jsonl(tmp_path / "data" / "access.jsonl")
    assert {r["type"] for r in read_jsonl(tmp_path / "data" / "records.jsonl")} <= {"audit", "alert"}
    assert [r["request"]["status"] for r in records if r["type"] == "access"] == [401, 401, 401]
    (summary,) = [r for r in records if r["type"] == "access_summary" and r["scope"] == "host"]
    assert summary["upstream"] == "shop-web-80"  # no ingress known: counted per upstream
    assert summary["statuses"] == {"2xx": 7, "4xx": 3}
