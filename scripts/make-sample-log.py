"""Build examples/audit.log, a kube-apiserver log-backend file, from the captured v1.26 requests.

The log backend (``--audit-log-path``, JSON format) writes one ``audit.k8s.io/v1`` Event per
line, with ``kind`` and ``apiVersion`` on each. This file holds every event that the apiserver
sent to the webhook during steps A03-A36 of scenario A (the kubectl steps plus the apiserver's
own traffic in the same batches), in the order it sent them, so that ``ingress-audit replay
examples/audit.log`` shows the product without a cluster.

No secret value is in it: the captures log Secrets at RequestResponse level, with their values;
here the events that carry a Secret (or a patch of one, or a list) are cut down to Metadata
level without their objects, which is what the recommended audit policy sends for Secrets.

Usage: python scripts/make-sample-log.py [FIXTURES_DIR] > examples/audit.log
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

FIRST_STEP = "A03"
LAST_STEP = "A36"
_OBJECTS = ("requestObject", "responseObject")
_SAFE_KINDS = frozenset({"Status", "DeleteOptions"})


def _files(scenario: Path) -> list[str]:
    """The capture files of the steps, each once, in the order the apiserver sent them."""
    index = json.loads((scenario / "index.json").read_bytes())
    names = {
        name for step in index["steps"] if FIRST_STEP <= step["id"] <= LAST_STEP for name in step["files"]
    }
    return sorted(names)


def _at_recommended_level(event: dict[str, object]) -> dict[str, object]:
    """A Secret's event as the recommended policy logs it: Metadata, without the objects.

    Events whose objects hold no Secret data (a Status, DeleteOptions) are kept as they are.
    """
    ref = event.get("objectRef")
    if not isinstance(ref, dict) or ref.get("resource") != "secrets":
        return event
    objects = [event[k] for k in _OBJECTS if k in event]
    if all(isinstance(o, dict) and o.get("kind") in _SAFE_KINDS for o in objects):
        return event
    trimmed = {k: v for k, v in event.items() if k not in _OBJECTS}
    return {**trimmed, "level": "Metadata"}


def main() -> int:
    default = Path(__file__).resolve().parents[1] / "tests/fixtures/apiserver-v1.26"
    root = Path(sys.argv[1]) if len(sys.argv) > 1 else default
    scenario = root / "scenario-a"
    out = []
    for name in _files(scenario):
        body = json.loads((scenario / "captures" / name).read_bytes())
        for event in body["items"]:
            line = {"kind": "Event", "apiVersion": body["apiVersion"], **_at_recommended_level(event)}
            out.append(json.dumps(line, separators=(",", ":")) + "\n")
    sys.stdout.write("".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
