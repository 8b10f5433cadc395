"""``serve`` with ``sources.aks``: the real process follows a container of a real Azurite.

The blobs hold every captured event, as a diagnostic setting writes them (hourly append blobs
named by the upper-cased resource id). What ``serve`` records is compared with what the same
events make when posted to ``/audit``: the same record ids, under the cluster's name in lower
case. The credential is a container SAS in a file, as docs/managed.md sets it up.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import urllib.parse
import urllib.request
import uuid
from pathlib import Path
from typing import Any, Final

import aiohttp
import orjson
import pytest
import yaml
from azure.storage.blob.aio import ContainerClient
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import (
    captured_bodies,
    make_event,
    post_capture,
    read_jsonl,
    records_in,
    scenario_secrets,
    settle,
)
from tests.servers import Serve, free_port, wait_drained, wait_until
from tests.sources.aks_records import aks_record, big_event, blob_lines, blob_name, cut_log, scenario_events
from tests.sources.azurite import KEY, Azurite, append, container_sas, key_file
from webhook.config import parse_config
from webhook.redact.leaks import scan
from webhook.server.app import create_app

CLUSTER: Final = "prod-aks-eu"  # as Azure writes it: PROD-AKS-EU
OTHER: Final = "other-aks"
HOUR_A: Final = "2026-11-24T14"
HOUR_B: Final = "2026-11-24T15"
EVENTS: Final = scenario_events()
WAIT_S: Final = 60.0
CLI: Final = str(Path(sys.executable).parent / "ingress-audit")


def sas_file(directory: Path, container: ContainerClient) -> tuple[Path, str]:
    """A container SAS with read and list, in a file only its owner can read."""
    token = container_sas(container.container_name)
    path = directory / "sas-token"
    path.write_text("?" + token + "\n")
    path.chmod(0o600)
    return path, token


def write_config(directory: Path, port: int, aks: dict[str, Any], **more: Any) -> Path:
    raw = {
        # The receiver is configured as the cluster, so its records get the ids /audit gives it
        # (another cluster's record ids carry that cluster's name).
        "cluster": CLUSTER,
        "data_dir": str(directory / "data"),
        "server": {"host": "127.0.0.1", "port": port},
        "log": {"level": "debug"},  # every line the follower can write, for the secret checks
        "sources": {"aks": aks},
        **more,
    }
    path = directory / "config.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def aks_section(azurite: Azurite, container: ContainerClient, token: Path, **more: Any) -> dict[str, Any]:
    return {
        "account_url": azurite.url,
        "sas_token_file": str(token),
        "container": container.container_name,
        "poll_interval_s": 0.2,
        "clusters": ["Prod-AKS-EU"],  # matched without case
        **more,
    }


def metric(port: int, name: str, **labels: str) -> float:
    """One sample of the running serve's /metrics (0 when absent)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return 0.0


def wait_metric(port: int, name: str, at_least: float, **labels: str) -> None:
    wait_until(lambda: metric(port, name, **labels) >= at_least, WAIT_S, f"{name} {labels} >= {at_least}")


def audit_records(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in records if r["type"] == "audit"]


async def webhook_records(aiohttp_client: Any, directory: Path) -> list[dict[str, Any]]:
    """What the captures make when the apiserver posts them to /audit, for cluster CLUSTER."""
    config = parse_config({"cluster": CLUSTER, "data_dir": str(directory / "data")})
    client = await aiohttp_client(create_app(config))
    for body in captured_bodies():
        status, _ = await post_capture(client, body)
        assert status == 200
    await settle(client)
    return audit_records(records_in(config))


