"""Shared fixtures: small worlds with fixed seeds, each in its own data dir."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from models_py.workspace import Workspace, resolve_workspace

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
ML100K_MINI = REPO / "tests" / "fixtures" / "ml-100k-mini"

# dbt and models_py both honour DBT_TARGET_PATH: the tests keep their manifests
# and run results out of the repository's target/, which belongs to the user.
# run_cli gives each data dir its own (<data dir>/target), so no test reads a
# manifest that another test wrote; this default covers direct subprocesses.
os.environ.setdefault("DBT_TARGET_PATH", tempfile.mkdtemp(prefix="recsys-dbt-target-"))


def world_env(data_dir: Path, **env: str) -> dict[str, str]:
    """The environment of a command on ``data_dir``: its data and its own dbt
    artifacts (``data_dir/target``)."""
    return {
        **os.environ,
        "RECSYS_DATA_DIR": str(data_dir),
        "DBT_TARGET_PATH": str(data_dir / "target"),
        **env,
    }


def run_cli(args: list[str], data_dir: Path, check: bool = True, **env: str):
    """Run a command from the repo root on ``data_dir`` (see world_env)."""
    full_env = world_env(data_dir, **env)
    result = subprocess.run(
        args, cwd=REPO, env=full_env, capture_output=True, text=True, timeout=900
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"{' '.join(args)} exited {result.returncode}\n{result.stdout}\n{result.stderr}"
        )
    return result


def generate(
    data_dir: Path,
    impressions: int = 20_000,
    users: int = 800,
    items: int = 300,
    days: int = 30,
    seed: int = 7,
    slate_size: int = 1,
):
    return run_cli(
        [
            sys.executable,
            "-m",
            "seeds_gen",
            "synthetic",
            "--impressions",
            str(impressions),
            "--users",
            str(users),
            "--items",
            str(items),
            "--days",
            str(days),
            "--seed",
            str(seed),
            "--slate-size",
            str(slate_size),
        ],
        data_dir,
    )


def dbt(
    args: list[str],
    data_dir: Path,
    check: bool = True,
    project_dir: Path | None = None,
    target: str = "sqlite",
    **env: str,
):
    cmd = [str(BIN / "dbt"), *args, "--target", target]
    if project_dir is not None:
        cmd += ["--project-dir", str(project_dir), "--profiles-dir", str(project_dir)]
    extensions = next(
        Path(sys.prefix).glob("lib/python*/site-packages/duckdb_ext/extensions"), None
    )
    if extensions:
        env = {"RECSYS_DUCKDB_EXTENSIONS": str(extensions), **env}
    return run_cli(cmd, data_dir, check=check, **env)


def one_error_line(result: subprocess.CompletedProcess) -> str:
    """What the README promises for a refused command: exit status 2 and exactly
    one line on stderr, an ``error:`` line (no traceback, no warnings before it)."""
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def world_workspace(world: Path, target: str | None = None) -> Workspace:
    """The workspace of ``world`` for in-process models_py calls, as run_cli gives
    commands (see world_env)."""
    return resolve_workspace(target, environ=world_env(world))


@pytest.fixture(scope="session")
def built_world(tmp_path_factory) -> Path:
    """A small generated world with features built by dbt on SQLite (shared, read-only).
    Slates of 2 put many impressions in the same second as another of their
    user: the case the point-in-time rule and its recompute tests exist for."""
    data_dir = tmp_path_factory.mktemp("world")
    generate(data_dir, slate_size=2)
    dbt(["build"], data_dir)
    return data_dir


@pytest.fixture(scope="session")
def duckdb_world(built_world, tmp_path_factory) -> Path:
    """The shared world with its features also built on DuckDB (shared, read-only)."""
    world = copy_world(built_world, tmp_path_factory.mktemp("duckdb") / "world")
    dbt(["build"], world, target="duckdb")
    return world


def copy_project(dest: Path) -> Path:
    """A temporary copy of the dbt project, for tests that edit SQL or YAML."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("dbt_project.yml", "profiles.yml"):
        shutil.copy(REPO / name, dest / name)
    shutil.copytree(REPO / "dbt_project", dest / "dbt_project")
    return dest


def recsys(args: list[str], data_dir: Path, check: bool = True, **env: str):
    return run_cli([str(BIN / "recsys"), *args], data_dir, check=check, **env)


@pytest.fixture(scope="session")
def trained_run(built_world) -> Path:
    """One short training run on the shared world (read-only for tests)."""
    recsys(["train", "--epochs", "1", "--batch-size", "512", "--quiet"], built_world)
    return (built_world / "runs" / "latest").resolve()


def copy_world(src: Path, dest: Path, runs: bool = False) -> Path:
    """A private copy of a built world to change freely; ``runs=True`` keeps its
    trained runs and the ``runs/latest`` link, otherwise runs and cache are left out."""
    if runs:
        shutil.copytree(src, dest, symlinks=True)
    else:
        shutil.copytree(src, dest, ignore=shutil.ignore_patterns("runs", "cache"))
    return dest
