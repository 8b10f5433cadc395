"""The lenient JSON reader: a value of the wrong type reads as empty or None, never raises."""

from __future__ import annotations

from types import MappingProxyType
from typing import Any

import pytest

from webhook.core.values import as_dict, as_int, as_list, as_mapping, as_nonempty_str, as_str, as_strs

ODD: tuple[Any, ...] = (None, True, 0, 1.5, "", "x", [], ["x"], {}, {"a": 1}, b"x")


def test_dicts_and_lists_come_back_as_they_are() -> None:
    """The very object, not a copy: readers only read."""
    doc, items = {"a": 1}, [1, "x"]
    assert as_dict(doc) is doc
    assert as_list(items) is items
    assert as_mapping(doc) is doc


@pytest.mark.parametrize("value", [v for v in ODD if not isinstance(v, dict)])
def test_anything_else_is_an_empty_dict(value: Any) -> None:
    """A list, a string or a number where a dict belongs reads as ``{}``."""
    assert as_dict(value) == {}
    assert as_mapping(value) == {}


def test_as_mapping_takes_any_mapping_as_dict_only_a_dict() -> None:
    """A read-only view is a mapping, not a dict."""
    view = MappingProxyType({"a": 1})
    assert as_mapping(view) is view
    assert as_dict(view) == {}


@pytest.mark.parametrize("value", [v for v in ODD if not isinstance(v, list)])
def test_anything_else_is_an_empty_list(value: Any) -> None:
    """A dict or a number where a list belongs (``listeners: 5``) reads as ``[]``."""
    assert as_list(value) == []


def test_strings() -> None:
    """``as_str`` keeps ``""``; ``as_nonempty_str`` reads it as missing; neither converts."""
    assert [as_str(v) for v in ODD] == [None, None, None, None, "", "x", None, None, None, None, None]
    assert [as_nonempty_str(v) for v in ODD] == [None] * 5 + ["x"] + [None] * 5


def test_integers_are_not_booleans() -> None:
    """``true`` is not 1, and ``1.5`` or ``"1"`` is not an integer."""
    assert [as_int(v) for v in (0, 7, -1, True, False, 1.5, "1", None)] == [0, 7, -1] + [None] * 5


def test_strings_of_a_list() -> None:
    """Only the string items of a list, in order; anything but a list reads as ``()``."""
    assert as_strs(["a", 1, None, "b", ["c"], ""]) == ("a", "b", "")
    assert as_strs("ab") == ()
    assert as_strs({"a": "b"}) == ()
    assert as_strs(None) == ()
