"""Containers shared by every dataset, and the seeded batch order."""

from __future__ import annotations

from dataclasses import dataclass

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
