"""The container image, built and run for real, without Docker.

buildah (``--isolation chroot``, the vfs storage driver) builds the Dockerfile on a Python 3.11
base made from Debian packages with debootstrap, from the Debian mirror apt already uses here.
The image then runs as UID 10001 on a read-only root, receives the captured scenario, and the
records in its data dir are checked: all there, no secret value, every file owned by 10001.

The base image (about a minute) stays in buildah's storage and is reused by later runs; the
application image is rebuilt every session, and the containers are removed. Needs root, the
buildah and debootstrap packages (scripts/test.sh installs them) and the network to the mirror
and to PyPI: skipped elsewhere, failed under CI.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import orjson
import pytest

from tests.conftest import (
    SCENARIO,
    capture_bytes,
    capture_headers,
    capture_path,
    captured_bodies,
    read_jsonl,
    scenario_index,
)
from tests.paths import ROOT
from tests.servers import free_port, need_binary, spawn, wait_until

SUITE: Final = "bookworm"
BASE_IMAGE: Final = f"localhost/ingress-audit-python-base:{SUITE}"
IMAGE: Final = "localhost/ingress-audit:test"
LABEL: Final = "org.ingress-audit.test-build=true"
PACKAGES: Final = "python3,python3-venv,python3-pip,python-is-python3,ca-certificates"
UID: Final = 10001
DATA: Final = "/var/lib/ingress-audit"
CONFIG_DIR: Final = "/etc/ingress-audit"
CONFIG: Final = f"{CONFIG_DIR}/config.yaml"
BASE_TIMEOUT_S: Final = 900.0  # debootstrap downloads ~50 MB from the mirror
BUILD_TIMEOUT_S: Final = 900.0  # pip downloads the dependencies from PyPI
STEP_TIMEOUT_S: Final = 120.0

# Mount the container's root read-only in a private mount namespace of our own, then exec
# buildah run: `buildah run` (1.28) has no --read-only. /run gets a tmpfs because buildah
# creates /run/.containerenv in the root and removes it after the command.
_READ_ONLY_ROOT: Final = (
    'set -e; mount --bind "$1" "$1"; mount -o remount,bind,ro "$1"; '
    'mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs "$1/run"; shift; exec "$@"'
)


def need_tools() -> None:
    """buildah and debootstrap as root, as scripts/test.sh installs them; else skip (fail in CI)."""
    if os.geteuid() != 0:
        message = "building an image with buildah --isolation chroot and debootstrap needs root"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    need_binary(["buildah"], "buildah")
    need_binary(["debootstrap", "/usr/sbin/debootstrap"], "debootstrap")
    need_binary(["unshare"], "util-linux")


def buildah(*args: str, timeout_s: float = STEP_TIMEOUT_S) -> str:
    """Run one buildah command on the vfs driver (1.28 ignores STORAGE_DRIVER); its stdout."""
    done = subprocess.run(
        ["buildah", "--storage-driver", "vfs", *args],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    if done.returncode != 0:
        raise AssertionError(f"buildah {args[0]} exited {done.returncode}: {done.stderr[-3000:]}")
    return done.stdout.strip()


def image_id(name: str) -> str | None:
    found = buildah("images", "--quiet", "--no-trunc", "--filter", f"reference={name}")
    return found.splitlines()[0] if found else None


def debian_mirror(apt: Path = Path("/etc/apt")) -> str:
    """The URI apt uses for ``SUITE main`` here (deb822 .sources first, then one-line lists)."""
    for path in sorted((apt / "sources.list.d").glob("*.sources")):
        for stanza in re.split(r"\n\s*\n", path.read_text()):
            fields: dict[str, list[str]] = {}
            for line in stanza.splitlines():
                key, colon, value = line.partition(":")
                if colon and not line.startswith(("#", " ", "\t")):
                    fields[key.strip().lower()] = value.split()
            wanted = SUITE in fields.get("suites", []) and "main" in fields.get("components", [])
            if wanted and "deb" in fields.get("types", []) and fields.get("enabled") != ["no"]:
                return fields["uris"][0]
    for path in [apt / "sources.list", *sorted((apt / "sources.list.d").glob("*.list"))]:
        lines = path.read_text().splitlines() if path.exists() else []
        for line in lines:
            match = re.match(r"deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+(\S+)\s+(.*)", line.strip())
            if match and match[2] == SUITE and "main" in match[3].split():
                return match[1]
    pytest.fail(f"no 'deb ... {SUITE} main' source in {apt}: debootstrap needs a Debian mirror")


def host_ca_bundle() -> Path | None:
    """The CA bundle pip trusts here: mounted into the build's RUN steps (behind a TLS proxy
    PyPI is reached only with it), never copied into the image."""
    for candidate in (os.environ.get("PIP_CERT"), "/etc/ssl/certs/ca-certificates.crt"):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


def make_base(workdir: Path) -> None:
    """debootstrap a minbase root with Python 3.11, and commit it as BASE_IMAGE."""
    rootfs = workdir / "rootfs"
    subprocess.run(
        ["debootstrap", "--variant=minbase", f"--include={PACKAGES}", SUITE, str(rootfs), debian_mirror()],
        check=True,
        capture_output=True,
        timeout=BASE_TIMEOUT_S,
        stdin=subprocess.DEVNULL,
    )
    for cache in ("var/cache/apt/archives", "var/lib/apt/lists"):
        shutil.rmtree(rootfs / cache)
        (rootfs / cache / "partial").mkdir(parents=True)
    container = buildah("from", "scratch")
    try:
        mountpoint = buildah("mount", container)
        subprocess.run(["cp", "-a", f"{rootfs}/.", mountpoint], check=True, timeout=STEP_TIMEOUT_S)
        buildah("umount", container)
        buildah(
            "config",
            "--env",
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "--env",
            "LANG=C.UTF-8",
            "--cmd",
            "python3",
            "--label",
            f"org.opencontainers.image.description=Debian {SUITE} minbase with {PACKAGES}",
            container,
        )
        buildah("commit", "--quiet", container, BASE_IMAGE)
    finally:
        buildah("rm", container)
        shutil.rmtree(rootfs, ignore_errors=True)


@pytest.fixture(scope="module")
def built_image(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The repository's Dockerfile built on BASE_IMAGE (made first if buildah has none): its ID."""
    need_tools()
    workdir = tmp_path_factory.mktemp("image")
    started = time.monotonic()
    if image_id(BASE_IMAGE) is None:
        make_base(workdir)
        sys.stderr.write(f"base image: {time.monotonic() - started:.0f} s\n")  # pytest -rP shows it
    started = time.monotonic()
    iidfile = workdir / "iid"
    volumes = []
    if (bundle := host_ca_bundle()) is not None:
        volumes = ["--volume", f"{bundle}:/etc/ssl/certs/ca-certificates.crt:ro"]
    buildah(
        "bud",
        "--isolation",
        "chroot",
        "--format",
        "docker",  # the OCI format has no HEALTHCHECK: buildah would drop it
        "--build-arg",
        f"PYTHON_IMAGE={BASE_IMAGE}",
        "--iidfile",
        str(iidfile),
        "--tag",
        IMAGE,
        "--label",
        LABEL,
        *volumes,
        str(ROOT),
        timeout_s=BUILD_TIMEOUT_S,
    )
    sys.stderr.write(f"image build: {time.monotonic() - started:.0f} s\n")  # pytest -rP shows it
    built = iidfile.read_text().strip().removeprefix("sha256:")
    yield built  # by ID: another session may retag IMAGE meanwhile
    # Earlier builds that IMAGE no longer names; one still in use (another session's) stays.
    for old in buildah(
        "images", "--quiet", "--filter", "dangling=true", "--filter", f"label={LABEL}"
    ).split():
        subprocess.run(
            ["buildah", "--storage-driver", "vfs", "rmi", old],
            capture_output=True,
            timeout=STEP_TIMEOUT_S,
            check=False,
        )


