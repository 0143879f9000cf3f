"""Training loop, checkpoints, exact resumption and callbacks (tiny quantum models on default.qubit)."""

import json
import os
import pickle

import pytest
import torch

from qepi.config import Config, update
from qepi.data import load_dataset
from qepi.errors import UserError
from qepi.models import HybridTransformer
from qepi.training import (
    Callback,
    Trainer,
    load_checkpoint,
    load_model,
    lr_factor,
    predict,
    read_metrics,
    save_checkpoint,
    seed_everything,
)
from qepi.training.checkpoint import FORMAT


def tiny(**train) -> Config:
    return update(
        Config(),
        circuit={"n_qubits": 2, "n_layers": 1},
        model={"d_model": 4, "n_heads": 1, "d_ff": 8, "dropout": 0.1},
        data={"task": "parity", "seq_len": 3, "n_train": 12, "n_dev": 4, "n_test": 4},
        train={"epochs": 2, "batch_size": 4, "lr": 0.05, **train},
    )


def build(cfg):
    ds = load_dataset(cfg.data, cfg.run.seed)
    seed_everything(cfg.run.seed)
    return HybridTransformer(cfg, ds.spec), ds


class Interrupt(Callback):
    def __init__(self, at):
        self.at = at

    def on_step(self, trainer, step, metrics):
        if step == self.at:
            raise KeyboardInterrupt


class TestSchedule:
    @pytest.mark.parametrize("schedule, expected", [
        ("constant", [0.25, 1.0, 1.0, 1.0, 1.0]),
        ("linear", [0.25, 1.0, 0.75, 0.5, 0.0]),
        ("cosine", [0.25, 1.0, 0.8535533905932737, 0.5, 0.0]),
    ])
    def test_warmup_then_decay(self, schedule, expected):
        # warmup 4 over 12 steps: steps 0 and 3 warm up, then decay over the remaining 8
        got = [lr_factor(s, 12, schedule, 4) for s in (0, 3, 6, 8, 12)]
        assert got == pytest.approx(expected)

    def test_unknown_optimizer_and_schedule(self):
        model, ds = build(tiny())
        with pytest.raises(UserError, match="train.optimizer"):
            Trainer(model, update(tiny(), train={"optimizer": "sgd"}), ds)
        with pytest.raises(UserError, match="train.schedule"):
            Trainer(model, update(tiny(), train={"schedule": "step"}), ds)


