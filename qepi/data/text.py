"""Sentence classification from files: one example a line, ``LABEL token token ...``.

Words are normalised as ``data.lowercase`` and ``data.punctuation`` say (see :func:`words`);
the vocabulary comes from the training split only, so a dev or test word never seen in
training reads as ``<unk>`` (``train.word_dropout`` teaches the model what to do with it).
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import torch

from qepi.config import Data
from qepi.data.base import Dataset, Split, carve_note, stratified_dev_indices
from qepi.errors import UserError
from qepi.models import InputSpec

PAD, UNK = "<pad>", "<unk>"
PUNCTUATION = ("split", "strip", "keep")
_WORD_OR_MARK = re.compile(r"\w+(?:['’-]\w+)*|[^\w\s]")  # words keep inner ' and -; any other mark alone
_WORD = re.compile(r"\w")

Example = tuple[int, list[str]]  # (label, words)


def words(tokens: list[str], lowercase: bool = True, punctuation: str = "split") -> list[str]:
    """``tokens`` normalised: lower-cased if asked; punctuation marks made tokens of their own
    (``split``), dropped (``strip``) or left as written (``keep``).

    >>> words(["The", "film's", "ending", "-", "wow!"])
    ['the', "film's", 'ending', '-', 'wow', '!']
    >>> words(["Well-made,", "GOOD."], lowercase=False, punctuation="strip")
    ['Well-made', 'GOOD']
    """
    if punctuation not in PUNCTUATION:
        raise UserError(f"data.punctuation: unknown mode {punctuation!r} (known: {', '.join(PUNCTUATION)})")
    if lowercase:
        tokens = [t.lower() for t in tokens]
    if punctuation == "keep":
        return list(tokens)
    pieces = [piece for t in tokens for piece in _WORD_OR_MARK.findall(t)]
    return pieces if punctuation == "split" else [p for p in pieces if _WORD.match(p)]


def read_text_file(path: str | Path, n_classes: int | None = None, lowercase: bool = False,
                   punctuation: str = "keep") -> list[Example]:
    """(label, tokens) for every non-blank line of ``path``, tokens normalised by :func:`words`.

    A line is a non-negative integer label (below ``n_classes`` when given), whitespace,
    then the sentence's tokens separated by spaces. A malformed line (or one with no word
    left after normalisation) is a UserError naming the file and the line.

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
        tokens = words(parts[1:], lowercase, punctuation)
        if not tokens:
            raise UserError(f"{path}:{number}: no word left after data.punctuation = {punctuation!r}")
        examples.append((label, tokens))
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


def write_text_file(path: str | Path, examples: list[Example]) -> None:
    """Write ``examples`` one a line (``LABEL word word ...``), as :func:`read_text_file` reads."""
    Path(path).write_text("".join(f"{label} {' '.join(tokens)}\n" for label, tokens in examples),
                          encoding="utf-8")


def text_dataset(task: str, data: Data, seed: int, train: list[Example], dev: list[Example] | None,
                 test: list[Example], dev_source: str = "") -> Dataset:
    """Encode example lists as a :class:`Dataset`. Without ``dev``, a stratified
    ``data.dev_fraction`` of ``train`` becomes dev (drawn with ``seed``) before the vocabulary
    is built, so dev words unseen in the rest of train read as ``<unk>``, as test words do."""
    if data.max_len < 1:
        raise UserError(f"data.max_len: must be >= 1, got {data.max_len}")
    n_classes = max(label for label, _ in train) + 1
    if n_classes < 2:
        raise UserError(f"data ({task}): training needs at least two classes (labels 0 and 1), found only 0")
    if dev is None:
        train_index, dev_index = stratified_dev_indices([label for label, _ in train], data.dev_fraction, seed)
        if len(dev_index):
            dev_source = carve_note(len(dev_index), len(train), data.dev_fraction, seed)
            dev, train = [train[i] for i in dev_index], [train[i] for i in train_index]
        else:
            dev_source = "none (data.dev_fraction = 0)" if data.dev_fraction == 0 else \
                "none: too few training examples per class to carve one"
    vocab = build_vocab(train)
    return Dataset(
        task,
        encode(train, vocab, data.max_len),
        None if dev is None else encode(dev, vocab, data.max_len),
        encode(test, vocab, data.max_len),
        InputSpec(seq_len=data.max_len, n_classes=n_classes, vocab_size=len(vocab)),
        vocab=vocab,
        dev_source=dev_source,
    )


def load_text(data: Data, seed: int = 0) -> Dataset:
    """Read ``data.train``, the optional ``data.dev`` and ``data.test``. The vocabulary comes
    from train; unknown words map to ``<unk>``. Without a dev file, ``seed`` draws the dev
    split carved from train (see :func:`text_dataset`)."""
    for key in ("train", "test"):
        if not getattr(data, key):
            raise UserError(f"data.{key}: the text task needs the path of the {key} file")
    normalise = dict(lowercase=data.lowercase, punctuation=data.punctuation)
    train = read_text_file(data.train, **normalise)
    n_classes = max(label for label, _ in train) + 1
    dev = read_text_file(data.dev, n_classes, **normalise) if data.dev else None
    test = read_text_file(data.test, n_classes, **normalise)
    return text_dataset("text", data, seed, train, dev, test,
                        dev_source=f"read from data.dev = {data.dev}" if data.dev else "")
