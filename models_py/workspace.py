"""Where a command works: the data dir, the dbt artifacts and the warehouse.

Resolved once from the environment by the CLI (``resolve_workspace``), or built
for a given world by a test or the benchmark, and passed down: no module below
the CLI reads environment variables to find its files.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from models_py.warehouse import REPO, Warehouse, load_warehouse
from recsys_core import paths

PROJECT_DIR_ENV = "RECSYS_PROJECT_DIR"
DBT_TARGET_PATH_ENV = "DBT_TARGET_PATH"


@dataclass(frozen=True)
class Workspace:
    data_dir: Path  # raw.db, the warehouse files, runs/, cache/, mlflow.db
    project_dir: Path  # the dbt project: dbt_project.yml, profiles.yml
    dbt_target_path: Path  # dbt's artifacts (manifest.json), as dbt honours DBT_TARGET_PATH
    warehouse: Warehouse

    @property
    def runs_dir(self) -> Path:
        return self.data_dir / "runs"

    @property
    def cache_dir(self) -> Path:
        return self.data_dir / "cache"

    @property
    def manifest_path(self) -> Path:
        return self.dbt_target_path / "manifest.json"

    def dbt_environ(self) -> dict[str, str]:
        """The environment of a dbt command that must build into this workspace."""
        return {
            **os.environ,
            paths.DATA_DIR_ENV: str(self.data_dir),
            DBT_TARGET_PATH_ENV: str(self.dbt_target_path),
            "RECSYS_TARGET": self.warehouse.target,
        }


def resolve_workspace(
    target: str | None = None, environ: Mapping[str, str] | None = None
) -> Workspace:
    """The workspace that ``environ`` (default: this process's environment) names:
    $RECSYS_DATA_DIR, $RECSYS_PROJECT_DIR, $DBT_TARGET_PATH, and the dbt ``target``
    (default: the profile's, i.e. $RECSYS_TARGET or sqlite)."""
    env = os.environ if environ is None else environ
    data_dir = paths.data_dir(environ=env)
    project_dir = Path(env.get(PROJECT_DIR_ENV) or REPO)
    configured = env.get(DBT_TARGET_PATH_ENV)
    if not configured:
        target_path = project_dir / "target"
    else:
        target_path = Path(configured)
        if not target_path.is_absolute():
            target_path = project_dir / target_path
    warehouse = load_warehouse(target, profiles_dir=project_dir, environ=env)
    return Workspace(data_dir, project_dir, target_path, warehouse)
