"""The training budget, early stopping with the best dev epoch restored, and word dropout
(tiny classical models: what is tested is the loop, not the layers)."""

import math

import pytest
import torch

from qepi.config import Config, update
from qepi.data import UNK, load_dataset
from qepi.errors import UserError
from qepi.models import HybridTransformer
from qepi.training import Trainer, evaluate, seed_everything
from qepi.training.trainer import planned_epochs


def tiny(data=None, **train) -> Config:
    return update(
        Config(),
        model={"embedding": "classical", "attention": "classical", "d_model": 4, "n_heads": 1, "d_ff": 8},
        circuit={"n_qubits": 2},
        data={"task": "parity", "seq_len": 3, "n_train": 20, "n_dev": 0, "n_test": 8, **(data or {})},
        train={"epochs": 2, "batch_size": 4, "lr": 0.05, **train},
    )


def build(cfg):
    ds = load_dataset(cfg.data, cfg.run.seed)
    seed_everything(cfg.run.seed)
    return HybridTransformer(cfg, ds.spec), ds


class Record:
    """Keeps every epoch's dev score and weights."""

    def __init__(self):
        self.epochs = {}

    def on_epoch_end(self, trainer, epoch, metrics):
        weights = {k: v.clone() for k, v in trainer.model.state_dict().items()}
        self.epochs[epoch] = (metrics["dev_acc"], metrics["dev_loss"], weights)


class TestBudget:
    @pytest.mark.parametrize("n_train, batch, min_steps", [(59, 16, 300), (16, 32, 400), (1000, 32, 100)])
    def test_epochs_from_the_training_set_size(self, n_train, batch, min_steps):
        cfg = tiny(epochs=0, batch_size=batch, min_steps=min_steps)
        epochs, why = planned_epochs(cfg.train, n_train)
        steps_per_epoch = -(-n_train // batch)
        assert epochs * steps_per_epoch >= min_steps and epochs >= 10
        assert epochs == 10 or (epochs - 1) * steps_per_epoch < min_steps  # no more than needed
        assert f"train.min_steps = {min_steps}" in why

    def test_zero_epochs_trains_the_planned_budget(self):
        cfg = tiny(epochs=0, min_steps=60, patience=0)
        model, ds = build(cfg)
        summary = Trainer(model, cfg, ds, progress=False).fit()
        per_epoch = math.ceil(len(ds.train) / 4)
        assert summary["planned_epochs"] == summary["epochs"] == max(10, math.ceil(60 / per_epoch))
        assert summary["steps"] == summary["epochs"] * per_epoch and "trained all" in summary["selection"]


class TestSelection:
    def test_best_dev_weights_are_restored_without_early_stopping(self):
        cfg = tiny(epochs=8, patience=0, lr=0.3)
        model, ds = build(cfg)
        record = Record()
        summary = Trainer(model, cfg, ds, callbacks=[record], progress=False).fit()
        best = max(record.epochs, key=lambda e: (record.epochs[e][0], -record.epochs[e][1], -e))
        assert summary["best_epoch"] == best + 1 and summary["epochs"] == 8
        for name, value in model.state_dict().items():
            assert torch.equal(value, record.epochs[best][2][name]), name
        assert evaluate(model, ds.dev)["acc"] == record.epochs[best][0] == summary["best_dev_acc"]
        assert f"at epoch {best + 1} of 8" in summary["selection"]

    def test_early_stopping_waits_patience_epochs_after_the_best(self):
        cfg = tiny(epochs=200, patience=3, lr=0.3)
        model, ds = build(cfg)
        record = Record()
        summary = Trainer(model, cfg, ds, callbacks=[record], progress=False).fit()
        assert summary["stopped_early"] and summary["epochs"] == summary["best_epoch"] + 3
        assert "stopped after 3 epochs without improvement" in summary["selection"]
        best = summary["best_epoch"] - 1
        assert all(torch.equal(v, record.epochs[best][2][k]) for k, v in model.state_dict().items())

    def test_last_weights_when_asked(self):
        cfg = tiny(epochs=4, patience=0, restore_best=False)
        model, ds = build(cfg)
        record = Record()
        summary = Trainer(model, cfg, ds, callbacks=[record], progress=False).fit()
        assert all(torch.equal(v, record.epochs[3][2][k]) for k, v in model.state_dict().items())
        assert "tested the last epoch's weights" in summary["selection"]

    def test_selection_without_a_dev_split_is_refused_unless_switched_off(self):
        cfg = tiny(data={"dev_fraction": 0.0})
        model, ds = build(cfg)
        with pytest.raises(UserError, match="no dev split"):
            Trainer(model, cfg, ds)
        off = update(cfg, train={"patience": 0, "restore_best": False})
        summary = Trainer(build(off)[0], off, ds, progress=False).fit()
        assert summary["best_epoch"] is None and summary["selection"].startswith("no dev split")


class TestWordDropout:
    def text_config(self, rate):
        return update(tiny(word_dropout=rate), data={"task": "clauses", "n_train": 40, "n_test": 10, "max_len": 6})

    def test_only_real_words_are_dropped_at_about_the_rate_and_reproducibly(self):
        cfg = self.text_config(0.3)
        model, ds = build(cfg)
        trainer = Trainer(model, cfg, ds, progress=False)
        unk = ds.vocab.index(UNK)
        batch = ds.train
        dropped = trainer.drop_words(batch)
        assert torch.equal(dropped.x[~batch.mask], batch.x[~batch.mask])  # padding untouched
        changed = (dropped.x != batch.x) & batch.mask
        assert (dropped.x[changed] == unk).all()
        share = changed.sum().item() / batch.mask.sum().item()
        assert 0.2 < share < 0.4  # 0.3 of ~128 words
        assert torch.equal(trainer.drop_words(batch).x, dropped.x)  # fixed by (seed, step)
        trainer.step += 1
        assert not torch.equal(trainer.drop_words(batch).x, dropped.x)
        assert torch.equal(Trainer(model, self.text_config(0.0), ds).drop_words(batch).x, batch.x)

    def test_refused_for_tasks_without_unknown_words(self):
        cfg = tiny(word_dropout=0.1)
        model, ds = build(cfg)
        with pytest.raises(UserError, match="train.word_dropout: the parity task has no <unk>"):
            Trainer(model, cfg, ds)
