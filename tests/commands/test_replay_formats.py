"""``ingress-audit replay --format cloudwatch|gke|aks``: the clouds' exports through the live
sources' decoders, the audit ingestor and the dead letters.

The exports are built from the captured scenario the way each cloud writes them. An event gets
the record the webhook path gives it (same id, same content but for when it arrived), so a
backfill that overlaps the live path, or a second replay, adds nothing.
"""

from __future__ import annotations

import gzip
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any, Final

import orjson
import pytest
import yaml

from tests.commands.test_replay import run_cli
from tests.conftest import (
    captured_bodies,
    dead_letters_in,
    make_config,
    read_jsonl,
    records_in,
    scenario_secrets,
)
from tests.sources.aks_records import aks_record, blob_lines, klog_record, scenario_events
from tests.sources.cloud_apps import (
    EKS_CLUSTER,
    GKE_CLUSTER,
    capture_lists,
    event_lists,
    sans_arrival,
    webhook_records,
)
from tests.sources.envelopes import cwl_message, gz, scenario_event_bytes
from tests.sources.gke_entries import final_events, log_entry, push_body
from webhook.commands.replay import replay
from webhook.config import Config
from webhook.redact.leaks import scan
from webhook.sources.cloud import CloudEvent
from webhook.sources.logfile import as_webhook_item
from webhook.sources.pubsub import decode_push, map_push
from webhook.sources.settings import PubsubSettings, SourcesConfig

SCRIPT: Final = Path(sys.executable).parent / "ingress-audit"
STAMP: Final = b"2026-11-24T14:20:40.457Z "
DENIED: Final = next(e for e in final_events("0028.json") if e["responseStatus"]["code"] == 403)


def cloudwatch_export(path: Path, events: list[bytes]) -> Path:
    """A CloudWatch Logs export object: ``<time> <message>`` a line, gzip'd; another stream's
    line and one cut at CloudWatch's limit among them."""
    lines = [STAMP + b"I1124 14:20:40.457 authenticator.go:99] access granted"]
    lines += [STAMP + event for event in events]
    lines.append(STAMP + events[0][:200] + b"[Truncated...]")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(b"\n".join(lines) + b"\n"))
    return path


def gke_entries() -> list[dict[str, Any]]:
    return [log_entry(native) for body in captured_bodies() for native in final_events(body.name)]


def gke_event(entry: dict[str, Any]) -> dict[str, Any]:
    item = map_push(decode_push(push_body(entry)), frozenset({GKE_CLUSTER}))
    assert isinstance(item, CloudEvent)
    return as_webhook_item(orjson.loads(item.event))


def _with_pubsub(config: Config, clusters: tuple[str, ...] = (GKE_CLUSTER,)) -> Config:
    pubsub = PubsubSettings(
        audience="https://a.example/pubsub", service_accounts=("p@x.example",), clusters=clusters
    )
    return replace(config, sources=SourcesConfig(pubsub=pubsub))


# --- cloudwatch ----------------------------------------------------------------------------------------


async def test_a_cloudwatch_export_is_recorded_as_the_webhook_records_it(tmp_path: Path) -> None:
    """A receiver configured as the cluster: the same record ids as that cluster's webhook."""
    config = replace(make_config(tmp_path), cluster=EKS_CLUSTER)
    expected = await webhook_records(tmp_path / "webhook", capture_lists(), key_for=config)
    export = cloudwatch_export(
        tmp_path / "export" / "t1" / "kube-apiserver-audit-1" / "000000.gz", scenario_event_bytes()
    )

    summary = await replay(config, [export], input_format="cloudwatch", cluster=EKS_CLUSTER)

    assert sans_arrival(records_in(config)) == sans_arrival(expected)
    assert summary.records == len(expected)
    assert summary.skipped == 1
    (letter,) = dead_letters_in(config)
    assert letter["reason"] == "event-truncated"
    assert letter["event"]["file"] == "000000.gz"
    assert letter["event"]["line"] == str(len(scenario_event_bytes()) + 2)
    assert letter["event"]["auditID"] == orjson.loads(scenario_event_bytes()[0])["auditID"]

    again = await replay(config, [export], input_format="cloudwatch", cluster=EKS_CLUSTER)
    assert again.records == 0
    assert len(records_in(config)) == len(expected)