async def test_serve_records_each_event_of_the_container_once(
    aiohttp_client: Any, azurite: Azurite, container: ContainerClient, tmp_path: Path
) -> None:
    """Every event of the listed cluster's blobs becomes the record /audit would have made, once:
    lines appended later are read alone, a restart reads nothing again, a cut event is a dead
    letter, another cluster's blobs are not read; no secret and no credential is written."""
    expected = await webhook_records(aiohttp_client, tmp_path / "webhook")
    run = tmp_path / "aks"
    (run / "data").mkdir(mode=0o700, parents=True)
    # The same fingerprint key: secrets' fingerprints, and so whole records, can be compared.
    shutil.copy2(tmp_path / "webhook" / "data" / "fingerprint.key", run / "data" / "fingerprint.key")
    token_file, token = sas_file(run, container)
    cut = big_event()
    first, later = EVENTS[:1000], EVENTS[1000:]
    await append(
        container, blob_name(CLUSTER, HOUR_A), blob_lines(aks_record(e, cluster=CLUSTER) for e in first[:600])
    )
    records_b = [aks_record(e, cluster=CLUSTER) for e in first[600:]] + [
        aks_record(cut_log(cut), cluster=CLUSTER)
    ]
    await append(container, blob_name(CLUSTER, HOUR_B), blob_lines(records_b))
    # Events of their own, kept by the filter: read, they would be records.
    others = [make_event(audit_id=str(uuid.UUID(int=i)), name=f"other-{i}") for i in range(50)]
    await append(
        container, blob_name(OTHER, HOUR_A), blob_lines(aks_record(e, cluster=OTHER) for e in others)
    )
    port = free_port()
    serve = Serve(write_config(run, port, aks_section(azurite, container, token_file)), port)

    serve.start()
    try:
        wait_metric(port, "ingress_audit_aks_events_total", len(first), cluster=CLUSTER)
        wait_metric(port, "ingress_audit_aks_rejects_total", 1, reason="event-truncated")
        await append(
            container, blob_name(CLUSTER, HOUR_B), blob_lines(aks_record(e, cluster=CLUSTER) for e in later)
        )
        wait_metric(port, "ingress_audit_aks_events_total", len(EVENTS), cluster=CLUSTER)
        async with aiohttp.ClientSession() as session:
            await wait_drained(session, serve.url, WAIT_S)
        polls = metric(port, "ingress_audit_aks_polls_total")
        wait_metric(port, "ingress_audit_aks_polls_total", polls + 2)  # nothing more to read
        assert metric(port, "ingress_audit_aks_events_total", cluster=CLUSTER) == len(EVENTS)
        assert metric(port, "ingress_audit_aks_blobs_read_total") >= 3  # A, B, B again
        assert metric(port, "ingress_audit_aks_polls_failed_total", reason="handler") == 0
        assert metric(port, "ingress_audit_aks_events_total", cluster=OTHER) == 0
    finally:
        serve.stop()
    assert serve.proc is not None
    assert serve.proc.returncode == 0

    serve.start()  # the same data dir: the state file says where each blob was left
    try:
        wait_metric(port, "ingress_audit_aks_polls_total", 3)
        read_again = metric(port, "ingress_audit_aks_read_bytes_total")
        events_again = metric(port, "ingress_audit_aks_events_total", cluster=CLUSTER)
    finally:
        serve.stop()
    assert (read_again, events_again) == (0, 0)

    records = read_jsonl(run / "data" / "records.jsonl")
    recorded = audit_records(records)
    assert [r["id"] for r in recorded] == [r["id"] for r in expected]
    assert {r["cluster"] for r in recorded} == {CLUSTER}
    assert [_without(r, "received_at") for r in recorded] == [_without(r, "received_at") for r in expected]

    (letter,) = read_jsonl(run / "data" / "dead-letter.jsonl")
    assert letter["reason"] == "event-truncated"
    assert "16 KiB" in letter["detail"]
    assert letter["event"]["cluster"] == CLUSTER
    assert letter["event"]["auditID"] == cut["auditID"]
    assert letter["event"]["blob"] == blob_name(CLUSTER, HOUR_B)
    assert int(letter["event"]["offset"]) == len(blob_lines(records_b[:-1]))

    output = serve.log.read_bytes()
    assert b'"event":"aks_storage.started"' in output
    assert b'"not_allowed_blobs":1' in output
    assert not scan([run / "data", serve.log], scenario_secrets())
    assert not scan([run / "data", serve.log], [token, _signature(token), KEY])


def _without(record: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k != key}


def _signature(token: str) -> str:
    (sig,) = [part.split("=", 1)[1] for part in token.split("&") if part.startswith("sig=")]
    return urllib.parse.unquote(sig)


async def test_lines_the_pipeline_cannot_keep_are_read_again(
    azurite: Azurite, container: ContainerClient, tmp_path: Path
) -> None:
    """A full spool fails the handler: the offset stays, the lines come again, and once there
    is room (a restart with a larger spool) every event is recorded, once."""
    events = [make_event(audit_id=str(uuid.UUID(int=i)), name=f"web-{i}", verb="update") for i in range(3000)]
    name = blob_name(CLUSTER, HOUR_A)
    await append(container, name, blob_lines(aks_record(e, cluster=CLUSTER) for e in events))
    token_file, _ = sas_file(tmp_path, container)
    port = free_port()
    nowhere = {"type": "http", "name": "nowhere", "url": f"http://127.0.0.1:{free_port()}/"}
    aks = aks_section(azurite, container, token_file)

    small = {"max_bytes": 1024 * 1024, "segment_bytes": 64 * 1024}
    serve = Serve(write_config(tmp_path, port, aks, spool=small, sinks=[nowhere]), port)
    serve.start()
    try:
        wait_metric(port, "ingress_audit_aks_polls_failed_total", 2, reason="handler")
        assert metric(port, "ingress_audit_aks_events_total", cluster=CLUSTER) == 0
    finally:
        serve.stop()
    state = tmp_path / "data" / "aks-storage-state.json"
    assert not state.exists() or orjson.loads(state.read_bytes())["blobs"][name]["offset"] == 0
    assert b'"code":"spool-full"' in serve.log.read_bytes()

    config = write_config(tmp_path, port, aks, sinks=[nowhere, {"type": "jsonl"}])
    serve = Serve(config, port)
    serve.start()
    try:
        wait_metric(port, "ingress_audit_aks_events_total", len(events), cluster=CLUSTER)
        wait_until(lambda: len(_audit_ids(tmp_path)) >= len(events), WAIT_S, "the records")
    finally:
        serve.stop()
    ids = _audit_ids(tmp_path)
    assert sorted(ids) == sorted(e["auditID"] for e in events)
    assert orjson.loads(state.read_bytes())["blobs"][name]["offset"] == len(
        blob_lines(aks_record(e, cluster=CLUSTER) for e in events)
    )


