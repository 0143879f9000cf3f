"""Dataset loaders: shapes, seeding, labels checked by independent recomputation, and errors."""

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits as sklearn_digits

from qepi.config import Data
from qepi.data import batch_order, load_dataset, motif_pwm, read_text_file
from qepi.data.synthetic import _column_entropy
from qepi.errors import UserError


class TestMotif:
    def test_shapes_spec_and_seeding(self):
        data = Data(task="motif", seq_len=9, motif_len=3, n_train=20, n_dev=6, n_test=10)
        a, b, c = load_dataset(data, 0), load_dataset(data, 0), load_dataset(data, 1)
        assert a.train.x.shape == (20, 9) and len(a.dev) == 6 and len(a.test) == 10
        assert a.spec.vocab_size == 4 and a.spec.n_classes == 2 and a.spec.seq_len == 9
        assert torch.equal(a.train.x, b.train.x) and torch.equal(a.test.y, b.test.y)
        assert not torch.equal(a.train.x, c.train.x)
        assert int(a.train.x.max()) <= 3 and int(a.train.x.min()) >= 0

    def test_zero_entropy_positives_carry_the_site(self):
        # with a 0-bit PWM every positive carries the same site; find it by brute force
        data = Data(task="motif", seq_len=12, motif_len=5, pwm_entropy=0.0, n_train=200, n_dev=0, n_test=1)
        ds = load_dataset(data, 3)
        x, y = ds.train.x.numpy(), ds.train.y.numpy()
        windows = lambda row: {tuple(row[i:i + 5]) for i in range(12 - 5 + 1)}  # noqa: E731
        common = set.intersection(*(windows(r) for r in x[y == 1]))
        assert len(common) == 1
        site = common.pop()
        negatives_with_site = sum(site in windows(r) for r in x[y == 0])
        assert negatives_with_site <= 2  # chance occurrences in uniform backgrounds are rare
        assert abs(y.mean() - 0.5) < 0.01

    @pytest.mark.parametrize("entropy", [0.0, 0.3, 1.0, 1.9, 2.0])
    def test_pwm_columns_have_the_requested_entropy(self, entropy):
        pwm = motif_pwm(4, entropy, np.random.default_rng(0))
        for column in pwm:
            h = -sum(p * np.log2(p) for p in column if p > 0)
            assert h == pytest.approx(entropy, abs=1e-6)
        assert _column_entropy(0.25) == pytest.approx(2.0)

    @pytest.mark.parametrize("change, key", [({"motif_len": 20}, "data.motif_len"),
                                             ({"pwm_entropy": 2.5}, "data.pwm_entropy"),
                                             ({"n_train": 0}, "data.n_train")])
    def test_bad_settings_name_the_key(self, change, key):
        with pytest.raises(UserError, match=key):
            load_dataset(Data(task="motif", **change))


def test_parity_labels_are_bit_sums_mod_2():
    ds = load_dataset(Data(task="parity", seq_len=7, n_train=50, n_dev=5, n_test=5), 2)
    for row, label in zip(ds.train.x.tolist(), ds.train.y.tolist()):
        assert sum(row) % 2 == label
    assert ds.spec.vocab_size == 2


