"""Training on feature tables larger than memory.

Above ``config.stream_above_rows`` rows (or with ``--streaming on``) the
training split is never held in memory: batches come from the column cache
(models_py.store) in shuffled blocks. Each epoch visits blocks of
``BLOCK_ROWS`` consecutive rows in a seeded random order, ``BUFFER_BLOCKS`` at
a time; a buffer's training rows are encoded, shuffled and cut into batches
(rows left over continue into the next buffer). Another thread reads and
encodes the next buffer (and computes its rows' logits of the frozen wide path,
when the wide path was fitted first) while the loop trains on the last, so the
training thread only steps; across an epoch's end too (``batches_from``), so
no epoch starts by waiting for its first buffer. Memory holds two buffers, so
training's footprint does not grow with the training split. Validation and
test (10% each by default) are encoded in memory, as the evaluation needs
them whole.

Encoders are fitted in one pass over the training rows: category counts and
numeric moments exactly, bucket edges from a seeded sample of at most
``QUANTILE_SAMPLE`` rows (all rows when fewer, so small tables get the same
encoders as the in-memory path).
"""

from __future__ import annotations

import contextlib
import copy
import itertools
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass

import numpy as np
import torch

from models_py.data import (
    Encoded,
    Encoders,
    FeatureFrame,
    bucket_edges,
    encode,
    encode_category,
    standardisation,
    transform_values,
    vocabulary,
)
from models_py.registry import FeatureSpec
from models_py.store import ColumnStore, read_ahead

BLOCK_ROWS = 65_536
BUFFER_BLOCKS = 8
QUANTILE_SAMPLE = 1_000_000
READ_ROWS = 1_000_000  # rows per read when gathering a column or a row subset

# categorical, numeric, label, and the wide path's logit when computed ahead (or None)
Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]