@pytest.fixture
def container(built_image: str) -> Iterator[tuple[str, Path]]:
    """A working container of the image, and its root (the vfs driver's plain directory)."""
    name = f"ingress-audit-test-{os.getpid()}-{time.monotonic_ns()}"
    buildah("from", "--pull=never", "--name", name, built_image)
    try:
        yield name, Path(buildah("mount", name))
    finally:
        buildah("rm", name)


def inspect(image: str) -> dict[str, Any]:
    found: dict[str, Any] = json.loads(buildah("inspect", "--type", "image", image))
    return found


def run_argv(
    name: str, data: Path, config: Path, *command: str, env: dict[str, str] | None = None, user: int = UID
) -> list[str]:
    """``buildah run`` as the image's user, on the host network, /tmp a tmpfs, data and config
    mounted as the manifests mount them."""
    flags = [f"--env={k}={v}" for k, v in (env or {}).items()]
    return [
        "buildah",
        "--storage-driver",
        "vfs",
        "run",
        "--isolation",
        "chroot",
        "--network",
        "host",
        "--user",
        f"{user}:{user}",
        "--mount",
        "type=tmpfs,destination=/tmp",
        "--volume",
        f"{data}:{DATA}",
        "--volume",
        f"{config}:{CONFIG_DIR}:ro",  # a directory, as the manifests mount the ConfigMap
        *flags,
        name,
        "--",
        *command,
    ]


