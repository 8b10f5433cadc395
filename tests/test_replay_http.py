"""``replay --server``: a log file sent to a running server's webhook, as the apiserver would."""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

from conftest import Client, delivered, make_config

from webhook.replay_http import replay_to_server
from webhook.server import create_app

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "examples" / "audit.log"


async def test_a_log_file_is_sent_and_recorded_once(aiohttp_client: Any, tmp_path: Path) -> None:
    """Every event goes to /audit in batches; a second send is all duplicates."""
    config = make_config(tmp_path)
    client: Client = await aiohttp_client(create_app(config))
    url = str(client.make_url("/audit"))
    zipped = tmp_path / "audit.log.gz"
    zipped.write_bytes(gzip.compress(SAMPLE.read_bytes()))

    first = await replay_to_server(url, [zipped], chunk_size=50)
    second = await replay_to_server(url, [SAMPLE], chunk_size=400)

    lines = [x for x in SAMPLE.read_bytes().splitlines() if x.strip()]
    assert first.events == second.events == len(lines)
    assert first.records > 0
    assert first.duplicates == 0
    assert (second.records, second.duplicates) == (0, first.records)
    records = await delivered(client, config)
    assert len(records) == len({r["id"] for r in records}) == first.records
    assert "sent to" in first.line()


async def test_bad_lines_are_skipped_by_position(aiohttp_client: Any, tmp_path: Path, capsys: Any) -> None:
    """A line that is not JSON is reported by file and line, never by content, and skipped."""
    config = make_config(tmp_path)
    client: Client = await aiohttp_client(create_app(config))
    log = tmp_path / "audit.log"
    good = SAMPLE.read_bytes().splitlines()[0]
    log.write_bytes(good + b"\n" + b"{not json, password=hunter2\n" + good + b"\n")

    summary = await replay_to_server(str(client.make_url("/audit")), [log])

    assert summary.events == 3
    assert summary.dead_letters == 1
    err = capsys.readouterr().err
    assert "audit.log:2" in err
    assert "hunter2" not in err
