from __future__ import annotations

from pathlib import Path

import pytest

from bench.pair import main, measure
from bench.report import REPO


def test_two_builds_are_measured_on_the_same_requests() -> None:
    """Both serve processes answer every request; each kind gets a CPU figure for each."""
    kinds = measure((REPO, REPO), unmatched=120, matched=30, rounds=1)

    assert [(k.name, k.requests) for k in kinds] == [("keeps nothing", 120), ("keeps its event", 30)]
    assert all(cpu >= 0 for k in kinds for cpu in k.cpu_us)
    assert "µs of server CPU per request" in kinds[0].line()


def test_a_directory_without_the_package_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main([str(REPO), str(tmp_path)])

    assert exited.value.code == 2
    assert "holds no webhook package" in capsys.readouterr().err
