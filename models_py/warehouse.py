"""Where the dbt-built tables live: the dbt target in profiles.yml, rendered as dbt does.

Only what models_py needs: the engine, the warehouse file, the raw file, and a
DB-API connection. SQLite is the embedded default; DuckDB reads the same models.
A Spark target's tables are Parquet folders under its warehouse directory:
models_py reads them through an in-memory DuckDB, so training on Spark-built
features needs neither Spark nor Java.
"""

from __future__ import annotations

import contextlib
import os
import re
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
import yaml

from recsys_core.errors import UserError
from recsys_core.paths import raw_db_path

REPO = Path(__file__).resolve().parents[1]
PROFILE = "recsys"
IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")  # fullmatch: ASCII only, no newline


@dataclass(frozen=True)
class Warehouse:
    target: str
    kind: str  # sqlite | duckdb | spark
    path: Path  # the file dbt writes models into (spark: the schema's folder of tables)
    raw_path: Path  # raw.db, the sources
    schema: str
    extension_directory: str | None = None

    @property
    def engine(self) -> str:
        """The engine behind connect()'s connection, whose SQL and API it speaks."""
        return "sqlite" if self.kind == "sqlite" else "duckdb"

    def check_writable(self) -> None:
        if self.kind == "spark":
            raise UserError(
                f"dbt target {self.target!r} is Spark, whose tables only Spark writes: "
                "write predictions to a sqlite or duckdb target (--target)"
            )

    def connect(self, read_only: bool = True) -> Any:
        if not self.path.exists():
            raise UserError(
                f"warehouse {self.path} not found: run `make features"
                f"{'' if self.target == 'sqlite' else ' TARGET=' + self.target}` "
                "(dbt build) first"
            )
        if self.kind == "spark":
            if not read_only:
                self.check_writable()
            return self._connect_parquet_tables()
        if self.kind == "sqlite":
            uri = f"file:{self.path}?mode=ro" if read_only else f"file:{self.path}"
            return sqlite3.connect(uri, uri=True)
        import duckdb

        config: dict[str, Any] = {"autoinstall_known_extensions": False}
        if self.extension_directory:
            config["extension_directory"] = self.extension_directory
        return duckdb.connect(str(self.path), read_only=read_only, config=config)

    def _connect_parquet_tables(self) -> Any:
        """An in-memory DuckDB with one view per Spark table over its Parquet files
        (``union_by_name``: rows appended after a column was added still read)."""
        import duckdb

        conn = duckdb.connect(":memory:", config={"autoinstall_known_extensions": False})
        conn.execute(f"create schema if not exists {quote_identifier(self.schema)}")
        for folder in sorted(self.path.iterdir()):
            if not (IDENTIFIER.fullmatch(folder.name) and any(folder.glob("*.parquet"))):
                continue
            files = str(folder / "*.parquet").replace("'", "''")
            conn.execute(
                f"create view {self.qualified(folder.name)} as "
                f"select * from read_parquet('{files}', union_by_name = true)"
            )
        return conn

    def qualified(self, identifier: str) -> str:
        """A validated, quoted table name; identifiers never come from users unchecked."""
        return f"{quote_identifier(self.schema)}.{quote_identifier(identifier)}"


def quote_identifier(name: str) -> str:
    if not isinstance(name, str) or not IDENTIFIER.fullmatch(name):
        raise UserError(f"refusing SQL identifier {name!r}: only letters, digits and _ allowed")
    return f'"{name}"'


def _render(value: Any, environ: Mapping[str, str]) -> Any:
    """Render the Jinja in a profile value the way dbt does for env_var()."""
    if isinstance(value, dict):
        return {k: _render(v, environ) for k, v in value.items()}
    if isinstance(value, list):
        return [_render(v, environ) for v in value]
    if isinstance(value, str) and "{{" in value:

        def env_var(name: str, default: str | None = None) -> str:
            if name in environ:
                return environ[name]
            if default is None:
                raise UserError(f"profiles.yml needs environment variable {name}")
            return default

        return jinja2.Template(value).render(env_var=env_var)
    return value


def load_warehouse(
    target: str | None = None,
    profiles_dir: Path = REPO,
    environ: Mapping[str, str] | None = None,
) -> Warehouse:
    """The warehouse of ``target`` (default: the profile's, i.e. $RECSYS_TARGET or
    sqlite), with profiles.yml rendered in ``environ`` (default: os.environ)."""
    env = os.environ if environ is None else environ
    path = profiles_dir / "profiles.yml"
    try:
        profile = yaml.safe_load(path.read_text())[PROFILE]
    except FileNotFoundError:
        raise UserError(f"{path} not found: run from the repository root") from None
    target = target or _render(profile["target"], env)
    outputs = profile["outputs"]
    if target not in outputs:
        raise UserError(f"unknown dbt target {target!r} (profiles.yml has: {', '.join(outputs)})")
    out = _render(outputs[target], env)
    if out["type"] == "sqlite":
        paths = out["schemas_and_paths"]
        return Warehouse(target, "sqlite", Path(paths["main"]), Path(paths["raw"]), "main")
    if out["type"] == "duckdb":
        raw = next(a["path"] for a in out.get("attach", []) if a.get("alias") == "raw")
        ext = out.get("config_options", {}).get("extension_directory")
        return Warehouse(target, "duckdb", Path(out["path"]), Path(raw), "main", ext)
    if out["type"] == "spark":
        folder = out.get("server_side_parameters", {}).get("spark.sql.warehouse.dir")
        if not folder:
            raise UserError(
                f"dbt target {target!r}: models_py reads Spark tables from their Parquet "
                "files and needs server_side_parameters 'spark.sql.warehouse.dir' in profiles.yml"
            )
        schema = out.get("schema", "main")
        raw = raw_db_path(environ=env)
        return Warehouse(target, "spark", Path(folder) / f"{schema}.db", raw, schema)
    raise UserError(
        f"dbt target {target!r} has type {out['type']!r}; "
        "models_py reads sqlite, duckdb and spark targets"
    )


def explain_database_error(exc: Exception, warehouse: Warehouse | None) -> UserError:
    """One line for an SQLite error: which file is damaged and how to recover it.

    Runs only after an error, so the integrity check costs nothing otherwise."""
    generic = UserError(f"database error: {exc}")
    if warehouse is None or warehouse.kind != "sqlite":
        return generic
    remedies = (
        (warehouse.path, "rebuild it with `make features`"),
        (warehouse.raw_path, "load the raw data again (`make data`), then `make features`"),
    )
    for path, remedy in remedies:
        if path.exists() and _damaged(path):
            return UserError(f"{path} is damaged ({exc}): {remedy}")
    return generic


def _damaged(path: Path) -> bool:
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
            return conn.execute("pragma quick_check").fetchone()[0] != "ok"
    except sqlite3.DatabaseError:
        return True
