"""The AKS storage-account follower against a real Azurite (Microsoft's storage emulator).

Blobs are written as a diagnostic setting writes them: append blobs named by the cluster's
upper-cased resource id and the hour, one record per line, appended a few lines at a time.
Azurite and the helpers that write to it: tests/sources/azurite.py.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

import orjson
import pytest
from azure.storage.blob import ContainerSasPermissions, generate_container_sas
from azure.storage.blob.aio import ContainerClient
from structlog.testing import capture_logs

from tests.sources.aks_records import (
    aks_record,
    blob_lines,
    blob_name,
    event_log,
    record_line,
    scenario_events,
)
from tests.sources.azurite import ACCOUNT, KEY, Azurite, append, container_sas, key_file, need_azurite
from webhook.errors import ConfigError, StorageError
from webhook.sources.aks_settings import AksStorageOptions
from webhook.sources.aks_storage import AksStorageFollower
from webhook.sources.cloud import CloudEvent, CloudReject

HOUR_A: Final = "2026-11-24T14"
HOUR_B: Final = "2026-11-24T15"


@dataclass
class Kept:
    """The handler: keeps what it is given, or raises while ``failing``."""

    calls: list[tuple[list[CloudEvent | CloudReject], str]] = field(default_factory=list)
    failing: bool = False

    async def __call__(self, items: Sequence[CloudEvent | CloudReject], source: str) -> None:
        if self.failing:
            raise RuntimeError("spool full")
        self.calls.append((list(items), source))

    @property
    def items(self) -> list[CloudEvent | CloudReject]:
        return [item for items, _ in self.calls for item in items]

    @property
    def events(self) -> list[bytes]:
        return [item.event for item in self.items if isinstance(item, CloudEvent)]

    @property
    def rejects(self) -> list[CloudReject]:
        return [item for item in self.items if isinstance(item, CloudReject)]


def options(
    azurite: Azurite, container: ContainerClient, tmp_path: Path, **override: Any
) -> AksStorageOptions:
    base: dict[str, Any] = {
        "account_url": azurite.url,
        "account_key_file": key_file(tmp_path),
        "container": container.container_name,
        "poll_interval_s": 0.05,
        "state_file": tmp_path / "data" / "aks-state.json",
    }
    return AksStorageOptions(**{**base, **override})


def logs_of(events: list[dict[str, Any]]) -> list[bytes]:
    return [event_log(e).encode() for e in events]


EVENTS: Final = scenario_events()


# -- every event once ----------------------------------------------------------------------------


async def test_every_event_once_across_polls_and_appends(
    azurite: Azurite, container: ContainerClient, tmp_path: Path
) -> None:
    """Lines appended between polls are read once each, in order, with the cluster's name."""
    kept = Kept()
    name = blob_name("prod-eu", HOUR_A)
    await append(container, name, blob_lines(aks_record(e) for e in EVENTS[:100]))

    async with AksStorageFollower(options(azurite, container, tmp_path), kept) as follower:
        first = await follower.poll_once()
        again = await follower.poll_once()
        await append(container, name, blob_lines(aks_record(e) for e in EVENTS[100:150]))
        third = await follower.poll_once()

    assert kept.events == logs_of(EVENTS[:150])
    assert {item.cluster for item in kept.items if isinstance(item, CloudEvent)} == {"prod-eu"}
    assert {source for _, source in kept.calls} == {"aks"}
    assert (first.events, again.events, third.events) == (100, 0, 50)
    assert again.read_bytes == 0
    assert first.failed is None


