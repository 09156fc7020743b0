"""The next day(s) of a synthetic world, appended to its raw.db.

A nightly `dbt build` sees new days of impressions arrive; this makes them, from
the world's own click model (the ``truth_*`` tables), so that incremental builds
can be tested and benchmarked on a world that goes on. The new impressions start
at the first UTC midnight after the last one, come at the world's mean daily
rate, and draw users and items as often as each was shown so far; every click is
drawn from the true click probability, which ``click_truth`` keeps as before.
"""

from __future__ import annotations

import contextlib
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from recsys_core.errors import UserError
from recsys_core.truth import has_truth, load_truth
from seeds_gen.synthetic import N_POSITIONS, SECONDS_PER_DAY, expand_slates


@dataclass(frozen=True)
class Appended:
    impressions: int
    clicks: int
    first_ts: int
    last_ts: int


def append_days(
    raw_path: Path, days: int, seed: int, per_day: int | None = None, slate_size: int = 1
) -> Appended:
    """Append ``days`` days of impressions (``per_day`` each; default: the world's
    mean) to ``raw_path`` in one transaction: a failure appends nothing. With
    ``slate_size`` > 1, impressions come in requests of that many items shown to
    one user in one second at positions 1, 2, ... (same-second ties)."""
    if not raw_path.exists():
        raise UserError(f"{raw_path} does not exist: make a world first (make data)")
    if not has_truth(raw_path):
        raise UserError(
            f"{raw_path} holds no synthetic world (no truth_* tables): only a synthetic "
            "world can be continued"
        )
    truth = load_truth(raw_path)
    with contextlib.closing(sqlite3.connect(raw_path)) as conn:
        first, last, count, last_id = conn.execute(
            "select min(event_ts), max(event_ts), count(*), max(interaction_id) "
            "from interactions where typeof(event_ts) = 'integer' "
            "and typeof(interaction_id) = 'integer'"
        ).fetchone()
        if not count:
            raise UserError(f"{raw_path} has no interactions to continue from")
        user_shown = _shown_counts(conn, "user_id", truth.user_ids)
        item_shown = _shown_counts(conn, "item_id", truth.item_ids)

        world_days = max(1, -(-(last - first) // SECONDS_PER_DAY))
        n = days * (per_day if per_day is not None else round(count / world_days))
        start = (last // SECONDS_PER_DAY + 1) * SECONDS_PER_DAY
        rng = np.random.default_rng([seed, start])
        requests = -(-n // slate_size)
        request_ts = np.sort(start + rng.integers(0, days * SECONDS_PER_DAY, size=requests))
        request_user = rng.choice(truth.user_ids, size=requests, p=user_shown / user_shown.sum())
        event_ts, user_id, position = expand_slates(request_ts, request_user, n, slate_size)
        item_id = rng.choice(truth.item_ids, size=n, p=item_shown / item_shown.sum())
        if slate_size == 1:  # single impressions, anywhere on the page
            position = rng.integers(1, N_POSITIONS + 1, size=n)
        p_click = truth.p_click(user_id, item_id, position)
        p_nonpersonal = truth.p_click(user_id, item_id, position, personal=False)
        clicked = (rng.random(n) < p_click).astype(np.int64)
        interaction_id = last_id + 1 + np.arange(n, dtype=np.int64)

        with conn:  # one transaction
            conn.executemany(
                "insert into interactions "
                "(interaction_id, user_id, item_id, event_ts, clicked, position) "
                "values (?, ?, ?, ?, ?, ?)",
                zip(
                    interaction_id.tolist(),
                    user_id.tolist(),
                    item_id.tolist(),
                    event_ts.tolist(),
                    clicked.tolist(),
                    position.tolist(),
                    strict=True,
                ),
            )
            conn.executemany(
                "insert into click_truth (interaction_id, p_click, p_click_nonpersonal) "
                "values (?, ?, ?)",
                zip(
                    interaction_id.tolist(),
                    p_click.tolist(),
                    p_nonpersonal.tolist(),
                    strict=True,
                ),
            )
    return Appended(
        impressions=n,
        clicks=int(clicked.sum()),
        first_ts=int(event_ts[0]) if n else start,
        last_ts=int(event_ts[-1]) if n else start,
    )


def _shown_counts(conn: sqlite3.Connection, column: str, known: np.ndarray) -> np.ndarray:
    """How often each of the ``known`` ids was shown (at least once, so that no
    entity of the world disappears from its future)."""
    shown = dict(
        conn.execute(
            f"select {column}, count(*) from interactions "
            f"where typeof({column}) = 'integer' group by {column}"
        ).fetchall()
    )
    counts = np.array([shown.get(int(i), 0) + 1 for i in known], dtype=np.float64)
    return counts
