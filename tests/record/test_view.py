from __future__ import annotations

import orjson
import pytest

from tests.conftest import capture_events, captured_bodies
from webhook.config import Config
from webhook.dedupe import Deduper
from webhook.pipeline.stages import Pipeline
from webhook.record.line import to_json
from webhook.record.view import RecordView
from webhook.redact.redactor import Redactor
from webhook.runtime import pipeline_settings


def test_a_record_view_reads_exactly_as_the_records_json() -> None:
    """What the rules see of a Record is its JSONL form, field by field, however it is read."""
    pipeline = Pipeline(
        pipeline_settings(Config(cluster="c")), Deduper(max_entries=10_000, ttl_s=60), Redactor(b"k" * 32)
    )
    records = [
        record
        for body in captured_bodies()
        for record in pipeline.process(capture_events(body.name), received_at="2026-11-24T14:21:42Z").records
    ]
    assert any(r.secret_list for r in records)
    assert any(r.secret for r in records)
    for record in records:
        view = RecordView(record)
        assert dict(view) == orjson.loads(to_json(record))
        assert len(view) == len(dict(view))
        assert view.get("no-such-field") is None
        with pytest.raises(KeyError):
            view["no-such-field"]
