"""Run directories under <data dir>/runs/, with ``latest`` pointing to the newest."""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from recsys_core import atomic
from recsys_core.errors import UserError


def new_run_dir(root: Path, prefix: str = "") -> Path:
    """A new, empty run directory under ``root`` named by the time (and ``prefix``)."""
    root.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    for n in range(1000):
        path = root / f"{prefix}{stamp}{'' if n == 0 else f'-{n}'}"
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
    raise UserError(f"could not create a run directory under {root}")


def point_latest(run_dir: Path) -> None:
    """Atomically repoint runs/latest at ``run_dir``."""
    link = run_dir.parent / "latest"
    tmp = run_dir.parent / f".latest.tmp-{os.getpid()}"
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    tmp.symlink_to(run_dir.name)
    os.replace(tmp, link)


def resolve_run(path: str | Path | None, root: Path) -> Path:
    """The run named by the user, or ``root``/latest."""
    run = Path(path) if path is not None else root / "latest"
    if not run.exists():
        hint = "train one first (`make train`)" if path is None else "check the path"
        raise UserError(f"run directory {run} not found: {hint}")
    return run.resolve()


def write_json(path: Path, payload: Any) -> None:
    """Valid JSON (an undefined metric, NaN or infinite, is written as null), atomically."""
    text = json.dumps(_finite(payload), indent=2, sort_keys=True, default=_plain, allow_nan=False)
    atomic.write_text(path, text + "\n")


def _finite(value: Any) -> Any:
    """``value`` with every NaN or infinite float (numpy's too) replaced by None."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_text(path: Path, text: str) -> None:
    atomic.write_text(path, text)


def _plain(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