async def test_a_half_written_line_is_read_once_completed(
    azurite: Azurite, container: ContainerClient, tmp_path: Path
) -> None:
    """A line cut mid-write is left until its end arrives; then it is read whole, once."""
    kept = Kept()
    name = blob_name("prod-eu", HOUR_A)
    lines = [record_line(aks_record(e)) for e in EVENTS[:4]]
    half = len(lines[2]) // 2
    await append(container, name, lines[0] + b"\n" + lines[1] + b"\n" + lines[2][:half])

    async with AksStorageFollower(options(azurite, container, tmp_path), kept) as follower:
        await follower.poll_once()
        assert kept.events == logs_of(EVENTS[:2])
        await follower.poll_once()
        assert kept.events == logs_of(EVENTS[:2])
        await append(container, name, lines[2][half:] + b"\n" + lines[3] + b"\n")
        await follower.poll_once()

    assert kept.events == logs_of(EVENTS[:4])
    assert kept.rejects == []


async def test_a_last_line_without_its_newline_is_taken_when_whole(
    azurite: Azurite, container: ContainerClient, tmp_path: Path
) -> None:
    """A whole record at the blob's end counts even before a newline follows; the newline
    that comes later makes no second event."""
    kept = Kept()
    name = blob_name("prod-eu", HOUR_A)
    await append(container, name, record_line(aks_record(EVENTS[0])))

    async with AksStorageFollower(options(azurite, container, tmp_path), kept) as follower:
        await follower.poll_once()
        await append(container, name, b"\n" + record_line(aks_record(EVENTS[1])) + b"\n")
        await follower.poll_once()

    assert kept.events == logs_of(EVENTS[:2])


# -- the handler decides when a position moves ---------------------------------------------------


async def test_a_failing_handler_does_not_advance_the_offset(
    azurite: Azurite, container: ContainerClient, tmp_path: Path
) -> None:
    """While the handler raises, nothing is saved; once it accepts, it gets every event once."""
    kept = Kept(failing=True)
    opts = options(azurite, container, tmp_path)
    await append(container, blob_name("prod-eu", HOUR_A), blob_lines(aks_record(e) for e in EVENTS[:30]))

    with capture_logs() as logs:
        async with AksStorageFollower(opts, kept) as follower:
            failed = await follower.poll_once()
            assert failed.failed == "handler"
            assert not opts.state_file.exists()
            kept.failing = False
            ok = await follower.poll_once()

    assert ok.failed is None
    assert kept.events == logs_of(EVENTS[:30])
    assert any(entry["event"] == "aks_storage.handler_failed" for entry in logs)


async def test_a_restart_resumes_from_the_saved_offset(
    azurite: Azurite, container: ContainerClient, tmp_path: Path
) -> None:
    """A new follower on the same state file reads only what was appended since."""
    kept = Kept()
    opts = options(azurite, container, tmp_path)
    name = blob_name("prod-eu", HOUR_A)
    await append(container, name, blob_lines(aks_record(e) for e in EVENTS[:40]))
    async with AksStorageFollower(opts, kept) as follower:
        await follower.poll_once()
    await append(container, name, blob_lines(aks_record(e) for e in EVENTS[40:60]))
    await append(container, blob_name("prod-eu", HOUR_B), blob_lines(aks_record(e) for e in EVENTS[60:70]))

    async with AksStorageFollower(opts, kept) as follower:
        await follower.poll_once()
        await follower.poll_once()

    assert kept.events == logs_of(EVENTS[:70])
    state = orjson.loads(opts.state_file.read_bytes())
    assert state["blobs"][name]["offset"] == len(blob_lines(aks_record(e) for e in EVENTS[:60]))
    assert opts.state_file.stat().st_mode & 0o777 == 0o600
    assert not list(opts.state_file.parent.glob("*.tmp"))


async def test_the_background_loop_follows_until_closed(
    azurite: Azurite, container: ContainerClient, tmp_path: Path
) -> None:
    """``start`` polls every ``poll_interval_s``; ``aclose`` stops it."""
    kept = Kept()
    name = blob_name("prod-eu", HOUR_A)
    follower = AksStorageFollower(options(azurite, container, tmp_path), kept)
    await follower.start()
    try:
        await append(container, name, blob_lines(aks_record(e) for e in EVENTS[:5]))
        await wait_for(lambda: len(kept.events) == 5)
        await append(container, name, blob_lines(aks_record(e) for e in EVENTS[5:8]))
        await wait_for(lambda: len(kept.events) == 8)
    finally:
        await follower.aclose()
    assert kept.events == logs_of(EVENTS[:8])


