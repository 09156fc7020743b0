"""``recsys``: train, evaluate (and, as issues land, more) from the dbt-built features.

Heavy imports (torch, sklearn) happen inside the commands, so ``recsys --help``
answers at once.
"""

from __future__ import annotations

import argparse
import json
import signal
import sqlite3
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from recsys_core.cli import ArgumentParser, run
from recsys_core.errors import UserError

if TYPE_CHECKING:  # for annotations only: the commands import these when they run
    from models_py.checkpoint import Restored
    from models_py.config import TrainConfig
    from models_py.distributed import Dist
    from models_py.pipeline import Prepared
    from models_py.tracking import Tracker
    from models_py.train import TrainState
    from models_py.workspace import Workspace

# Flags whose spelling differs from the field name; every other TrainConfig field
# is the flag --field-name.
_FLAG_NAMES = {"drop_groups": "--drop-group"}
_FLAG_HELP = {
    "drop_groups": "leave out a feature group (meta.group in the dbt YAML); repeat for several",
    "interaction": "none | dot | fm",
    "wide": "crosses | linear | off",
    "wide_solver": "lbfgs (fit the wide path first) | adam (train it with the rest)",
    "device": "auto | cpu | cuda",
    "streaming": "auto | on | off: stream the training split from disk",
    "batch_size": "0 = automatic (about 200 steps an epoch)",
    "negative_rate": "keep each negative training row with this probability",
    "refit": "after training, fit the wide path and the baselines again on training + "
    "validation rows",
}


def _add_training_options(parser: argparse.ArgumentParser) -> None:
    """One flag per TrainConfig field, derived from the dataclass, so that the
    flags and the configuration cannot drift apart."""
    import dataclasses

    from models_py.config import TrainConfig

    group = parser.add_argument_group("training options (override --config)")
    defaults = TrainConfig()
    for f in dataclasses.fields(TrainConfig):
        default = getattr(defaults, f.name)
        flag = _FLAG_NAMES.get(f.name, "--" + f.name.replace("_", "-"))
        help_text = f"{_FLAG_HELP.get(f.name, '')} (default: {default})".strip()
        kwargs: dict[str, Any] = {"dest": f.name, "help": help_text}
        if isinstance(default, bool):
            kwargs["action"] = argparse.BooleanOptionalAction
        elif f.name == "drop_groups":
            kwargs.update(action="append", metavar="GROUP")
        elif isinstance(default, tuple | list):
            inner = type(default[0]) if default else str
            kwargs.update(nargs=len(default) if isinstance(default, tuple) else "*", type=inner)
        else:
            kwargs["type"] = type(default)
        group.add_argument(flag, **kwargs)


def _option(flag: str, **kwargs: Any) -> argparse.ArgumentParser:
    """A parent parser holding one option that several commands share."""
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument(flag, **kwargs)
    return parent


TARGET = _option("--target", help="dbt target (default: $RECSYS_TARGET or sqlite)")
RUN = _option("--run", help="run directory (default: runs/latest)")
QUIET = _option("--quiet", action="store_true", help="no progress bars")
NO_TRACK = _option("--no-track", action="store_true", help="do not log to MLflow")
NO_BASELINES = _option(
    "--no-baselines",
    action="store_true",
    help="skip the logistic regression and LightGBM baselines",
)
CONFIG = _option("--config", help="JSON file with TrainConfig keys")


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="recsys", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser(
        "train",
        parents=[CONFIG, NO_BASELINES, QUIET, TARGET, NO_TRACK],
        help="train a model on the feature mart, then evaluate it",
    )
    train.add_argument("--resume", metavar="RUN_DIR", help="continue this run from last.pt")
    _add_training_options(train)

    sub.add_parser(
        "evaluate",
        parents=[RUN, NO_BASELINES, TARGET, NO_TRACK],
        help="recompute a run's test metrics from its checkpoint",
    )
    ablate = sub.add_parser(
        "ablate",
        parents=[CONFIG, QUIET, TARGET, NO_TRACK],
        help="test AUC with each feature group left out",
    )
    _add_training_options(ablate)

    rec = sub.add_parser(
        "recommend", parents=[RUN, TARGET], help="top items for one user from the best checkpoint"
    )
    rec.add_argument("--user", required=True, help="user id (an integer)")
    rec.add_argument("-k", type=int, default=10, help="how many items (default 10)")
    rec.add_argument(
        "--include-clicked", action="store_true", help="keep items the user already clicked"
    )

    score = sub.add_parser(
        "score",
        parents=[RUN, QUIET, TARGET],
        help="write top-K lists for every user to `predictions`",
    )
    score.add_argument("-k", type=int, default=10, help="list length per user (default 10)")
    score.add_argument(
        "--candidates",
        type=int,
        default=200,
        help="most popular recent items scored per user (default 200)",
    )

    rank = sub.add_parser(
        "rank",
        parents=[RUN, QUIET, TARGET, NO_TRACK],
        help="Recall@K and NDCG@K on the test period, beside a popularity ranking",
    )
    rank.add_argument(
        "-k",
        type=int,
        action="append",
        dest="ks",
        metavar="K",
        help="list length; repeat for several (default: 10 and 50)",
    )
    rank.add_argument(
        "--users",
        type=int,
        default=1000,
        help="evaluate at most this many users, sampled with the run's seed (default 1000)",
    )
    return parser


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    import dataclasses

    from models_py.config import TrainConfig

    names = [f.name for f in dataclasses.fields(TrainConfig)]
    return {k: getattr(args, k) for k in names if getattr(args, k, None) is not None}


