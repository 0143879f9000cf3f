"""Sentence classification from files: one example a line, ``LABEL token token ...``."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import torch

from qepi.config import Data
from qepi.data.base import Dataset, Split
from qepi.errors import UserError
from qepi.models import InputSpec

PAD, UNK = "<pad>", "<unk>"


def read_text_file(path: str | Path, n_classes: int | None = None) -> list[tuple[int, list[str]]]:
    """(label, tokens) for every non-blank line of ``path``.

    A line is a non-negative integer label (below ``n_classes`` when given), whitespace,
    then the sentence's tokens separated by spaces. A malformed line is a UserError
    naming the file and the line.

    >>> import tempfile, os
    >>> with tempfile.TemporaryDirectory() as d:
    ...     p = os.path.join(d, "train.txt")
    ...     _ = open(p, "w").write("1 good film\\n0 dull\\n")
    ...     read_text_file(p)
    [(1, ['good', 'film']), (0, ['dull'])]
    """
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise UserError(f"{path}: data file not found") from None
    except (IsADirectoryError, PermissionError, UnicodeDecodeError) as err:
        raise UserError(f"{path}: cannot read data file ({err.__class__.__name__})") from None
    examples = []
    for number, line in enumerate(lines, start=1):
        parts = line.split()
        if not parts:
            continue
        try:
            label = int(parts[0])
        except ValueError:
            raise UserError(f"{path}:{number}: expected an integer label first, got {parts[0]!r}") from None
        if label < 0:
            raise UserError(f"{path}:{number}: labels must be >= 0, got {label}")
        if n_classes is not None and label >= n_classes:
            raise UserError(f"{path}:{number}: label {label} does not occur in the training "
                            f"file (labels 0..{n_classes - 1})")
        if len(parts) < 2:
            raise UserError(f"{path}:{number}: label {label} has no sentence after it")
        examples.append((label, parts[1:]))
    if not examples:
        raise UserError(f"{path}: no examples (the file is empty)")
    return examples


def build_vocab(examples: list[tuple[int, list[str]]]) -> tuple[str, ...]:
    """``<pad>``, ``<unk>``, then the training words by falling count (ties alphabetical)."""
    counts = Counter(token for _, tokens in examples for token in tokens)
    return (PAD, UNK, *sorted(counts, key=lambda w: (-counts[w], w)))


def encode(examples, vocab: tuple[str, ...], max_len: int) -> Split:
    """Token ids (N, max_len), padded with ``<pad>`` and cut at ``max_len``; mask True on words."""
    index = {word: i for i, word in enumerate(vocab)}
    unk = index[UNK]
    x = torch.zeros(len(examples), max_len, dtype=torch.long)  # (N, T) all <pad>
    for row, (_, tokens) in enumerate(examples):
        ids = [index.get(token, unk) for token in tokens[:max_len]]
        x[row, :len(ids)] = torch.tensor(ids, dtype=torch.long)
    lengths = torch.tensor([min(len(tokens), max_len) for _, tokens in examples])
    mask = torch.arange(max_len).unsqueeze(0) < lengths.unsqueeze(1)  # (N, T)
    y = torch.tensor([label for label, _ in examples], dtype=torch.long)
    return Split(x, y, mask)


def load_text(data: Data, seed: int = 0) -> Dataset:
    """Read ``data.train``, the optional ``data.dev`` and ``data.test`` (the seed is unused:
    files fix the data). The vocabulary comes from train; unknown words map to ``<unk>``."""
    for key in ("train", "test"):
        if not getattr(data, key):
            raise UserError(f"data.{key}: the text task needs the path of the {key} file")
    if data.max_len < 1:
        raise UserError(f"data.max_len: must be >= 1, got {data.max_len}")
    train_examples = read_text_file(data.train)
    n_classes = max(label for label, _ in train_examples) + 1
    if n_classes < 2:
        raise UserError(f"{data.train}: needs at least two classes (labels 0 and 1), found only 0")
    splits = {}
    for key in ("dev", "test"):
        path = getattr(data, key)
        if not path:
            splits[key] = None
            continue
        splits[key] = read_text_file(path, n_classes)
    vocab = build_vocab(train_examples)
    return Dataset(
        "text",
        encode(train_examples, vocab, data.max_len),
        None if splits["dev"] is None else encode(splits["dev"], vocab, data.max_len),
        encode(splits["test"], vocab, data.max_len),
        InputSpec(seq_len=data.max_len, n_classes=n_classes, vocab_size=len(vocab)),
        vocab=vocab,
    )
