"""bench.access_parse: its generated lines all parse, so the figure it prints means something.

bench/ is not installed (it runs from a checkout); the checkout is on sys.path because tests/ is a package.
"""

from __future__ import annotations

import pytest

from bench.access_parse import lines_for, main, measure


@pytest.mark.parametrize("fmt", ["nginx-ingress", "combined", "nginx-ingress-json", "traefik-json"])
def test_generated_lines_parse(fmt: str) -> None:
    """Every generated line parses with its own format and with auto."""
    lines = lines_for(fmt, 500)

    for parser_format in (fmt, "auto"):
        rate, failed = measure(parser_format, lines, repeat=1)
        assert failed == 0
        assert rate > 0


def test_smoke(capsys: pytest.CaptureFixture[str]) -> None:
    """``python -m bench.access_parse`` prints one line per format and parser."""
    assert main(["--lines", "200", "--repeat", "1"]) == 0

    out = capsys.readouterr().out.splitlines()
    assert len(out) == 8
    assert all("failed=0" in line for line in out)