async def test_what_firehose_wrote_to_s3_is_read_too(tmp_path: Path) -> None:
    """Subscription messages as gzip members back to back; another cluster's log group is
    dead-lettered, never recorded as --cluster."""
    config = make_config(tmp_path)
    events = scenario_event_bytes()
    members = [gz(cwl_message(events[i : i + 50])) for i in range(0, len(events), 50)]
    members.append(gz(cwl_message(events[:3], cluster="staging")))
    path = tmp_path / "firehose-s3-object"
    path.write_bytes(b"".join(members))

    await replay(config, [path], input_format="cloudwatch", cluster=EKS_CLUSTER)

    assert {r["cluster"] for r in records_in(config)} == {EKS_CLUSTER}
    assert [d["reason"] for d in dead_letters_in(config)] == ["cluster-not-allowed"] * 3


# --- gke -------------------------------------------------------------------------------------------------


async def test_a_gke_export_is_recorded_as_the_webhook_records_it(tmp_path: Path) -> None:
    """JSON lines of LogEntries, and one of a cluster the config does not list."""
    config = _with_pubsub(replace(make_config(tmp_path), cluster=GKE_CLUSTER))
    entries = gke_entries()
    expected = await webhook_records(
        tmp_path / "webhook",
        event_lists([gke_event(e) for e in entries]),
        key_for=config,
        cluster=GKE_CLUSTER,
    )
    stray = log_entry(final_events("0009.json")[0], project="other-project")
    path = tmp_path / "gke.json"
    path.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in [*entries, stray]))

    await replay(config, [path], input_format="gke")

    assert sans_arrival(records_in(config)) == sans_arrival(expected)
    (letter,) = dead_letters_in(config)
    assert letter["reason"] == "cluster-not-allowed"
    assert letter["event"]["claimed_cluster"] == "other-project/prod-eu"
    assert letter["event"]["line"] == str(len(entries) + 1)


async def test_without_a_pubsub_section_each_entry_keeps_its_cluster(tmp_path: Path) -> None:
    """gcloud's one JSON array; no clusters listed: every entry under its own project/cluster."""
    config = make_config(tmp_path)
    entries = [log_entry(e) for e in final_events("0009.json")]
    entries.append(log_entry(DENIED, project="p2", cluster="c2"))
    path = tmp_path / "gcloud.json"
    path.write_bytes(orjson.dumps(entries, option=orjson.OPT_INDENT_2))

    await replay(config, [path], input_format="gke")

    assert {r["cluster"] for r in records_in(config)} == {GKE_CLUSTER, "p2/c2"}
    assert dead_letters_in(config) == []


