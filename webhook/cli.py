"""The ``ingress-audit`` command: ``serve``, ``check-config``, ``render``, ``schema``, ``tail``, ``replay``,
``report``.

Heavy modules are imported inside the subcommands so that ``--help`` answers at once.
Exit codes: 0 success, 1 a ``WebhookError`` (printed as ``ingress-audit: <code>: <message>``),
2 a usage error.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
import urllib.parse
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from webhook import __version__
from webhook.errors import ConfigError, WebhookError

if TYPE_CHECKING:
    from webhook.config import Config

__all__ = ["main", "run"]


def _env(name: str) -> str | None:
    return os.environ.get(f"INGRESS_AUDIT_{name}") or None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ingress-audit",
        description="Audit webhook backend for Kubernetes ingress access.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the webhook server")
    serve.add_argument(
        "--config",
        type=Path,
        default=_env("CONFIG"),
        help="YAML config file [INGRESS_AUDIT_CONFIG]",
    )
    serve.add_argument("--host", default=_env("HOST"), help="address to listen on [INGRESS_AUDIT_HOST]")
    serve.add_argument(
        "--port", type=_port, default=_env("PORT"), help="port to listen on [INGRESS_AUDIT_PORT]"
    )
    serve.add_argument(
        "--data-dir",
        type=Path,
        default=_env("DATA_DIR"),
        help="records, dead letters, state [INGRESS_AUDIT_DATA_DIR]",
    )
    serve.add_argument(
        "--log-format",
        choices=["json", "console"],
        default=_env("LOG_FORMAT"),
        help="[INGRESS_AUDIT_LOG_FORMAT]",
    )
    serve.add_argument(
        "--log-level",
        choices=["debug", "info", "warning", "error"],
        default=_env("LOG_LEVEL"),
        help="[INGRESS_AUDIT_LOG_LEVEL]",
    )
    serve.set_defaults(func=_serve)

    check = commands.add_parser("check-config", help="validate a config file and print its errors")
    check.add_argument("file", type=Path)
    check.add_argument(
        "--connect", action="store_true", help="also reach every sink (health check) and report each"
    )
    check.set_defaults(func=_check_config)

    render = commands.add_parser("render", help="print what the apiserver needs")
    targets = render.add_subparsers(dest="target", required=True, metavar="TARGET")
    policy = targets.add_parser("audit-policy", help="the audit policy for the configured rules")
    policy.add_argument("--config", type=Path, default=_env("CONFIG"))
    policy.add_argument("--profile", choices=["metadata", "request-response"], default="metadata")
    policy.set_defaults(func=_render_policy)
    kubeconfig = targets.add_parser(
        "webhook-kubeconfig", help="the kubeconfig for --audit-webhook-config-file"
    )
    kubeconfig.add_argument("--config", type=Path, default=_env("CONFIG"))
    kubeconfig.add_argument("--server", help="URL the apiserver posts to (default: from config)")
    kubeconfig.add_argument("--ca-file", type=Path, help="CA that signed the serving certificate")
    kubeconfig.add_argument("--client-cert", help="client certificate path on the apiserver host")
    kubeconfig.add_argument("--client-key", help="client key path on the apiserver host")
    kubeconfig.add_argument(
        "--token-file",
        type=Path,
        help="bearer token file, written as tokenFile: its path on the apiserver host (default: from config)",
    )
    kubeconfig.add_argument(
        "--inline-token",
        action="store_true",
        help="write the token itself instead of tokenFile (the output is then a secret)",
    )
    kubeconfig.set_defaults(func=_render_kubeconfig)
    flags = targets.add_parser("apiserver-flags", help="kube-apiserver flags and a kubeadm snippet")
    flags.add_argument("--mode", choices=["batch", "blocking"], default="batch")
    flags.add_argument(
        "--config",
        type=Path,
        default=_env("CONFIG"),
        help="[INGRESS_AUDIT_CONFIG] keep batch and event sizes within its request limits",
    )
    flags.set_defaults(func=_render_flags)

    _add_tail(commands)
    _add_replay(commands)
    _add_report(commands)

    leaks = commands.add_parser(
        "scan-leaks", help="search files for known secret values (plain, base64, hex, ...); exit 1 if found"
    )
    leaks.add_argument("secrets_file", type=Path, help="one secret value per line")
    leaks.add_argument("paths", nargs="+", type=Path, help="files or directories, e.g. the data dir")
    leaks.set_defaults(func=_scan_leaks)

    schema = commands.add_parser("schema", help="print a JSON Schema (the record's by default)")
    schema.add_argument("which", nargs="?", choices=["record", "config"], default="record")
    schema.set_defaults(func=_schema)
    return parser


def _add_tail(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    tail = commands.add_parser(
        "tail", help="follow the records file across rotation, one readable line per record"
    )
    tail.add_argument(
        "path", nargs="?", type=Path, help="records file (default: the JSONL sink of the config)"
    )
    tail.add_argument("--config", type=Path, default=_env("CONFIG"), help="[INGRESS_AUDIT_CONFIG]")
    tail.add_argument("--data-dir", type=Path, default=_env("DATA_DIR"), help="[INGRESS_AUDIT_DATA_DIR]")
    tail.add_argument(
        "-n", "--lines", type=_count, default=10, metavar="N", help="print the last N records first (or all)"
    )
    tail.add_argument("--no-follow", action="store_true", help="print and exit")
    tail.add_argument("--json", action="store_true", help="the records' JSON lines, unchanged")
    tail.add_argument(
        "--access", action="store_true", help="the access records' file (access.jsonl), not the audit one"
    )
    for flag, what in (
        ("--namespace", "object namespace"),
        ("--resource", "resource, e.g. ingresses or ingresses.networking.k8s.io"),
        ("--user", "username (the caller or the identity it impersonated)"),
        ("--verb", "verb"),
        ("--finding", "finding id"),
    ):
        tail.add_argument(flag, action="append", default=[], metavar="PATTERN", help=f"{what}; repeatable")
    tail.add_argument(
        "--severity",
        choices=["info", "low", "medium", "high", "critical"],
        help="records with a finding at this severity or above",
    )
    tail.add_argument("--since", type=_since, help="a duration (10m, 2h, 7d) or an RFC 3339 time")
    tail.set_defaults(func=_tail)


def _add_replay(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    replay = commands.add_parser(
        "replay",
        help="feed kube-apiserver audit log files (log backend, .gz too), then access logs, into the sinks",
    )
    replay.add_argument("files", nargs="*", type=Path, metavar="FILE", help="audit log files")
    replay.add_argument(
        "--access",
        nargs="+",
        action="extend",
        type=Path,
        default=[],
        metavar="FILE",
        help="ingress controller access log files (access.format; .gz too), after the audit files",
    )
    replay.add_argument("--config", type=Path, default=_env("CONFIG"), help="[INGRESS_AUDIT_CONFIG]")
    replay.add_argument("--data-dir", type=Path, default=_env("DATA_DIR"), help="[INGRESS_AUDIT_DATA_DIR]")
    replay.add_argument(
        "--log-format",
        choices=["json", "console"],
        default=_env("LOG_FORMAT"),
        help="[INGRESS_AUDIT_LOG_FORMAT]",
    )
    replay.add_argument(
        "--log-level",
        choices=["debug", "info", "warning", "error"],
        default=_env("LOG_LEVEL") or "warning",
        help="[INGRESS_AUDIT_LOG_LEVEL] (default: warning)",
    )
    replay.add_argument(
        "--server",
        metavar="URL",
        type=_http_url,
        help="send the events to a running server's /audit (e.g. http://127.0.0.1:9440/audit) "
        "instead of writing the data dir, which a running server holds",
    )
    replay.add_argument("--token-file", type=Path, help="with --server: file with the bearer token to send")
    replay.add_argument("--ca-file", type=Path, help="with --server: CA bundle of the server's certificate")
    replay.add_argument(
        "--client-cert",
        type=Path,
        help="with --server: client certificate (PEM) to present",
    )
    replay.add_argument(
        "--client-key", type=Path, help="with --server: the client certificate's key, if not in --client-cert"
    )
    replay.add_argument(
        "--tls-server-name",
        metavar="NAME",
        help="with --server: check the server's certificate for NAME, not the URL's host (port-forwards)",
    )
    replay.set_defaults(func=_replay)


def _add_report(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    report = commands.add_parser(
        "report", help="the weekly review: changes, findings, auth failures, expiring certificates, alerts"
    )
    report.add_argument(
        "paths",
        nargs="*",
        type=Path,
        metavar="PATH",
        help="records files, rotated backups included (default: the audit/alert JSONL file, dead letters)",
    )
    report.add_argument("--config", type=Path, default=_env("CONFIG"), help="[INGRESS_AUDIT_CONFIG]")
    report.add_argument("--data-dir", type=Path, default=_env("DATA_DIR"), help="[INGRESS_AUDIT_DATA_DIR]")
    report.add_argument(
        "--since",
        type=_since,
        help="a duration (24h, 7d) or an RFC 3339 time (default: 7 days before --until or the newest record)",
    )
    report.add_argument(
        "--until",
        type=_since,
        help="end of the period, exclusive (default: now; the newest record without --since)",
    )
    report.add_argument("--format", choices=["table", "markdown", "html", "json"], default="table")
    report.add_argument("--output", type=Path, metavar="FILE", help="write to FILE (mode 0600), not stdout")
    report.add_argument("--cluster", action="append", default=[], help="only these clusters; repeatable")
    report.add_argument(
        "--expiring-within", type=_duration, default="30d", metavar="DURATION", help="default: 30d"
    )
    report.add_argument("--top", type=int, default=10, metavar="N", help="rows per ranking (default: 10)")
    report.set_defaults(func=_report)


def _count(text: str) -> int | None:
    if text == "all":
        return None
    if not text.isdigit():
        raise argparse.ArgumentTypeError("expected a number of records or 'all'")
    return int(text)


def _since(text: str) -> object:
    from webhook.commands.tail import parse_since

    try:
        return parse_since(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _duration(text: str) -> object:
    import re
    from datetime import UTC, datetime

    from webhook.commands.tail import parse_since

    if not re.fullmatch(r"\d+[smhdw]", text.strip()):
        raise argparse.ArgumentTypeError("expected a duration such as 30d, 12h or 2w")
    now = datetime.now(UTC)
    return now - parse_since(text, now)


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"a port is 0 to 65535, not {port}")
    return port


def _http_url(text: str) -> str:
    parts = urllib.parse.urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise argparse.ArgumentTypeError(f"expected an http:// or https:// URL, not {text!r}")
    return text


def main(argv: Sequence[str] | None = None) -> int:
    """Run a command: expected errors are one line on stderr and a non-zero exit, never a
    traceback (a traceback means a bug)."""
    args = _parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except WebhookError as exc:
        print(f"ingress-audit: {exc.code}: {exc.message}", file=sys.stderr)
        for line in getattr(exc, "errors", ()):
            print(f"  {line}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        # The reader went away (``| head``): nothing more to say, and nobody to say it to.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 128 + signal.SIGPIPE
    except OSError as exc:  # a path that cannot be used: named, with the system's reason
        where = f"{exc.filename}: " if exc.filename else ""
        print(
            f"ingress-audit: {args.command}: {where}{(exc.strerror or type(exc).__name__).lower()}",
            file=sys.stderr,
        )
        return 1
    except KeyboardInterrupt:
        return 130
    return code


def run() -> None:
    sys.exit(main())


def _serve(args: argparse.Namespace) -> int:
    from webhook.config import load_config, with_overrides
    from webhook.core.heap import return_large_blocks
    from webhook.log import configure_logging

    return_large_blocks()

    config = with_overrides(
        load_config(args.config),
        host=args.host,
        port=args.port,
        data_dir=args.data_dir,
        log_format=args.log_format,
        log_level=args.log_level,
    )
    configure_logging(config.log.level, config.log.format)
    return asyncio.run(_serve_until_signalled(config))


async def _serve_until_signalled(config: Config) -> int:
    import structlog

    from webhook.config import describe
    from webhook.core.heap import CycleCollector, tune_collector
    from webhook.server.app import start_server

    log = structlog.get_logger("webhook.cli")
    server = await start_server(config)
    # Start-up objects (modules, config, compiled rules) never die: keep the collector off them,
    # and collect young objects less often; measured 20 % less CPU per event (bench/RESULTS.md).
    # What that leaves in cycles is collected once a second (webhook/core/heap.py).
    tune_collector()
    collector = asyncio.create_task(CycleCollector().run(), name="gc")
    listening = [f"{host}:{port}" for host, port in server.addresses]
    log.info("server.started", version=__version__, listening=listening, **describe(config))
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


def _jsonl_path(args: argparse.Namespace, record_type: str = "audit") -> tuple[Path, Config]:
    """The file of the JSONL sink that takes ``record_type`` (``tail`` and ``report`` read it
    when given no path): ``records.jsonl``, or ``access.jsonl`` for access records by default."""
    from webhook.config import jsonl_sink_for, load_config, with_overrides

    config = with_overrides(load_config(args.config), data_dir=args.data_dir)
    path = jsonl_sink_for(config, record_type)
    if path is None:
        raise ConfigError(f"no jsonl sink takes {record_type} records: pass the path of a JSONL file")
    return path, config


def _tail(args: argparse.Namespace) -> int:
    from webhook.commands.tail import TailFilter, compile_filter, run

    path: Path | None = args.path
    if path is None:
        path, _ = _jsonl_path(args, "access" if args.access else "audit")
    keep = compile_filter(
        TailFilter(
            namespaces=tuple(args.namespace),
            resources=tuple(args.resource),
            users=tuple(args.user),
            verbs=tuple(args.verb),
            findings=tuple(args.finding),
            severity=args.severity,
            since=args.since,
        )
    )
    return run(path, count=args.lines, keep=keep, raw=args.json, follow_file=not args.no_follow)


def _report(args: argparse.Namespace) -> int:
    from webhook.review.report import run

    paths: list[Path] = args.paths
    if not paths:
        from webhook.config import jsonl_sink_for

        records, config = _jsonl_path(args)
        # The files of the audit records and of the alerts (edge alerts included); the report
        # has no section of access records, so access.jsonl is not read.
        alerts = jsonl_sink_for(config, "alert") or records
        paths = list(dict.fromkeys([records, alerts, config.in_data_dir(config.dead_letter.path)]))
    return run(
        paths,
        since=args.since,
        until=args.until,
        fmt=args.format,
        output=args.output,
        clusters=args.cluster,
        expiring_within=args.expiring_within,
        top=args.top,
    )


def _replay(args: argparse.Namespace) -> int:
    from webhook.commands.replay import replay
    from webhook.commands.replay_server import ClientCredentials, replay_to_server
    from webhook.config import load_config, with_overrides
    from webhook.log import configure_logging

    config = with_overrides(load_config(args.config), data_dir=args.data_dir)
    configure_logging(args.log_level, args.log_format or config.log.format)
    progress = sys.stderr.isatty()
    if not args.files and not args.access:
        print("ingress-audit replay: error: give audit log files, --access files, or both", file=sys.stderr)
        return 2
    if args.server and args.access:
        print(
            "ingress-audit replay: error: --access writes the data dir; it has no --server mode",
            file=sys.stderr,
        )
        return 2
    client_options = [args.token_file, args.ca_file, args.client_cert, args.client_key, args.tls_server_name]
    if not args.server and any(option is not None for option in client_options):
        print(
            "ingress-audit replay: error: --token-file, --ca-file, --client-cert, --client-key and "
            "--tls-server-name go with --server",
            file=sys.stderr,
        )
        return 2
    if args.client_key is not None and args.client_cert is None:
        print("ingress-audit replay: error: --client-key needs --client-cert", file=sys.stderr)
        return 2
    if args.server:
        credentials = ClientCredentials(
            ca_file=args.ca_file,
            client_cert=args.client_cert,
            client_key=args.client_key,
            token_file=args.token_file,
            server_name=args.tls_server_name,
        )
        summary = asyncio.run(
            replay_to_server(args.server, args.files, credentials=credentials, show_progress=progress)
        )
    else:
        summary = asyncio.run(replay(config, args.files, show_progress=progress, access_files=args.access))
    print(summary.line())
    return 0


def _check_config(args: argparse.Namespace) -> int:
    from webhook.config import check_listen, listen_warnings, load_config
    from webhook.server.app import authenticator_for, tls_files_for
    from webhook.server.tls import build_context

    config = load_config(args.file)
    check_listen(config)
    # What serve loads before it listens: the TLS files (readable, a matching pair, a CA that
    # parses) and the bearer token files (mode and strength).
    if (files := tls_files_for(config)) is not None:
        build_context(files)
    authenticator_for(config)
    for warning in listen_warnings(config):
        print(f"{args.file}: warning: {warning}", file=sys.stderr)
    print(f"{args.file}: ok")
    if not args.connect:
        return 0
    failed = asyncio.run(_connect_sinks(config))
    return 1 if failed else 0


async def _connect_sinks(config: Config) -> int:
    """Open each sink and run its health check, as delivery would; print one line per sink."""
    from webhook.sinks import sink_types

    types = sink_types()
    failed = 0
    for settings in config.sinks:
        sink = types[settings.type].build(settings, config.data_dir)
        try:
            async with asyncio.timeout(15):
                await sink.open()
                health = await sink.health()
        except TimeoutError:
            ok, detail = False, "timed out after 15 s"
        except WebhookError as exc:
            ok, detail = False, exc.message
        except OSError as exc:
            ok, detail = False, f"{type(exc).__name__}: {exc.strerror or 'unreachable'}"
        else:
            ok, detail = health.ok, health.detail
        finally:
            with contextlib.suppress(Exception):  # a sink that failed to open may not close cleanly
                await sink.aclose()
        failed += not ok
        outcome = "ok" if ok else "FAILED"
        print(f"sink {settings.name} ({settings.type}): {outcome}{': ' + detail if detail else ''}")
    if config.state.type == "redis":  # the local stores are created by serve, not probed here
        failed += not await _connect_state(config)
    return failed


async def _connect_state(config: Config) -> bool:
    from webhook.state import open_store

    store = open_store(config.state, data_dir=config.data_dir, cluster=config.cluster, dedupe_ttl_s=1.0)
    try:
        async with asyncio.timeout(15):
            await store.open()
            problem = await store.problem()
    except TimeoutError:
        problem = "timed out after 15 s"
    except WebhookError as exc:
        problem = exc.message
    finally:
        with contextlib.suppress(Exception):
            await store.aclose()
    print(f"state {config.state.type}: {'ok' if problem is None else 'FAILED: ' + problem}")
    return problem is None


def _render_policy(args: argparse.Namespace) -> int:
    from webhook.commands.render import audit_policy
    from webhook.config import load_config

    sys.stdout.write(audit_policy(load_config(args.config), args.profile))
    return 0


def _render_kubeconfig(args: argparse.Namespace) -> int:
    from webhook.commands.render import WebhookClient, read_ca_file, webhook_kubeconfig
    from webhook.config import load_config

    if args.ca_file is not None:
        try:
            read_ca_file(args.ca_file)
        except ConfigError as exc:  # a wrong argument: a usage error
            print(f"ingress-audit render: error: {exc.message}", file=sys.stderr)
            return 2
    client = WebhookClient(
        server=args.server,
        ca_file=args.ca_file,
        client_cert=args.client_cert,
        client_key=args.client_key,
        token_file=args.token_file,
        inline_token=args.inline_token,
    )
    sys.stdout.write(webhook_kubeconfig(load_config(args.config), client))
    return 0


def _render_flags(args: argparse.Namespace) -> int:
    from webhook.commands.render import apiserver_flags
    from webhook.config import load_config

    sys.stdout.write(apiserver_flags(args.mode, load_config(args.config)))
    return 0


def _scan_leaks(args: argparse.Namespace) -> int:
    from webhook.redact import leaks as leaks

    return leaks.main([str(args.secrets_file), *map(str, args.paths)])


def _schema(args: argparse.Namespace) -> int:
    import orjson

    from webhook.config import config_schema
    from webhook.record.audit import record_schema

    schema = record_schema() if args.which == "record" else config_schema()
    sys.stdout.write(orjson.dumps(schema, option=orjson.OPT_INDENT_2).decode() + "\n")
    return 0