def _audit_ids(directory: Path) -> list[str]:
    return [r["audit_id"] for r in audit_records(read_jsonl(directory / "data" / "records.jsonl"))]


# -- check-config ------------------------------------------------------------------------------


def check_config(config: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    argv = [CLI, "check-config", str(config), *flags]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)


async def test_check_config_says_what_it_will_follow(
    azurite: Azurite, container: ContainerClient, tmp_path: Path
) -> None:
    """It names the container, the account, the credential's file and the clusters, never the
    credential; with --connect it lists the container, and says when there is none yet."""
    token_file, token = sas_file(tmp_path, container)
    config = write_config(tmp_path, free_port(), aks_section(azurite, container, token_file))

    checked = check_config(config)
    written = (tmp_path / "data").exists()  # the state file is only read (--connect opens the sinks)
    connected = check_config(config, "--connect")
    # The account key reaches any container (a container SAS would be refused elsewhere).
    elsewhere = {**aks_section(azurite, container, token_file), "container": "insights-logs-none"}
    del elsewhere["sas_token_file"]
    missing = write_config(tmp_path, free_port(), {**elsewhere, "account_key_file": str(key_file(tmp_path))})
    not_yet = check_config(missing, "--connect")

    assert checked.returncode == 0, checked.stderr
    assert not written
    assert (
        f"sources.aks: follows container {container.container_name} of {azurite.url} "
        f"with sas_token_file {token_file}, every 0.2 s, for clusters Prod-AKS-EU"
    ) in checked.stdout
    assert connected.returncode == 0, connected.stderr
    assert "source aks: ok" in connected.stdout
    assert not_yet.returncode == 1
    assert "source aks: FAILED: container insights-logs-none not found" in not_yet.stdout
    for done in (checked, connected, not_yet):
        assert token not in done.stdout + done.stderr
        assert _signature(token) not in done.stdout + done.stderr


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"clusters": []}, "$.sources.aks.clusters: empty; list the clusters to read"),
        (
            {"sas_token_file": "/nonexistent/sas-token"},
            "sas_token_file /nonexistent/sas-token: cannot be read",
        ),
        ({"account_url": "http://storage.example.com"}, "$.sources.aks.account_url: must be https"),
        ({"clusters": ["prod aks"]}, "$.sources.aks.clusters[0]: not an AKS cluster name"),
    ],
)
def test_check_config_refuses_what_serve_would(tmp_path: Path, change: dict[str, Any], message: str) -> None:
    """An empty cluster list, a credential file that cannot be read, a plain-HTTP account."""
    token = tmp_path / "sas-token"
    token.write_text("sv=2024-11-04&sig=not-a-signature\n")
    token.chmod(0o600)
    aks = {
        "account_url": "https://auditlogs.blob.core.windows.net",
        "sas_token_file": str(token),
        "clusters": ["prod-aks-eu"],
        **change,
    }

    done = check_config(write_config(tmp_path, free_port(), aks))

    assert done.returncode == 1
    assert message in done.stderr
    assert "not-a-signature" not in done.stdout + done.stderr


def test_a_credential_file_others_can_read_is_refused(tmp_path: Path) -> None:
    token = tmp_path / "sas-token"
    token.write_text("sv=2024-11-04&sig=not-a-signature\n")
    token.chmod(0o644)
    aks = {"account_url": "https://auditlogs.blob.core.windows.net", "sas_token_file": str(token)}

    done = check_config(write_config(tmp_path, free_port(), {**aks, "clusters": ["prod-aks-eu"]}))

    assert done.returncode == 1
    assert "sas_token_file" in done.stderr
    assert "mode 0644" in done.stderr
