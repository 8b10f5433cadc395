#!/usr/bin/env python3
"""Write manifests/components/monitoring's copies of config/'s Prometheus rules and dashboard.

config/prometheus-rules.yaml and config/grafana-dashboard.json are the sources; the
PrometheusRule and the dashboard file the component's ConfigMap is generated from are copies
(kustomize reads files only below the component). ``--check`` changes nothing and exits 1
when a copy is stale; tests/scenarios/test_monitoring.py runs it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "config"
COMPONENT = ROOT / "manifests" / "components" / "monitoring"

_RULE_HEADER = """\
# GENERATED from config/prometheus-rules.yaml by scripts/sync-monitoring.py: edit that file
# and run the script. Alerts on what the audited cluster's records say (brute force, TLS
# removal, untrusted changes, certificate expiry), on the ingress controllers' access logs
# (5xx ratio, 401/403 bursts, unparseable or dropped lines) and on ingress-audit's own health,
# from the metrics it exports (docs/operations.md) plus `up` and kube-state-metrics' pod readiness.
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata:
  name: ingress-audit
spec:
"""


def prometheus_rule(rules: str) -> str:
    """The rules file's groups, comments above them dropped, as the PrometheusRule's spec."""
    lines = rules.splitlines(keepends=True)
    start = next(i for i, line in enumerate(lines) if line.startswith("groups:"))
    return _RULE_HEADER + "".join(f"  {line}" if line.strip() else line for line in lines[start:])


def outputs() -> dict[Path, str]:
    return {
        COMPONENT / "prometheusrule.yaml": prometheus_rule((CONFIG / "prometheus-rules.yaml").read_text()),
        COMPONENT / "grafana-dashboard.json": (CONFIG / "grafana-dashboard.json").read_text(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="report stale copies, change nothing")
    args = parser.parse_args(argv)
    stale = []
    for path, text in outputs().items():
        if path.exists() and path.read_text() == text:
            continue
        stale.append(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)
        if not args.check:
            path.write_text(text)
    for path in stale:
        sys.stderr.write(f"{'stale' if args.check else 'wrote'}: {path}\n")
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
