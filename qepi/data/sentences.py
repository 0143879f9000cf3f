"""Generated sentence tasks, small enough to stand in for real ones and with known answers.

- ``clauses``: relative-clause phrases, ``noun that noun verb`` (object relative, label 0)
  against ``noun that verb noun`` (subject relative, label 1). They come in pairs made of
  the same three words, one phrase of each class, so every split holds the same multiset
  of words in both classes: any bag-of-words model is at chance by construction, and only
  word order decides.
- ``topics``: two-topic sentences (sport, label 0, against cooking, label 1) written like
  real text (capitals, commas, full stops), which bag-of-words separates perfectly.

In both, a ``data.unseen_fraction`` of the test examples holds a word never seen in training
(held out of train and dev altogether).
"""

from __future__ import annotations

from itertools import permutations

import numpy as np

from qepi.config import Data
from qepi.data.base import Dataset
from qepi.data.text import Example, text_dataset, words
from qepi.errors import UserError

RELATIVE = "that"

SPORT = ("striker", "goal", "match", "team", "coach", "referee", "scored", "stadium", "league",
         "defender", "penalty", "season", "fans", "keeper", "trophy", "tackle", "pitch", "kicked",
         "midfield", "champions", "whistle", "score")
COOKING = ("chef", "recipe", "oven", "kitchen", "sauce", "baked", "flour", "soup", "garlic",
           "onion", "dinner", "bread", "roasted", "pan", "spices", "dessert", "stirred", "butter",
           "salad", "tasted", "menu", "lunch")
FILLER = ("the", "a", "was", "and", "with", "after", "before", "very", "then", "this", "in", "on",
          "for", "it", "we", "they", "our", "new", "great", "late", "first", "again")
TOPIC_HELD_OUT = 4  # words of each topic kept out of train and dev when unseen_fraction > 0


def _check_sizes(data: Data, pairs: bool) -> None:
    for key in ("n_train", "n_test"):
        if getattr(data, key) < (2 if pairs else 1):
            raise UserError(f"data.{key}: must be >= {2 if pairs else 1}, got {getattr(data, key)}")
    if data.n_dev < 0:
        raise UserError(f"data.n_dev: must be >= 0, got {data.n_dev}")
    if pairs:
        for key in ("n_train", "n_dev", "n_test"):
            if getattr(data, key) % 2:
                raise UserError(f"data.{key}: clauses come in pairs (the same words in both classes), "
                                f"so give an even number, got {getattr(data, key)}")
    if not 0.0 <= data.unseen_fraction <= 1.0:
        raise UserError(f"data.unseen_fraction: must be between 0 and 1, got {data.unseen_fraction}")


def _check_vocabulary(nouns: list[str], verbs: list[str], held_out: bool) -> None:
    for key, items, least in (("nouns", nouns, 3 if held_out else 2), ("verbs", verbs, 2 if held_out else 1)):
        if len(set(items)) != len(items) or len(items) < least:
            raise UserError(f"data.{key}: need {least} or more distinct words"
                            f"{' (one is held out for unseen-word tests)' if held_out else ''}, got {items}")
        for word in items:
            if words([word], lowercase=False) != [word] or word == RELATIVE:
                raise UserError(f"data.{key}: {word!r} is not a single word (or is {RELATIVE!r})")
    if set(nouns) & set(verbs):
        raise UserError(f"data.nouns and data.verbs share {sorted(set(nouns) & set(verbs))}")


def clause_pair(noun: str, other: str, verb: str) -> tuple[Example, Example]:
    """The object-relative (label 0) and subject-relative (label 1) phrases of three words.

    >>> clause_pair("dog", "cat", "chases")
    ((0, ['dog', 'that', 'cat', 'chases']), (1, ['dog', 'that', 'chases', 'cat']))
    """
    return (0, [noun, RELATIVE, other, verb]), (1, [noun, RELATIVE, verb, other])


def _draw(triples: list[tuple[str, str, str]], count: int, rng: np.random.Generator,
          what: str) -> list[tuple[str, str, str]]:
    if count > len(triples):
        raise UserError(f"data (clauses): {count} {what} phrase pairs asked for, but the nouns and "
                        f"verbs make only {len(triples)}; add words to data.nouns / data.verbs")
    return [triples[i] for i in rng.choice(len(triples), size=count, replace=False)]


def _phrases(triples, rng: np.random.Generator) -> list[Example]:
    examples = [example for triple in triples for example in clause_pair(*triple)]
    return [examples[i] for i in rng.permutation(len(examples))]