def cmd_train(args: argparse.Namespace) -> None:
    from models_py.config import load_config

    if not args.resume:  # bad options fail here, before torch and sklearn load
        config = load_config(args.config).with_overrides(**_overrides(args))

    from models_py import distributed
    from models_py.tracking import Tracker
    from models_py.train import train
    from models_py.workspace import resolve_workspace

    workspace = resolve_workspace(args.target)
    resumed = _resumed(args) if args.resume else None
    if resumed is not None:
        config = resumed.config
    resume_from = resumed.payload if resumed is not None else None

    # Under torchrun, rank 0 reads the features first (filling the cache), the
    # others then read the cache; only rank 0 writes the run and reports.
    dist = distributed.init_from_env(config.device)
    if not dist.is_main:
        distributed.barrier(dist)
    data = _prepared(config, workspace, resumed, args.resume)
    config = data.config  # automatic values (batch size) resolved for the data
    if dist.is_main:
        distributed.barrier(dist)
    if not dist.is_main:
        try:
            # only rank 0 writes checkpoints, so the other ranks need no run directory
            run = Path(args.resume) if resumed is not None else Path()
            train(config, data, run, resume_from=resume_from, progress=False, dist=dist)
        finally:
            distributed.shutdown(dist)
        return

    if resumed is not None:
        run_dir = Path(args.resume)
        print(f"resuming {run_dir} at step {resumed.state['step']:,}")
    else:
        run_dir = _new_run(workspace, config, data, dist)
    name = run_dir.name + ("-resumed" if resumed else "")
    tracker = Tracker(not args.no_track, name, "train", workspace.data_dir)
    tracker.params(config.to_dict())
    tracker.text(json.dumps(data.spec.to_dict(), indent=2), "features.json")

    def log_eval(entry: dict[str, float]) -> None:
        tracker.metrics(
            {"val_auc": entry["val_auc"], "train_loss": entry["train_loss"]},
            step=int(entry["step"]),
        )

    try:
        _, state = train(
            config,
            data,
            run_dir,
            resume_from=resume_from,
            progress=not args.quiet,
            on_eval=log_eval,
            dist=dist,
        )
    except BaseException:
        tracker.end("KILLED")
        raise
    finally:
        distributed.shutdown(dist)
    _calibrate_and_report(run_dir, config, data, state, tracker, not args.no_baselines)


def _resumed(args: argparse.Namespace) -> Restored:
    """The run to continue (its last.pt), refusing options that would change it."""
    from models_py import checkpoint

    resumed = checkpoint.restore(Path(args.resume), checkpoint.LAST)
    if _overrides(args):
        raise UserError(
            "--resume continues a run with its own configuration; drop the training options"
        )
    return resumed


def _prepared(
    config: TrainConfig, workspace: Workspace, resumed: Restored | None, run: str | None
) -> Prepared:
    """The run's data: a resumed run gets its own encoders and feature spec, and
    refuses a warehouse that holds another feature build."""
    from models_py.pipeline import check_same_build, prepare

    if resumed is None:
        return prepare(config, workspace)
    data = prepare(config, workspace, encoders=resumed.encoders, spec=resumed.spec)
    check_same_build(resumed.feature_build, data, str(run))
    return data


