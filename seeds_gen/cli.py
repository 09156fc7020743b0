"""``python -m seeds_gen``: make raw data (a synthetic world, or an import of real logs)."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

from seeds_gen import paths
from seeds_gen.errors import UserError
from seeds_gen.load import check_writable, write_tables_atomically


class _Parser(argparse.ArgumentParser):
    """argparse that reports bad arguments in one line with status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UserError(message)


def _positive(name: str, value: int) -> None:
    if value <= 0:
        raise UserError(f"--{name} must be a positive integer, got {value}")


def _build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m seeds_gen", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    syn = sub.add_parser("synthetic", help="generate the synthetic click world into raw.db")
    syn.add_argument("--impressions", type=int, default=1_000_000)
    syn.add_argument("--users", type=int, default=20_000)
    syn.add_argument("--items", type=int, default=5_000)
    syn.add_argument("--days", type=int, default=60)
    syn.add_argument("--seed", type=int, default=42)
    syn.add_argument("--data-dir", default=None, help="default: $RECSYS_DATA_DIR or ./data")
    return parser


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
    target = paths.raw_db_path(args.data_dir)
    check_writable(target.parent)

    spec = WorldSpec(args.impressions, args.users, args.items, args.days, args.seed)
    started = time.perf_counter()
    world = generate(spec)
    generated = time.perf_counter()
    write_tables_atomically(target, world.tables())
    done = time.perf_counter()

    rows = sum(len(t) for t in world.tables())
    print(
        f"wrote {target}: {spec.impressions:,} impressions, {spec.users:,} users, "
        f"{spec.items:,} items over {spec.days} days (seed {spec.seed})"
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


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = _build_parser().parse_args(argv)
        if args.command == "synthetic":
            run_synthetic(args)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: the previous raw.db is untouched", file=sys.stderr)
        return 130
    return 0