@dataclass
class StoreFrame:
    """The feature table on disk, read in pieces: the streaming stand-in for a
    FeatureFrame (the same ``take``, ``column`` and ``seen`` calls)."""

    store: ColumnStore
    names: list[str]

    def __len__(self) -> int:
        return self.store.rows

    def column(self, name: str, rows: np.ndarray | None = None) -> np.ndarray:
        if rows is None:
            return self.store.read(name)
        return np.concatenate(list(self._gather(name, rows)) or [np.zeros(0)])

    def take(self, rows: np.ndarray) -> FeatureFrame:
        """The given rows (ascending) of every column, in memory."""
        return FeatureFrame({name: self.column(name, rows) for name in self.names})

    def seen(self, name: str, reference: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """For each of ``rows``: does its value of ``name`` occur in ``reference`` rows?"""
        present = np.zeros(len(self.store.values[name]) + 1, dtype=bool)  # last: NULL
        for start, stop in self.store.chunks(READ_ROWS):
            inside = reference[(reference >= start) & (reference < stop)] - start
            present[self.store.codes(name, start, stop)[inside]] = True
        codes = np.concatenate(list(self._gather(name, rows, codes=True)) or [[]])
        return present[codes.astype(np.int64)]

    def _gather(self, name: str, rows: np.ndarray, codes: bool = False) -> Iterator[np.ndarray]:
        for start, stop in self.store.chunks(READ_ROWS):
            lo, hi = np.searchsorted(rows, [start, stop])
            if lo == hi:
                continue
            read = self.store.codes if codes else self.store.read
            yield read(name, start, stop)[rows[lo:hi] - start]


def fit_encoders(
    store: ColumnStore,
    spec: FeatureSpec,
    train: np.ndarray,
    min_count: int,
    numeric_buckets: int,
    seed: int,
) -> Encoders:
    """The encoders of the training rows ``train``: vocabularies, standardisation
    and quantile bucket edges (none for a numeric ``crossed_with`` a categorical),
    read from the column cache chunk by chunk, so the training split is never
    loaded whole. Both paths fit with it (a frame in memory is read from the same
    cache). Edges come from a seeded sample of up to
    QUANTILE_SAMPLE training rows."""
    in_train = np.zeros(store.rows, dtype=bool)
    in_train[train] = True
    rng = np.random.default_rng(seed)
    rate = min(1.0, QUANTILE_SAMPLE / max(len(train), 1))
    counts = {f.name: np.zeros(len(store.values[f.name]), np.int64) for f in spec.categorical}
    moments = {f.name: np.zeros(3) for f in spec.numeric}  # count, sum, sum of squares
    samples: dict[str, list[np.ndarray]] = {f.name: [] for f in spec.numeric}
    for start, stop in store.chunks(READ_ROWS):
        mask = in_train[start:stop]
        keep = mask & (rng.random(stop - start) < rate) if rate < 1 else mask
        for feature in spec.categorical:
            codes = store.codes(feature.name, start, stop)[mask]
            counts[feature.name] += np.bincount(
                codes[codes >= 0], minlength=len(counts[feature.name])
            )
        for feature in spec.numeric:
            values = transform_values(store.read(feature.name, start, stop), feature.transform)
            finite = np.isfinite(values)
            chosen = values[mask & finite]
            moments[feature.name] += (len(chosen), chosen.sum(), np.square(chosen).sum())
            samples[feature.name].append(values[keep & finite])

    vocabularies = {
        f.name: vocabulary(store.values[f.name], counts[f.name], min_count)
        for f in spec.categorical
    }
    stats: dict[str, tuple[float, float]] = {}
    edges: dict[str, list[float]] = {}
    for feature in spec.numeric:
        n, total, squares = moments[feature.name]
        mean = total / n if n else 0.0
        std = np.sqrt(max(squares / n - mean * mean, 0.0)) if n else 1.0
        stats[feature.name] = standardisation(n, mean, std)
        # a numeric crossed with a categorical is learned per value of it in the
        # wide path; its buckets cost an embedded field each for nothing measured
        # (docs/experiments.md), so it is not bucketed
        buckets = numeric_buckets if feature.crossed_with is None else 0
        edges[feature.name] = bucket_edges(np.concatenate(samples[feature.name]), buckets)
    return Encoders(vocabularies, stats, edges)


# The frozen wide path's logit of each row of an encoded buffer
# (CTRModel.frozen_wide_logits), or None when the wide path trains with the rest.
WideLogits = Callable[[Encoded], torch.Tensor | None]


@dataclass(frozen=True)
class _Buffer:
    """A buffer's training rows, encoded and shuffled, with their wide logits
    (None when not computed ahead); ``ends_epoch`` on an epoch's last buffer."""

    rows: Encoded
    wide: torch.Tensor | None
    ends_epoch: bool = False

    def __len__(self) -> int:
        return len(self.rows)

    def take(self, index: slice) -> _Buffer:
        wide = None if self.wide is None else self.wide[index]
        return _Buffer(_rows(self.rows, index), wide)

    def batch(self, index: slice) -> Batch:
        wide = None if self.wide is None else self.wide[index]
        return self.rows.categorical[index], self.rows.numeric[index], self.rows.label[index], wide

    def after(self, carry: _Buffer | None) -> _Buffer:
        """``carry``'s rows, then this buffer's."""
        if carry is None:
            return self
        wide = (
            None if self.wide is None or carry.wide is None else torch.cat([carry.wide, self.wide])
        )
        return _Buffer(_concat(carry.rows, self.rows), wide, self.ends_epoch)


class StreamedBatches:
    """Shuffled training batches read block by block from the column cache.

    ``computing_wide`` gives the same batches with each row's wide logit
    computed ahead, in the thread that encodes its buffer, as the in-memory path
    computes them once for all rows: the training step then skips the wide path."""

    def __init__(
        self,
        store: ColumnStore,
        spec: FeatureSpec,
        encoders: Encoders,
        train_rows: np.ndarray,
        batch_size: int,
        seed: int,
    ) -> None:
        self.store, self.spec, self.encoders = store, spec, encoders
        self.batch_size, self.seed = batch_size, seed
        self.in_train = np.zeros(store.rows, dtype=bool)
        self.in_train[train_rows] = True
        self.n_blocks = -(-store.rows // BLOCK_ROWS)
        self.rows_per_block = np.add.reduceat(self.in_train, np.arange(0, store.rows, BLOCK_ROWS))
        self.wide_logits: WideLogits | None = None
        # Each categorical's vocabulary index per code of the cache (the last entry
        # for code -1, NULL): a buffer's categoricals are then a gather of integer
        # codes, not a hash of every value under the GIL (models_py.store keeps
        # categoricals as codes beside their values).
        self.index_of_code = {
            f.name: np.append(
                encode_category(
                    np.array(store.values[f.name], dtype=object), encoders.vocabularies[f.name]
                ),
                0,
            )
            for f in spec.categorical
        }
        # read as values: the numerics and the label (categoricals come as codes)
        self.value_columns = [f.name for f in spec.numeric]
        if spec.label_column not in self.value_columns:
            self.value_columns.append(spec.label_column)

    def __len__(self) -> int:
        return int(self.in_train.sum())

    def computing_wide(self, wide_logits: WideLogits) -> StreamedBatches:
        """These batches with each row's wide logit computed ahead by ``wide_logits``."""
        batches = copy.copy(self)
        batches.wide_logits = wide_logits
        return batches

    def batches(self, epoch: int, skip_batches: int = 0) -> Iterator[Batch]:
        """The epoch's batches in order, starting after ``skip_batches`` of them.
        The buffers are made one ahead by another thread (``read_ahead``); the
        sequence is the same as if this thread made them."""
        return self._cut(read_ahead(lambda: self._buffers(epoch, skip_batches)))

    def batches_from(self, epoch: int, skip_batches: int = 0) -> Generator[Batch, None, None]:
        """``batches(epoch, skip_batches)``, then every later epoch's batches, with
        no end: one reader thread for all, so the next epoch's first buffer is
        made while this epoch's last trains (the loop never waits on an epoch's
        start: about a second per epoch at 5M rows). Close it when done."""

        def every_buffer() -> Generator[_Buffer, None, None]:
            yield from self._buffers(epoch, skip_batches)
            for later in itertools.count(epoch + 1):
                if not len(self):  # no training rows: no batches, not a spinning reader
                    return
                yield from self._buffers(later, 0)

        return self._cut(read_ahead(every_buffer))

    def _cut(self, buffers: Generator[_Buffer, None, None]) -> Generator[Batch, None, None]:
        """Buffers cut into batches, the rows left over continuing into the next
        buffer; an epoch's last batch holds what is left of it."""
        carry: _Buffer | None = None
        with contextlib.closing(buffers):
            for buffer in buffers:
                buffer = buffer.after(carry)
                full = len(buffer) // self.batch_size * self.batch_size
                for start in range(0, full, self.batch_size):
                    yield buffer.batch(slice(start, start + self.batch_size))
                carry = buffer.take(slice(full, len(buffer)))
                if buffer.ends_epoch:
                    if len(carry):
                        yield carry.batch(slice(0, len(carry)))
                    carry = None

    def _buffers(self, epoch: int, skip_batches: int) -> Generator[_Buffer, None, None]:
        """The epoch's buffers, encoded and shuffled, the first ``skip_batches``
        batches' rows left out; the last one ``ends_epoch``."""
        rng = np.random.default_rng([self.seed, epoch])
        order = rng.permutation(self.n_blocks)
        buffers = [order[i : i + BUFFER_BLOCKS] for i in range(0, len(order), BUFFER_BLOCKS)]
        shuffles = [int(rng.integers(2**31)) for _ in buffers]  # drawn up front: skipping
        skip = skip_batches * self.batch_size  # a buffer never changes the later ones
        kept: list[tuple[np.ndarray, int, int]] = []  # blocks, shuffle seed, rows to skip
        for blocks, buffer_seed in zip(buffers, shuffles, strict=True):
            size = int(self.rows_per_block[blocks].sum())
            if skip >= size:
                skip -= size
                continue
            kept.append((blocks, buffer_seed, skip))
            skip = 0
        for number, (blocks, buffer_seed, skip) in enumerate(kept, start=1):
            encoded = self._encode(np.sort(blocks))
            generator = torch.Generator().manual_seed(buffer_seed)
            encoded = encoded.take(torch.randperm(len(encoded), generator=generator)[skip:])
            wide = None if self.wide_logits is None else self.wide_logits(encoded)
            yield _Buffer(encoded, wide, ends_epoch=number == len(kept))

    def _encode(self, blocks: np.ndarray) -> Encoded:
        parts = []
        for block in blocks:
            start, stop = (
                int(block) * BLOCK_ROWS,
                min((int(block) + 1) * BLOCK_ROWS, self.store.rows),
            )
            mask = self.in_train[start:stop]
            columns = {
                name: self.store.read(name, start, stop)[mask] for name in self.value_columns
            }
            indices = {
                name: index[self.store.codes(name, start, stop)[mask]]
                for name, index in self.index_of_code.items()
            }
            label = columns[self.spec.label_column]
            parts.append(encode(columns, self.spec, self.encoders, label, indices=indices))
        return _concat(*parts)


def _rows(encoded: Encoded, index: slice) -> Encoded:
    return Encoded(encoded.categorical[index], encoded.numeric[index], encoded.label[index])


def _concat(*parts: Encoded) -> Encoded:
    return Encoded(
        torch.cat([p.categorical for p in parts]),
        torch.cat([p.numeric for p in parts]),
        torch.cat([p.label for p in parts]),
    )