class TestDigits:
    def test_rows_are_the_images(self):
        ds = load_dataset(Data(task="digits", classes=[7, 1], n_train=30, n_dev=0, dev_fraction=0.0, n_test=10), 0)
        bunch = sklearn_digits()
        assert ds.train.x.shape == (30, 8, 8) and ds.spec.n_features == 8 and ds.spec.n_classes == 2
        for image, label in zip(ds.train.x[:5], ds.train.y[:5]):
            matches = np.flatnonzero(np.all(np.isclose(bunch.images / 16.0, image.numpy()), axis=(1, 2)))
            assert [7, 1][label] in bunch.target[matches]  # classes relabelled in the given order

    def test_patches_are_quadrants_in_reading_order(self):
        rows = load_dataset(Data(task="digits", tokens="rows", n_train=4, n_dev=0, dev_fraction=0.0, n_test=2), 0)
        patches = load_dataset(Data(task="digits", tokens="patches", n_train=4, n_dev=0, dev_fraction=0.0, n_test=2), 0)
        image = rows.train.x[0]
        expected = [image[r:r + 4, c:c + 4].reshape(16) for r in (0, 4) for c in (0, 4)]
        assert torch.equal(patches.train.x[0], torch.stack(expected))

    def test_too_many_examples_and_bad_classes(self):
        with pytest.raises(UserError, match="only .* examples"):
            load_dataset(Data(task="digits", classes=[0, 1], n_train=1000), 0)
        with pytest.raises(UserError, match="data.classes"):
            load_dataset(Data(task="digits", classes=[0, 0]), 0)
        with pytest.raises(UserError, match="data.tokens"):
            load_dataset(Data(task="digits", tokens="pixels", n_train=4, n_dev=0, n_test=2), 0)


class TestText:
    def write(self, tmp_path, name, text):
        path = tmp_path / name
        path.write_text(text)
        return str(path)

    def test_vocabulary_from_train_unknown_words_and_padding(self, tmp_path):
        train = self.write(tmp_path, "train.txt", "1 good good film\n\n0 bad film\n")
        test = self.write(tmp_path, "test.txt", "1 good unseen words here\n")
        ds = load_dataset(Data(task="text", train=train, test=test, max_len=3), 0)
        assert ds.vocab == ("<pad>", "<unk>", "film", "good", "bad")
        assert ds.train.x.tolist() == [[3, 3, 2], [4, 2, 0]]
        assert ds.train.mask.tolist() == [[True, True, True], [True, True, False]]
        assert ds.test.x.tolist() == [[3, 1, 1]]  # cut at max_len, unknown words -> <unk>
        assert ds.dev is None and ds.spec.vocab_size == 5 and ds.spec.n_classes == 2

    @pytest.mark.parametrize("text, line, what", [
        ("1 fine\nx bad line\n", 2, "integer label"),
        ("1 fine\n\n0\n", 3, "no sentence"),
        ("-1 negative label\n", 1, ">= 0"),
    ])
    def test_malformed_line_names_file_and_line(self, tmp_path, text, line, what):
        path = self.write(tmp_path, "train.txt", text)
        with pytest.raises(UserError, match=f"train.txt:{line}: .*{what}") as err:
            read_text_file(path)
        assert "\n" not in str(err.value)

    def test_label_missing_from_train_names_file_and_line(self, tmp_path):
        train = self.write(tmp_path, "train.txt", "0 a\n1 b\n")
        test = self.write(tmp_path, "test.txt", "0 a\n5 b\n")
        with pytest.raises(UserError, match="test.txt:2: label 5"):
            load_dataset(Data(task="text", train=train, test=test), 0)

    def test_missing_and_empty_files(self, tmp_path):
        empty = self.write(tmp_path, "empty.txt", "\n \n")
        with pytest.raises(UserError, match="nope.txt: data file not found"):
            load_dataset(Data(task="text", train=str(tmp_path / "nope.txt"), test=empty), 0)
        with pytest.raises(UserError, match="empty.txt: no examples"):
            load_dataset(Data(task="text", train=empty, test=empty), 0)
        with pytest.raises(UserError, match="data.train"):
            load_dataset(Data(task="text"), 0)


def test_unknown_task():
    with pytest.raises(UserError, match="data.task: unknown value 'imagenet'"):  # refused by the config
        load_dataset(Data(task="imagenet"))


def test_batch_order_depends_only_on_seed_and_epoch():
    assert torch.equal(batch_order(10, 1, 2), batch_order(10, 1, 2))
    assert sorted(batch_order(10, 1, 2).tolist()) == list(range(10))
    assert not torch.equal(batch_order(10, 1, 2), batch_order(10, 1, 3))
    assert not torch.equal(batch_order(10, 1, 2), batch_order(10, 2, 2))
