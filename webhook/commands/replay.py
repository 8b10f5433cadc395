"""``ingress-audit replay``: kube-apiserver log-backend files through the server's own ingest path
(webhook/sources/logfile.py reads them), or with ``--server`` to a running server
(webhook/commands/replay_server.py). An event gets the same record id as when the webhook
delivered it, so a backfill that overlaps live records adds nothing.

``--format`` reads the managed clouds' exports instead, with the live sources' decoders and
dead letters: ``cloudwatch`` (EKS: CloudWatch Logs exports, or what Firehose wrote to S3; every
event is ``--cluster``'s), ``gke`` (Cloud Logging exports, LogEntry JSON), ``aks`` (diagnostic
``PT1H.json`` blobs); a gke or aks entry is recorded under its own cluster, if the config's
``sources`` section lists it (or lists none).

Replaying twice adds nothing: before the first batch, the ids of the records already in the
JSONL sinks (rotated files included) are loaded into the dedupe window, which for a replay
neither expires nor evicts. That costs memory: about 200 bytes per record already written plus
one per record replayed (~200 MB for a million records), until a persisted dedupe store
replaces it.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import sys
from collections.abc import Collection, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Final

from webhook.commands import _args
from webhook.commands._audit_logs import ReplaySummary, progress_bar, take
from webhook.commands.replay_access import replay_access
from webhook.commands.replay_server import ClientCredentials, replay_to_server
from webhook.config import Config, load_config, with_overrides
from webhook.dedupe import DedupeConfig
from webhook.errors import UnreadableFileError
from webhook.log import configure_logging
from webhook.record.dead_letter import DeadLetter
from webhook.record.files import open_maybe_gzip, record_ids, with_backups
from webhook.record.line import ALERT
from webhook.record.time import now
from webhook.runtime import Runtime
from webhook.sources.aks import AllowedClusters, read_aks_blob_lines
from webhook.sources.cloud import CloudEvent, CloudReject
from webhook.sources.cloud_intake import ingest_items
from webhook.sources.cloudwatch import CloudWatchCounts, read_cloudwatch_export
from webhook.sources.logfile import BadLine, read_events
from webhook.sources.pubsub import read_gke_export

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

__all__ = ["FORMATS", "add_arguments", "existing_record_ids", "replay", "replay_clusters", "run"]

CHUNK: Final = 400
FORMATS: Final = ("audit-log", "cloudwatch", "gke", "aks")


DRAIN_TIMEOUT_S = 600.0


def _sink_files(config: Config) -> list[Path]:
    """JSONL sink files (rotated ones too) and the spool's segments (records not delivered yet)."""
    files = [p for p in sorted(config.in_data_dir(config.spool.path).glob("*.seg")) if p.is_file()]
    for sink in config.sinks:
        if sink.type == "jsonl":
            files.extend(with_backups(config.in_data_dir(sink.options.path)))
    return files


def existing_record_ids(config: Config) -> set[str]:
    """The ids of the records (not the alerts: they are not events, never replayed) in every
    JSONL sink file, rotated ones included."""
    return record_ids(_sink_files(config), skip={ALERT})


class _EveryCluster(Collection[str]):
    """A replay whose config lists no cluster for the source: each entry's own is recorded."""

    def __contains__(self, item: object) -> bool:
        return isinstance(item, str)

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


def replay_clusters(config: Config, input_format: str, cluster: str | None) -> Collection[str] | None:
    """The clusters a gke or aks replay records (None: each entry's own); ``--cluster`` narrows
    them to one. ValueError when the config's list does not have it."""
    listed: Collection[str] | None = None
    where = ""
    if input_format == "gke" and config.sources.pubsub is not None:
        listed, where = config.sources.pubsub.clusters, "sources.pubsub.clusters"
    elif input_format == "aks" and config.sources.aks is not None:
        listed, where = AllowedClusters.of(config.sources.aks.clusters or ()), "sources.aks.clusters"
        cluster = None if cluster is None else cluster.lower()  # Azure's names are matched without case
    if cluster is None:
        return listed
    if listed is not None and cluster not in listed:
        raise ValueError(f"--cluster {cluster} is not in {where}")
    return (cluster,)


async def _replay_file(
    runtime: Runtime,
    path: Path,
    summary: ReplaySummary,
    progress: tuple[Progress, TaskID] | None,
    chunk_size: int,
    cluster: str | None,
) -> None:
    position = [0]
    events = read_events(path, position)
    while chunk := await asyncio.to_thread(take, events, chunk_size):
        received_at = now()
        items = [e for e in chunk if not isinstance(e, BadLine)]
        letters = [
            DeadLetter(reason=e.reason, detail=e.detail, received_at=received_at, event=e.ref)
            for e in chunk
            if isinstance(e, BadLine)
        ]
        if letters:
            await runtime.writer.write_records((), letters)
        result = await runtime.ingestor.ingest(items, received_at=received_at, cluster=cluster)
        summary.events += len(chunk)
        summary.matched += result.matched
        summary.records += len(result.records)
        summary.duplicates += result.duplicates
        summary.dead_letters += len(letters) + len(result.dead_letters)
        _advance(progress, position)