def _new_run(workspace: Workspace, config: TrainConfig, data: Prepared, dist: Dist) -> Path:
    """A new run directory with its config.json: what it trains, on which build."""
    from models_py.runs import new_run_dir, write_json

    run_dir = new_run_dir(workspace.runs_dir)
    write_json(
        run_dir / "config.json",
        {
            "config": config.to_dict(),
            "features": data.spec.to_dict(),
            **data.build.record(),
        },
    )
    print(
        f"run {run_dir}: {len(data.train_rows):,} training rows, "
        f"{len(data.split.validation):,} validation, {len(data.split.test):,} test, "
        f"{len(data.spec.features)} features"
        + (f", {dist.world} processes ({dist.backend})" if dist.enabled else "")
    )
    return run_dir


def _calibrate_and_report(
    run_dir: Path,
    config: TrainConfig,
    data: Prepared,
    state: TrainState,
    tracker: Tracker,
    baselines: bool,
) -> None:
    """Platt-scale the best checkpoint on validation, then refit its wide path on
    training + validation rows (``config.refit``) and match the shift to
    validation's click rate again, judge it on test beside the baselines, point
    runs/latest at it, and report. Calibration comes first, while validation is
    still unseen by every weight; a best.pt that holds both already (a finished
    run resumed again) is judged as it is."""
    from models_py import checkpoint
    from models_py.calibration import calibrate, rematch_shift
    from models_py.evaluate import evaluate, terminal_table
    from models_py.runs import point_latest
    from models_py.train import refit_wide

    best = checkpoint.restore(run_dir)
    model = best.model()
    refit = best.payload.get("refit")
    if refit is None:
        calibrate(model, data.validation, config.negative_rate)
        refit = refit_wide(model, data, config, state.wide_l2)
        if refit:
            rematch_shift(model, data.validation)
        checkpoint.save({**best.payload, "model": model.state_dict(), "refit": refit}, best.path)
    result = evaluate(model, state, config, data, run_dir, baselines=baselines, refit=refit)
    point_latest(run_dir)
    tracker.metrics(result)
    tracker.artifacts(run_dir)
    tracker.end()
    print(terminal_table(result))
    print(f"wrote {run_dir}/ (metrics.json, report.md, plots); runs/latest points to it")


def cmd_evaluate(args: argparse.Namespace) -> None:
    from models_py import checkpoint
    from models_py.evaluate import evaluate, terminal_table
    from models_py.pipeline import check_same_build, prepare
    from models_py.runs import resolve_run
    from models_py.tracking import Tracker
    from models_py.train import TrainState
    from models_py.workspace import resolve_workspace

    workspace = resolve_workspace(args.target)
    run_dir = resolve_run(args.run, workspace.runs_dir)
    best = checkpoint.restore(run_dir)
    last = (
        checkpoint.restore(run_dir, checkpoint.LAST)
        if (run_dir / checkpoint.LAST).exists()
        else best
    )
    config = best.config
    data = prepare(config, workspace, encoders=best.encoders, spec=best.spec)
    check_same_build(best.feature_build, data, str(run_dir))
    tracker = Tracker(not args.no_track, f"{run_dir.name}-evaluate", "evaluate", workspace.data_dir)
    tracker.params({"run": run_dir.name, **config.to_dict()})
    result = evaluate(
        best.model(),
        TrainState(**last.state),
        config,
        data,
        run_dir,
        baselines=not args.no_baselines,
        refit=best.payload.get("refit"),
    )
    tracker.metrics(result)
    tracker.artifacts(run_dir)
    tracker.end()
    print(terminal_table(result))
    print(f"wrote {run_dir}/metrics.json and report.md")


def cmd_ablate(args: argparse.Namespace) -> None:
    from models_py.ablation import ablate
    from models_py.config import load_config
    from models_py.tracking import Tracker
    from models_py.workspace import resolve_workspace

    config = load_config(args.config).with_overrides(**_overrides(args))
    workspace = resolve_workspace(args.target)
    run_dir, rows = ablate(config, workspace, progress=not args.quiet)
    tracker = Tracker(not args.no_track, run_dir.name, "ablate", workspace.data_dir)
    tracker.params(config.to_dict())
    tracker.metrics({f"test_auc.{r['group']}": r["test_auc"] for r in rows})
    tracker.artifacts(run_dir)
    tracker.end()
    for row in rows:
        print(f"{row['group']:>24}  AUC {row['test_auc']:.4f}  delta {row['delta_vs_all']:+.4f}")
    print(f"wrote {run_dir}/ (ablation.csv, ablation.md, ablation.png)")


