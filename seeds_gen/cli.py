"""``python -m seeds_gen``: make raw data (a synthetic world, or an import of real logs)."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from recsys_core import paths
from recsys_core.cli import ArgumentParser, run
from recsys_core.errors import UserError
from seeds_gen.load import Table, check_writable, write_tables_atomically


def _positive(name: str, value: int) -> None:
    if value <= 0:
        raise UserError(f"--{name} must be a positive integer, got {value}")


def _add_slate_size(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--slate-size",
        type=int,
        default=1,
        help="impressions per request, shown to one user in one second (1 to 10)",
    )


def _check_slate_size(value: int) -> None:
    from seeds_gen.synthetic import N_POSITIONS

    if not 1 <= value <= N_POSITIONS:
        raise UserError(f"--slate-size must be between 1 and {N_POSITIONS}, got {value}")


def _build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="python -m seeds_gen", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    syn = sub.add_parser("synthetic", help="generate the synthetic click world into raw.db")
    syn.add_argument("--impressions", type=int, default=1_000_000)
    syn.add_argument("--users", type=int, default=20_000)
    syn.add_argument("--items", type=int, default=5_000)
    syn.add_argument("--days", type=int, default=60)
    syn.add_argument("--seed", type=int, default=42)
    _add_slate_size(syn)
    syn.add_argument("--data-dir", default=None, help="default: $RECSYS_DATA_DIR or ./data")

    ml = sub.add_parser(
        "movielens",
        help="import a MovieLens-100K folder (u.data, u.user, u.item, ...) into raw.db",
    )
    ml.add_argument("path", help="the ml-100k folder")
    ml.add_argument(
        "--min-rating", type=int, default=4, help="a rating >= this counts as a click (default 4)"
    )
    ml.add_argument("--data-dir", default=None, help="default: $RECSYS_DATA_DIR or ./data")

    csv = sub.add_parser("csv", help="load users, items and interactions CSV files into raw.db")
    csv.add_argument("--users", required=True, help="users.csv (user_id, signup_ts, ...)")
    csv.add_argument("--items", required=True, help="items.csv (item_id, category, created_ts)")
    csv.add_argument(
        "--interactions",
        required=True,
        help="interactions.csv (interaction_id, user_id, item_id, event_ts, clicked, ...)",
    )
    csv.add_argument("--data-dir", default=None, help="default: $RECSYS_DATA_DIR or ./data")

    append = sub.add_parser(
        "append",
        help="append the next day(s) of a synthetic world to raw.db (for incremental builds)",
    )
    append.add_argument("--days", type=int, default=1)
    append.add_argument(
        "--impressions-per-day", type=int, default=None, help="default: the world's mean"
    )
    append.add_argument("--seed", type=int, default=42)
    _add_slate_size(append)
    append.add_argument("--data-dir", default=None, help="default: $RECSYS_DATA_DIR or ./data")

    parquet = sub.add_parser(
        "parquet", help="copy raw.db's tables to <data dir>/raw_parquet/ (for the Spark target)"
    )
    parquet.add_argument("--data-dir", default=None, help="default: $RECSYS_DATA_DIR or ./data")
    return parser


def _write(target: Path, tables: list[Table], started: float) -> None:
    write_tables_atomically(target, tables)
    seconds = time.perf_counter() - started
    rows = sum(len(t) for t in tables)
    sizes = ", ".join(f"{len(t):,} {t.name}" for t in tables)
    print(f"wrote {target}: {sizes} in {seconds:.1f}s ({rows / max(seconds, 1e-9):,.0f} rows/s)")


def run_movielens(args: argparse.Namespace) -> None:
    from seeds_gen.movielens import load_movielens

    if not 1 <= args.min_rating <= 5:
        raise UserError(f"--min-rating must be between 1 and 5, got {args.min_rating}")
    target = paths.raw_db_path(args.data_dir)
    check_writable(target.parent)
    started = time.perf_counter()
    imported = load_movielens(Path(args.path), args.min_rating)
    _write(target, imported.tables, started)
    print(
        f"{imported.ratings:,} ratings, {imported.clicks:,} clicks (rating >= "
        f"{args.min_rating}, {imported.clicks / max(imported.ratings, 1):.1%})"
    )
    _next_step("movielens", target.parent)
    _report_suspects(len(imported.malformed), imported.malformed[:5], "malformed rating lines")


def run_csv(args: argparse.Namespace) -> None:
    from seeds_gen.csv_import import load_csv

    target = paths.raw_db_path(args.data_dir)
    check_writable(target.parent)
    started = time.perf_counter()
    imported = load_csv(Path(args.users), Path(args.items), Path(args.interactions))
    _write(target, imported.tables, started)
    for table, columns in imported.extra_columns.items():
        if columns:
            print(
                f"raw.{table}: extra columns {', '.join(columns)} loaded as text; declare "
                f"the ones to use under vars.datasets.csv in dbt_project.yml"
            )
    _next_step("csv", target.parent)
    _report_suspects(imported.suspect_rows, imported.problems, "interactions with bad values")


def run_append(args: argparse.Namespace) -> None:
    from seeds_gen.append import append_days

    _positive("days", args.days)
    if args.impressions_per_day is not None:
        _positive("impressions-per-day", args.impressions_per_day)
    _check_slate_size(args.slate_size)
    target = paths.raw_db_path(args.data_dir)
    started = time.perf_counter()
    appended = append_days(target, args.days, args.seed, args.impressions_per_day, args.slate_size)
    first = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(appended.first_ts))
    last = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(appended.last_ts))
    print(
        f"appended to {target}: {appended.impressions:,} impressions "
        f"({appended.clicks:,} clicks) from {first} to {last} UTC in "
        f"{time.perf_counter() - started:.1f}s"
    )
    print("next: dbt build (incremental: processes the new rows and the carried totals)")


def run_parquet(args: argparse.Namespace) -> None:
    from seeds_gen.parquet import export_parquet

    folder = paths.data_dir(args.data_dir) / "raw_parquet"
    started = time.perf_counter()
    counts = export_parquet(paths.raw_db_path(args.data_dir), folder)
    sizes = ", ".join(f"{n:,} {t}" for t, n in counts.items())
    print(f"wrote {folder}/: {sizes} in {time.perf_counter() - started:.1f}s")


def _next_step(dataset: str, folder: Path) -> None:
    print(f"next: RECSYS_DATASET={dataset} RECSYS_DATA_DIR={folder} make features train")


def _report_suspects(count: int, examples: list[str], what: str) -> None:
    if not count:
        return
    sys.stdout.flush()  # keep the summary above the warning
    print(
        f"warning: {count:,} {what} were loaded as they are; dbt staging will "
        f"quarantine them in int_interactions_rejected",
        file=sys.stderr,
    )
    for example in examples:
        print(f"  {example}", file=sys.stderr)


def run_synthetic(args: argparse.Namespace) -> None:
    from seeds_gen.synthetic import WorldSpec, generate

    for name in ("impressions", "users", "items", "days"):
        _positive(name, getattr(args, name))
    if args.seed < 0:
        raise UserError(f"--seed must be >= 0, got {args.seed}")
    if args.users > args.impressions:
        raise UserError(
            f"--users ({args.users}) must not exceed --impressions ({args.impressions})"
        )
    if args.items > args.impressions:
        raise UserError(
            f"--items ({args.items}) must not exceed --impressions ({args.impressions})"
        )
    _check_slate_size(args.slate_size)
    target = paths.raw_db_path(args.data_dir)
    check_writable(target.parent)

    spec = WorldSpec(
        args.impressions, args.users, args.items, args.days, args.seed, args.slate_size
    )
    started = time.perf_counter()
    world = generate(spec)
    generated = time.perf_counter()
    write_tables_atomically(target, world.tables())
    done = time.perf_counter()

    rows = sum(len(t) for t in world.tables())
    print(
        f"wrote {target}: {spec.impressions:,} impressions, {spec.users:,} users, "
        f"{spec.items:,} items over {spec.days} days (seed {spec.seed}"
        + (f", slates of {spec.slate_size}" if spec.slate_size > 1 else "")
        + ")"
    )
    print(
        f"click rate {world.click_rate:.4f}; last 10% of time: oracle AUC "
        f"{world.test_auc:.4f}, non-personal oracle AUC {world.test_auc_nonpersonal:.4f} "
        f"(personal gap {world.test_auc - world.test_auc_nonpersonal:+.4f})"
    )
    print(
        f"generate {generated - started:.1f}s, load {done - generated:.1f}s "
        f"({rows / max(done - generated, 1e-9):,.0f} rows/s), total {done - started:.1f}s"
    )


def _interrupted(exc: KeyboardInterrupt) -> int:
    print("interrupted: the previous raw.db is untouched", file=sys.stderr)
    return 130


def main(argv: Sequence[str] | None = None) -> int:
    commands = {
        "synthetic": run_synthetic,
        "movielens": run_movielens,
        "csv": run_csv,
        "append": run_append,
        "parquet": run_parquet,
    }

    def command() -> None:
        args = _build_parser().parse_args(argv)
        commands[args.command](args)

    return run(command, _interrupted)
