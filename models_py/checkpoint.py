"""Checkpoints: written atomically, read with ``weights_only=True``.

A checkpoint holds plain containers and tensors only (model and optimiser
state, step, best metric, resolved config, encoders, feature spec, RNG state),
so loading never runs code from the file.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from seeds_gen.errors import UserError

BEST = "best.pt"
LAST = "last.pt"


def save(payload: dict[str, Any], path: Path) -> None:
    """Write to a temporary file in the same folder, fsync, then rename over ``path``."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as handle:
            torch.save(payload, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def load(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise UserError(f"checkpoint {path} not found")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "unsafe content"
        raise UserError(
            f"checkpoint {path} refused: it holds more than weights and plain data ({first[:120]})"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError) as exc:
        raise UserError(
            f"checkpoint {path} is corrupt or truncated "
            f"({type(exc).__name__}): retrain or resume from another run"
        ) from None
    if not isinstance(payload, dict) or "model" not in payload or "config" not in payload:
        raise UserError(f"checkpoint {path} is not a recsys checkpoint")
    return payload
