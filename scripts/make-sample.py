"""Build examples/eventlist.json from the captured kube-apiserver v1.26 requests.

The sample holds the real events of a few kubectl steps (create an Ingress with TLS, add a
configuration snippet, remove TLS, a 403 and a 401), as one EventList, so that a new user can
POST it without a cluster. Secret-bearing steps are left out on purpose.

Usage: python scripts/make-sample.py [FIXTURES_DIR] > examples/eventlist.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

STEPS = {
    "0009.json": "A05 create Ingress with TLS",
    "0016.json": "A11 merge patch: new hosts + configuration-snippet",
    "0019.json": "A14 JSON patch removes TLS",
    "0028.json": "A20 alice: get secret (403)",
    "0032.json": "A23 unknown token (401)",
}


def main() -> int:
    default = Path(__file__).resolve().parents[1] / "tests/fixtures/apiserver-v1.26"
    root = Path(sys.argv[1]) if len(sys.argv) > 1 else default
    items = []
    for name in STEPS:
        body = json.loads((root / "scenario-a/captures" / name).read_bytes())
        items.extend(body["items"])
    doc = {"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "metadata": {}, "items": items}
    sys.stdout.write(json.dumps(doc, separators=(",", ":")) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