def clause_examples(data: Data, seed: int) -> tuple[list[Example], list[Example], list[Example]]:
    """(train, dev, test) clause phrases; dev is empty when ``data.n_dev`` is 0.

    Every (noun, other noun, verb) triple is used at most once across all splits, so no
    test phrase occurs in training. With ``data.unseen_fraction`` > 0 one noun and one verb
    (drawn by ``seed``) are held out of train and dev; round(unseen_fraction * test pairs)
    test pairs hold at least one of them.

    >>> train, dev, test = clause_examples(Data(task="clauses", n_train=4, n_dev=0, n_test=2), seed=0)
    >>> len(train), dev, sorted(label for label, _ in test)
    (4, [], [0, 1])
    """
    _check_sizes(data, pairs=True)
    held_out = data.unseen_fraction > 0
    _check_vocabulary(data.nouns, data.verbs, held_out)
    rng = np.random.default_rng([seed, 5])  # 5: the clauses task's stream
    unseen = {str(rng.choice(data.nouns)), str(rng.choice(data.verbs))} if held_out else set()

    def triples(allowed: list[str], verbs: list[str]) -> list[tuple[str, str, str]]:
        return [(a, b, v) for a, b in permutations(allowed, 2) for v in verbs]

    seen_triples = triples([n for n in data.nouns if n not in unseen], [v for v in data.verbs if v not in unseen])
    novel_triples = [t for t in triples(data.nouns, data.verbs) if unseen & set(t)]
    n_test_pairs = data.n_test // 2
    n_novel = round(data.unseen_fraction * n_test_pairs)
    n_pairs = {"train": data.n_train // 2, "dev": data.n_dev // 2, "test": n_test_pairs - n_novel}
    drawn = _draw(seen_triples, sum(n_pairs.values()), rng, "seen-word")
    train = drawn[:n_pairs["train"]]
    dev = drawn[n_pairs["train"]:n_pairs["train"] + n_pairs["dev"]]
    test = drawn[n_pairs["train"] + n_pairs["dev"]:] + _draw(novel_triples, n_novel, rng, "unseen-word")
    return _phrases(train, rng), _phrases(dev, rng), _phrases(test, rng)


def _normalised(examples: list[Example], data: Data) -> list[Example]:
    """``examples`` with their words normalised as text files are (``data.lowercase``, ``data.punctuation``)."""
    return [(label, words(tokens, data.lowercase, data.punctuation)) for label, tokens in examples]


def load_clauses(data: Data, seed: int = 0) -> Dataset:
    """Relative-clause phrases (see :func:`clause_examples`); without generated dev phrases
    (``data.n_dev = 0``) dev is carved from train.

    >>> ds = load_clauses(Data(task="clauses", n_train=20, n_dev=0, n_test=10, max_len=4), seed=0)
    >>> len(ds.train), len(ds.dev), ds.train.x.shape[1], ds.dev_source[:17]
    (16, 4, 4, 'carved from train')
    """
    train, dev, test = (_normalised(split, data) for split in clause_examples(data, seed))
    return text_dataset("clauses", data, seed, train, dev or None, test,
                        dev_source=f"generated: data.n_dev = {data.n_dev} phrases" if dev else "")


def _topic_sentence(label: int, pool: list[str], rng: np.random.Generator, first: str,
                    first_filler: str, must: list[str] = ()) -> Example:
    n_content = int(rng.integers(2, 4))  # 2 or 3 topic words, the held-out one included
    others = [w for w in pool if w != first]
    content = [*must, first, *(str(w) for w in rng.choice(others, size=max(0, n_content - len(must) - 1),
                                                          replace=False))]
    fillers = [w for w in FILLER if w != first_filler]
    filler = [first_filler, *(str(w) for w in rng.choice(fillers, size=int(rng.integers(2, 6)), replace=False))]
    tokens = [(content + filler)[i] for i in rng.permutation(len(content) + len(filler))]
    if len(tokens) > 5 and rng.random() < 0.5:
        tokens[int(rng.integers(1, len(tokens) - 2))] += ","
    tokens[0] = tokens[0].capitalize()
    tokens[-1] += str(rng.choice([".", ".", "!"]))
    return label, tokens


def topic_examples(data: Data, seed: int) -> tuple[list[Example], list[Example], list[Example]]:
    """(train, dev, test) two-topic sentences as written (capitals and punctuation attached);
    classes alternate, so each split is balanced to within one sentence.

    Each sentence mixes 2 or 3 words of its topic with 3 to 6 shared filler words in random
    order; the first topic and filler word of each sentence cycle through the word lists, so
    36 or more training sentences use every word that is not held out. With
    ``data.unseen_fraction`` > 0, 4 words of each topic appear only in test: that share of the
    test sentences holds one of them (beside at least one seen topic word).

    >>> train, _, test = topic_examples(Data(task="topics", n_train=2, n_dev=0, n_test=2), seed=0)
    >>> sorted(label for label, _ in train), train[0][1][0][0].isupper(), train[0][1][-1][-1] in ".!"
    ([0, 1], True, True)
    """
    _check_sizes(data, pairs=False)
    rng = np.random.default_rng([seed, 6])  # 6: the topics task's stream
    held = TOPIC_HELD_OUT if data.unseen_fraction > 0 else 0
    topics = [[str(w) for w in rng.permutation(words_)] for words_ in (SPORT, COOKING)]
    seen = [t[held:] for t in topics]
    unseen = [t[:held] for t in topics]

    def sentences(n: int, n_novel: int = 0) -> list[Example]:
        out = []
        for i in range(n):  # the first topic and filler words cycle, so every word shows up
            label = i % 2
            must = [str(rng.choice(unseen[label]))] if i < n_novel else []
            first, first_filler = seen[label][(i // 2) % len(seen[label])], FILLER[i % len(FILLER)]
            out.append(_topic_sentence(label, seen[label], rng, first, first_filler, must))
        return [out[i] for i in rng.permutation(n)]

    n_novel = round(data.unseen_fraction * data.n_test)
    return sentences(data.n_train), sentences(data.n_dev), sentences(data.n_test, n_novel)


def load_topics(data: Data, seed: int = 0) -> Dataset:
    """Two-topic sentences (see :func:`topic_examples`), normalised like text files are
    (``data.lowercase``, ``data.punctuation``); dev is carved from train when ``data.n_dev = 0``.

    >>> ds = load_topics(Data(task="topics", n_train=70, n_dev=0, n_test=30, max_len=16), seed=0)
    >>> len(ds.train) + len(ds.dev), len(ds.test), "<unk>" in ds.vocab
    (70, 30, True)
    """
    train, dev, test = (_normalised(split, data) for split in topic_examples(data, seed))
    return text_dataset("topics", data, seed, train, dev or None, test,
                        dev_source=f"generated: data.n_dev = {data.n_dev} sentences" if dev else "")
