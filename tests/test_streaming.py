"""Streaming training: encoders fitted chunk by chunk equal a direct fit; the
training split read from disk in shuffled blocks gives the in-memory path's
evaluation inputs, visits every training row once per epoch, and can restart
mid-epoch on the same sequence."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest
import torch

from models_py import stream
from models_py.config import TrainConfig
from models_py.data import Encoded, transform_values
from models_py.model import build_model
from models_py.pipeline import prepare, sample_rows
from models_py.train import train
from tests.conftest import world_workspace


@pytest.fixture
def small_blocks(monkeypatch):
    """Blocks of 1,000 rows, 3 per buffer: the 20k world spans many buffers."""
    monkeypatch.setattr(stream, "BLOCK_ROWS", 1000)
    monkeypatch.setattr(stream, "BUFFER_BLOCKS", 3)


def _both(world, **overrides):
    workspace = world_workspace(world)
    config = TrainConfig().with_overrides(batch_size=512, **overrides)
    return (
        config,
        prepare(config, workspace, streaming=False),
        prepare(config, workspace, streaming=True),
    )


def _sorted_rows(categorical: torch.Tensor, numeric: torch.Tensor) -> np.ndarray:
    rows = np.concatenate([categorical.numpy(), numeric.numpy()], axis=1)
    return rows[np.lexsort(rows.T[::-1])]


def test_the_chunked_encoder_fit_equals_a_direct_fit_on_the_training_rows(
    built_world, small_blocks
):
    """The one encoder fit reads the cache in chunks (1,000 rows here, so many):
    it must give what the training rows give when computed all at once."""
    config, memory, _ = _both(built_world)
    frame, spec, train = memory.frame, memory.spec, memory.split.train
    for feature in spec.categorical:
        counts = pd.Series(frame.column(feature.name, train), dtype=object).value_counts()
        kept = {v for v, c in counts.items() if c >= config.min_count}
        assert set(memory.encoders.vocabularies[feature.name]) == kept, feature.name
    assert any(f.crossed_with for f in spec.numeric), "the world has crossed numerics"
    for feature in spec.numeric:
        values = transform_values(frame.column(feature.name, train), feature.transform)
        finite = values[np.isfinite(values)]
        mean, std = memory.encoders.numeric_stats[feature.name]
        assert (mean, std) == pytest.approx((finite.mean(), finite.std()), rel=1e-9)
        if feature.crossed_with is not None:  # learned per category, not bucketed
            assert memory.encoders.bucket_edges[feature.name] == [], feature.name
            continue
        edges = np.quantile(finite, np.linspace(0, 1, config.numeric_buckets + 1)[1:-1])
        assert memory.encoders.bucket_edges[feature.name] == np.unique(edges).tolist()


def test_streaming_evaluates_the_same_rows_as_the_in_memory_path(built_world, small_blocks):
    _, memory, streamed = _both(built_world)
    assert streamed.train is None and streamed.stream is not None
    assert streamed.encoders == memory.encoders
    for part in ("validation", "test"):
        a, b = getattr(memory, part), getattr(streamed, part)
        torch.testing.assert_close(a.categorical, b.categorical)
        torch.testing.assert_close(a.numeric, b.numeric, rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(a.label, b.label)


def test_an_epoch_of_streamed_batches_holds_every_training_row_once(built_world, small_blocks):
    config, memory, streamed = _both(built_world, negative_rate=0.5)
    assert memory.train is not None and streamed.stream is not None
    batches = list(streamed.stream.batches(epoch=0))
    assert len(batches) == -(-len(memory.train) // config.batch_size)
    assert all(len(b[2]) == config.batch_size for b in batches[:-1])
    categorical = torch.cat([b[0] for b in batches])
    numeric = torch.cat([b[1] for b in batches])
    np.testing.assert_allclose(
        _sorted_rows(categorical, numeric),
        _sorted_rows(memory.train.categorical, memory.train.numeric),
        rtol=1e-6,
    )
    # another epoch, another order
    again = torch.cat([b[2] for b in streamed.stream.batches(epoch=1)])
    assert not torch.equal(again, torch.cat([b[2] for b in batches]))


def test_streamed_batches_restart_mid_epoch_on_the_same_sequence(built_world, small_blocks):
    _, _, streamed = _both(built_world)
    assert streamed.stream is not None
    full = list(streamed.stream.batches(epoch=2))
    for skip in (1, 7, len(full) - 1):
        resumed = list(streamed.stream.batches(epoch=2, skip_batches=skip))
        assert len(resumed) == len(full) - skip
        for a, b in zip(resumed, full[skip:], strict=True):
            assert all(torch.equal(x, y) for x, y in zip(a[:3], b[:3], strict=True))
            assert a[3] is None and b[3] is None  # no wide logits computed ahead when streamed


def _same_batch(a, b) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a[:3], b[:3], strict=True))


def test_batches_from_run_on_into_the_next_epochs_as_each_epoch_would(built_world, small_blocks):
    """The loop takes one sequence across epochs (so a streamed epoch's first
    buffer is made ahead too): it must be each epoch's own batches, end to end,
    from a mid-epoch start as on a resume."""
    _, _, streamed = _both(built_world)
    assert streamed.stream is not None
    epochs = [list(streamed.stream.batches(epoch=e)) for e in (1, 2, 3)]
    expected = epochs[0][4:] + epochs[1] + epochs[2][:3]
    taken = streamed.stream.batches_from(epoch=1, skip_batches=4)
    got = [next(taken) for _ in expected]
    taken.close()
    assert len(epochs[0][-1][2]) < 512  # an epoch ends on its own short batch
    assert all(_same_batch(a, b) for a, b in zip(got, expected, strict=True))


def test_the_next_epochs_first_buffer_is_made_before_the_loop_asks(
    built_world, small_blocks, monkeypatch
):
    """While the loop trains on an epoch's last batches, the reader thread has
    already encoded the next epoch's first buffer: no stall at an epoch start."""
    _, _, streamed = _both(built_world)
    assert streamed.stream is not None
    encoded: list[int] = []
    encode = stream.StreamedBatches._encode

    def counted(self, blocks):
        encoded.append(len(blocks))
        return encode(self, blocks)

    monkeypatch.setattr(stream.StreamedBatches, "_encode", counted)
    per_epoch = len(list(streamed.stream._buffers(0, 0)))
    encoded.clear()
    taken = streamed.stream.batches_from(epoch=0)
    for _ in range(-(-len(streamed.stream) // 512)):  # every batch of epoch 0
        next(taken)
    deadline = time.monotonic() + 30
    while len(encoded) <= per_epoch and time.monotonic() < deadline:
        time.sleep(0.01)
    taken.close()
    assert len(encoded) > per_epoch


def test_a_streamed_run_fits_the_wide_path_on_a_sample_of_the_training_rows(
    built_world, small_blocks, tmp_path
):
    """Too large for memory, the training split streams; the wide path's L-BFGS
    fit (worth +0.004 AUC over Adam at 1M) then takes a random sample of
    ``wide_fit_rows`` training rows, and ``wide_fit_rows=0`` leaves it to Adam."""
    config, memory, streamed = _both(built_world, wide_fit_rows=5000, max_steps=4)
    assert memory.train is not None and streamed.train is None
    rows = sample_rows(streamed.train_rows, config.wide_fit_rows, config.seed)
    assert len(rows) == 5000 < len(streamed.train_rows)
    assert np.all(np.diff(rows) > 0)  # distinct, in storage order
    assert np.isin(rows, streamed.train_rows).all()  # training rows, no others
    assert sample_rows(streamed.train_rows, 0, config.seed) is streamed.train_rows

    (tmp_path / "sample").mkdir()
    model, state = train(config, streamed, tmp_path / "sample", progress=False)
    assert state.wide_l2 > 0 and not model.first_order.weight.requires_grad

    adam = config.with_overrides(wide_fit_rows=0)
    workspace = world_workspace(built_world)
    data = prepare(adam, workspace, streaming=True)
    (tmp_path / "adam").mkdir()
    model, state = train(adam, data, tmp_path / "adam", progress=False)
    assert not state.wide_l2 and model.first_order.weight.requires_grad


def test_streamed_batches_carry_the_frozen_wide_logit_of_each_row(built_world, small_blocks):
    """With the wide path fitted first, each streamed buffer's wide logits are
    computed ahead (in the thread that encodes it): every batch carries exactly
    the logit the model computes for its rows, also after a mid-epoch restart."""
    config, _, streamed = _both(built_world)
    assert streamed.stream is not None
    model = build_model(streamed.spec, streamed.encoders, config)
    with torch.no_grad():
        model.first_order.weight.normal_()  # a wide path that is not all zeros
    model.freeze_wide()
    ahead = streamed.stream.computing_wide(model.frozen_wide_logits)
    full = list(ahead.batches(epoch=1))
    assert len(full) == len(list(streamed.stream.batches(epoch=1)))
    for categorical, numeric, label, wide in full:
        expected = model.frozen_wide_logits(Encoded(categorical, numeric, label))
        assert wide is not None and torch.equal(wide, expected)
    for a, b in zip(ahead.batches(epoch=1, skip_batches=5), full[5:], strict=True):
        assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


def test_wide_logits_computed_ahead_train_the_same_model(
    built_world, small_blocks, tmp_path, monkeypatch
):
    """Computing the frozen wide path's logits per buffer ahead of the loop only
    moves work off the training thread: the trained weights are the same as when
    every step computes them."""
    config, _, streamed = _both(built_world, max_steps=30, patience=100)
    (tmp_path / "ahead").mkdir()
    ahead, _ = train(config, streamed, tmp_path / "ahead", progress=False)
    monkeypatch.setattr(stream.StreamedBatches, "computing_wide", lambda self, _: self)
    (tmp_path / "in_step").mkdir()
    in_step, _ = train(config, streamed, tmp_path / "in_step", progress=False)
    for (name, a), b in zip(ahead.state_dict().items(), in_step.state_dict().values(), strict=True):
        assert torch.allclose(a, b, atol=1e-6), name
