"""``ingress-audit serve``: the webhook server, until SIGTERM or SIGINT."""

from __future__ import annotations

import argparse
import asyncio
import signal
from collections.abc import Callable

import structlog

from webhook import __version__
from webhook.commands import _args
from webhook.config import Config, describe, load_config, with_overrides
from webhook.core.heap import CycleCollector, one_arena, return_large_blocks, tune_collector
from webhook.log import configure_logging
from webhook.server.app import start_server

__all__ = ["add_arguments", "run"]

log = structlog.get_logger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    _args.add_config(parser, help="YAML config file [INGRESS_AUDIT_CONFIG]")
    parser.add_argument("--host", default=_args.env("HOST"), help="address to listen on [INGRESS_AUDIT_HOST]")
    parser.add_argument(
        "--port", type=_args.port, default=_args.env("PORT"), help="port to listen on [INGRESS_AUDIT_PORT]"
    )
    _args.add_data_dir(parser, help="records, dead letters, state [INGRESS_AUDIT_DATA_DIR]")
    _args.add_logging(parser)


def run(args: argparse.Namespace) -> int:
    return_large_blocks()
    one_arena()
    config = with_overrides(
        load_config(args.config),
        host=args.host,
        port=args.port,
        data_dir=args.data_dir,
        log_format=args.log_format,
        log_level=args.log_level,
    )
    configure_logging(config.log.level, config.log.format)
    with asyncio.Runner(loop_factory=loop_factory(config.server.event_loop)) as runner:
        return runner.run(_serve_until_signalled(config))


def loop_factory(kind: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The event loop ``server.event_loop`` names (None: asyncio's own); asyncio's, with a
    warning, where uvloop is not installed."""
    if kind != "uvloop":
        return None
    try:
        import uvloop  # only for serve, and only when configured
    except ImportError:
        log.warning("server.event_loop_unavailable", event_loop="uvloop", using="asyncio")
        return None
    new_event_loop: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return new_event_loop


def _describe_loop() -> str:
    loop = asyncio.get_running_loop()
    return "uvloop" if type(loop).__module__.startswith("uvloop") else "asyncio"


async def _serve_until_signalled(config: Config) -> int:
    server = await start_server(config)
    # Start-up objects (modules, config, compiled rules) never die: keep the collector off them,
    # and collect young objects less often; measured 20 % less CPU per event (bench/RESULTS.md).
    # What that leaves in cycles is collected once a second (webhook/core/heap.py).
    tune_collector()
    collector = asyncio.create_task(CycleCollector().run(), name="gc")
    listening = [f"{host}:{port}" for host, port in server.addresses]
    log.info(
        "server.started",
        version=__version__,
        listening=listening,
        event_loop=_describe_loop(),
        **describe(config),
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    log.info("server.stopping")
    await server.stop()
    collector.cancel()
    log.info("server.stopped")
    return 0
