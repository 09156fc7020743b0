"""Checkpoints: written atomically, read with ``weights_only=True``.

A checkpoint holds plain containers and tensors only (model and optimiser
state, step, best metric, resolved config, encoders, feature spec, RNG state),
so loading never runs code from the file.
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from recsys_core.atomic import open_atomic
from recsys_core.errors import UserError

BEST = "best.pt"
LAST = "last.pt"


def save(payload: dict[str, Any], path: Path) -> None:
    """Atomically: the old checkpoint stays whole until the new one is on disk."""
    with open_atomic(path, "wb") as handle:
        torch.save(payload, handle)


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
