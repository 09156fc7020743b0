"""Every file writer is atomic: a failure in the middle of a write leaves the old
file whole (or no file), never a half-written one, and no temporary behind."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from models_py import checkpoint, runs
from models_py.evaluate import save_figure
from recsys_core import atomic
from seeds_gen.load import Table, write_tables_atomically


def _figure():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1])
    return fig


WRITERS = {
    "run json": lambda path: runs.write_json(path, {"auc": 0.7}),
    "run text": lambda path: runs.write_text(path, "# report\n"),
    "checkpoint": lambda path: checkpoint.save({"model": {}, "config": {}}, path),
    "plot": lambda path: save_figure(_figure(), path),
    "raw.db": lambda path: write_tables_atomically(
        path, [Table("users", {"user_id": int}, {"user_id": [1, 2]})]
    ),
}


def _leftovers(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize("writer", WRITERS, ids=list(WRITERS))
def test_a_failed_write_keeps_the_old_file(tmp_path, monkeypatch, writer):
    path = tmp_path / "file"
    path.write_bytes(b"the previous, complete file")

    def disk_full(fd: int) -> None:  # the data is in the temporary file, not yet synced
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(atomic.os, "fsync", disk_full)
    with pytest.raises(OSError, match="No space left"):
        WRITERS[writer](path)
    assert path.read_bytes() == b"the previous, complete file"
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("writer", WRITERS, ids=list(WRITERS))
def test_a_failed_first_write_leaves_no_file(tmp_path, monkeypatch, writer):
    monkeypatch.setattr(atomic.os, "replace", lambda *a: (_ for _ in ()).throw(OSError("boom")))
    with pytest.raises(OSError, match="boom"):
        WRITERS[writer](tmp_path / "file")
    assert list(tmp_path.iterdir()) == []


def test_a_checkpoint_save_killed_inside_torch_save_keeps_the_old_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    checkpoint.save({"model": {"w": torch.ones(3)}, "config": {"step": 1}}, path)

    def half_then_fail(payload, handle) -> None:
        handle.write(b"PK\x03\x04 half a zip")
        raise KeyboardInterrupt  # Ctrl-C or SIGTERM in the middle of the save

    monkeypatch.setattr(checkpoint.torch, "save", half_then_fail)
    with pytest.raises(KeyboardInterrupt):
        checkpoint.save({"model": {"w": torch.zeros(3)}, "config": {"step": 2}}, path)
    assert checkpoint.load(path)["config"] == {"step": 1}
    assert _leftovers(tmp_path) == []
