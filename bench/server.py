"""The real ``ingress-audit serve`` process on loopback, and what /proc says about it.

Started with the default config (JSONL sink, durable acks) or a given one, on a free port and
a temporary data dir; it gets SIGTERM when the benchmark is done, and dies with the benchmark
if that is killed.
"""

from __future__ import annotations

import ctypes
import http.client
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import orjson

__all__ = [
    "PeakSampler",
    "ServeProcess",
    "cpu_seconds",
    "cpu_split",
    "die_with_parent",
    "free_port",
    "memory",
    "processes",
]

_CLOCK_TICKS: Final = os.sysconf("SC_CLK_TCK")
_PR_SET_PDEATHSIG: Final = 1
_ALERT_LINE: Final = b'{"schema_version":1,"type":"alert"'  # alert records are not events


def processes(pid: int) -> list[int]:
    """``pid`` and its descendants (the serve process's worker processes), from /proc."""
    found = [pid]
    for parent in found:  # grows while it is walked: breadth first
        try:
            tasks = list(Path(f"/proc/{parent}/task").iterdir())
        except OSError:
            continue
        for task in tasks:
            try:
                found.extend(int(child) for child in (task / "children").read_text().split())
            except OSError:
                continue
    return found


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` and its worker processes (all threads), from /proc/<pid>/stat."""
    return sum(cpu_split(pid))


def cpu_split(pid: int) -> tuple[float, float]:
    """User + system CPU time of ``pid`` itself (all its threads), and of its descendants (the
    worker processes) together."""
    own = others = 0
    for each in processes(pid):
        try:
            fields = Path(f"/proc/{each}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # a worker that just exited
        ticks = int(fields[11]) + int(fields[12])
        if each == pid:
            own = ticks
        else:
            others += ticks
    return own / _CLOCK_TICKS, others / _CLOCK_TICKS


def memory(pid: int) -> tuple[int, int]:
    """(current RSS, peak RSS) in bytes of ``pid`` plus its worker processes, from /proc/<pid>/status.

    The peak is the sum of each process's own peak (``VmHWM``): an upper bound of the total's."""
    rss = peak = 0
    for each in processes(pid):
        values = {}
        try:
            text = Path(f"/proc/{each}/status").read_text()
        except OSError:
            continue
        for line in text.splitlines():
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(rest.split()[0]) * 1024
        rss += values.get("VmRSS", 0)
        peak += values.get("VmHWM", 0)
    return rss, peak


class PeakSampler:
    """The highest total RSS of ``pid`` and its worker processes at one moment, read every
    ``every_s`` from a thread while in the ``with`` block.

    ``memory``'s peak adds each process's own peak, which need not fall at the same moment: an
    upper bound of the total's. This is a lower bound (a spike between two readings is missed);
    the total's true peak lies between the two."""

    def __init__(self, pid: int, every_s: float = 0.1) -> None:
        self.pid = pid
        self.every_s = every_s
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def _run(self) -> None:
        while True:
            self.peak = max(self.peak, memory(self.pid)[0])
            if self._stop.wait(self.every_s):
                return

    def __enter__(self) -> PeakSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def die_with_parent() -> None:
    """Runs in the child before exec: SIGTERM it when the benchmark process goes away."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def healthy(port: int) -> bool:
    """``GET /healthz`` on loopback answers 200."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1.0)
    try:
        conn.request("GET", "/healthz")
        return conn.getresponse().status == 200
    except OSError:
        return False
    finally:
        conn.close()


def start_healthy(
    command: list[str], *, port: int, failure: str, timeout_s: float, **popen: Any
) -> subprocess.Popen[bytes]:
    """Start ``command`` (dying with us) and wait until it answers ``/healthz`` on ``port``;
    RuntimeError(``failure``) when it exits or does not answer in time."""
    proc = subprocess.Popen(  # noqa: S603 - our own server commands, fixed arguments
        command,
        stdin=subprocess.DEVNULL,
        preexec_fn=die_with_parent,  # the benchmark process starts no threads
        **popen,
    )
    deadline = time.monotonic() + timeout_s
    while not healthy(port):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(failure)
        time.sleep(0.05)
    return proc


def stop_process(proc: subprocess.Popen[bytes] | None, timeout_s: float) -> int:
    """SIGTERM, then SIGKILL after ``timeout_s``; the exit status (0 if never started)."""
    if proc is None:
        return 0
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout_s)
    return proc.returncode


def _executable() -> str:
    beside = Path(sys.executable).with_name("ingress-audit")
    found = str(beside) if beside.exists() else shutil.which("ingress-audit")
    if found is None:
        raise FileNotFoundError("ingress-audit is not installed (pip install -e .)")
    return found


@dataclass(slots=True)
class ServeProcess:
    workdir: Path
    config: Path | None = None  # None: the embedded defaults (JSONL sink, durable acks)
    proc: subprocess.Popen[bytes] | None = None
    port: int = 0
    code: Path | None = None  # a checkout whose webhook package to serve instead (A/B runs)

    @property
    def data_dir(self) -> Path:
        return self.workdir / "data"

    @property
    def log_path(self) -> Path:
        return self.workdir / "serve.log"

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise RuntimeError("not started")
        return self.proc.pid

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 30.0) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("INGRESS_AUDIT_")}
        if self.code is not None:
            env["PYTHONPATH"] = str(self.code.resolve())
        self.port = free_port()
        command = [_executable(), "serve", "--host", "127.0.0.1", "--port", str(self.port)]
        command += ["--data-dir", str(self.data_dir)]
        if self.config is not None:
            command += ["--config", str(self.config.resolve())]
        with self.log_path.open("ab") as log:
            self.proc = start_healthy(
                command,
                port=self.port,
                failure=f"ingress-audit serve did not start; see {self.log_path}",
                timeout_s=timeout_s,
                cwd=self.workdir,
                env=env,
                stdout=log,
                stderr=log,
            )

    def get(self, path: str, timeout_s: float = 10.0) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout_s)
        try:
            conn.request("GET", path)
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()

    def sinks(self) -> dict[str, Any]:
        """/readyz's per-sink status: ``{"jsonl": {"ok": true, "lag_records": 0}}``."""
        _, body = self.get("/readyz")
        sinks: dict[str, Any] = orjson.loads(body).get("sinks", {})
        return sinks

    def wait_delivered(self, timeout_s: float) -> bool:
        """Until every sink has delivered everything in the spool (by /readyz)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if all(s.get("lag_records", 0) == 0 for s in self.sinks().values()):
                return True
            time.sleep(0.1)
        return False

    def metrics(self) -> dict[str, float]:
        """Every sample of /metrics, keyed by name and labels as printed."""
        _, body = self.get("/metrics")
        samples = {}
        for line in body.decode().splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                samples[name] = float(value)
        return samples

    def metric_total(self, name: str) -> float:
        """The sum of ``name``'s samples over all their labels (NaN when it has none)."""
        found = [
            value
            for sample, value in self.metrics().items()
            if sample == name or sample.startswith(name + "{")
        ]
        return sum(found) if found else math.nan

    def records_file(self) -> Path:
        return self.data_dir / "records.jsonl"

    def records_written(self) -> tuple[int, bool]:
        """Audit records in the JSONL sink's file and its backups (not the detections' alert
        records); False if rotation may have dropped some."""
        path = self.records_file()
        total = 0
        files = [path, *sorted(path.parent.glob(path.name + ".*"))]
        for file in files:
            if file.suffix.lstrip(".").isdigit() or file == path:
                with file.open("rb") as handle:
                    total += sum(1 for line in handle if not line.startswith(_ALERT_LINE))
        complete = not path.with_name(path.name + ".5").exists()  # the default keeps 5 backups
        return total, complete

    def stop(self, timeout_s: float = 30.0) -> int:
        return stop_process(self.proc, timeout_s)