def get(port: int, path: str) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read()
    except OSError:
        return 0, b""
    finally:
        connection.close()


def post_scenario(port: int) -> list[dict[str, Any]]:
    """Every capture of scenario A, as the apiserver sent it; the answers."""
    answers = []
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        for body in captured_bodies():
            connection.request("POST", capture_path(body), capture_bytes(body), capture_headers(body))
            response = connection.getresponse()
            payload = response.read()
            assert response.status == 200, (body.name, response.status)
            answers.append(orjson.loads(payload))
    finally:
        connection.close()
    return answers


def drained(port: int) -> bool:
    status, body = get(port, "/readyz")
    return status == 200 and all(s["lag_records"] == 0 for s in orjson.loads(body)["sinks"].values())


def server_pid(parent: int) -> int | None:
    """The in-container ``ingress-audit serve`` process among the descendants of ``parent``."""
    pending = [parent]
    while pending:
        pid = pending.pop()
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            # Go (buildah) forks from any of its threads: every thread's children.
            children = [
                c for t in Path(f"/proc/{pid}/task").glob("*/children") for c in t.read_text().split()
            ]
        except OSError:
            continue
        if Path(f"/proc/{pid}").stat().st_uid == UID and b"serve" in cmdline and b"python" in cmdline[0]:
            return pid
        pending.extend(int(child) for child in children)
    return None


def test_image_config_matches_the_dockerfile(built_image: str) -> None:
    """The built image runs the console script as 10001 from the data dir, with a HEALTHCHECK."""
    config = inspect(built_image)["Docker"]["config"]

    assert config["User"] == f"{UID}:{UID}"
    assert config["Entrypoint"] == ["ingress-audit"]
    assert config["Cmd"] == ["serve", "--config", CONFIG]
    assert config["WorkingDir"] == DATA
    assert list(config["ExposedPorts"]) == ["9440/tcp"]
    assert config["Healthcheck"]["Test"][:2] == ["CMD", "python"]


