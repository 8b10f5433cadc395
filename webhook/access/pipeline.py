"""Access lines through parse → client → ingress → aggregate → keep rules → records.

Synchronous and free of I/O, like the audit pipeline: the caller (webhook/access/service.py)
writes what ``process`` and ``flush`` return. Every line is counted in its window; only lines
the keep rules match (or every line with ``keep_all``) become ``access`` records. A line that
does not parse becomes a dead letter naming the input and the parser's reason, never its
content (query strings and referers can hold tokens); past ``MAX_DEAD_LETTERS_PER_WINDOW`` a
window's bad lines are only counted, so a misconfigured format cannot flood the dead-letter
file and rotate the audit dead letters away.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import urlsplit

import orjson

from webhook.access.aggregate import Aggregator, ClosedWindow
from webhook.access.clients import ClientClassifier, status_class
from webhook.access.entry import AccessEntry, AccessParseError
from webhook.access.hosts import HostIndex, Served
from webhook.access.request_metrics import (
    FORBIDDEN,
    LATENCY_SUM,
    SLOTS,
    UNAUTHORIZED,
    latency_slot,
)
from webhook.access.settings import AccessConfig
from webhook.core.patterns import Matcher
from webhook.record.access import (
    AccessRecord,
    AccessRequest,
    AccessSummary,
    AccessUpstream,
    ClientCount,
    Latency,
    access_record_id,
    summary_id,
)
from webhook.record.dead_letter import DeadLetter
from webhook.record.time import format_time, now

__all__ = ["MAX_DEAD_LETTERS_PER_WINDOW", "AccessBatch", "AccessPipeline", "Line"]

Line = bytes | str | Mapping[str, Any]
Parser = Callable[[Line], AccessEntry]

MAX_DEAD_LETTERS_PER_WINDOW: Final = 100
_NO_HOST: Final = "-"
_UNKNOWN_UPSTREAM: Final = "upstream-default-backend"


@dataclass(slots=True)
class AccessBatch:
    """What one call produced: records to write, dead letters, and windows it closed."""

    lines: int = 0
    parsed: int = 0
    records: list[AccessRecord] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    suppressed: int = 0  # bad lines past the per-window dead-letter cap
    summaries: list[AccessSummary] = field(default_factory=list)


class AccessPipeline:
    def __init__(
        self,
        config: AccessConfig,
        *,
        cluster: str,
        parser: Parser,
        index: HostIndex,
        trusted_cidrs: Sequence[str] = (),
        replica: str | None = None,
    ) -> None:
        self.config = config
        self.cluster = cluster
        self.replica = replica
        self.parse = parser
        self.index = index
        self.classifier = ClientClassifier(config.trusted_cidrs or trusted_cidrs, config.trusted_proxies)
        self.aggregator = Aggregator(
            window_s=config.window_s, max_clients=config.max_clients, max_hosts=config.max_hosts
        )
        keep = config.keep
        self._statuses = frozenset(keep.statuses)
        self._sensitive_host = Matcher(keep.sensitive_hosts) if keep.sensitive_hosts else None
        self._sensitive_path = Matcher(keep.sensitive_paths) if keep.sensitive_paths else None
        self._dead_letters_left = MAX_DEAD_LETTERS_PER_WINDOW
        # Requests per ingress rule by status class, 401/403 and latency, for the metrics
        # (take_request_counts; the slots are webhook/access/request_metrics.py's).
        self._counts: dict[Served | None, list[float]] = {}
        self._labels: dict[Served, str] = {}  # -> "namespace/name" or "other"
        self._named = 0
        self.latest = 0.0  # the newest request time seen (replay's clock)

    def process(
        self,
        lines: Sequence[Line],
        *,
        input: str,
        received_at: str,
        now: float | None,
        where: str = "",
        parser: Parser | None = None,
    ) -> AccessBatch:
        """Parse, count and keep; ``now`` (epoch seconds) bounds the request times.

        ``now=None`` (replay): request times are taken as they are, and a line without one
        counts at the newest time seen."""
        batch = AccessBatch(lines=len(lines))
        parse = parser or self.parse
        # The per-line path is inlined, with everything it needs in locals: 100k lines/s per
        # core is the budget, and the parser takes most of it.
        classifier = self.classifier
        client_ip = classifier.client_ip if classifier.has_proxies else None
        lookup = self.index.lookup
        add = self.aggregator.add
        counts = self._counts
        statuses = self._statuses
        keep_all = self.config.keep_all
        sensitive = self._sensitive_host is not None or self._sensitive_path is not None
        latest = self.latest
        records = batch.records
        for index, line in enumerate(lines):
            try:
                entry = parse(line)
            except AccessParseError as exc:
                self._dead_letter(batch, exc, input, received_at, where, index, line)
                continue
            when = entry.time
            if when is not None:
                t = when.timestamp()
                if now is not None and t > now:
                    t = now  # a clock ahead of ours must not open future windows
            else:
                t = latest if now is None else now
            if t > latest:
                latest = t
            client = entry.client_ip if client_ip is None else client_ip(entry.client_ip, entry.forwarded_for)
            host = entry.host
            served = lookup(host, entry.path, entry.upstream_name)
            status = entry.status
            add(
                t,
                served if served is not None else (host or _upstream_key(entry.upstream_name)),
                client,
                status,
                entry.request_time_s,
                entry.bytes_sent,
            )
            by_class = counts.get(served)
            if by_class is None:
                by_class = counts[served] = [0.0] * SLOTS
            code = status // 100 - 1
            by_class[code if 0 <= code < 5 else 5] += 1
            if status == 401:
                by_class[UNAUTHORIZED] += 1
            elif status == 403:
                by_class[FORBIDDEN] += 1
            seconds = entry.request_time_s
            if seconds is not None:
                by_class[latency_slot(seconds)] += 1
                by_class[LATENCY_SUM] += seconds
            if keep_all:
                records.append(self._record(entry, ("all",), served, line, input, received_at))
            elif status in statuses or sensitive:
                reasons: tuple[str, ...] = ("status",) if status in statuses else ()
                if sensitive and self._sensitive(entry) and classifier.trust(client) != "trusted":
                    reasons = (*reasons, "sensitive")
                if reasons:
                    records.append(self._record(entry, reasons, served, line, input, received_at))
        self.latest = latest
        batch.parsed = batch.lines - len(batch.dead_letters) - batch.suppressed
        return batch

    def take_request_counts(self) -> dict[str, list[float]]:
        """The slots of each ingress label since the last call, for the metrics."""
        counts, self._counts = self._counts, {}
        taken: dict[str, list[float]] = {}
        for served, slots in counts.items():
            label = self._label(served)
            merged = taken.get(label)
            if merged is None:
                taken[label] = slots
            else:
                for index, n in enumerate(slots):
                    merged[index] += n
        return taken

    def _sensitive(self, entry: AccessEntry) -> bool:
        host_match, path_match = self._sensitive_host, self._sensitive_path
        return bool(
            (host_match is not None and entry.host and host_match(entry.host))
            or (path_match is not None and entry.path and path_match(entry.path))
        )

    def _label(self, served: Served | None) -> str:
        if served is None:
            return "none"
        label = self._labels.get(served)
        if label is None:
            # The first max_metric_ingresses ingresses seen keep their name for the process's life.
            ingress = served.ingress
            label = f"{ingress.namespace}/{ingress.name}"
            if label not in self._labels.values():
                if self._named >= self.config.max_metric_ingresses:
                    label = "other"
                else:
                    self._named += 1
            if len(self._labels) < 10_000:
                self._labels[served] = label
        return label

    def _record(
        self,
        entry: AccessEntry,
        reasons: tuple[str, ...],
        served: Served | None,
        line: Line,
        input: str,
        received_at: str,
    ) -> AccessRecord:
        raw = (
            line if isinstance(line, bytes) else line.encode() if isinstance(line, str) else _canonical(line)
        )
        client = self.classifier.client(entry)
        return AccessRecord(
            id=access_record_id(self.cluster, raw.rstrip(b"\r\n")),
            cluster=self.cluster,
            time=format_time(entry.time) if entry.time is not None else None,
            received_at=received_at,
            input=input,
            format=entry.format,
            client=client,
            request=AccessRequest(
                method=entry.method,
                host=entry.host,
                path=entry.path,
                protocol=entry.protocol,
                status=entry.status,
                status_class=status_class(entry.status),
                bytes_sent=entry.bytes_sent,
                request_time_s=entry.request_time_s,
                user_agent=entry.user_agent[:512] if entry.user_agent else None,
                referer_host=_host_of(entry.referer),
                remote_user=entry.remote_user,
                request_id=entry.request_id,
            ),
            upstream=AccessUpstream(
                name=entry.upstream_name,
                addresses=entry.upstream_addrs,
                statuses=entry.upstream_statuses,
                times_s=entry.upstream_times_s,
            )
            if entry.upstream_name or entry.upstream_addrs
            else None,
            ingress=served.ingress if served is not None else None,
            kept_because=reasons,
        )

    def _dead_letter(
        self,
        batch: AccessBatch,
        exc: AccessParseError,
        input: str,
        received_at: str,
        where: str,
        index: int,
        line: Line,
    ) -> None:
        if self._dead_letters_left <= 0:
            batch.suppressed += 1
            return
        self._dead_letters_left -= 1
        size = len(line) if isinstance(line, bytes | str) else None
        batch.dead_letters.append(
            DeadLetter(
                reason=f"access-{exc.reason}",
                detail=f"{input}{' ' + where if where else ''}: {exc.message}",
                received_at=received_at,
                index=index,
                event={"input": input, "bytes": size} if size is not None else {"input": input},
            )
        )

    def flush(self, now: float, *, everything: bool = False) -> list[AccessSummary]:
        """Summaries of the windows that closed by ``now`` (all open ones with ``everything``)."""
        closed = self.aggregator.flush(now, everything=everything)
        if closed:
            self._dead_letters_left = MAX_DEAD_LETTERS_PER_WINDOW
        return [summary for window in closed for summary in self._summaries(window)]

    def _summaries(self, window: ClosedWindow) -> list[AccessSummary]:
        start, end = format_time(window.start), format_time(window.end)
        made = now()
        summaries = []
        total = 0
        for key, stats in window.hosts.items():
            total += stats.requests
            host: str | None
            upstream = None
            if isinstance(key, Served):
                host = key.host or "*"
                ingress = key.ingress
                id_key = f"{host}|{ingress.namespace}/{ingress.name}"
            else:
                host, ingress, id_key = str(key), None, str(key)
                if id_key.startswith("@"):
                    host, upstream = None, id_key[1:]
            c = stats.classes
            summaries.append(
                AccessSummary(
                    id=summary_id(self.cluster, start, "host", id_key, self.replica),
                    cluster=self.cluster,
                    replica=self.replica,
                    time=end,
                    received_at=made,
                    window_start=start,
                    window_end=end,
                    scope="host",
                    host=host,
                    upstream=upstream,
                    ingress=ingress,
                    requests=stats.requests,
                    statuses={
                        name: n
                        for name, n in zip(("1xx", "2xx", "3xx", "4xx", "5xx", "other"), c, strict=True)
                        if n
                    },
                    auth_failures=stats.auth_failures,
                    bytes_sent=stats.bytes_sent,
                    latency=Latency(
                        p50_ms=round(stats.percentile(0.5) * 1000, 3),
                        p90_ms=round(stats.percentile(0.9) * 1000, 3),
                        p99_ms=round(stats.percentile(0.99) * 1000, 3),
                        max_ms=round(stats.max_latency_s * 1000, 3),
                    )
                    if stats.timed
                    else None,
                )
            )
        summaries.append(self._clients(window, start, end, total, made))
        return summaries

    def _clients(self, window: ClosedWindow, start: str, end: str, total: int, made: str) -> AccessSummary:
        auth = dict(window.auth)
        requests = dict(window.clients)
        ips = list(requests) + [ip for ip in auth if ip not in requests]
        trust = self.classifier.trust
        clients = tuple(
            ClientCount(ip=ip, trust=trust(ip), requests=requests.get(ip, 0), auth_failures=auth.get(ip, 0))
            for ip in ips
        )
        return AccessSummary(
            id=summary_id(self.cluster, start, "clients", "", self.replica),
            cluster=self.cluster,
            replica=self.replica,
            time=end,
            received_at=made,
            window_start=start,
            window_end=end,
            scope="clients",
            requests=total,
            statuses={},
            auth_failures=sum(s.auth_failures for s in window.hosts.values()),
            clients=clients,
            error_bound=window.client_error_bound,
            auth_error_bound=window.auth_error_bound,
            late=window.late,
        )


def _upstream_key(upstream: str | None) -> str:
    """Lines without a host count per ingress-nginx upstream (``@ns-service-port``)."""
    return "@" + upstream if upstream else _NO_HOST


def _canonical(line: Mapping[str, Any]) -> bytes:
    try:
        return orjson.dumps(line, option=orjson.OPT_SORT_KEYS)
    except TypeError:
        return repr(sorted(line.items(), key=lambda kv: str(kv[0]))).encode()


def _host_of(referer: str | None) -> str | None:
    if not referer:
        return None
    try:
        return urlsplit(referer).hostname
    except ValueError:
        return None
