"""Containers shared by every dataset, and the seeded batch order."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch

from qepi.errors import UserError
from qepi.models import InputSpec


@dataclass(frozen=True)
class Split:
    """One split: inputs ``x`` (N, T) token ids or (N, T, F) features, labels ``y`` (N,),
    and ``mask`` (N, T), True for real tokens, or None when every token is real."""

    x: torch.Tensor
    y: torch.Tensor
    mask: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.y)

    def take(self, index: torch.Tensor) -> Split:
        """The rows at ``index`` as a new Split."""
        return Split(self.x[index], self.y[index], None if self.mask is None else self.mask[index])


@dataclass(frozen=True)
class Dataset:
    """Train, optional dev, and test splits of one task, with the model's InputSpec."""

    task: str
    train: Split
    dev: Split | None
    test: Split
    spec: InputSpec
    vocab: tuple[str, ...] = ()  # token strings by id, for token tasks
    dev_source: str = ""  # how the dev split was made, in words (reports quote it)

    def majority_rate(self) -> float:
        """Test accuracy of always answering the most frequent test class (the chance level)."""
        y = self.test.y
        return y.bincount().max().item() / len(y)

    def check_not_empty(self) -> None:
        """Raise a UserError if the train or test split has no examples."""
        for name in ("train", "test"):
            if len(getattr(self, name)) == 0:
                raise UserError(f"data ({self.task}): the {name} split is empty")


def batch_order(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The example order of one epoch: a permutation of ``range(n)`` fixed by (seed, epoch).

    A resumed run therefore sees exactly the batches an uninterrupted run would.

    >>> batch_order(5, seed=0, epoch=1).tolist() == batch_order(5, seed=0, epoch=1).tolist()
    True
    """
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=generator)


def split_sizes(data, available: int | None = None) -> tuple[int, int, int]:
    """(n_train, n_dev, n_test) checked against each other and against ``available`` examples."""
    for key in ("n_train", "n_test"):
        if getattr(data, key) < 1:
            raise UserError(f"data.{key}: must be >= 1, got {getattr(data, key)}")
    if data.n_dev < 0:
        raise UserError(f"data.n_dev: must be >= 0, got {data.n_dev}")
    total = data.n_train + data.n_dev + data.n_test
    if available is not None and total > available:
        raise UserError(
            f"data ({data.task}): n_train + n_dev + n_test = {total} but only {available} "
            f"examples are available"
        )
    return data.n_train, data.n_dev, data.n_test


def stratified_dev_indices(labels, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, dev) index arrays: ``fraction`` of every class's examples, drawn at random by
    ``seed``, go to dev; each class keeps at least one example in train.

    A class of n examples gives round(fraction * n) to dev (at least one when n >= 2), so
    dev has the training set's class balance to within one example per class.

    >>> train, dev = stratified_dev_indices([0, 0, 0, 0, 1, 1, 1, 1, 1, 1], 0.25, seed=0)
    >>> sorted(dev.tolist()) == sorted(set(range(10)) - set(train.tolist())), len(dev)
    (True, 3)
    """
    if not 0.0 <= fraction < 1.0:
        raise UserError(f"data.dev_fraction: must be >= 0 and < 1, got {fraction}")
    labels = np.asarray(labels)
    rng = np.random.default_rng([seed, 7])  # 7: the dev carve's stream
    dev = []
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        n = len(members)
        take = 0 if fraction == 0 or n < 2 else min(n - 1, max(1, round(fraction * n)))
        dev.extend(members[:take].tolist())
    dev_index = np.sort(np.array(dev, dtype=np.int64))
    train_index = np.setdiff1d(np.arange(len(labels)), dev_index)
    return train_index, dev_index


def carve_dev(dataset: Dataset, fraction: float, seed: int) -> Dataset:
    """``dataset`` with a stratified dev split carved from train when it has none (see
    :func:`stratified_dev_indices`); the test split is never touched."""
    if dataset.dev is not None or fraction == 0:
        if not 0.0 <= fraction < 1.0:
            raise UserError(f"data.dev_fraction: must be >= 0 and < 1, got {fraction}")
        return dataset
    train_index, dev_index = stratified_dev_indices(dataset.train.y.numpy(), fraction, seed)
    if len(dev_index) == 0:
        return replace(dataset, dev_source="none: too few training examples per class to carve one")
    return replace(
        dataset,
        train=dataset.train.take(torch.as_tensor(train_index)),
        dev=dataset.train.take(torch.as_tensor(dev_index)),
        dev_source=carve_note(len(dev_index), len(train_index) + len(dev_index), fraction, seed),
    )


def carve_note(n_dev: int, n_train: int, fraction: float, seed: int) -> str:
    """How a carved dev split was made, in words.

    >>> carve_note(15, 74, 0.2, 3)
    'carved from train: 15 of 74 examples (data.dev_fraction = 0.2, stratified by class, seed 3)'
    """
    return (f"carved from train: {n_dev} of {n_train} examples (data.dev_fraction = {fraction}, "
            f"stratified by class, seed {seed})")
