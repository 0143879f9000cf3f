"""Offline, seeded datasets and file loaders.

:func:`load_dataset` turns the ``data`` section of a config (and a seed) into a
:class:`Dataset`: train, dev and test :class:`Split` tensors plus the
``qepi.models.InputSpec`` a model needs. The same (config, seed) always gives the same data.

Tasks: ``motif`` (DNA with or without a PWM-sampled binding site), ``digits``
(scikit-learn's 8×8 digits as row or patch tokens), ``parity`` (bit strings) and
``text`` (sentence classification from files), ``clauses`` (relative clauses that only
word order tells apart) and ``topics`` (two-topic sentences); see :mod:`qepi.data.sentences`.

A task without a dev split of its own (``data.n_dev = 0``, or no ``data.dev`` file) gets a
stratified ``data.dev_fraction`` of train as dev; ``Dataset.dev_source`` says which.

Example:
    >>> from qepi.config import Data
    >>> ds = load_dataset(Data(task="parity", seq_len=6, n_train=8, n_dev=4, n_test=4), seed=0)
    >>> ds.train.x.shape, ds.spec.vocab_size, ds.spec.n_classes
    (torch.Size([8, 6]), 2, 2)
"""

from __future__ import annotations

from collections.abc import Callable

from qepi.config import Data
from dataclasses import replace

from qepi.data.base import Dataset, Split, batch_order, carve_dev, stratified_dev_indices
from qepi.data.digits import load_digits
from qepi.data.sentences import clause_examples, load_clauses, load_topics, topic_examples
from qepi.data.synthetic import load_motif, load_parity, motif_pwm
from qepi.data.text import PAD, UNK, load_text, read_text_file, words, write_text_file
from qepi.errors import UserError

TASKS: dict[str, Callable[[Data, int], Dataset]] = {
    "motif": load_motif,
    "digits": load_digits,
    "parity": load_parity,
    "text": load_text,
    "clauses": load_clauses,
    "topics": load_topics,
}
TEXT_TASKS = ("text", "clauses", "topics")  # tasks whose tokens are words (with <pad> and <unk>)


def load_dataset(data: Data, seed: int = 0) -> Dataset:
    """The dataset that ``data`` describes, generated or read with ``seed``."""
    try:
        loader = TASKS[data.task]
    except KeyError:
        raise UserError(f"data.task: unknown task {data.task!r} (known: {', '.join(TASKS)})") from None
    dataset = loader(data, seed)
    if dataset.dev is not None and not dataset.dev_source:
        dataset = replace(dataset, dev_source=f"generated: data.n_dev = {len(dataset.dev)} examples")
    return carve_dev(dataset, data.dev_fraction, seed)


__all__ = [
    "PAD",
    "TASKS",
    "TEXT_TASKS",
    "UNK",
    "Dataset",
    "Split",
    "batch_order",
    "clause_examples",
    "load_dataset",
    "motif_pwm",
    "read_text_file",
    "stratified_dev_indices",
    "topic_examples",
    "words",
    "write_text_file",
]
