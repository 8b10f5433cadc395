"""A real redis-server on a free loopback port in a temp dir (Debian package ``redis-server``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers import free_port, need_binary, port_open, spawn, stop_process, wait_until

__all__ = ["redis_url"]


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``redis://127.0.0.1:<port>/0``: no persistence, loopback only, stopped after the module."""
    binary = need_binary(["redis-server", "/usr/bin/redis-server"], "redis-server")
    directory: Path = tmp_path_factory.mktemp("redis")
    port = free_port()
    argv = [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(directory)]
    argv += ["--save", "", "--appendonly", "no", "--protected-mode", "yes"]
    proc = spawn(argv, directory)
    try:
        wait_until(lambda: port_open(port), 10.0, "redis-server", proc)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        stop_process(proc)