def _advance(progress: tuple[Progress, TaskID] | None, position: list[int]) -> None:
    if progress is not None:
        bar, task = progress
        bar.update(task, completed=position[0])


def _lines(path: Path, position: list[int]) -> Iterator[bytes]:
    """Every line of a plain or gzip'd file (blank ones too: readers number the lines)."""
    raw, stream = open_maybe_gzip(path)
    with raw, stream:
        lineno = 0
        try:
            for line in stream:
                lineno += 1
                position[0] = raw.tell()
                yield line
        except (OSError, EOFError) as exc:
            where = f"{path}: after line {lineno}"
            raise UnreadableFileError(f"{where}: cannot read further ({type(exc).__name__})") from None


def _cloud_items(
    input_format: str,
    lines: Iterator[bytes],
    *,
    cluster: str | None,
    clusters: Collection[str] | None,
    counts: CloudWatchCounts,
) -> Iterator[CloudEvent | CloudReject]:
    if input_format == "cloudwatch":
        if cluster is None:  # run() requires it
            raise ValueError("replay --format cloudwatch needs --cluster")
        yield from read_cloudwatch_export(lines, cluster, counts=counts)
    elif input_format == "gke":
        yield from read_gke_export(lines, _EveryCluster() if clusters is None else clusters)
    else:
        for batch in read_aks_blob_lines(lines, clusters):
            counts.skipped_events += batch.skipped
            yield from batch.items


async def _replay_cloud_file(
    runtime: Runtime,
    path: Path,
    summary: ReplaySummary,
    progress: tuple[Progress, TaskID] | None,
    chunk_size: int,
    *,
    input_format: str,
    cluster: str | None,
    clusters: Collection[str] | None,
) -> None:
    """A cloud export through the live sources' path: the events under their cluster, a dead
    letter for each reject (naming the file and line, never quoting it)."""
    position = [0]
    counts = CloudWatchCounts()
    items = _cloud_items(
        input_format, _lines(path, position), cluster=cluster, clusters=clusters, counts=counts
    )
    where = {"input": "replay", "file": path.name}
    while chunk := await asyncio.to_thread(take, items, chunk_size):
        sums = await ingest_items(runtime.ingestor, runtime.writer, chunk, received_at=now(), where=where)
        summary.events += len(chunk)
        summary.matched += sums.matched
        summary.records += sums.records
        summary.duplicates += sums.duplicates
        summary.dead_letters += sums.dead_lettered
        _advance(progress, position)
    summary.skipped += counts.skipped_events + counts.control_messages


