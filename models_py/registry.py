"""The feature registry: the dbt manifest's columns and their meta.

Columns of the feature mart carry ``meta`` in the dbt YAML: role (id, time,
label, feature) and, for features, type (categorical, numeric) and group.
The data set's attribute columns (vars.datasets in dbt_project.yml) arrive as
the model's ``meta.attributes``, set by its SQL at parse time.
A column added to the SQL and the YAML reaches the model with no Python change.
Before training we also refuse features that are missing, failed or stale.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from models_py.warehouse import Warehouse, quote_identifier
from recsys_core.errors import UserError

FEATURE_MODEL = "fct_impression_features"
FEATURE_TYPES = ("categorical", "numeric")
FAILED_STATUSES = ("error", "fail", "runtime error")
TRANSFORMS = ("log1p", "log", "logit")


@dataclass(frozen=True)
class FeatureColumn:
    name: str
    type: str  # categorical | numeric
    group: str
    entity: str | None = None  # user | item: that entity's id
    transform: str | None = None  # log1p | log | logit (models_py.data.transform_values)
    nullable: bool = False
    serving_value: Any = None  # value used when scoring candidates (context features)
    crossed_with: str | None = None  # numeric: a categorical it is crossed with (wide path)


@dataclass(frozen=True)
class FeatureSpec:
    table: str
    id_column: str
    time_column: str
    label_column: str
    features: tuple[FeatureColumn, ...] = field(default_factory=tuple)

    @property
    def categorical(self) -> list[FeatureColumn]:
        return [f for f in self.features if f.type == "categorical"]

    @property
    def attributes(self) -> list[FeatureColumn]:
        """Categoricals that are not entity ids (a handful of levels each): what the
        baselines one-hot and the model's wide path crosses."""
        return [f for f in self.categorical if f.entity is None]

    @property
    def numeric(self) -> list[FeatureColumn]:
        return [f for f in self.features if f.type == "numeric"]

    @property
    def groups(self) -> list[str]:
        return sorted({f.group for f in self.features})

    def numeric_crosses(self) -> list[tuple[str, str]]:
        """(categorical, numeric) pairs the wide path crosses: one weight per value of
        the categorical, times the numeric. A cross whose categorical is not in the
        spec (its group dropped) is left out."""
        categorical = {f.name for f in self.categorical}
        return [
            (f.crossed_with, f.name)
            for f in self.numeric
            if f.crossed_with is not None and f.crossed_with in categorical
        ]

    def entity_column(self, entity: str) -> str | None:
        return next((f.name for f in self.features if f.entity == entity), None)

    def columns(self) -> list[str]:
        return [
            self.id_column,
            self.time_column,
            self.label_column,
            *(f.name for f in self.features),
        ]

    def without_groups(self, groups: list[str]) -> FeatureSpec:
        unknown = sorted(set(groups) - set(self.groups))
        if unknown:
            raise UserError(
                f"unknown feature group {unknown[0]!r} (the dbt YAML has: {', '.join(self.groups)})"
            )
        kept = tuple(f for f in self.features if f.group not in groups)
        return FeatureSpec(self.table, self.id_column, self.time_column, self.label_column, kept)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["features"] = [asdict(f) for f in self.features]
        return out

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> FeatureSpec:
        features = tuple(FeatureColumn(**f) for f in values["features"])
        return cls(
            values["table"],
            values["id_column"],
            values["time_column"],
            values["label_column"],
            features,
        )


def _read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"no dbt {what} at {path}: run `make features` (dbt build) first") from None
    except json.JSONDecodeError:
        raise UserError(
            f"dbt {what} at {path} is not valid JSON: run `make features` again"
        ) from None


