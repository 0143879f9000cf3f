"""Generated tasks: ``motif`` (DNA binding sites) and ``parity`` (bit strings)."""

from __future__ import annotations

import math

import numpy as np
import torch

from qepi.config import Data
from qepi.data.base import Dataset, Split, split_sizes
from qepi.errors import UserError
from qepi.models import InputSpec

BASES = ("A", "C", "G", "T")


def _column_entropy(p: float) -> float:
    """Entropy in bits of a column with probability ``p`` on its consensus base, the rest even."""
    rest = (1.0 - p) / 3.0
    return -sum(q * math.log2(q) for q in (p, rest, rest, rest) if q > 0)


def motif_pwm(motif_len: int, entropy: float, rng: np.random.Generator) -> np.ndarray:
    """A (motif_len, 4) position weight matrix whose every column has ``entropy`` bits.

    Each column puts probability p on a random consensus base and (1 - p) / 3 on the
    others, with p solved so the column's entropy is ``entropy`` (0 = a fixed site,
    2 = uniformly random bases).

    >>> pwm = motif_pwm(3, 0.5, np.random.default_rng(0))
    >>> pwm.shape, bool(np.allclose(pwm.sum(1), 1))
    ((3, 4), True)
    >>> round(float(_column_entropy(pwm.max(1)[0])), 6)
    0.5
    """
    if not 0.0 <= entropy <= 2.0:
        raise UserError(f"data.pwm_entropy: must be between 0 and 2 bits, got {entropy}")
    lo, hi = 0.25, 1.0  # the entropy falls from 2 bits at p = 1/4 to 0 at p = 1
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if _column_entropy(mid) > entropy else (lo, mid)
    p = (lo + hi) / 2
    pwm = np.full((motif_len, 4), (1.0 - p) / 3.0)
    pwm[np.arange(motif_len), rng.integers(0, 4, size=motif_len)] = p
    return pwm


def _splits(x: np.ndarray, y: np.ndarray, data: Data) -> tuple[Split, Split | None, Split]:
    n_train, n_dev, _ = split_sizes(data)
    xt, yt = torch.as_tensor(x, dtype=torch.long), torch.as_tensor(y, dtype=torch.long)
    train = Split(xt[:n_train], yt[:n_train])
    dev = Split(xt[n_train:n_train + n_dev], yt[n_train:n_train + n_dev]) if n_dev else None
    test = Split(xt[n_train + n_dev:], yt[n_train + n_dev:])
    return train, dev, test


def _balanced_labels(n: int, rng: np.random.Generator) -> np.ndarray:
    return rng.permutation(np.arange(n) % 2)


def load_motif(data: Data, seed: int = 0) -> Dataset:
    """DNA sequences (ids of A, C, G, T), label 1 when a PWM-sampled binding site was planted.

    Backgrounds are uniform random bases; positives carry one site of ``data.motif_len``
    bases sampled from a PWM of ``data.pwm_entropy`` bits per column at a random position.
    Longer sequences, shorter motifs and higher entropy make the task harder.

    >>> ds = load_motif(Data(seq_len=10, motif_len=4, n_train=6, n_dev=2, n_test=2), seed=1)
    >>> ds.train.x.shape, ds.vocab
    (torch.Size([6, 10]), ('A', 'C', 'G', 'T'))
    """
    if not 1 <= data.motif_len <= data.seq_len:
        raise UserError(f"data.motif_len: must be between 1 and seq_len={data.seq_len}, "
                        f"got {data.motif_len}")
    total = sum(split_sizes(data))
    rng = np.random.default_rng([seed, 1])  # 1: the motif task's stream
    pwm = motif_pwm(data.motif_len, data.pwm_entropy, rng)
    x = rng.integers(0, 4, size=(total, data.seq_len))  # (N, T) background bases
    y = _balanced_labels(total, rng)
    for i in np.flatnonzero(y):
        start = rng.integers(0, data.seq_len - data.motif_len + 1)
        site = [rng.choice(4, p=column) for column in pwm]
        x[i, start:start + data.motif_len] = site
    train, dev, test = _splits(x, y, data)
    spec = InputSpec(seq_len=data.seq_len, n_classes=2, vocab_size=4)
    return Dataset("motif", train, dev, test, spec, vocab=BASES)


def load_parity(data: Data, seed: int = 0) -> Dataset:
    """Bit strings of ``data.seq_len`` bits labelled by their parity (a hard case for attention).

    >>> ds = load_parity(Data(task="parity", seq_len=5, n_train=4, n_dev=0, n_test=4), seed=0)
    >>> bool((ds.train.x.sum(1) % 2 == ds.train.y).all()), ds.dev
    (True, None)
    """
    if data.seq_len < 1:
        raise UserError(f"data.seq_len: must be >= 1, got {data.seq_len}")
    total = sum(split_sizes(data))
    rng = np.random.default_rng([seed, 2])  # 2: the parity task's stream
    x = rng.integers(0, 2, size=(total, data.seq_len))  # (N, T) bits
    y = x.sum(axis=1) % 2
    train, dev, test = _splits(x, y, data)
    spec = InputSpec(seq_len=data.seq_len, n_classes=2, vocab_size=2)
    return Dataset("parity", train, dev, test, spec, vocab=("0", "1"))