async def replay(
    config: Config,
    files: Sequence[Path],
    *,
    show_progress: bool = False,
    chunk_size: int = CHUNK,
    access_files: Sequence[Path] = (),
    input_format: str = "audit-log",
    cluster: str | None = None,
) -> ReplaySummary:
    """Feed ``files`` in order through the audit ingestor into the configured sinks, then the
    ``access_files`` through the access pipeline (which learns the ingresses from the first).

    ``input_format`` is one of ``FORMATS``; ``cluster`` records an audit log as that cluster,
    names a cloudwatch export's (required), or narrows a gke or aks replay to one cluster."""
    if input_format not in FORMATS:
        raise ValueError(f"unknown replay format {input_format}")
    if input_format == "cloudwatch" and cluster is None:
        raise ValueError("replay --format cloudwatch needs --cluster")
    clusters = replay_clusters(config, input_format, cluster)
    sizes = []
    for path in [*files, *access_files]:
        try:
            sizes.append(path.stat().st_size)
        except OSError as exc:
            raise UnreadableFileError(f"cannot read {path}: {exc.strerror}") from None
    # Everything already recorded must stay known for the whole replay: no expiry, no eviction.
    config = replace(config, dedupe=DedupeConfig(max_entries=sys.maxsize, ttl_s=math.inf))
    if access_files and not config.access.enabled:
        # The default sinks follow access.enabled: access records get their own file here too.
        config = replace(config, access=replace(config.access, enabled=True))
    summary = ReplaySummary(files=len(files))
    # Detection windows and access windows on the events' own time.
    runtime = await Runtime.open(config, replay=True, access=bool(access_files))
    try:
        known = await asyncio.to_thread(existing_record_ids, config)
        summary.already_recorded = len(known)
        runtime.deduper.remember(known)
        del known
        bar = progress_bar() if show_progress else None
        if bar is not None:
            bar.start()
        try:
            for path, size in zip(files, sizes[: len(files)], strict=True):
                task = bar.add_task(path.name, total=size) if bar is not None else None
                tracker = (bar, task) if bar is not None and task is not None else None
                if input_format == "audit-log":
                    await _replay_file(runtime, path, summary, tracker, chunk_size, cluster)
                else:
                    await _replay_cloud_file(
                        runtime,
                        path,
                        summary,
                        tracker,
                        chunk_size,
                        input_format=input_format,
                        cluster=cluster,
                        clusters=clusters,
                    )
        finally:
            if bar is not None:
                bar.stop()
        if runtime.access is not None:
            summary.access = await replay_access(runtime.access, access_files)
    finally:
        # What is not delivered by then stays in the spool and goes out with the next run.
        await runtime.aclose(drain_timeout_s=DRAIN_TIMEOUT_S)
    return summary


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", nargs="*", type=Path, metavar="FILE", help="audit log files")
    parser.add_argument(
        "--format",
        dest="input_format",
        choices=FORMATS,
        default="audit-log",
        help="what FILEs are: kube-apiserver log-backend files (audit-log, the default), CloudWatch "
        "Logs exports of an EKS cluster (cloudwatch), Cloud Logging exports of GKE (gke), AKS "
        "diagnostic PT1H.json blobs (aks); .gz too",
    )
    parser.add_argument(
        "--cluster",
        metavar="NAME",
        help="the cluster the events are recorded as: required with cloudwatch; with audit-log "
        "instead of the config's cluster; with gke or aks only that cluster's entries",
    )
    parser.add_argument(
        "--access",
        nargs="+",
        action="extend",
        type=Path,
        default=[],
        metavar="FILE",
        help="ingress controller access log files (access.format; .gz too), after the audit files",
    )
    _args.add_config(parser)
    _args.add_data_dir(parser)
    _args.add_logging(parser, level="warning")
    parser.add_argument(
        "--server",
        metavar="URL",
        type=_args.http_url,
        help="send the events to a running server's /audit (e.g. http://127.0.0.1:9440/audit) "
        "instead of writing the data dir, which a running server holds",
    )
    parser.add_argument("--token-file", type=Path, help="with --server: file with the bearer token to send")
    parser.add_argument("--ca-file", type=Path, help="with --server: CA bundle of the server's certificate")
    parser.add_argument(
        "--client-cert",
        type=Path,
        help="with --server: client certificate (PEM) to present",
    )
    parser.add_argument(
        "--client-key", type=Path, help="with --server: the client certificate's key, if not in --client-cert"
    )
    parser.add_argument(
        "--tls-server-name",
        metavar="NAME",
        help="with --server: check the server's certificate for NAME, not the URL's host (port-forwards)",
    )


def run(args: argparse.Namespace) -> int:
    config = with_overrides(load_config(args.config), data_dir=args.data_dir)
    configure_logging(args.log_level, args.log_format or config.log.format)
    progress = sys.stderr.isatty()
    if not args.files and not args.access:
        return _usage("give audit log files, --access files, or both")
    if args.server and args.access:
        return _usage("--access writes the data dir; it has no --server mode")
    if args.server and (args.input_format != "audit-log" or args.cluster is not None):
        return _usage("--format and --cluster write the data dir; they have no --server mode")
    if args.input_format == "cloudwatch" and not args.cluster:
        return _usage("--format cloudwatch needs --cluster (an export does not name its cluster)")
    if args.cluster is not None and not args.cluster.strip():
        return _usage("--cluster needs a name")
    try:
        replay_clusters(config, args.input_format, args.cluster)
    except ValueError as exc:
        return _usage(str(exc))
    client_options = [args.token_file, args.ca_file, args.client_cert, args.client_key, args.tls_server_name]
    if not args.server and any(option is not None for option in client_options):
        return _usage(
            "--token-file, --ca-file, --client-cert, --client-key and --tls-server-name go with --server"
        )
    if args.client_key is not None and args.client_cert is None:
        return _usage("--client-key needs --client-cert")
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
        summary = asyncio.run(
            replay(
                config,
                args.files,
                show_progress=progress,
                access_files=args.access,
                input_format=args.input_format,
                cluster=args.cluster,
            )
        )
    print(summary.line())
    return 0


def _usage(message: str) -> int:
    """Flags that do not go together: a usage error, as argparse would say it."""
    print(f"ingress-audit replay: error: {message}", file=sys.stderr)
    return 2
