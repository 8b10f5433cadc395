from __future__ import annotations

import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.server import PeakSampler, ServeProcess, cpu_seconds, cpu_split, memory


class Scraped(ServeProcess):
    """A serve process whose /metrics is given, not scraped."""

    def __init__(self, tmp_path: Path, samples: dict[str, float]) -> None:
        super().__init__(tmp_path)
        self._samples = samples

    def metrics(self) -> dict[str, float]:
        return self._samples


def test_a_metric_is_summed_over_its_labels(tmp_path: Path) -> None:
    server = Scraped(
        tmp_path,
        {
            'ingress_audit_records_written_total{cluster="prod"}': 5.0,
            'ingress_audit_records_written_total{cluster="other"}': 2.0,
            "ingress_audit_records_written_created": 1.0,
        },
    )
    assert server.metric_total("ingress_audit_records_written_total") == 7.0


def test_a_metric_without_samples_is_nan(tmp_path: Path) -> None:
    assert math.isnan(Scraped(tmp_path, {}).metric_total("ingress_audit_records_written_total"))


def test_the_cpu_is_split_between_a_process_and_its_children() -> None:
    """The serve process's own CPU, and its worker processes' together (children of children
    too)."""
    spin = "import time\nend = time.process_time() + 0.6\nwhile time.process_time() < end: pass\n"
    child = subprocess.Popen([sys.executable, "-c", spin + "import time; time.sleep(30)"])
    try:
        deadline = time.monotonic() + 20
        while cpu_split(os.getpid())[1] < 0.5 and time.monotonic() < deadline:
            time.sleep(0.05)
        own, children = cpu_split(os.getpid())
        total = cpu_seconds(os.getpid())
    finally:
        child.kill()
        child.wait()
    assert children >= 0.5  # the child's spin, not this process's
    assert total == pytest.approx(own + children, abs=0.05)


def test_the_sampled_peak_sees_a_spike_the_current_rss_no_longer_shows() -> None:
    """A process that holds 80 MB for half a second, then frees it: read ten times a second,
    the peak of its RSS has the 80 MB; it stays within its own high-water mark."""
    spike = (
        "import sys, time\n"
        "time.sleep(0.3)\n"
        "held = bytearray(80 * 1024 * 1024)\n"
        "for i in range(0, len(held), 4096): held[i] = 1\n"
        "print('held', flush=True)\n"
        "time.sleep(0.5)\n"
        "del held\n"
        "print('freed', flush=True)\n"
        "time.sleep(30)\n"
    )
    child = subprocess.Popen([sys.executable, "-c", spike], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        with PeakSampler(child.pid, every_s=0.05) as sampler:
            assert child.stdout.readline() == "held\n"
            assert child.stdout.readline() == "freed\n"
        now, high_water = memory(child.pid)
    finally:
        child.kill()
        child.wait()
        if child.stdout is not None:
            child.stdout.close()
    assert sampler.peak >= now + 70 * 1024 * 1024
    assert sampler.peak <= high_water + 1024 * 1024  # the kernel moves VmHWM up a few pages late