class TestCheckpoints:
    def test_round_trip_with_weights_only(self, tmp_path):
        path = tmp_path / "c.pt"
        save_checkpoint(path, {"w": torch.arange(3), "nested": {"a": [1, 2.5, "x", None]}})
        state = torch.load(path, weights_only=True)  # loadable without qepi's help
        assert state["format"] == FORMAT and state["nested"]["a"] == [1, 2.5, "x", None]
        assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]  # no temporary file left

    def test_crafted_pickle_is_refused(self, tmp_path):
        class Evil:
            def __reduce__(self):
                return (os.system, ("echo pwned",))

        path = tmp_path / "evil.pt"
        path.write_bytes(pickle.dumps({"model": Evil()}, protocol=2))
        with pytest.raises(UserError, match="refused to load") as err:
            load_checkpoint(path)
        assert "\n" not in str(err.value)

    def test_garbage_and_foreign_files(self, tmp_path):
        (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
        with pytest.raises(UserError, match="junk.pt"):
            load_checkpoint(tmp_path / "junk.pt")
        torch.save({"w": torch.ones(1)}, tmp_path / "plain.pt")
        with pytest.raises(UserError, match="not a qepi checkpoint"):
            load_checkpoint(tmp_path / "plain.pt")

    def test_reloaded_model_predicts_identically(self, tmp_path):
        cfg = tiny()
        model, ds = build(cfg)
        Trainer(model, cfg, ds, run_dir=tmp_path, progress=False).fit()
        reloaded, saved_cfg = load_model(tmp_path / "checkpoint.pt")
        assert saved_cfg == cfg
        assert torch.equal(predict(model, ds.test), predict(reloaded, ds.test))
        state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
        assert {"model", "optimizer", "scheduler", "rng", "config", "input_spec", "seeds",
                "qepi_version", "step", "epoch"} <= set(state)


class TestResume:
    def test_interrupted_and_resumed_run_ends_with_the_same_weights(self, tmp_path):
        cfg = tiny(checkpoint_every=2, epochs=3)
        model, ds = build(cfg)
        Trainer(model, cfg, ds, run_dir=tmp_path / "full", progress=False).fit()

        part, _ = build(cfg)
        with pytest.raises(KeyboardInterrupt):  # step 5: after the mid-epoch checkpoint at step 4
            Trainer(part, cfg, ds, run_dir=tmp_path / "cut", callbacks=[Interrupt(5)],
                    progress=False).fit()
        state = load_checkpoint(tmp_path / "cut" / "checkpoint.pt")
        assert state["step"] == 4 and state["epoch"] == 1 and state["batch_in_epoch"] == 1

        resumed, _ = build(cfg)
        torch.manual_seed(1234)  # the checkpoint's RNG state must win over whatever came before
        trainer = Trainer(resumed, cfg, ds, run_dir=tmp_path / "cut", progress=False)
        trainer.load_state(state)
        trainer.fit()
        for (name, a), b in zip(model.state_dict().items(), resumed.state_dict().values()):
            assert torch.equal(a, b), name
        full = read_metrics(tmp_path / "full" / "metrics.jsonl")
        cut = read_metrics(tmp_path / "cut" / "metrics.jsonl")
        drop = lambda rs: [{k: v for k, v in r.items() if k != "time"} for r in rs]  # noqa: E731
        assert drop(cut) == drop(full)  # no step logged twice, same numbers


class TestLoop:
    def test_callbacks_see_steps_and_epochs_and_may_add_metrics(self, tmp_path):
        seen = []

        class Recorder:  # any object with some of the hooks works
            def on_step(self, trainer, step, metrics):
                metrics["grad_sq"] = sum(float((p.grad ** 2).sum()) for p in trainer.model.parameters()
                                         if p.grad is not None)
                seen.append(("step", step))

            def on_epoch_end(self, trainer, epoch, metrics):
                seen.append(("epoch", epoch, sorted(metrics)))

        cfg = tiny()
        model, ds = build(cfg)
        Trainer(model, cfg, ds, run_dir=tmp_path, callbacks=[Recorder()], progress=False).fit()
        assert [s[1] for s in seen if s[0] == "step"] == [1, 2, 3, 4, 5, 6]
        assert seen[3] == ("epoch", 0, ["dev_acc", "dev_loss", "train_acc", "train_loss"])
        records = read_metrics(tmp_path / "metrics.jsonl")
        steps = [r for r in records if r["kind"] == "train"]
        assert all(r["grad_sq"] > 0 for r in steps)
        assert steps[-1]["circuits"] > steps[0]["circuits"] > 0 and steps[0]["shots"] == 0

    def test_circuit_count_is_one_row_per_token_and_copy(self):
        cfg = tiny(epochs=1)
        model, ds = build(cfg)
        trainer = Trainer(model, cfg, ds, progress=False)
        trainer.train_step(ds.train.take(torch.arange(4)))
        # 4 examples x 3 tokens: 12 embedding rows + 12 rows x 3 copies (Q, K, V of one head)
        assert trainer.execution_counts() == {"circuits": 12 + 36, "shots": 0}

    def test_max_steps_and_early_stopping_keep_the_best_dev_weights(self, tmp_path):
        cfg = tiny(epochs=50, patience=1, lr=0.5)
        model, ds = build(cfg)
        kept = {}

        class Snapshot:
            def on_epoch_end(self, trainer, epoch, metrics):
                kept[epoch] = (metrics["dev_acc"], {k: v.clone() for k, v in trainer.model.state_dict().items()},
                               metrics["dev_loss"])

        summary = Trainer(model, cfg, ds, callbacks=[Snapshot()], progress=False).fit()
        assert summary["stopped_early"] and summary["epochs"] < 50
        best_epoch = max(kept, key=lambda e: (kept[e][0], -kept[e][2], -e))  # accuracy, ties by loss
        assert summary["best_dev_acc"] == kept[best_epoch][0]
        for name, value in model.state_dict().items():
            assert torch.equal(value, kept[best_epoch][1][name]), name
        short = Trainer(build(tiny(max_steps=4))[0], tiny(max_steps=4), ds, progress=False).fit()
        assert short["steps"] == 4

    def test_empty_training_split_is_a_user_error(self):
        cfg = tiny()
        model, ds = build(cfg)
        empty = ds.__class__(ds.task, ds.train.take(torch.arange(0)), None, ds.test, ds.spec)
        with pytest.raises(UserError, match="train split is empty"):
            Trainer(model, cfg, empty)


def test_metrics_file_is_json_lines(tmp_path):
    (tmp_path / "m.jsonl").write_text(json.dumps({"kind": "train"}) + "\n{broken\n")
    with pytest.raises(UserError, match="m.jsonl:2"):
        read_metrics(tmp_path / "m.jsonl")
