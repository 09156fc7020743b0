"""Checkpoints: written atomically, read with ``weights_only=True``, restored in one call.

A checkpoint holds plain containers and tensors only (model and optimiser
state, step, best metric, resolved config, encoders, feature spec, RNG state),
so loading never runs code from the file. ``restore`` is the one way every
command reads a run back.
"""

from __future__ import annotations

import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from models_py.config import TrainConfig
from models_py.data import Encoders
from models_py.model import CTRModel, build_model
from models_py.registry import FeatureSpec
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


@dataclass(frozen=True)
class Restored:
    """A saved run read back: what it was trained with, on which features."""

    path: Path
    payload: dict[str, Any]  # everything in the file (for resuming and re-saving)
    config: TrainConfig
    spec: FeatureSpec
    encoders: Encoders

    @property
    def feature_build(self) -> str | None:
        return self.payload.get("feature_build")

    @property
    def feature_vars(self) -> dict[str, Any] | None:
        """The dbt vars the features were built with (None: a run from before)."""
        return self.payload.get("feature_vars")

    @property
    def category_slots(self) -> list[str] | None:
        """The categories of the history slots, in slot order (None: a run from before)."""
        return self.payload.get("category_slots")

    @property
    def state(self) -> dict[str, Any]:
        return self.payload["state"]

    def model(self) -> CTRModel:
        """The network with this checkpoint's weights, in eval mode, on the CPU."""
        model = build_model(self.spec, self.encoders, self.config)
        model.load_state_dict(self.payload["model"])
        return model.eval()


def restore(run_dir: Path, name: str = BEST) -> Restored:
    """Checkpoint ``name`` (best.pt or last.pt) of the run in ``run_dir``."""
    path = run_dir / name
    payload = load(path)
    return Restored(
        path,
        payload,
        TrainConfig.from_dict(payload["config"], source=str(run_dir)),
        FeatureSpec.from_dict(payload["spec"]),
        Encoders.from_dict(payload["encoders"]),
    )
