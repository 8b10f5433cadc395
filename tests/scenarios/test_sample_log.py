"""examples/audit.log, the sample log-backend file, stays true to the captures and holds no secret."""

from __future__ import annotations

import subprocess
import sys

import orjson

from tests.conftest import FIXTURES, SCENARIO, scenario_secrets
from tests.paths import ROOT
from webhook.events import check_event

SAMPLE = ROOT / "examples" / "audit.log"


def test_sample_log_is_generated_from_the_captures() -> None:
    """examples/audit.log is exactly what scripts/make-sample-log.py builds from the fixtures."""
    built = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "make-sample-log.py"), str(FIXTURES)],
        check=True,
        capture_output=True,
        timeout=60,
    ).stdout

    assert built == SAMPLE.read_bytes()


def test_sample_log_holds_no_secret() -> None:
    """No value listed in the scenario's secrets.txt occurs in the sample."""
    sample = SAMPLE.read_bytes()
    secrets = scenario_secrets()

    assert secrets
    assert not [i for i, value in enumerate(secrets) if value.encode() in sample]


def test_sample_log_is_one_event_per_line() -> None:
    """Each line is an audit.k8s.io/v1 Event as the log backend writes it (kind and apiVersion)."""
    lines = SAMPLE.read_bytes().splitlines()
    events = [orjson.loads(line) for line in lines]

    assert len(events) > 100
    for event in events:
        assert (event["kind"], event["apiVersion"]) == ("Event", "audit.k8s.io/v1")
        check_event(event)
    secret_events = [e for e in events if e.get("objectRef", {}).get("resource") == "secrets"]
    assert secret_events
    objects = [e[k] for e in secret_events for k in ("requestObject", "responseObject") if k in e]
    assert {o["kind"] for o in objects} <= {"Status", "DeleteOptions"}


def test_sample_log_covers_the_steps() -> None:
    """The events of steps A03-A36 are there, from the first to the last kubectl step."""
    audit_ids = {orjson.loads(line)["auditID"] for line in SAMPLE.read_bytes().splitlines()}
    index = orjson.loads((SCENARIO / "index.json").read_bytes())
    steps = {s["id"]: s for s in index["steps"]}
    for step in ("A03", "A20", "A23", "A36"):
        for name in steps[step]["files"]:
            body = orjson.loads((SCENARIO / "captures" / name).read_bytes())
            assert {e["auditID"] for e in body["items"]} <= audit_ids, step
