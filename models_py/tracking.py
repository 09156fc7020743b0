"""Experiment tracking in MLflow with a local SQLite store in the data dir (no server).

Tracking is a side channel: any failure to log becomes one warning and logging
stops for that run; the training run itself is never lost. MLflow is imported
only when a tracked command runs, so ``recsys --help`` stays fast.
"""

from __future__ import annotations

import subprocess
import warnings
from pathlib import Path
from typing import Any

from models_py.warehouse import REPO

EXPERIMENT = "recsys"
ARTIFACT_SUFFIXES = (".png", ".md", ".json", ".csv")


def tracking_uri(data_dir: Path) -> str:
    return f"sqlite:///{(data_dir / 'mlflow.db').resolve()}"


def git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, timeout=10
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def flatten(values: dict[str, Any], prefix: str = "") -> dict[str, float]:
    """Nested metrics as flat ``a.b.c`` names, numbers only."""
    out: dict[str, float] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, f"{name}."))
        elif isinstance(value, bool) or isinstance(value, int | float) and value == value:
            out[name] = float(value)
    return out


class Tracker:
    """One MLflow run; every method is a no-op once disabled or after a failure."""

    def __init__(self, enabled: bool, run_name: str, kind: str, data_dir: Path) -> None:
        self.enabled = enabled
        self._mlflow: Any = None
        if not enabled:
            return
        self._call(self._start, run_name, kind, data_dir)

    def _start(self, run_name: str, kind: str, data_dir: Path) -> None:
        import logging

        import mlflow

        logging.getLogger("mlflow").setLevel(logging.WARNING)
        logging.getLogger("alembic").setLevel(logging.WARNING)
        mlflow.set_tracking_uri(tracking_uri(data_dir))
        if mlflow.get_experiment_by_name(EXPERIMENT) is None:
            artifacts = (data_dir / "mlartifacts").resolve()
            mlflow.create_experiment(EXPERIMENT, artifact_location=artifacts.as_uri())
        mlflow.set_experiment(EXPERIMENT)
        mlflow.start_run(run_name=run_name, tags={"kind": kind, "git_commit": git_commit()})
        self._mlflow = mlflow

    def _call(self, fn: Any, *args: Any, **kwargs: Any) -> None:
        if not self.enabled:
            return
        try:
            fn(*args, **kwargs)
        except Exception as exc:  # tracking must never cost a training run
            self.enabled = False
            warnings.warn(
                f"MLflow tracking disabled for this run: {type(exc).__name__}: "
                f"{str(exc).splitlines()[0] if str(exc) else ''}",
                stacklevel=3,
            )

    def params(self, values: dict[str, Any]) -> None:
        self._call(lambda: self._mlflow.log_params({k: str(v)[:500] for k, v in values.items()}))

    def metrics(self, values: dict[str, Any], step: int | None = None) -> None:
        self._call(lambda: self._mlflow.log_metrics(flatten(values), step=step))

    def artifacts(self, folder: Path) -> None:
        def log() -> None:
            for path in sorted(folder.iterdir()):
                if path.is_file() and path.suffix in ARTIFACT_SUFFIXES:
                    self._mlflow.log_artifact(str(path))

        self._call(log)

    def text(self, text: str, name: str) -> None:
        self._call(lambda: self._mlflow.log_text(text, name))

    def end(self, status: str = "FINISHED") -> None:
        self._call(lambda: self._mlflow.end_run(status=status))
