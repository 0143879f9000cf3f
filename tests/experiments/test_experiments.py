"""Runs, run directories, comparisons over seeds, statistics and reports (tiny budgets)."""

import json
import math

import numpy as np
import pytest
import torch
from scipy import stats

from qepi.config import Config, to_toml, update
from qepi.errors import UserError
from qepi.commands.experiments import render
from qepi.experiments import compare, mean_ci, paired_test, resume, run, summarize, variant_configs
from qepi.experiments.compare import verdict
from qepi.training import Callback, load_model, predict, read_metrics


def tiny(**data) -> Config:
    return update(
        Config(),
        circuit={"n_qubits": 2, "n_layers": 1},
        model={"d_model": 4, "n_heads": 1, "d_ff": 8},
        data={"task": "parity", "seq_len": 3, "n_train": 8, "n_dev": 4, "n_test": 4, **data},
        train={"epochs": 2, "batch_size": 4, "lr": 0.05},
    )


class TestStats:
    def test_mean_ci_matches_the_t_formula(self):
        x = [0.71, 0.8, 0.77, 0.9]
        r = mean_ci(x)
        half = 3.182446305284263 * np.std(x, ddof=1) / 2  # t_{0.975, 3} from tables
        assert r["mean"] == pytest.approx(np.mean(x)) and r["ci"] == pytest.approx(half, rel=1e-9)
        assert math.isnan(mean_ci([0.5])["ci"])

    def test_paired_test_matches_a_hand_computed_t(self):
        a, b = [0.9, 0.8, 0.85, 0.7], [0.7, 0.75, 0.71, 0.72]
        d = np.subtract(a, b)
        t = d.mean() / (d.std(ddof=1) / math.sqrt(len(d)))
        r = paired_test(a, b)
        assert r["t"] == pytest.approx(t) and r["p"] == pytest.approx(2 * stats.t.sf(abs(t), 3))
        assert math.isnan(paired_test([1.0], [0.5])["p"])
        assert math.isnan(paired_test([0.5, 0.6], [0.5, 0.6])["p"])


def test_verdict_says_plainly_when_the_classical_twin_wins():
    models = {v: {"test_acc": {"mean": acc}, "params": p} for v, acc, p in
              (("quantum", 0.7, 100), ("classical", 0.8, 120), ("no_entanglement", 0.72, 100))}
    tests = {o: {"acc": paired_test([0.7, 0.7, 0.71], [0.8, 0.8, 0.79])} for o in ("classical", "no_entanglement")}
    lines = verdict(models, tests, 0.5)
    assert lines[0].startswith("**The classical twin wins**") and "0.800" in lines[0]
    assert lines[1].startswith("Entanglement does not help here")
    assert any("little power" in line for line in lines)


