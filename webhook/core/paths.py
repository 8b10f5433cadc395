"""Where a configured path points: relative paths in the config are relative to the data dir."""

from __future__ import annotations

from pathlib import Path

__all__ = ["in_data_dir"]


def in_data_dir(data_dir: Path, path: Path) -> Path:
    """``path`` itself when absolute, else ``data_dir / path``."""
    return path if path.is_absolute() else data_dir / path
