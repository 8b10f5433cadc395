"""Every command, given the mistakes a person types, answers with one line and a non-zero exit.

Run as users run it, the console script in a subprocess: no traceback on stderr, whatever the
mistake (a bad port, an unusable path, a missing or mismatched file, a bad flag, a closed pipe).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import trustme

from tests.paths import ROOT

SCRIPT = Path(sys.executable).parent / "ingress-audit"


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A regular file, a certificate, a key of another certificate and a good secrets file."""
    where = tmp_path_factory.mktemp("mistakes")
    (where / "a-file").write_text("not a directory\n")
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(where / "ca.crt"))
    one, other = ca.issue_cert("127.0.0.1"), ca.issue_cert("127.0.0.1")
    one.cert_chain_pems[0].write_to_path(str(where / "tls.crt"))
    other.private_key_pem.write_to_path(str(where / "other.key"))
    (where / "mismatch.yaml").write_text(
        f"server:\n  tls: {{cert_file: {where}/tls.crt, key_file: {where}/other.key}}\n"
    )
    (where / "secrets.txt").write_text("a-secret-value\n")
    return where


def _mistakes(files: Path) -> dict[str, list[str]]:
    missing = str(files / "missing")
    return {
        "serve: a port out of range": ["serve", "--port", "70000"],
        "serve: a port that is not a number": ["serve", "--port", "http"],
        "serve: a data dir under /proc": ["serve", "--port", "0", "--data-dir", "/proc/nope/data"],
        "serve: a data dir that is a file": ["serve", "--port", "0", "--data-dir", str(files / "a-file")],
        "serve: a data dir that cannot be written (D3)": ["serve", "--port", "0", "--data-dir", "/proc/self"],
        "serve: a missing config": ["serve", "--config", missing],
        "serve: a TLS pair that does not match": ["serve", "--config", str(files / "mismatch.yaml")],
        "check-config: a missing file": ["check-config", missing],
        "check-config: a TLS pair that does not match": ["check-config", str(files / "mismatch.yaml")],
        "render: a missing --ca-file": [
            "render", "webhook-kubeconfig", "--server", "https://x:9440/audit", "--ca-file", missing
        ],
        "render: a key as --ca-file": [
            "render", "webhook-kubeconfig", "--server", "https://x:9440/audit",
            "--ca-file", str(files / "other.key"),
        ],
        "render: an unknown target": ["render", "everything"],
        "tail: a missing file": ["tail", "--no-follow", missing],
        "tail: a data dir that is a file": ["tail", "--no-follow", "--data-dir", str(files / "a-file")],
        "replay: a missing file": ["replay", "--data-dir", str(files / "replay-data"), missing],
        "replay: a server that is not a URL": [
            "replay", "--server", "not a url", str(ROOT / "examples" / "audit.log")
        ],
        "report: a missing data dir": ["report", "--data-dir", missing],
        "report: a bad --since": ["report", "--since", "yesterday"],
        "scan-leaks: a missing secrets file": ["scan-leaks", missing, str(files)],
        "schema: an unknown schema": ["schema", "everything"],
        "an unknown command": ["everything"],
    }  # fmt: skip


@pytest.mark.parametrize("mistake", list(_mistakes(Path("/"))))
def test_a_mistake_is_one_line_and_a_non_zero_exit(files: Path, mistake: str) -> None:
    argv = _mistakes(files)[mistake]

    done = subprocess.run([str(SCRIPT), *argv], capture_output=True, text=True, timeout=60, check=False)

    assert done.returncode != 0, done.stdout
    assert "Traceback" not in done.stderr, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    # argparse prints its usage before its one-line error; everything else is one line.
    errors = [line for line in lines if not line.startswith(("usage:", " "))]
    assert len(errors) == 1, done.stderr
    assert errors[0].startswith("ingress-audit"), done.stderr


@pytest.mark.parametrize(
    "argv",
    [
        ["scan-leaks", "{secrets}", str(ROOT / "tests" / "fixtures")],
        ["render", "audit-policy"],
        ["schema", "record"],
    ],
)
def test_a_closed_pipe_ends_quietly(files: Path, argv: list[str]) -> None:
    """``| head -1``: the reader goes away; the command ends without a traceback."""
    argv = [a.replace("{secrets}", str(files / "secrets.txt")) for a in argv]
    done = subprocess.run(  # noqa: S602 - a pipeline is the point; every word is ours
        f"'{SCRIPT}' {' '.join(argv)} | head -c 1 >/dev/null; exit ${{PIPESTATUS[0]}}",
        shell=True,
        executable="/bin/bash",
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert "Traceback" not in done.stderr, done.stderr
    assert "BrokenPipeError" not in done.stderr, done.stderr