def _user_id(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise UserError(f"--user must be an integer user id, got {text!r}") from None


def _scorer(args: argparse.Namespace) -> Any:
    """The scorer of --run (default: runs/latest) on the warehouse of --target."""
    from models_py.runs import resolve_run
    from models_py.serving import load_scorer
    from models_py.workspace import resolve_workspace

    workspace = resolve_workspace(args.target)
    return load_scorer(workspace, resolve_run(args.run, workspace.runs_dir))


def cmd_recommend(args: argparse.Namespace) -> None:
    from models_py.serving import recommend

    user_id = _user_id(args.user)
    scorer = _scorer(args)
    top, cold = recommend(scorer, user_id, args.k, args.include_clicked)
    if cold:
        print(f"notice: user {user_id} is unknown; showing a cold-start ranking")
    print(f"{'rank':>4}  {'item_id':>8}  {'score':>8}  category")
    for rank, row in enumerate(top.itertuples(index=False), start=1):
        print(f"{rank:>4}  {row.item_id:>8}  {row.score:8.4f}  {getattr(row, 'category', '')}")


def cmd_score(args: argparse.Namespace) -> None:
    from models_py.serving import score_top_k, write_predictions

    scorer = _scorer(args)
    scorer.warehouse.check_writable()  # before the scoring, not after it
    rows, rate = score_top_k(scorer, args.k, args.candidates, progress=not args.quiet)
    write_predictions(scorer.warehouse, rows, scorer.run_id)
    print(
        f"scored at {rate:,.0f} pairs/s; wrote {len(rows):,} rows "
        f"({rows['user_id'].nunique():,} users x top {args.k}) to predictions in "
        f"{scorer.warehouse.path}"
    )


def cmd_rank(args: argparse.Namespace) -> None:
    from models_py.counterfactual import table as truth_table
    from models_py.ranking import RANKINGS, rank, table
    from models_py.runs import resolve_run
    from models_py.tracking import Tracker
    from models_py.workspace import resolve_workspace

    workspace = resolve_workspace(args.target)
    run_dir = resolve_run(args.run, workspace.runs_dir)
    result = rank(workspace, run_dir, args.ks, args.users, progress=not args.quiet)
    tracker = Tracker(not args.no_track, f"{run_dir.name}-rank", "rank", workspace.data_dir)
    tracker.params({"run": run_dir.name, "users": args.users})
    tracker.metrics({name: result[name] for name in RANKINGS})
    if result["truth"] is not None:
        tracker.metrics({"truth": result["truth"]})
    tracker.end()
    print("Logged clicks of the test period (they follow what was shown, not what users prefer):")
    print(table(result))
    if result["truth"] is None:
        print(
            "These reward rankings that copy the past exposure (popularity); what users would "
            "click if shown other items needs a click model, which only synthetic worlds keep."
        )
    else:
        print(
            "\nAgainst the truth (what each user would click at position 1; uplift over random "
            "as a share of the oracle's):"
        )
        print(truth_table(result["truth"], result["ks"]))
    print(
        f"{result['users_evaluated']:,} users (of {result['users_eligible']:,} with test "
        f"clicks) x {result['candidates']:,} candidate items, scored at "
        f"{result['pairs_per_second']:,} pairs/s; wrote {run_dir}/ranking.json"
    )


COMMANDS = {
    "train": cmd_train,
    "evaluate": cmd_evaluate,
    "ablate": cmd_ablate,
    "recommend": cmd_recommend,
    "score": cmd_score,
    "rank": cmd_rank,
}


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"warning: {message}", file=sys.stderr)


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl-C: the run stops at once and can be resumed."""


def _on_sigterm(signum: int, frame: Any) -> None:
    raise Terminated()


def _interrupted(exc: KeyboardInterrupt) -> int:
    what = "terminated" if isinstance(exc, Terminated) else "interrupted"
    print(
        f"{what}: the last checkpoint (last.pt) can resume the run with "
        "`recsys train --resume RUN_DIR`",
        file=sys.stderr,
    )
    return 143 if isinstance(exc, Terminated) else 130


def main(argv: Sequence[str] | None = None) -> int:
    warnings.showwarning = _show_warning
    signal.signal(signal.SIGTERM, _on_sigterm)

    def command() -> None:
        args = build_parser().parse_args(argv)
        try:
            COMMANDS[args.command](args)
        except sqlite3.DatabaseError as exc:  # e.g. a truncated warehouse.db
            from models_py.warehouse import explain_database_error
            from models_py.workspace import resolve_workspace

            try:
                warehouse = resolve_workspace(getattr(args, "target", None)).warehouse
            except UserError:
                warehouse = None
            raise explain_database_error(exc, warehouse) from None

    return run(command, _interrupted)
