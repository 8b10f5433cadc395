"""One pattern helper: exact names and shell globs, case-sensitive, never raising on odd input."""

from __future__ import annotations

import fnmatch
import pickle

from hypothesis import given
from hypothesis import strategies as st

from webhook.core.patterns import Matcher


def test_exact_names_and_globs() -> None:
    """``*``, ``?`` and ``[...]`` are globs; anything else must match the whole value."""
    matcher = Matcher(("kube-*", "db-?", "[ab]x", "shop"))
    assert all(matcher(v) for v in ("kube-system", "kube-", "db-1", "ax", "bx", "shop"))
    assert not any(matcher(v) for v in ("kube", "db-10", "cx", "shopping", "xshop", "Shop"))


def test_anything_but_a_string_never_matches() -> None:
    """A malformed field (None, a number, a list) is not a match, and not an error."""
    matcher = Matcher(("*",))
    assert matcher("")
    assert not any(matcher(v) for v in (None, 1, ["a"], {"a": 1}, b"a"))


def test_any_of_takes_a_list_only() -> None:
    """``any_of`` reads a list of values (a caller's groups); a string is not a list of one."""
    matcher = Matcher(("dev", "ops-*"))
    assert matcher.any_of(["x", "ops-eu"])
    assert not matcher.any_of(["x", None])
    assert not matcher.any_of("dev")
    assert not matcher.any_of(None)


def test_no_patterns_match_nothing() -> None:
    """An empty set of patterns matches no value, not even the empty string."""
    assert not Matcher(())("")
    assert not Matcher(()).any_of([""])


def test_a_matcher_pickles_and_compares_by_its_patterns() -> None:
    """Rules holding matchers go to the worker processes: a matcher survives the trip."""
    matcher = Matcher(("team-*", "shop"))
    copy = pickle.loads(pickle.dumps(matcher))  # noqa: S301 - our own bytes
    assert copy == matcher
    assert copy("team-a")
    assert copy("shop")


patterns = st.lists(st.text(alphabet="ab*?[]!-.", max_size=6), max_size=4)
values = st.text(alphabet="ab*?[]!-.", max_size=8)


@given(patterns=patterns, value=values)
def test_same_answer_as_fnmatchcase(patterns: list[str], value: str) -> None:
    """Whatever the patterns, the answer is fnmatchcase's for any of them."""
    expected = any(fnmatch.fnmatchcase(value, p) for p in patterns)
    assert Matcher(tuple(patterns))(value) is expected