async def test_cluster_narrows_a_gke_replay_to_one(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    entries = [log_entry(e) for e in final_events("0009.json")]
    entries.append(log_entry(DENIED, project="p2", cluster="c2"))
    path = tmp_path / "gke.json"
    path.write_bytes(b"\n".join(orjson.dumps(e) for e in entries))

    await replay(config, [path], input_format="gke", cluster="p2/c2")

    assert {r["cluster"] for r in records_in(config)} == {"p2/c2"}
    assert {d["reason"] for d in dead_letters_in(config)} == {"cluster-not-allowed"}


# --- aks -------------------------------------------------------------------------------------------------


async def test_an_aks_blob_is_recorded_as_the_webhook_records_it(tmp_path: Path) -> None:
    """PT1H.json: one record a line, another category's among them (skipped)."""
    config = replace(make_config(tmp_path), cluster=EKS_CLUSTER)  # aks_record's cluster, prod-eu
    expected = await webhook_records(tmp_path / "webhook", capture_lists(), key_for=config)
    path = tmp_path / "PT1H.json"
    path.write_bytes(blob_lines([klog_record(), *(aks_record(e) for e in scenario_events())]))

    summary = await replay(config, [path], input_format="aks")

    assert sans_arrival(records_in(config)) == sans_arrival(expected)
    assert summary.skipped == 1
    assert dead_letters_in(config) == []


# --- the console script ------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["cloudwatch", "gke", "aks"])
def test_the_command_replays_each_format_once(tmp_path: Path, fmt: str) -> None:
    """Run as the console script: a summary line, records with no secret value, and a second
    run that adds nothing."""
    if fmt == "cloudwatch":
        source = cloudwatch_export(tmp_path / "in" / "000000.gz", scenario_event_bytes())
        args = ["--format", "cloudwatch", "--cluster", EKS_CLUSTER]
        sources: dict[str, Any] = {}
    elif fmt == "gke":
        source = tmp_path / "in.json"
        source.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in gke_entries()))
        args = ["--format", "gke"]
        sources = {
            "pubsub": {
                "audience": "https://a.example/pubsub",
                "service_accounts": ["p@x.example"],
                "clusters": [GKE_CLUSTER],
            }
        }
    else:
        source = tmp_path / "PT1H.json"
        source.write_bytes(gzip.compress(blob_lines(aks_record(e) for e in scenario_events())))
        args = ["--format", "aks"]
        sources = {}
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"data_dir": str(tmp_path / "data"), "sources": sources}))

    done = run_cli("--config", str(config), *args, str(source), cwd=tmp_path)
    again = run_cli("--config", str(config), *args, str(source), cwd=tmp_path)

    assert done.returncode == 0, done.stderr
    (line,) = done.stdout.splitlines()
    assert " records written, " in line
    records = [r for r in read_jsonl(tmp_path / "data" / "records.jsonl") if r["type"] == "audit"]
    assert len(records) > 30
    assert {r["cluster"] for r in records} == {GKE_CLUSTER if fmt == "gke" else EKS_CLUSTER}
    assert again.returncode == 0, again.stderr
    assert ", 0 records written, " in again.stdout
    assert [r for r in read_jsonl(tmp_path / "data" / "records.jsonl") if r["type"] == "audit"] == records
    said = tmp_path / "said"
    said.write_text(done.stdout + done.stderr + again.stdout + again.stderr)
    assert scan([tmp_path / "data", said], scenario_secrets()) == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--format", "cloudwatch"], "--format cloudwatch needs --cluster"),
        (["--format", "gke", "--server", "http://127.0.0.1:9/audit"], "no --server mode"),
        (["--cluster", "x", "--server", "http://127.0.0.1:9/audit"], "no --server mode"),
        (["--format", "gke", "--cluster", "other/cluster"], "not in sources.pubsub.clusters"),
        (["--format", "jsonl"], "invalid choice"),
    ],
)
def test_options_that_do_not_go_together_are_usage_errors(
    tmp_path: Path, args: list[str], message: str
) -> None:
    config = tmp_path / "config.yaml"
    pubsub = {
        "audience": "https://a.example/pubsub",
        "service_accounts": ["p@x.example"],
        "clusters": [GKE_CLUSTER],
    }
    config.write_text(yaml.safe_dump({"data_dir": str(tmp_path / "data"), "sources": {"pubsub": pubsub}}))
    (tmp_path / "in.json").write_text("")

    done = run_cli("--config", str(config), *args, "in.json", cwd=tmp_path)

    assert done.returncode == 2
    assert message in done.stderr
    assert not (tmp_path / "data").exists()


async def test_cluster_records_an_audit_log_as_that_cluster(tmp_path: Path) -> None:
    """A log-backend file from another cluster, backfilled into a shared store."""
    config = make_config(tmp_path)
    path = tmp_path / "audit.log"
    path.write_bytes(b"\n".join(scenario_event_bytes()) + b"\n")

    await replay(config, [path], cluster="prod-us")

    assert {r["cluster"] for r in records_in(config)} == {"prod-us"}