def load_spec(manifest_path: Path, model: str = FEATURE_MODEL) -> FeatureSpec:
    """Read the feature spec of ``model`` from dbt's ``manifest.json``."""
    manifest = _read_json(manifest_path, "manifest")
    node = next(
        (
            n
            for n in manifest.get("nodes", {}).values()
            if n.get("resource_type") == "model" and n.get("name") == model
        ),
        None,
    )
    if node is None:
        raise UserError(f"the dbt manifest has no model {model!r}: run `make features`")
    roles: dict[str, list[str]] = {"id": [], "time": [], "label": []}
    features: list[FeatureColumn] = []
    unregistered: list[str] = []
    for name, column in node.get("columns", {}).items():
        meta = column.get("meta") or {}
        quote_identifier(name)
        role = meta.get("role")
        if role is None:
            unregistered.append(name)
            continue
        if role in roles:
            roles[role].append(name)
        elif role == "feature":
            features.append(_feature(model, name, meta))
        else:
            raise UserError(
                f"column {model}.{name}: meta.role must be id, time, label or feature, got {role!r}"
            )
    declared = {n for names in roles.values() for n in names} | {f.name for f in features}
    for attribute in (node.get("config") or {}).get("meta", {}).get("attributes") or []:
        name = attribute.get("name") if isinstance(attribute, dict) else None
        if not isinstance(name, str):
            raise UserError(f"{model}: meta.attributes entries need a name, got {attribute!r}")
        quote_identifier(name)
        if name in declared:
            raise UserError(
                f"column {model}.{name} is declared twice: in the YAML and as a data set "
                f"attribute (vars.datasets in dbt_project.yml)"
            )
        declared.add(name)
        meta = {k: v for k, v in attribute.items() if k != "name"}
        features.append(_feature(model, name, meta))
    for role, names in roles.items():
        if len(names) != 1:
            raise UserError(
                f"the dbt YAML of {model} must mark exactly one column with "
                f"meta.role: {role} (found {len(names)})"
            )
    if not features:
        raise UserError(
            f"the dbt YAML of {model} declares no feature columns "
            f"(meta.role: feature): nothing to learn from"
        )
    categorical = {f.name for f in features if f.type == "categorical"}
    for feature in features:
        if feature.crossed_with is not None and feature.crossed_with not in categorical:
            raise UserError(
                f"column {model}.{feature.name}: meta.crossed_with names "
                f"{feature.crossed_with!r}, which is not a categorical feature of {model}"
            )
    if unregistered:  # only for a usable spec: an error is the one line to read
        warnings.warn(
            f"{model}: columns without meta.role in the dbt YAML are ignored: "
            f"{', '.join(unregistered)}",
            stacklevel=2,
        )
    table = node.get("alias") or model
    quote_identifier(table)  # refuses anything but a plain identifier
    return FeatureSpec(
        table,
        roles["id"][0],
        roles["time"][0],
        roles["label"][0],
        tuple(features),
    )


def _feature(model: str, name: str, meta: dict[str, Any]) -> FeatureColumn:
    kind = meta.get("type")
    if kind not in FEATURE_TYPES:
        raise UserError(
            f"column {model}.{name}: meta.type must be categorical or numeric, got {kind!r}"
        )
    group = meta.get("group")
    if not isinstance(group, str) or not group:
        raise UserError(f"column {model}.{name}: meta.group is required for features")
    transform = meta.get("transform")
    if transform not in (None, *TRANSFORMS):
        raise UserError(
            f"column {model}.{name}: meta.transform must be one of {', '.join(TRANSFORMS)}, "
            f"got {transform!r}"
        )
    entity = meta.get("entity")
    if entity not in (None, "user", "item"):
        raise UserError(f"column {model}.{name}: meta.entity must be user or item, got {entity!r}")
    crossed_with = meta.get("crossed_with")
    if crossed_with is not None and (kind != "numeric" or not isinstance(crossed_with, str)):
        raise UserError(
            f"column {model}.{name}: meta.crossed_with names a categorical column and "
            f"is for numeric features, got {crossed_with!r} on a {kind} feature"
        )
    return FeatureColumn(
        name,
        kind,
        group,
        entity,
        transform,
        bool(meta.get("nullable")),
        meta.get("serving_value"),
        crossed_with,
    )


