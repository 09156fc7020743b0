"""make quality's table: what its time columns add up."""

from __future__ import annotations

from models_py.quality import model_seconds, table


def test_the_model_time_counts_the_wide_fit_the_network_and_the_refit():
    train = {"wide_fit_seconds": 16.8, "seconds": 3.1, "refit_seconds": 9.3, "rows": 800_000}
    assert model_seconds(train) == 16.8 + 3.1 + 9.3
    # a run without the refit (--no-refit) or fitted by Adam has no such keys
    assert model_seconds({"seconds": 4.0}) == 4.0


def test_the_table_shows_the_model_time_beside_the_whole_command():
    row = {
        "world": "default, seed 42",
        "model": 0.7472,
        "logistic_regression": 0.7219,
        "lightgbm": 0.7370,
        "oracle": 0.7965,
        "share_of_oracle_lift": 0.834,
        "calibration": 1.013,
        "model_seconds": 29.2,
        "command_seconds": 81.5,
    }
    header, line, notes = table([row]).splitlines()
    assert header.rstrip().endswith("model s  train s")
    assert line.split()[-2:] == ["29.2", "81.5"]
    assert "83.4%" in line
    assert "model s" in notes and "train s" in notes
