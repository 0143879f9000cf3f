"""Generated sentence tasks (clauses, topics), text normalisation and the stratified dev carve:
properties checked by recounting the generated words, never by reusing the generator."""

from collections import Counter
from dataclasses import replace

import numpy as np
import pytest
import torch

from qepi.config import Data
from qepi.data import (
    UNK,
    clause_examples,
    load_dataset,
    read_text_file,
    stratified_dev_indices,
    topic_examples,
    words,
)
from qepi.data.sentences import COOKING, SPORT
from qepi.errors import UserError

CLAUSES = Data(task="clauses", n_train=74, n_dev=0, n_test=30, max_len=4)


def class_bags(examples):
    bags = {0: Counter(), 1: Counter()}
    for label, tokens in examples:
        bags[label].update(tokens)
    return bags


class TestClauses:
    @pytest.mark.parametrize("seed", [0, 1, 7])
    def test_both_classes_hold_identical_multisets_of_words(self, seed):
        for split in clause_examples(Data(task="clauses", n_train=74, n_dev=20, n_test=30), seed):
            bags = class_bags(split)
            assert bags[0] == bags[1] and sum(bags[0].values()) == 2 * len(split)

    @pytest.mark.parametrize("seed", [0, 3])
    def test_only_word_order_tells_the_classes_apart(self, seed):
        nouns, verbs = set(CLAUSES.nouns), set(CLAUSES.verbs)
        train, _, test = clause_examples(CLAUSES, seed)
        for label, (first, that, third, fourth) in train + test:
            assert first in nouns and that == "that"
            # object relative: noun that NOUN VERB (0); subject relative: noun that VERB NOUN (1)
            assert (third, fourth) in ({0: [(n, v) for n in nouns for v in verbs],
                                        1: [(v, n) for n in nouns for v in verbs]}[label])
        assert not {tuple(t) for _, t in test} & {tuple(t) for _, t in train}  # no test phrase in train

    @pytest.mark.parametrize("fraction, n_test", [(0.15, 30), (0.0, 30), (0.5, 20), (1.0, 10)])
    def test_share_of_test_phrases_with_unseen_words(self, fraction, n_test):
        data = Data(task="clauses", n_train=74, n_dev=10, n_test=n_test, unseen_fraction=fraction)
        train, dev, test = clause_examples(data, seed=2)
        seen = {w for _, tokens in train + dev for w in tokens}
        novel = [tokens for _, tokens in test if set(tokens) - seen]
        assert len(novel) == 2 * round(fraction * n_test / 2)  # whole pairs, to the nearest pair

    def test_bag_of_words_sees_the_same_features_in_each_test_pair(self):
        ds = load_dataset(CLAUSES, 4)
        bags = [tuple(sorted(row[mask].tolist())) for row, mask in zip(ds.test.x, ds.test.mask)]
        by_bag = Counter(zip(bags, ds.test.y.tolist()))
        for bag in set(bags):  # every bag of words occurs once in each class
            assert by_bag[(bag, 0)] == by_bag[(bag, 1)] == 1

    def test_dev_is_carved_and_seeded(self):
        a, b = load_dataset(CLAUSES, 5), load_dataset(CLAUSES, 5)
        assert len(a.train) + len(a.dev) == 74 and len(a.test) == 30
        assert torch.equal(a.train.x, b.train.x) and torch.equal(a.dev.x, b.dev.x)
        assert a.dev_source.startswith("carved from train")

    @pytest.mark.parametrize("change, key", [
        ({"n_train": 73}, "data.n_train"), ({"n_test": 31}, "data.n_test"),
        ({"nouns": ["dog", "cat", "sees"]}, "data.nouns and data.verbs"),
        ({"nouns": ["dog", "cat"]}, "data.nouns"), ({"verbs": ["big bites"]}, "data.verbs"),
        ({"unseen_fraction": 1.5}, "data.unseen_fraction"), ({"n_train": 2000}, "add words"),
    ])
    def test_bad_settings_name_the_key(self, change, key):
        with pytest.raises(UserError, match=key):
            load_dataset(replace(CLAUSES, **change), 0)


class TestTopics:
    def test_balanced_written_like_text_and_seeded(self):
        data = Data(task="topics", n_train=70, n_dev=0, n_test=30)
        train, dev, test = topic_examples(data, 0)
        assert topic_examples(data, 0) == (train, dev, test) and topic_examples(data, 1) != (train, dev, test)
        assert Counter(label for label, _ in train) == {0: 35, 1: 35} and dev == []
        assert all(tokens[0][0].isupper() and tokens[-1][-1] in ".!" for _, tokens in train + test)

    def test_unseen_words_and_topic_words_by_class(self):
        data = Data(task="topics", n_train=70, n_dev=0, n_test=30, unseen_fraction=0.2)
        train, _, test = topic_examples(data, 3)
        normal = lambda tokens: set(words(tokens, punctuation="strip"))  # noqa: E731
        seen = set().union(*(normal(t) for _, t in train))
        novel = [(label, normal(t)) for label, t in test if normal(t) - seen]
        assert len(novel) == round(0.2 * 30)
        for label, tokens in train + test:
            topic = set(SPORT if label == 0 else COOKING)
            other = set(COOKING if label == 0 else SPORT)
            assert normal(tokens) & topic and not normal(tokens) & other
        for label, tokens in novel:  # an unseen word still comes with a seen word of its topic
            assert tokens & seen & set(SPORT if label == 0 else COOKING)

    def test_loaded_like_a_text_file(self):
        ds = load_dataset(Data(task="topics", n_train=70, n_dev=0, n_test=30, max_len=16), 0)
        assert len(ds.train) + len(ds.dev) == 70 and UNK in ds.vocab
        assert all(w == w.lower() for w in ds.vocab) and "." in ds.vocab  # lower-cased, marks split