async def wait_for(check: Any, timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "not within the deadline"
        await asyncio.sleep(0.02)


# -- clusters, bounds, rejects ---------------------------------------------------------------------


async def test_only_the_allowed_clusters_blobs_are_read(
    azurite: Azurite, container: ContainerClient, tmp_path: Path
) -> None:
    """Blobs of other clusters are counted and left unread; names match without case."""
    kept = Kept()
    await append(container, blob_name("prod-eu", HOUR_A), blob_lines(aks_record(e) for e in EVENTS[:3]))
    await append(
        container,
        blob_name("stranger", HOUR_A),
        blob_lines(aks_record(e, cluster="stranger") for e in EVENTS[3:6]),
    )
    await append(container, "something-else.json", b"{}\n")

    opts = options(azurite, container, tmp_path, clusters=("Prod-EU",))
    async with AksStorageFollower(opts, kept) as follower:
        summary = await follower.poll_once()

    assert kept.events == logs_of(EVENTS[:3])
    assert (summary.blobs, summary.not_allowed_blobs, summary.rejects) == (1, 1, 0)


async def test_reads_are_bounded_and_an_oversized_record_is_rejected_alone(
    azurite: Azurite, container: ContainerClient, tmp_path: Path
) -> None:
    """No download is over ``max_read_bytes``; a record longer than that is rejected with its
    blob and offset, and the records around it are kept."""
    kept = Kept()
    name = blob_name("prod-eu", HOUR_A)
    big = aks_record(EVENTS[20])
    big["properties"]["log"] = event_log({**EVENTS[20], "padding": "x" * 100_000})
    head = blob_lines(aks_record(e) for e in EVENTS[:200])
    await append(container, name, head + record_line(big) + b"\n")
    await append(container, name, blob_lines(aks_record(e) for e in EVENTS[200:210]))

    opts = options(azurite, container, tmp_path, max_read_bytes=64 * 1024)
    async with AksStorageFollower(opts, kept) as follower:
        summary = await follower.poll_once()

    assert kept.events == logs_of(EVENTS[:200] + EVENTS[200:210])
    (reject,) = kept.rejects
    assert reject.reason == "record-too-large"
    assert reject.identity == {"blob": name, "offset": str(len(head))}
    assert reject.cluster == "prod-eu"
    assert len(kept.calls) > len(head) // (64 * 1024)
    assert summary.read_bytes >= len(head)


async def test_a_bad_record_is_rejected_with_where_it_is(
    azurite: Azurite, container: ContainerClient, tmp_path: Path
) -> None:
    """A reject names the blob and the byte offset of its line; other categories are counted."""
    kept = Kept()
    name = blob_name("prod-eu", HOUR_A)
    head = blob_lines(aks_record(e) for e in EVENTS[:3])
    other = aks_record("I1124 klog text", category="kube-apiserver")
    await append(
        container, name, head + b'{"category": "kube-audit"}\n' + blob_lines([other, aks_record(EVENTS[3])])
    )

    async with AksStorageFollower(options(azurite, container, tmp_path), kept) as follower:
        summary = await follower.poll_once()

    assert kept.events == logs_of(EVENTS[:4])
    (reject,) = kept.rejects
    assert reject.reason == "malformed-record"
    assert reject.identity == {"blob": name, "offset": str(len(head))}
    assert (summary.records, summary.skipped, summary.rejects) == (6, 1, 1)


async def test_a_replaced_blob_is_read_again_from_the_start(
    azurite: Azurite, container: ContainerClient, tmp_path: Path
) -> None:
    """A blob deleted and written again (shorter) is re-read from 0, and the re-read is logged."""
    kept = Kept()
    name = blob_name("prod-eu", HOUR_A)
    await append(container, name, blob_lines(aks_record(e) for e in EVENTS[:10]))

    with capture_logs() as logs:
        async with AksStorageFollower(options(azurite, container, tmp_path), kept) as follower:
            await follower.poll_once()
            await container.get_blob_client(name).delete_blob()
            await append(container, name, blob_lines(aks_record(e) for e in EVENTS[10:13]))
            await follower.poll_once()

    assert kept.events == logs_of(EVENTS[:13])
    assert [e["reason"] for e in logs if e["event"] == "aks_storage.blob_reread"] in (
        ["replaced"],
        ["shrunk"],
    )


async def test_finished_blobs_are_forgotten_and_never_read_again(
    azurite: Azurite, container: ContainerClient, tmp_path: Path
) -> None:
    """Quiet, fully read blobs leave the state file; their hour stays as a mark, so a restart
    does not read them again, while a later hour is still read. A line left half-written in a
    quiet blob is rejected, not waited for."""
    kept = Kept()
    opts = options(azurite, container, tmp_path, forget_after_s=2 * 3600.0)
    a = blob_name("prod-eu", HOUR_A)
    head = blob_lines(aks_record(e) for e in EVENTS[:10])
    await append(container, a, head + record_line(aks_record(EVENTS[10]))[:100])
    later = lambda: datetime.now(UTC) + timedelta(days=1)  # noqa: E731 - a clock a day ahead

    async with AksStorageFollower(opts, kept) as follower:
        await follower.poll_once()
    assert kept.rejects == []
    async with AksStorageFollower(opts, kept, clock=later) as follower:
        summary = await follower.poll_once()
    assert summary.forgotten == 1
    assert [(r.reason, r.identity["offset"]) for r in kept.rejects] == [("record-not-json", str(len(head)))]
    state = orjson.loads(opts.state_file.read_bytes())
    assert state["blobs"] == {}
    assert list(state["marks"].values()) == ["2026-11-24T14:00"]

    await append(container, blob_name("prod-eu", HOUR_B), blob_lines(aks_record(e) for e in EVENTS[11:13]))
    async with AksStorageFollower(opts, kept) as follower:
        await follower.poll_once()

    assert kept.events == logs_of(EVENTS[:10] + EVENTS[11:13])


async def test_a_missing_container_is_waited_for(azurite: Azurite, tmp_path: Path) -> None:
    """Azure creates the container with its first record: until then polls find nothing."""
    kept = Kept()
    async with azurite.client() as service:
        missing = service.get_container_client("insights-logs-kube-audit-missing")
        with capture_logs() as logs:
            async with AksStorageFollower(options(azurite, missing, tmp_path), kept) as follower:
                summary = await follower.poll_once()
    assert summary.failed is None
    assert [e.get("error_code") for e in logs if e["event"] == "aks_storage.not_found"] == [
        "ContainerNotFound"
    ]


# -- credentials -----------------------------------------------------------------------------------


async def test_a_sas_token_file_reads_the_container(
    azurite: Azurite, container: ContainerClient, tmp_path: Path
) -> None:
    """A container SAS with read and list is enough."""
    sas = container_sas(container.container_name)
    token = tmp_path / "sas"
    token.write_text("?" + sas + "\n")
    token.chmod(0o600)
    kept = Kept()
    await append(container, blob_name("prod-eu", HOUR_A), blob_lines(aks_record(e) for e in EVENTS[:5]))

    opts = options(azurite, container, tmp_path, account_key_file=None, sas_token_file=token)
    async with AksStorageFollower(opts, kept) as follower:
        await follower.poll_once()

    assert kept.events == logs_of(EVENTS[:5])


async def test_a_connection_string_file_reads_the_container(
    azurite: Azurite, container: ContainerClient, tmp_path: Path
) -> None:
    path = tmp_path / "conn"
    path.write_text(azurite.connection_string)
    path.chmod(0o600)
    kept = Kept()
    await append(container, blob_name("prod-eu", HOUR_A), blob_lines(aks_record(e) for e in EVENTS[:5]))

    opts = options(
        azurite, container, tmp_path, account_url=None, account_key_file=None, connection_string_file=path
    )
    async with AksStorageFollower(opts, kept) as follower:
        await follower.poll_once()

    assert kept.events == logs_of(EVENTS[:5])


async def test_credentials_never_reach_a_log(
    azurite: Azurite, container: ContainerClient, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Refused (a wrong key, a SAS without list) and accepted requests, logged at every level
    of structlog and the standard library: no key and no SAS signature anywhere."""
    caplog.set_level(1)
    wrong_key = "V3J0bmcta2V5LW5vdC1hLXNlY3JldC0wMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDA="
    sas = container_sas(container.container_name)
    read_only = generate_container_sas(
        ACCOUNT,
        container.container_name,
        account_key=KEY,
        permission=ContainerSasPermissions(read=True),
        expiry=datetime.now(UTC) + timedelta(hours=1),
    )
    await append(container, blob_name("prod-eu", HOUR_A), blob_lines(aks_record(e) for e in EVENTS[:3]))
    results = []
    with capture_logs() as logs:
        for i, (field_name, secret) in enumerate(
            [("account_key_file", wrong_key), ("sas_token_file", read_only), ("sas_token_file", sas)]
        ):
            path = tmp_path / f"credential-{i}"
            path.write_text(secret)
            path.chmod(0o600)
            opts = options(
                azurite, container, tmp_path, account_key_file=None, state_file=tmp_path / f"state-{i}.json"
            )
            opts = AksStorageOptions(**{**_fields(opts), field_name: path})
            async with AksStorageFollower(opts, Kept()) as follower:
                results.append(await follower.poll_once())

    assert [r.failed for r in results] == ["storage", "storage", None]
    refused = [e for e in logs if e["event"] == "aks_storage.request_failed"]
    assert [e["status"] for e in refused] == [403, 403]
    signatures = [
        part.split("=", 1)[1]
        for token in (sas, read_only)
        for part in token.split("&")
        if part.startswith("sig=")
    ]
    text = repr(logs) + caplog.text + repr([(r.msg, r.args) for r in caplog.records])
    for secret in (
        wrong_key,
        KEY,
        *signatures,
        *[s.replace("%2B", "+").replace("%2F", "/").replace("%3D", "=") for s in signatures],
    ):
        assert secret not in text


def _fields(opts: AksStorageOptions) -> dict[str, Any]:
    return {name: getattr(opts, name) for name in AksStorageOptions.__dataclass_fields__}


async def test_a_credential_file_others_can_read_is_refused(
    azurite: Azurite, container: ContainerClient, tmp_path: Path
) -> None:
    path = key_file(tmp_path, "shared.key")
    path.chmod(0o644)
    follower = AksStorageFollower(options(azurite, container, tmp_path, account_key_file=path), Kept())
    with pytest.raises(ConfigError, match="account_key_file") as caught:
        await follower.open()
    assert KEY not in caught.value.message
    await follower.aclose()


async def test_a_damaged_state_file_stops_the_start(
    azurite: Azurite, container: ContainerClient, tmp_path: Path
) -> None:
    """A state file that is not ours is not overwritten: the operator decides."""
    opts = options(azurite, container, tmp_path)
    opts.state_file.parent.mkdir(mode=0o700)
    opts.state_file.write_bytes(b"{not json")
    follower = AksStorageFollower(opts, Kept())
    with pytest.raises(StorageError, match="not an AKS storage state file"):
        await follower.open()
    await follower.aclose()


def test_azurite_command_is_reported_when_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Under CI a missing Azurite fails the tests, with the command that installs it."""
    monkeypatch.setenv("CI", "true")
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(pytest.fail.Exception, match=r"npm install --prefix \.tools/azurite azurite"):
        need_azurite()
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception):
        need_azurite()


async def test_a_rotated_sas_token_is_used_from_the_next_poll(
    azurite: Azurite, container: ContainerClient, tmp_path: Path
) -> None:
    """The token file is read again before each poll: replacing it needs no restart."""
    token = tmp_path / "sas"
    token.write_text(
        generate_container_sas(
            ACCOUNT,
            container.container_name,
            account_key=KEY,
            permission=ContainerSasPermissions(read=True, list=True),
            expiry=datetime.now(UTC) - timedelta(hours=1),
        )
    )
    token.chmod(0o600)
    kept = Kept()
    await append(container, blob_name("prod-eu", HOUR_A), blob_lines(aks_record(e) for e in EVENTS[:5]))

    opts = options(azurite, container, tmp_path, account_key_file=None, sas_token_file=token)
    with capture_logs() as logs:
        async with AksStorageFollower(opts, kept) as follower:
            expired = await follower.poll_once()
            token.write_text(container_sas(container.container_name))
            renewed = await follower.poll_once()

    assert (expired.failed, renewed.failed) == ("storage", None)
    assert kept.events == logs_of(EVENTS[:5])
    assert [e["event"] for e in logs if e["event"] == "aks_storage.credential_reloaded"] == [
        "aks_storage.credential_reloaded"
    ]


async def test_the_background_loop_retries_a_failing_handler(
    azurite: Azurite, container: ContainerClient, tmp_path: Path
) -> None:
    """After a failure the loop backs off and tries again from the same offset."""
    kept = Kept(failing=True)
    await append(container, blob_name("prod-eu", HOUR_A), blob_lines(aks_record(e) for e in EVENTS[:5]))
    follower = AksStorageFollower(options(azurite, container, tmp_path, poll_interval_s=60.0), kept)
    with capture_logs() as logs:
        await follower.start()
        try:
            await wait_for(lambda: any(e["event"] == "aks_storage.handler_failed" for e in logs))
            kept.failing = False
            await wait_for(lambda: len(kept.events) == 5)
        finally:
            await follower.aclose()
    assert kept.events == logs_of(EVENTS[:5])


async def test_a_state_file_of_another_container_is_refused(
    azurite: Azurite, container: ContainerClient, tmp_path: Path
) -> None:
    """Two followers must not share a state file: the second one does not start."""
    opts = options(azurite, container, tmp_path)
    await append(container, blob_name("prod-eu", HOUR_A), blob_lines(aks_record(e) for e in EVENTS[:2]))
    async with AksStorageFollower(opts, Kept()) as follower:
        await follower.poll_once()
    other = AksStorageOptions(**{**_fields(opts), "container": "insights-logs-kube-audit-admin"})
    follower = AksStorageFollower(other, Kept())
    with pytest.raises(StorageError, match="another container"):
        await follower.open()
    await follower.aclose()


async def test_a_deleted_blob_leaves_the_state(
    azurite: Azurite, container: ContainerClient, tmp_path: Path
) -> None:
    """A blob that a lifecycle rule deleted is dropped from the state file."""
    opts = options(azurite, container, tmp_path)
    name = blob_name("prod-eu", HOUR_A)
    await append(container, name, blob_lines(aks_record(e) for e in EVENTS[:2]))
    async with AksStorageFollower(opts, Kept()) as follower:
        await follower.poll_once()
        assert name in orjson.loads(opts.state_file.read_bytes())["blobs"]
        await container.get_blob_client(name).delete_blob()
        summary = await follower.poll_once()
    assert summary.forgotten == 1
    assert orjson.loads(opts.state_file.read_bytes())["blobs"] == {}
