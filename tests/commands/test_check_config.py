"""``check-config`` on the ``sources`` section: the key files and the JWKS file read as serve
reads them, and the sources listed with their clusters, never a key."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.sources.cloud_apps import FIREHOSE_KEY, write_key
from tests.sources.push_tokens import AUDIENCE, PUSHER, write_jwks
from webhook.cli import main
from webhook.config import load_config
from webhook.errors import ConfigError
from webhook.sources.settings import FirehoseSettings, PubsubSettings, SourcesConfig


def _sources(tmp_path: Path, **changes: Any) -> dict[str, Any]:
    firehose = {"access_keys": [{"key_file": str(write_key(tmp_path / "prod.key")), "clusters": ["prod-eu"]}]}
    pubsub = {
        "audience": AUDIENCE,
        "service_accounts": [PUSHER],
        "jwks_file": str(write_jwks(tmp_path / "jwks.json", "key-a", "key-b")),
        "clusters": ["my-project/prod-eu", "my-project/prod-us"],
    }
    return {"firehose": firehose, "pubsub": pubsub, **changes}


def _write(tmp_path: Path, doc: dict[str, Any]) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"data_dir": str(tmp_path / "data"), **doc}))
    return path


def test_the_sources_are_listed_with_their_clusters(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write(tmp_path, {"sources": _sources(tmp_path)})

    assert main(["check-config", str(path)]) == 0

    out, err = capsys.readouterr()
    assert out.splitlines() == [
        f"{path}: ok",
        "source firehose: POST /firehose, 1 access key(s)",
        f"  key {tmp_path / 'prod.key'}: clusters prod-eu",
        f"source pubsub: POST /pubsub, audience {AUDIENCE}, keys: {tmp_path / 'jwks.json'} (2 key(s))",
        f"  service accounts: {PUSHER}",
        "  clusters: my-project/prod-eu, my-project/prod-us",
    ]
    assert FIREHOSE_KEY not in out + err


def test_googles_keys_are_named_not_fetched(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sources = _sources(tmp_path)
    sources["pubsub"]["jwks_file"] = None
    del sources["firehose"]

    assert main(["check-config", str(_write(tmp_path, {"sources": sources}))]) == 0

    assert "keys: Google's published keys (fetched at the first push)" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("spoil", "message"),
    [
        (lambda key: key.write_text("short\n"), "too weak"),
        (lambda key: os.chmod(key, 0o644), "accessible by others"),
        (lambda key: key.unlink(), "cannot read Firehose access key file"),
    ],
    ids=["weak", "readable-by-others", "missing"],
)
def test_an_unusable_key_file_fails_naming_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], spoil: Any, message: str
) -> None:
    path = _write(tmp_path, {"sources": _sources(tmp_path)})
    spoil(tmp_path / "prod.key")

    assert main(["check-config", str(path)]) == 1

    err = capsys.readouterr().err
    assert message in err
    assert str(tmp_path / "prod.key") in err
    assert FIREHOSE_KEY not in err


def test_an_unusable_jwks_file_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _write(tmp_path, {"sources": _sources(tmp_path)})
    (tmp_path / "jwks.json").write_text('{"keys": []}')

    assert main(["check-config", str(path)]) == 1

    assert "sources.pubsub.jwks_file: the key set holds no RS256 signing key" in capsys.readouterr().err


def test_a_body_limit_below_firehoses_is_a_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write(tmp_path, {"server": {"max_body_bytes": 8 * 1024 * 1024}, "sources": _sources(tmp_path)})

    assert main(["check-config", str(path)]) == 0

    assert "warning: server.max_body_bytes is below 64 MiB" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("change", "where"),
    [
        ({"firehose": {"access_keys": []}}, "$.sources.firehose.access_keys"),
        ({"firehose": {"access_keys": [{"key_file": "k", "clusters": ["bad name"]}]}}, "$.sources.firehose"),
        (
            {"firehose": {"access_keys": [{"key_file": "k", "clusters": ["a"]}], "key": "x"}},
            "$.sources.firehose",
        ),
        (
            {"pubsub": {"audience": "a", "service_accounts": [PUSHER], "clusters": ["prod-eu"]}},
            "$.sources.pubsub",
        ),
        (
            {"pubsub": {"audience": "a", "service_accounts": ["nobody"], "clusters": ["p/c"]}},
            "$.sources.pubsub",
        ),
        ({"aws": {}}, "$.sources"),
    ],
)
def test_the_schema_refuses_what_cannot_work(tmp_path: Path, change: dict[str, Any], where: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(_write(tmp_path, {"sources": change}))
    assert any(problem.startswith(where) for problem in info.value.errors), info.value.errors


def test_the_section_builds_its_settings(tmp_path: Path) -> None:
    """Absent or null: off. Key files are named, not read, by load_config."""
    assert load_config(_write(tmp_path, {})).sources == SourcesConfig()
    assert load_config(_write(tmp_path, {"sources": {"firehose": None}})).sources == SourcesConfig()
    config = load_config(_write(tmp_path, {"sources": _sources(tmp_path)}))
    assert isinstance(config.sources.firehose, FirehoseSettings)
    assert config.sources.firehose.access_keys[0].clusters == ("prod-eu",)
    assert config.sources.pubsub == PubsubSettings(
        audience=AUDIENCE,
        service_accounts=(PUSHER,),
        clusters=("my-project/prod-eu", "my-project/prod-us"),
        jwks_file=tmp_path / "jwks.json",
    )
    assert config.sources.enabled == ("firehose", "pubsub")
