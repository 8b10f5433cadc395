"""Fixtures of the source tests: a real Azurite (tests/sources/azurite.py)."""

from tests.sources.azurite import azurite, container  # noqa: F401 - fixtures
