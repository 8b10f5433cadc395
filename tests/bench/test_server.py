from __future__ import annotations

import math
from pathlib import Path

from bench.server import ServeProcess


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