def test_image_serves_the_scenario_on_a_read_only_root(
    container: tuple[str, Path], built_image: str, tmp_path: Path
) -> None:
    """As UID 10001 on a read-only root: every captured batch is answered 200, every record is
    written to the data volume, owned by 10001, without a secret value; the HEALTHCHECK command
    passes against the server and fails without one; SIGTERM stops the server cleanly."""
    name, root = container
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    os.chown(data, UID, UID)
    port = free_port()
    config = tmp_path / "etc"
    config.mkdir()
    (config / "config.yaml").write_text(
        f"cluster: image-test\ndata_dir: {DATA}\nserver:\n  host: 127.0.0.1\n  port: {port}\n"
    )
    (config / "config.yaml").chmod(0o644)
    serve = ["ingress-audit", "serve", "--config", CONFIG]  # the image's ENTRYPOINT + CMD
    started = time.monotonic()
    proc = spawn(
        [
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            _READ_ONLY_ROOT,
            "sh",
            str(root),
            *run_argv(name, data, config, *serve),
        ],
        tmp_path,
    )
    try:
        wait_until(lambda: get(port, "/healthz")[0] == 200, STEP_TIMEOUT_S, "the image's server", proc)
        sys.stderr.write(f"image start: {time.monotonic() - started:.1f} s\n")  # pytest -rP shows it
        healthcheck = inspect(built_image)["Docker"]["config"]["Healthcheck"]["Test"][1:]
        up = {"INGRESS_AUDIT_HEALTH_URL": f"http://127.0.0.1:{port}/healthz"}
        down = {"INGRESS_AUDIT_HEALTH_URL": f"http://127.0.0.1:{free_port()}/healthz"}
        for env, expected in ((up, 0), (down, 1)):
            check = subprocess.run(
                run_argv(name, data, config, *healthcheck, env=env),
                capture_output=True,
                timeout=STEP_TIMEOUT_S,
                check=False,
            )
            assert check.returncode == expected, check.stderr[-2000:]

        answers = post_scenario(port)
        wait_until(lambda: drained(port), STEP_TIMEOUT_S, "the JSONL sink", proc)
        pid = server_pid(proc.pid)
        assert pid is not None
        os.kill(pid, signal.SIGTERM)  # what docker stop and the kubelet send to the ENTRYPOINT
        assert proc.wait(STEP_TIMEOUT_S) == 0
    finally:
        if proc.poll() is None:
            proc.kill()  # buildah run kills what it runs
            proc.wait(STEP_TIMEOUT_S)
    output = (tmp_path / "output").read_text(errors="replace")

    assert "Read-only file system" not in output
    assert sum(a["accepted"] for a in answers) == scenario_index()["summary"]["events"]
    assert sum(a["dead_lettered"] for a in answers) == 0
    records = [r for r in read_jsonl(data / "records.jsonl") if r.get("type") != "alert"]
    assert len(records) == sum(a["records"] for a in answers) > 0
    assert read_jsonl(data / "dead-letter.jsonl") == []
    for path in [data, *data.rglob("*")]:
        assert (path.stat().st_uid, path.stat().st_gid) == (UID, UID), path
    leaks = subprocess.run(
        [
            str(Path(sys.executable).parent / "ingress-audit"),
            "scan-leaks",
            str(SCENARIO / "secrets.txt"),
            str(data),
        ],
        capture_output=True,
        text=True,
        timeout=STEP_TIMEOUT_S,
        check=False,
    )
    assert leaks.returncode == 0, leaks.stdout[-2000:]


def test_image_root_is_read_only(container: tuple[str, Path], tmp_path: Path) -> None:
    """The server's root above is really read-only: even root writes only to /tmp and the data
    volume (UID 10001 could not write elsewhere anyway)."""
    name, root = container
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    os.chown(data, UID, UID)
    config = tmp_path / "etc"
    config.mkdir()
    probe = (
        "for d in / /opt/ingress-audit /etc /var/lib /tmp "
        + DATA
        + '; do touch "$d/probe" 2>/dev/null && echo "$d"; done; true'
    )
    done = subprocess.run(
        [
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            _READ_ONLY_ROOT,
            "sh",
            str(root),
            *run_argv(name, data, config, "sh", "-c", probe, user=0),
        ],
        capture_output=True,
        text=True,
        timeout=STEP_TIMEOUT_S,
        check=False,
    )

    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["/tmp", DATA]  # noqa: S108 - the container's /tmp
    assert not (root / "probe").exists()
