"""Where data lives: one setting, the RECSYS_DATA_DIR environment variable."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

DATA_DIR_ENV = "RECSYS_DATA_DIR"
DEFAULT_DATA_DIR = "data"
RAW_DB_NAME = "raw.db"


def data_dir(
    override: str | os.PathLike[str] | None = None, environ: Mapping[str, str] | None = None
) -> Path:
    """The data directory: an explicit override, else $RECSYS_DATA_DIR of ``environ``
    (default: os.environ), else ./data."""
    if override is not None:
        return Path(override)
    env = os.environ if environ is None else environ
    return Path(env.get(DATA_DIR_ENV) or DEFAULT_DATA_DIR)


def raw_db_path(
    override: str | os.PathLike[str] | None = None, environ: Mapping[str, str] | None = None
) -> Path:
    return data_dir(override, environ) / RAW_DB_NAME
