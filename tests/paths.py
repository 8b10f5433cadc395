"""Where the checkout is, named once so that a test file can move without its paths breaking."""

from __future__ import annotations

from pathlib import Path
from typing import Final

__all__ = ["ROOT"]

ROOT: Final = Path(__file__).resolve().parents[1]
