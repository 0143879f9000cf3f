"""scikit-learn's 8×8 handwritten digits as token sequences (offline: the data ships with it)."""

from __future__ import annotations

import numpy as np
import torch

from qepi.config import Data
from qepi.data.base import Dataset, Split, split_sizes
from qepi.errors import UserError
from qepi.models import InputSpec

TOKENIZATIONS = ("rows", "patches")


def image_tokens(images: np.ndarray, tokens: str) -> np.ndarray:
    """(N, 8, 8) images in [0, 1] -> (N, T, F) tokens.

    ``rows``: 8 tokens of 8 pixels. ``patches``: 4 tokens, the 4×4 quadrants in reading
    order, of 16 pixels each.

    >>> image_tokens(np.zeros((2, 8, 8)), "rows").shape, image_tokens(np.zeros((2, 8, 8)), "patches").shape
    ((2, 8, 8), (2, 4, 16))
    """
    if tokens == "rows":
        return images.copy()
    if tokens == "patches":
        n = len(images)
        blocks = images.reshape(n, 2, 4, 2, 4).transpose(0, 1, 3, 2, 4)  # (N, 2, 2, 4, 4)
        return blocks.reshape(n, 4, 16)
    raise UserError(f"data.tokens: unknown tokenization {tokens!r} (known: {', '.join(TOKENIZATIONS)})")


def load_digits(data: Data, seed: int = 0) -> Dataset:
    """Digits of the classes in ``data.classes`` (relabelled 0..C-1 in that order), pixels
    scaled to [0, 1], split at random by ``seed``.

    >>> ds = load_digits(Data(task="digits", classes=[3, 5], n_train=10, n_dev=0, n_test=5))
    >>> ds.train.x.shape, ds.spec.n_classes, ds.spec.n_features
    (torch.Size([10, 8, 8]), 2, 8)
    """
    from sklearn.datasets import load_digits as sklearn_digits

    classes = list(data.classes)
    if len(classes) < 2 or len(set(classes)) != len(classes) or not all(0 <= c <= 9 for c in classes):
        raise UserError(f"data.classes: need two or more distinct digits 0-9, got {classes}")
    bunch = sklearn_digits()
    keep = np.isin(bunch.target, classes)
    images = bunch.images[keep] / 16.0  # (N, 8, 8) in [0, 1]
    labels = np.array([classes.index(t) for t in bunch.target[keep]])
    n_train, n_dev, n_test = split_sizes(data, available=len(labels))
    order = np.random.default_rng([seed, 3]).permutation(len(labels))  # 3: the digits stream
    x = torch.as_tensor(image_tokens(images, data.tokens)[order], dtype=torch.float32)
    y = torch.as_tensor(labels[order], dtype=torch.long)
    train = Split(x[:n_train], y[:n_train])
    dev = Split(x[n_train:n_train + n_dev], y[n_train:n_train + n_dev]) if n_dev else None
    test = Split(x[n_train + n_dev:n_train + n_dev + n_test], y[n_train + n_dev:n_train + n_dev + n_test])
    spec = InputSpec(seq_len=x.shape[1], n_classes=len(classes), n_features=x.shape[2])
    return Dataset("digits", train, dev, test, spec)
