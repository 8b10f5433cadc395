"""What the workers send back pickles as plain tuples and comes back equal."""

from __future__ import annotations

import pickle
from typing import Any

import orjson

from tests.conftest import capture_events, captured_bodies
from webhook.config import Config
from webhook.core.findings import Finding
from webhook.dedupe import Deduper
from webhook.pipeline.stages import Pipeline
from webhook.pipeline.workers import PrepareSettings, _pack, _unpack
from webhook.redact.certs import CertificateInfo
from webhook.redact.model import KeyFingerprint, SecretDetails
from webhook.redact.redactor import RedactionResult, Redactor
from webhook.runtime import pipeline_settings, prepare_settings


def _round_trip(value: Any) -> Any:
    return pickle.loads(pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL))  # noqa: S301 - our own bytes


def _prepared() -> Any:
    pipeline = Pipeline(
        pipeline_settings(Config(cluster="c")), Deduper(max_entries=10_000, ttl_s=60), Redactor(b"k" * 32)
    )
    events = [event for body in captured_bodies() for event in capture_events(body.name)]
    return pipeline.prepare(events, received_at="2026-11-24T14:21:42Z")


def test_redaction_details_survive_the_trip_to_the_event_loop() -> None:
    redacted: list[RedactionResult] = [p.redacted for p in _prepared().pending if p.redacted.secrets]
    secrets = [secret for result in redacted for secret in result.secrets]
    assert any(secret.certificates for secret in secrets)
    assert any(secret.findings for secret in secrets)
    assert any(secret.keys for secret in secrets)
    for result in redacted:
        assert _round_trip(result) == result


def test_the_details_pickle_as_tuples_not_through_dataclass_state() -> None:
    for cls in (KeyFingerprint, SecretDetails, CertificateInfo, Finding):
        assert cls.__reduce__ is not object.__reduce__, cls
    finding = Finding(id="x", severity="low", message="m")
    reduced: Any = finding.__reduce__()
    function, (cls, names, values) = reduced
    assert function.__name__ == "_rebuild"
    assert cls is Finding
    assert dict(zip(names, values, strict=True))["id"] == "x"
    assert _round_trip(finding) == finding


def test_a_batch_answer_round_trips_whole() -> None:
    result = _prepared()
    assert result.pending
    back = _unpack(_round_trip(_pack(result)))
    assert [p.redacted for p in back.pending] == [p.redacted for p in result.pending]
    assert [p.key for p in back.pending] == [p.key for p in result.pending]
    assert orjson.dumps(back.dead_letters) == orjson.dumps(result.dead_letters)


def test_a_worker_is_sent_its_settings_not_the_config() -> None:
    """What a worker gets at its start pickles whole and holds no section it does not read
    (no sinks, no state store, no paths)."""
    config = Config(cluster="c")
    settings = prepare_settings(config)
    back = _round_trip(settings)
    assert back == settings
    assert isinstance(back, PrepareSettings)
    assert back.pipeline.cluster == "c"
    assert back.pipeline.max_event_bytes == config.server.max_event_bytes
    assert back.certificate_expiry_warning_days == config.redaction.certificate_expiry_warning_days
    assert b"webhook.config" not in pickle.dumps(settings, protocol=pickle.HIGHEST_PROTOCOL)
