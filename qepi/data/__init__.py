"""Offline, seeded datasets and file loaders.

:func:`load_dataset` turns the ``data`` section of a config (and a seed) into a
:class:`Dataset`: train, dev and test :class:`Split` tensors plus the
``qepi.models.InputSpec`` a model needs. The same (config, seed) always gives the same data.

Tasks: ``motif`` (DNA with or without a PWM-sampled binding site), ``digits``
(scikit-learn's 8×8 digits as row or patch tokens), ``parity`` (bit strings) and
``text`` (sentence classification from files).

Example:
    >>> from qepi.config import Data
    >>> ds = load_dataset(Data(task="parity", seq_len=6, n_train=8, n_dev=4, n_test=4), seed=0)
    >>> ds.train.x.shape, ds.spec.vocab_size, ds.spec.n_classes
    (torch.Size([8, 6]), 2, 2)
"""

from __future__ import annotations

from collections.abc import Callable

from qepi.config import Data
from qepi.data.base import Dataset, Split, batch_order
from qepi.data.digits import load_digits
from qepi.data.synthetic import load_motif, load_parity, motif_pwm
from qepi.data.text import load_text, read_text_file
from qepi.errors import UserError

TASKS: dict[str, Callable[[Data, int], Dataset]] = {
    "motif": load_motif,
    "digits": load_digits,
    "parity": load_parity,
    "text": load_text,
}


def load_dataset(data: Data, seed: int = 0) -> Dataset:
    """The dataset that ``data`` describes, generated or read with ``seed``."""
    try:
        loader = TASKS[data.task]
    except KeyError:
        raise UserError(f"data.task: unknown task {data.task!r} (known: {', '.join(TASKS)})") from None
    return loader(data, seed)


__all__ = [
    "TASKS",
    "Dataset",
    "Split",
    "batch_order",
    "load_dataset",
    "motif_pwm",
    "read_text_file",
]
