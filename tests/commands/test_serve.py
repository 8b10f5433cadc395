"""``ingress-audit serve``'s choice of event loop (the process itself: tests/test_cli.py)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from webhook.commands.serve import loop_factory
from webhook.config import load_config
from webhook.errors import ConfigError


def test_uvloop_is_the_default_and_makes_uvloop_loops() -> None:
    factory = loop_factory(load_config(None).server.event_loop)
    assert factory is not None
    loop = factory()
    try:
        assert type(loop).__module__.startswith("uvloop")
        assert loop.run_until_complete(asyncio.sleep(0, "ran")) == "ran"
    finally:
        loop.close()


def test_asyncio_means_the_standard_library_loop() -> None:
    assert loop_factory("asyncio") is None  # asyncio.Runner's own


def test_without_uvloop_installed_the_standard_loop_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # import uvloop raises ImportError
    assert loop_factory("uvloop") is None


def test_an_unknown_event_loop_is_a_config_error(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("server:\n  event_loop: trio\n")
    with pytest.raises(ConfigError) as raised:
        load_config(config)
    assert any("event_loop" in error for error in raised.value.errors), raised.value.errors
