"""Name patterns as the config writes them: exact strings and shell globs (``kube-*``), case-sensitive.

One helper for every list of patterns (filter rules, client subjects, detections, findings,
``tail``): exact names are a set lookup and the globs one compiled regex, built once.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field
from typing import Final

__all__ = ["Matcher"]

_GLOB_CHARS: Final = frozenset("*?[")


@dataclass(frozen=True, slots=True)
class Matcher:
    """A set of exact strings and shell-style patterns; anything but a string never matches."""

    patterns: tuple[str, ...]
    _exact: frozenset[str] = field(init=False, repr=False, compare=False)
    _regex: re.Pattern[str] | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        exact = frozenset(p for p in self.patterns if not _GLOB_CHARS & set(p))
        globs = [fnmatch.translate(p) for p in self.patterns if _GLOB_CHARS & set(p)]
        object.__setattr__(self, "_exact", exact)
        object.__setattr__(self, "_regex", re.compile("|".join(globs)) if globs else None)

    def __call__(self, value: object) -> bool:
        if not isinstance(value, str):
            return False
        if value in self._exact:
            return True
        return self._regex is not None and self._regex.match(value) is not None

    def any_of(self, values: object) -> bool:
        """Whether any item of a list matches (a malformed non-list matches nothing)."""
        return isinstance(values, list) and any(self(v) for v in values)
