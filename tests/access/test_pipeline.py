"""Access lines become window summaries, and records only for what the keep rules match."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import jsonschema
import orjson

from tests.access.access_lines import T0, nginx_line, pipeline
from webhook.access.pipeline import MAX_DEAD_LETTERS_PER_WINDOW
from webhook.access.settings import AccessConfig, AccessKeepConfig
from webhook.record.audit import record_schema
from webhook.record.line import to_json

VALIDATOR = jsonschema.Draft202012Validator(
    record_schema(), format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
)


def as_json(record: Any) -> dict[str, Any]:
    doc: dict[str, Any] = orjson.loads(to_json(record))
    VALIDATOR.validate(doc)
    return doc


def test_only_kept_requests_become_records_and_all_count() -> None:
    """Of 10 lines (six 200, three 401, one 502) only the 401s are records; the summary counts all."""
    p = pipeline()
    statuses = [200] * 6 + [401] * 3 + [502]
    lines = [nginx_line(t=T0 + i, status=s, req_id=f"{i:032x}") for i, s in enumerate(statuses)]

    batch = p.process(lines, input="http", received_at="2026-11-25T21:00:30Z", now=T0 + 30)
    summaries = p.flush(T0 + 60 + 30)

    assert batch.parsed == 10
    assert [r.request.status for r in batch.records] == [401, 401, 401]
    record = as_json(batch.records[0])
    assert record["type"] == "access"
    assert record["ingress"] == {
        "namespace": "shop",
        "name": "web",
        "ingress_class": "nginx",
        "tls": True,
        "tls_secret": "shop-tls",
    }
    assert record["client"] == {"ip": "203.0.113.7", "trust": "untrusted", "peer": None}
    assert record["kept_because"] == ["status"]
    host, clients = (as_json(s) for s in summaries)
    assert (host["scope"], host["host"], host["requests"]) == ("host", "shop.example.com", 10)
    assert host["statuses"] == {"2xx": 6, "4xx": 3, "5xx": 1}
    assert host["auth_failures"] == 3
    assert host["window_start"] == "2026-11-25T21:00:00.000000Z"
    assert host["latency"]["p50_ms"] >= 12.0
    assert clients["clients"] == [
        {"ip": "203.0.113.7", "trust": "untrusted", "requests": 10, "auth_failures": 3}
    ]


def test_no_record_or_dead_letter_carries_the_query_or_referer_path() -> None:
    """Tokens in query strings and referers stay out of records and dead letters."""
    p = pipeline(AccessConfig(enabled=True, keep_all=True))
    bad = b"garbage ?token=s3cr3t not a log line"

    batch = p.process([nginx_line(), bad], input="http", received_at="x", now=T0)

    out = b"".join(to_json(r) for r in batch.records) + orjson.dumps(batch.dead_letters)
    assert b"s3cr3t" not in out
    assert b"page=2" not in out
    assert b"/p?x" not in out
    assert batch.records[0].request.referer_host == "ref.example"
    assert batch.dead_letters[0].reason == "access-bad-format"


def test_ids_are_stable_per_line() -> None:
    """The same line twice (a resent batch) gets the same id; another line another id."""
    first = pipeline().process([nginx_line(status=403)], input="http", received_at="a", now=T0)
    again = pipeline().process([nginx_line(status=403)], input="syslog-udp", received_at="b", now=T0)
    other = pipeline().process(
        [nginx_line(status=403, req_id="1" * 32)], input="http", received_at="a", now=T0
    )

    assert first.records[0].id == again.records[0].id != other.records[0].id


def test_summary_ids_are_stable_per_replica_and_distinct_across_replicas() -> None:
    """Each replica summarizes its own share: ids never collide in sinks that keep one per id."""

    def summary_ids(replica: str) -> list[str]:
        p = pipeline(replica=replica)
        p.process([nginx_line(status=502)], input="syslog-udp", received_at="a", now=T0)
        summaries = p.flush(T0 + 90)
        assert {s.replica for s in summaries} == {replica}
        return [s.id for s in summaries]

    first, again, other = summary_ids("pod-0"), summary_ids("pod-0"), summary_ids("pod-1")

    assert first == again
    assert not set(first) & set(other)


def test_untrusted_clients_to_sensitive_paths_are_kept() -> None:
    """An untrusted client on /admin is kept; a trusted one, or another path, is not."""
    config = AccessConfig(enabled=True, keep=AccessKeepConfig(statuses=(), sensitive_paths=("/admin*",)))
    p = pipeline(config)
    lines = [
        nginx_line(request="GET /admin/users HTTP/1.1", addr="198.51.100.1"),
        nginx_line(request="GET /admin/users HTTP/1.1", addr="10.1.2.3"),
        nginx_line(request="GET /shop HTTP/1.1", addr="198.51.100.1"),
    ]

    batch = p.process(lines, input="http", received_at="x", now=T0)

    assert [(r.client.ip, r.kept_because) for r in batch.records] == [("198.51.100.1", ("sensitive",))]


def test_forwarded_for_is_believed_only_from_trusted_proxies() -> None:
    """Through a trusted proxy the client is the right-most untrusted X-Forwarded-For hop."""
    config = AccessConfig(enabled=True, trusted_proxies=("192.0.2.0/24",))
    classifier = pipeline(config).classifier

    assert classifier.client_ip("192.0.2.10", "6.6.6.6, 198.51.100.9, 192.0.2.11") == "198.51.100.9"
    assert classifier.client_ip("203.0.113.5", "10.0.0.1") == "203.0.113.5"  # not a proxy: ignored
    assert classifier.client_ip("192.0.2.10", None) == "192.0.2.10"


def test_dead_letters_are_capped_per_window() -> None:
    """A flood of bad lines dead-letters at most the cap per window; the rest are counted."""
    p = pipeline()
    lines = [b"bad line"] * (MAX_DEAD_LETTERS_PER_WINDOW + 50)

    batch = p.process(lines, input="syslog-udp", received_at="x", now=T0)

    assert len(batch.dead_letters) == MAX_DEAD_LETTERS_PER_WINDOW
    assert batch.suppressed == 50
    assert batch.dead_letters[0].event == {"input": "syslog-udp", "bytes": 8}


def test_lines_without_an_ingress_count_per_upstream() -> None:
    """A line whose upstream no known ingress names is summarized under that upstream."""
    p = pipeline()
    p.process([nginx_line(upstream="[other-api-8080]")], input="http", received_at="x", now=T0)

    host = next(s for s in p.flush(T0 + 100) if s.scope == "host")

    assert (host.host, host.upstream, host.ingress) == (None, "other-api-8080", None)


def test_future_times_are_clamped_and_late_lines_counted() -> None:
    """A line from the future counts now; one for a closed window is late, not a new window."""
    p = pipeline(replace(AccessConfig(enabled=True), window_s=60))
    p.process([nginx_line(t=T0 + 3600)], input="http", received_at="x", now=T0 + 5)
    first = p.flush(T0 + 70)
    p.process([nginx_line(t=T0 + 1)], input="http", received_at="x", now=T0 + 71)
    second = p.flush(T0 + 200)

    assert [s.window_start for s in first if s.scope == "clients"] == ["2026-11-25T21:00:00.000000Z"]
    late = [s for s in second if s.scope == "clients"]
    assert [(s.window_start, s.late) for s in late] == [("2026-11-25T21:01:00.000000Z", 1)]
