"""Classical references on tiny sets, and how `qepi compare` reports them."""

import json

import numpy as np
import pytest
import torch

from qepi.config import Config, update
from qepi.data import Split, load_dataset
from qepi.experiments import compare
from qepi.experiments.baselines import (
    StandardTransformer,
    flat_features,
    logistic_reference,
    reference_names,
    run_references,
    sentences,
)
from qepi.experiments.report import format_table
from qepi.models import InputSpec

CLAUSES = update(Config(), data={"task": "clauses", "n_train": 60, "n_dev": 0, "n_test": 20, "max_len": 4})


def test_bag_of_words_is_at_chance_on_clauses_and_bigrams_are_not():
    ds = load_dataset(CLAUSES.data, 1)
    assert logistic_reference(ds, "lr_unigram")["test_acc"] == 0.5  # each test pair shares one bag
    bigram = logistic_reference(ds, "lr_bigram")
    assert bigram["test_acc"] > 0.7 and bigram["C"] in (0.01, 0.1, 1.0, 10.0, 100.0)


def test_sentences_are_the_words_and_flat_features_are_one_hot_per_position():
    ds = load_dataset(CLAUSES.data, 0)
    texts = sentences(ds.test, ds.vocab)
    for text, ids in zip(texts, ds.test.x.tolist()):
        assert text.split() == [ds.vocab[i] for i in ids] and len(text.split()) == 4
    split = Split(torch.tensor([[2, 0, 1]]), torch.tensor([0]))
    features = flat_features(split, InputSpec(seq_len=3, n_classes=2, vocab_size=3))
    assert features.tolist() == [[0, 0, 1, 1, 0, 0, 0, 1, 0]]
    digits = Split(torch.arange(12.0).view(1, 3, 4), torch.tensor([0]))
    assert np.array_equal(flat_features(digits, InputSpec(seq_len=3, n_classes=2, n_features=4)),
                          np.arange(12.0).reshape(1, 12))


def test_flat_logistic_regression_learns_a_linear_token_task():
    # motif with a fixed site at a random place is not linear per position, but a 0-bit PWM on
    # 2-base sequences makes the site the whole sequence: one-hot LR separates it exactly
    cfg = update(Config(), data={"task": "motif", "seq_len": 2, "motif_len": 2, "pwm_entropy": 0.0,
                                 "n_train": 120, "n_dev": 0, "n_test": 60})
    ds = load_dataset(cfg.data, 0)
    assert reference_names(ds) == ("lr_flat", "transformer")
    result = logistic_reference(ds, "lr_flat")
    x, y = ds.test.x, ds.test.y
    site = ds.train.x[ds.train.y == 1][0]
    negatives_with_site = int(((x == site).all(1) & (y == 0)).sum())  # uniform backgrounds can match
    assert result["test_acc"] == pytest.approx(1 - negatives_with_site / len(y))
    assert result["params"] == 2 * 4 + 1


def test_standard_transformer_masks_padding_and_trains(tmp_path):
    model = StandardTransformer(Config(), InputSpec(seq_len=5, n_classes=2, vocab_size=9))
    model.eval()
    x = torch.tensor([[3, 4, 5, 0, 0]])
    mask = torch.tensor([[True, True, True, False, False]])
    padded_differently = x.clone()
    padded_differently[0, 3:] = 7  # whatever sits under the mask does not matter
    assert torch.allclose(model(x, mask), model(padded_differently, mask))
    cfg = update(CLAUSES, train={"epochs": 3, "batch_size": 16}, run={"seed": 2})
    summaries = run_references(cfg, tmp_path)
    transformer = summaries["transformer"]
    assert transformer["d_model"] == 32 and transformer["params"] > 5000
    assert "of 3" in transformer["selection"] and 0.0 <= transformer["test_acc"] <= 1.0
    saved = json.loads((tmp_path / "transformer-s2" / "summary.json").read_text())
    assert saved["label"].endswith("not parameter-matched") and saved["seed"] == 2


def test_compare_reports_the_references_beside_the_twin(tmp_path):
    cfg = update(CLAUSES, circuit={"n_qubits": 2, "n_layers": 1},
                 model={"d_model": 4, "n_heads": 1, "d_ff": 8},
                 backend={"name": "exact"}, train={"epochs": 2, "batch_size": 16})
    comparison = compare(cfg, seeds=2, out=tmp_path / "cmp", progress=False)
    references = comparison["references"]
    assert set(references) == {"lr_unigram", "lr_bigram", "transformer"}
    assert references["lr_unigram"]["test_acc"]["mean"] == 0.5
    assert all("not parameter-matched" in r["label"] for r in references.values())
    for name, ref in references.items():
        for seed, run_name in zip([0, 1], ref["runs"]):
            saved = json.loads((tmp_path / "cmp" / run_name / "summary.json").read_text())
            assert saved["seed"] == seed and saved["test_acc"] == ref["per_seed"]["test_acc"][seed]
        diffs = np.subtract(comparison["models"]["quantum"]["per_seed"]["test_acc"], ref["per_seed"]["test_acc"])
        assert ref["vs_quantum"]["diff"] == pytest.approx(diffs.mean())
    best = max(references.values(), key=lambda r: r["test_acc"]["mean"])
    assert best["label"] in comparison["verdict"][-1] and "strongest classical reference" in comparison["verdict"][-1]
    table = format_table(comparison)
    assert "not parameter-matched" in table and "per-seed min–max" in table
    report = (tmp_path / "cmp" / "report.md").read_text()
    assert "## Classical references (not parameter-matched)" in report
    assert "carved from train" in report and "seed 1:" in report  # how dev was made, per-seed selection