class TestRun:
    def test_run_directory_config_first_then_metrics_model_and_summary(self, tmp_path):
        order = []

        class Look(Callback):
            def on_train_start(self, trainer):
                order.append(sorted(p.name for p in (tmp_path / "r").iterdir()))

        result = run(tiny(), tmp_path / "r", callbacks=[Look()], progress=False)
        assert order == [["config.toml", "metrics.jsonl"]]  # metrics opened, still empty
        assert (tmp_path / "r" / "config.toml").read_text() == to_toml(tiny())
        summary = json.loads((tmp_path / "r" / "summary.json").read_text())
        assert summary == result.summary and summary["kind"] == "quantum" and summary["steps"] == 4
        assert summary["circuits"] > 0 and summary["params"] > 0
        assert (tmp_path / "r" / "report.md").exists() and (tmp_path / "r" / "learning_curves.png").exists()
        records = read_metrics(tmp_path / "r" / "metrics.jsonl")
        assert [r["kind"] for r in records].count("train") == 4 and records[-1]["split"] == "test"
        model, _ = load_model(tmp_path / "r")  # model.pt
        from qepi.data import load_dataset

        test = load_dataset(tiny().data, 0).test
        assert torch.equal(predict(model, test), predict(result.model, test))

    def test_diagnostics_key_logs_gradient_flow_and_entropies_without_changing_training(self, tmp_path):
        plain = run(tiny(), tmp_path / "plain", progress=False, report=False)
        watched_cfg = update(tiny(), train={"diagnostics": True})
        watched = run(watched_cfg, tmp_path / "watched", progress=False, report=False)
        records = read_metrics(tmp_path / "watched" / "metrics.jsonl")
        steps = [r for r in records if r["kind"] == "train"]
        assert all("grad_norm/embedding.core.layer" in r for r in steps)
        assert [r["epoch"] for r in records if r["kind"] == "entropy"] == [0, 1]
        for a, b in zip(plain.model.state_dict().values(), watched.model.state_dict().values()):
            assert torch.equal(a, b)

    def test_existing_runs_are_never_overwritten_unasked(self, tmp_path):
        out = tmp_path / "r"
        cfg = update(tiny(), model={"embedding": "classical", "attention": "classical"})
        run(cfg, out, progress=False, report=False)
        before = {p.name: p.read_bytes() for p in out.iterdir()}
        with pytest.raises(UserError, match="finished run.*--overwrite"):
            run(cfg, out, progress=False)
        bad = update(cfg, data={"n_train": 0})
        with pytest.raises(UserError, match="data.n_train"):
            run(bad, out, progress=False, overwrite=True)
        assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # untouched
        (tmp_path / "mine").mkdir()
        (tmp_path / "mine" / "notes.txt").write_text("keep me")
        with pytest.raises(UserError, match="not a qepi run directory"):
            run(cfg, tmp_path / "mine", progress=False, overwrite=True)
        assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"
        run(update(cfg, train={"epochs": 1}), out, progress=False, report=False, overwrite=True)
        assert json.loads((out / "summary.json").read_text())["steps"] == 2
        assert not (tmp_path / "r.replaced").exists()  # the replaced run is gone once the new one ends

    def test_a_run_that_fails_midway_gives_the_replaced_run_back(self, tmp_path):
        out = tmp_path / "r"
        cfg = update(tiny(), model={"embedding": "classical", "attention": "classical"})
        run(cfg, out, progress=False, report=False)
        before = {p.name: p.read_bytes() for p in out.iterdir()}

        class Crash(Callback):
            def on_step(self, trainer, step, metrics):
                raise RuntimeError("simulator died")

        with pytest.raises(RuntimeError, match="simulator died"):
            run(cfg, out, callbacks=[Crash()], progress=False, overwrite=True)
        assert {p.name: p.read_bytes() for p in out.iterdir()} == before
        assert not (tmp_path / "r.replaced").exists()

    def test_resume_after_interruption_and_warm_start(self, tmp_path):
        cfg = update(tiny(), train={"checkpoint_every": 1, "epochs": 3})
        full = run(cfg, tmp_path / "full", progress=False, report=False)

        class Stop(Callback):
            def on_step(self, trainer, step, metrics):
                if step == 3:
                    raise KeyboardInterrupt

        with pytest.raises(KeyboardInterrupt):
            run(cfg, tmp_path / "cut", callbacks=[Stop()], progress=False)
        with pytest.raises(UserError, match="unfinished run.*--resume"):
            run(cfg, tmp_path / "cut", progress=False)
        resumed = resume(tmp_path / "cut", progress=False, report=False)
        assert resumed.summary["resumed_at_step"] == 2
        assert resumed.summary["test_acc"] == full.summary["test_acc"]
        for a, b in zip(full.model.state_dict().values(), resumed.model.state_dict().values()):
            assert torch.equal(a, b)
        with pytest.raises(UserError, match="already finished"):
            resume(tmp_path / "cut")

        staged = run(update(cfg, train={"epochs": 1}), tmp_path / "stage2", warm_start=tmp_path / "full",
                     progress=False, report=False)
        assert staged.summary["warm_start"] == str(tmp_path / "full")
        wrong = update(cfg, circuit={"n_qubits": 3})
        with pytest.raises(UserError, match="do not fit"):
            run(wrong, tmp_path / "stage3", warm_start=tmp_path / "full", progress=False)


def test_compare_three_models_same_data_report_and_rerender(tmp_path):
    out = tmp_path / "cmp"
    comparison = compare(tiny(), seeds=2, out=out, progress=False)
    assert set(comparison["models"]) == {"quantum", "classical", "no_entanglement"}
    assert comparison["seeds"] == [0, 1]
    for v, m in comparison["models"].items():
        assert m["runs"] == [f"{v}-s0", f"{v}-s1"]
    assert comparison["models"]["classical"]["circuits"] == 0
    assert comparison["models"]["quantum"]["circuits"] > 0
    # same data split per seed for all three models; the control has no entangling gates
    configs = {v: (out / f"{v}-s1" / "config.toml").read_text() for v in comparison["models"]}
    assert "entangling = false" in configs["no_entanglement"] and "seed = 1" in configs["classical"]
    for name in ("report.md", "comparison.json", "learning_curves.png", "accuracy_vs_params.png"):
        assert (out / name).stat().st_size > 0
    report = (out / "report.md").read_text()
    assert "classical twin" in report and "Paired tests" in report and "± " in report
    json.loads((out / "comparison.json").read_text())  # strict JSON (NaN written as null)
    (out / "report.md").unlink()
    render(out)
    assert (out / "report.md").read_text() == report
    assert summarize(out)["models"]["quantum"]["test_acc"] == comparison["models"]["quantum"]["test_acc"]
    with pytest.raises(UserError, match="finished comparison"):
        compare(tiny(), seeds=2, out=out, progress=False)


def test_compare_needs_a_quantum_model_and_report_needs_a_run():
    classical = update(Config(), model={"embedding": "classical", "attention": "classical"})
    with pytest.raises(UserError, match="compare needs a quantum model"):
        variant_configs(classical)
    with pytest.raises(UserError, match="no such directory"):
        render("/nonexistent/run")


def test_staged_training_continues_on_aer_with_shots_from_the_exact_weights(tmp_path):
    pytest.importorskip("qiskit_aer")
    exact = run(tiny(), tmp_path / "exact", progress=False, report=False)
    starts = []

    class First(Callback):
        def on_train_start(self, trainer):
            starts.append({k: v.clone() for k, v in trainer.model.state_dict().items()})

    aer = update(tiny(), backend={"name": "aer", "shots": 64}, train={"epochs": 1})
    staged = run(aer, tmp_path / "aer", warm_start=tmp_path / "exact", callbacks=[First()],
                 progress=False, report=False)
    for name, value in exact.model.state_dict().items():
        assert torch.equal(starts[0][name], value), name
    assert staged.summary["backend"] == "aer" and staged.summary["shots"] > 0
    assert staged.summary["shots"] == 64 * staged.summary["circuits"]
