from __future__ import annotations

import pickle
from dataclasses import fields

from webhook.state.base import StoredObject, lay_newer


def state(version: str) -> StoredObject:
    return StoredObject(resource_version=version, time=None, deleted=False, audit_id=f"a{version}", object={})


def test_only_newer_states_are_laid_over() -> None:
    states = {"a": state("5"), "b": state("5")}
    result = lay_newer(states, {"a": state("6"), "b": state("4"), "c": state("1")})
    assert result is states
    assert {key: s.resource_version for key, s in states.items()} == {"a": "6", "b": "5", "c": "1"}


def test_only_the_keys_asked_for() -> None:
    states = {"a": state("5")}
    lay_newer(states, {"a": state("6"), "c": state("1")}, ["a"])
    assert {key: s.resource_version for key, s in states.items()} == {"a": "6"}


def test_a_state_pickles_whole() -> None:
    """Worker processes send states to the event loop pickled: every field comes back, and a
    tombstone stays one (the tuple ``__reduce__`` must follow the fields)."""
    full = StoredObject(
        object={"metadata": {"name": "web"}},
        resource_version="7",
        audit_id="a7",
        time="2026-11-24T14:20:40.463683Z",
        certificate_sans=("shop.example.com",),
    )
    tomb = StoredObject(object=None, resource_version=None, audit_id="a8", time=None, deleted=True)
    for each in (full, tomb):
        back = pickle.loads(pickle.dumps(each, protocol=pickle.HIGHEST_PROTOCOL))  # noqa: S301 - ours
        assert back == each
        assert len(each.__reduce__()[1]) == len(fields(StoredObject))  # a new field: add it there
        assert [getattr(back, f.name) for f in fields(StoredObject)] == [
            getattr(each, f.name) for f in fields(StoredObject)
        ]
