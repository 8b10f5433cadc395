"""Two servers that keep no guarantee, measured in the same run as ingress-audit to compare against.

- **null**: a minimal aiohttp app with the HTTP settings of ``ingress-audit serve`` (plain HTTP on
  loopback, no access log, its default keep-alive and body limit; same aiohttp, same event
  loop) that reads the whole body and answers 200 with a constant small JSON body. Subtracting
  its latency from ours gives the latency our work adds over aiohttp's own round trip on the
  same machine at the same moment.
- **naive**: ``http.server``'s ``ThreadingHTTPServer`` that reads the body, ``json.loads`` it and
  answers 200, writing nothing durably and enriching nothing: what our design has to beat.

Each runs as its own process (``python -m bench.baselines null|naive --port N``) so that it
competes for the cores as the real server does. Both answer ``GET /healthz`` too: the senders open
their connections with it before the clock starts.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Final, Literal

from aiohttp import web

from bench.report import REPO
from bench.server import free_port, start_healthy, stop_process
from webhook.commands.serve import loop_factory
from webhook.config import ServerConfig

__all__ = ["KINDS", "BaselineProcess", "Kind", "main", "naive_server", "null_app"]

Kind = Literal["null", "naive"]
KINDS: Final[tuple[Kind, ...]] = ("null", "naive")

# The defaults ``ingress-audit serve`` runs the bench with: the same body limit and keep-alive.
_SERVE: Final = ServerConfig()
_NULL_ANSWER: Final = b'{"accepted":true}\n'


async def _null_audit(request: web.Request) -> web.Response:
    await request.read()
    return web.Response(body=_NULL_ANSWER, content_type="application/json")


async def _healthz(request: web.Request) -> web.Response:
    return web.Response(text="ok")


def null_app() -> web.Application:
    """POST /audit: read the body, answer 200; nothing else is done with it."""
    app = web.Application(client_max_size=_SERVE.max_body_bytes)
    app.router.add_post("/audit", _null_audit)
    app.router.add_get("/healthz", _healthz)
    return app


class _NaiveHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the apiserver's client and ours use
    # Headers and body go out in two writes: with Nagle's algorithm the body would wait for the
    # client's delayed ACK (40 ms) and the baseline would measure that instead of the work.
    disable_nagle_algorithm = True

    def do_POST(self) -> None:
        if self.path.split("?", 1)[0] != "/audit":
            self._answer(404, b'{"error":"not-found"}\n')
            return
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        try:
            items = json.loads(body).get("items") or []
        except (ValueError, AttributeError):
            self._answer(400, b'{"error":"bad-json"}\n')
            return
        self._answer(200, json.dumps({"accepted": len(items)}).encode() + b"\n")

    def do_GET(self) -> None:
        if self.path == "/healthz":
            self._answer(200, b"ok")
        else:
            self._answer(404, b'{"error":"not-found"}\n')

    def _answer(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Writes nothing: a line per request on stderr is work the real server does not do either."""


class _NaiveServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # the default 5 can drop a burst of sender connects (1 s SYN retries)

    def handle_error(self, request: object, client_address: object) -> None:
        """A sender that closes its connections as the load ends is no error; others are printed."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)  # type: ignore[arg-type]


def naive_server(port: int) -> ThreadingHTTPServer:
    """The standard library's threaded server on 127.0.0.1:``port``, one thread per connection."""
    return _NaiveServer(("127.0.0.1", port), _NaiveHandler)


def _serve_naive(port: int) -> None:
    server = naive_server(port)

    def stop(signum: int, frame: object) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    try:
        server.serve_forever()
    finally:
        server.server_close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.baselines", description=__doc__.split("\n")[0])
    parser.add_argument("kind", choices=KINDS)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    if args.kind == "null":
        factory = loop_factory(_SERVE.event_loop)
        web.run_app(
            null_app(),
            loop=factory() if factory is not None else None,
            host="127.0.0.1",
            port=args.port,
            access_log=None,
            keepalive_timeout=_SERVE.keepalive_timeout_s,
            print=None,
        )
    else:
        _serve_naive(args.port)
    return 0


@dataclass(slots=True)
class BaselineProcess:
    """A baseline server in its own process on a free loopback port; SIGTERM when done."""

    kind: Kind
    proc: subprocess.Popen[bytes] | None = None
    port: int = 0

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise RuntimeError("not started")
        return self.proc.pid

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 30.0) -> None:
        self.port = free_port()
        command = [sys.executable, "-m", "bench.baselines", self.kind, "--port", str(self.port)]
        self.proc = start_healthy(
            command,
            port=self.port,
            failure=f"the {self.kind} baseline server did not start",
            timeout_s=timeout_s,
            cwd=REPO,  # bench/ is not installed: ``-m`` finds it from the checkout
            env=dict(os.environ),
            stdout=subprocess.DEVNULL,
        )

    def stop(self, timeout_s: float = 10.0) -> int:
        return stop_process(self.proc, timeout_s)


if __name__ == "__main__":
    sys.exit(main())
