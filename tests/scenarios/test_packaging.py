"""The package builds as users install it: a wheel, with no warning from the build backend."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

from tests.paths import ROOT


def test_the_wheel_builds_without_deprecation_warnings(tmp_path: Path) -> None:
    """``pip wheel .`` (what the Dockerfile's ``pip install .`` runs) warns about nothing, and
    the wheel holds the package data the server loads at start (the JSON schemas)."""
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(tmp_path), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )

    output = built.stdout + built.stderr
    assert "deprecat" not in output.lower(), output
    assert "warning" not in output.lower(), output
    (wheel,) = tmp_path.glob("ingress_audit-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {"webhook/config.schema.json", "webhook/record/schema.json", "webhook/py.typed"} <= set(names)
    metadata = next(n for n in names if n.endswith(".dist-info/METADATA"))
    assert "License-Expression: Apache-2.0" in zipfile.ZipFile(wheel).read(metadata).decode()
