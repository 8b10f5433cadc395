from __future__ import annotations

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