class TestWords:
    @pytest.mark.parametrize("mode, expected", [
        ("split", ["great", "film", ",", "isn't", "it", "?"]),
        ("strip", ["great", "film", "isn't", "it"]),
        ("keep", ["great", "film,", "isn't", "it?"]),
    ])
    def test_punctuation_modes(self, mode, expected):
        assert words(["Great", "film,", "isn't", "IT?"], punctuation=mode) == expected

    def test_case_kept_when_asked_and_bad_mode_named(self):
        assert words(["Good", "Film"], lowercase=False) == ["Good", "Film"]
        with pytest.raises(UserError, match="data.punctuation"):
            words(["a"], punctuation="drop")

    def test_text_files_are_normalised_and_a_line_left_empty_is_named(self, tmp_path):
        (tmp_path / "train.txt").write_text("1 Good FILM!\n0 Dull film.\n")
        ds = load_dataset(Data(task="text", train=str(tmp_path / "train.txt"), test=str(tmp_path / "train.txt"),
                               dev_fraction=0.0, max_len=3), 0)
        assert set(ds.vocab) == {"<pad>", "<unk>", "good", "film", "!", "dull", "."}
        (tmp_path / "bad.txt").write_text("1 fine\n0 ?!\n")
        with pytest.raises(UserError, match="bad.txt:2: no word left"):
            read_text_file(tmp_path / "bad.txt", punctuation="strip")


class TestDevCarve:
    @pytest.mark.parametrize("counts, fraction", [((30, 44), 0.2), ((5, 5, 9), 0.3), ((2, 40), 0.1)])
    def test_stratified_disjoint_and_complete(self, counts, fraction):
        labels = np.random.default_rng(0).permutation(np.repeat(np.arange(len(counts)), counts))
        train, dev = stratified_dev_indices(labels, fraction, seed=1)
        assert not set(train) & set(dev) and sorted([*train, *dev]) == list(range(len(labels)))
        for label, n in enumerate(counts):
            in_dev = int((labels[dev] == label).sum())
            assert abs(in_dev - fraction * n) <= 1 and in_dev >= 1 and n - in_dev >= 1
        again, _ = stratified_dev_indices(labels, fraction, seed=1)
        other, _ = stratified_dev_indices(labels, fraction, seed=2)
        assert np.array_equal(train, again) and not np.array_equal(train, other)

    def test_generated_task_keeps_test_and_splits_train(self):
        whole = load_dataset(Data(task="parity", seq_len=6, n_train=50, n_dev=0, n_test=20, dev_fraction=0.0), 3)
        carved = load_dataset(Data(task="parity", seq_len=6, n_train=50, n_dev=0, n_test=20), 3)
        assert torch.equal(whole.test.x, carved.test.x) and whole.dev is None
        rows = lambda split: Counter(map(tuple, split.x.tolist()))  # noqa: E731
        assert rows(carved.train) + rows(carved.dev) == rows(whole.train)
        assert len(carved.dev) == 10 and "data.dev_fraction = 0.2" in carved.dev_source
        given = load_dataset(Data(task="parity", seq_len=6, n_train=50, n_dev=8, n_test=20), 3)
        assert len(given.train) == 50 and given.dev_source.startswith("generated")

    def test_text_vocabulary_comes_from_the_carved_train_only(self, tmp_path):
        lines = [f"{i % 2} word{i} {'yes' if i % 2 else 'no'}" for i in range(20)]
        (tmp_path / "train.txt").write_text("\n".join(lines) + "\n")
        ds = load_dataset(Data(task="text", train=str(tmp_path / "train.txt"), test=str(tmp_path / "train.txt"),
                               max_len=2, dev_fraction=0.3), 0)
        unk = ds.vocab.index(UNK)
        assert len(ds.dev) == 6 and (ds.dev.x[:, 0] == unk).all()  # dev-only words read as <unk>
        assert (ds.train.x[:, 0] != unk).all()
        with pytest.raises(UserError, match="data.dev_fraction"):
            load_dataset(Data(task="text", train=str(tmp_path / "train.txt"),
                              test=str(tmp_path / "train.txt"), dev_fraction=1.0), 0)