def check_features_ready(warehouse: Warehouse, spec: FeatureSpec, manifest_path: Path) -> str:
    """Refuse missing, failed or stale features; return the build id of the table.

    A failure is any node of the current manifest whose latest verdict in the
    warehouse's ``dbt_node_results`` log (written at the end of every dbt
    command) failed: ``target/run_results.json`` only holds the last command,
    which may have executed nothing."""
    names = _manifest_node_names(manifest_path)
    conn = warehouse.connect()
    try:
        failed = _failed_nodes(conn, warehouse, names)
        if failed:
            more = f" and {len(failed) - 1} more" if len(failed) > 1 else ""
            raise UserError(
                f"dbt recorded a failure of {names[failed[0]]}{more} in its latest run: "
                f"fix it and run `make features` before training"
            )
        present = _table_columns(conn, warehouse, spec.table)
        if present is None:
            raise UserError(
                f"feature table {spec.table} not found in {warehouse.path}: run `make features`"
            )
        missing = [c for c in spec.columns() if c not in present]
        if missing:
            raise UserError(
                f"feature table {spec.table} lacks column {missing[0]!r} that the "
                f"dbt YAML declares (an older build?): run `make features`"
            )
        build = _latest_build(conn, warehouse, spec.table)
    finally:
        conn.close()
    if build is None:
        raise UserError(f"no record of a successful build of {spec.table}: run `make features`")
    invocation_id, built_at_ms = build
    if warehouse.raw_path.exists() and warehouse.raw_path.stat().st_mtime * 1000 > built_at_ms:
        raise UserError(
            f"raw data ({warehouse.raw_path}) changed after the features were "
            f"built: run `make features`"
        )
    return str(invocation_id)


def _manifest_node_names(manifest_path: Path) -> dict[str, str]:
    """unique_id -> name of every model, test and unit test in the manifest."""
    manifest = _read_json(manifest_path, "manifest")
    nodes = {**manifest.get("nodes", {}), **manifest.get("unit_tests", {})}
    return {uid: str(node.get("name", uid)) for uid, node in nodes.items()}


def _failed_nodes(conn: Any, warehouse: Warehouse, nodes: dict[str, str]) -> list[str]:
    """Nodes of ``nodes`` whose latest recorded verdict is a failure, sorted."""
    if _table_columns(conn, warehouse, "dbt_node_results") is None:
        return []
    rows = conn.execute(
        f"select unique_id, status from {warehouse.qualified('dbt_node_results')} "
        f"order by recorded_at_ms"
    ).fetchall()
    latest = dict(rows)
    return sorted(n for n, status in latest.items() if n in nodes and status in FAILED_STATUSES)


def _table_columns(conn: Any, warehouse: Warehouse, table: str) -> list[str] | None:
    if warehouse.engine == "sqlite":
        rows = conn.execute(
            f"pragma {quote_identifier(warehouse.schema)}.table_info({quote_identifier(table)})"
        ).fetchall()
        return [r[1] for r in rows] or None
    rows = conn.execute(
        "select column_name from information_schema.columns "
        "where table_schema = ? and table_name = ? order by ordinal_position",
        [warehouse.schema, table],
    ).fetchall()
    return [r[0] for r in rows] or None


def _latest_build(conn: Any, warehouse: Warehouse, table: str) -> tuple[str, int] | None:
    if _table_columns(conn, warehouse, "feature_builds") is None:
        return None
    row = conn.execute(
        f"select invocation_id, built_at_ms from {warehouse.qualified('feature_builds')} "
        f"where relation_name = ? order by built_at_ms desc limit 1",
        [table],
    ).fetchone()
    return (row[0], int(row[1])) if row else None


SLOTS_TABLE = "category_history_slots"
SLOT_COLUMN_PREFIX = "user_slot_"  # the slot columns (dbt macro category_slot_name)


def category_slots(warehouse: Warehouse) -> list[str] | None:
    """The item categories of the users' history slots (the ``user_slot_NN_*``
    columns), in slot order; None when the warehouse has no such mart (a build from
    before it). A run stores them: slot 3 must mean the same category when served."""
    conn = warehouse.connect()
    try:
        if _table_columns(conn, warehouse, SLOTS_TABLE) is None:
            return None
        rows = conn.execute(
            f"select category, slot from {warehouse.qualified(SLOTS_TABLE)} order by slot"
        ).fetchall()
    finally:
        conn.close()
    return [str(category) for category, _ in rows]


def build_vars(warehouse: Warehouse, table: str, build_id: str) -> dict[str, Any] | None:
    """The dbt vars that build ``build_id`` of ``table`` computed its features with,
    as its post-hook logged them; None for a build logged before they were."""
    conn = warehouse.connect()
    try:
        if "vars_json" not in (_table_columns(conn, warehouse, "feature_builds") or []):
            return None
        row = conn.execute(
            f"select vars_json from {warehouse.qualified('feature_builds')} "
            f"where relation_name = ? and invocation_id = ?",
            [table, build_id],
        ).fetchone()
    finally:
        conn.close()
    return json.loads(row[0]) if row and row[0] else None
