"""Gradient flow against per-example gradients computed one by one; warnings; trainer hook."""

import math
import warnings

import pytest
import torch
from torch import nn

from qepi.config import Config, update
from qepi.diagnostics.gradients import GradientFlowMonitor, GradientWarning, gradient_flow, parameter_layers
from qepi.models import HybridTransformer, InputSpec


def tiny_model():
    cfg = update(Config(), circuit={"n_qubits": 2, "n_layers": 1},
                 model={"d_model": 4, "n_heads": 1, "d_ff": 8})
    torch.manual_seed(0)
    return HybridTransformer(cfg, InputSpec(seq_len=3, n_classes=2, vocab_size=3))


def flat_grad(model, params, x, y):
    model.zero_grad()
    nn.functional.cross_entropy(model(x), y).backward()
    return torch.cat([p.grad.reshape(-1) for p in params]).double()


def test_matches_per_example_gradients():
    model = tiny_model()
    x, y = torch.randint(0, 3, (4, 3)), torch.tensor([0, 1, 1, 0])
    stats = gradient_flow(model, (x, y), n_groups=4)
    layers = parameter_layers(model)
    assert "embedding.core.layer" in stats and "blocks.0.attention.core.layer" in stats
    for name in ("embedding.core.layer", "head"):
        params = layers[name]
        per_example = torch.stack([flat_grad(model, params, x[i:i + 1], y[i:i + 1]) for i in range(4)])
        full = flat_grad(model, params, x, y)
        assert stats[name]["norm"] == pytest.approx(float(full.norm()), rel=1e-6)
        variance = per_example.var(0, unbiased=True)  # (P,)
        assert stats[name]["variance"] == pytest.approx(float(variance.mean()), rel=1e-6)
        assert stats[name]["snr"] == pytest.approx(float(full.norm() / (variance.sum() / 4).sqrt()), rel=1e-6)


def test_group_variance_estimates_per_example_variance():
    # a linear model with a known per-example gradient spread: groups of 2 estimate the same variance
    torch.manual_seed(0)
    model = nn.Linear(4, 2)
    x, y = torch.randn(160, 4), torch.randint(0, 2, (160,))
    single = gradient_flow(model, (x, y), n_groups=160)["weight"]["variance"]
    grouped = gradient_flow(model, (x, y), n_groups=40)["weight"]["variance"]
    assert grouped == pytest.approx(single, rel=0.3)


def test_shot_snr_is_infinite_on_an_exact_backend():
    stats = gradient_flow(tiny_model(), (torch.randint(0, 3, (4, 3)), torch.tensor([0, 1, 0, 1])),
                          n_groups=2, repeats=2)
    assert math.isinf(stats["embedding.core.layer"]["shot_snr"])


def test_vanishing_layer_warns_once():
    class Dead(nn.Module):
        def __init__(self):
            super().__init__()
            self.alive = nn.Linear(3, 2)
            self.dead = nn.Linear(3, 2)

        def forward(self, x):
            return self.alive(x) + 0.0 * self.dead(x)

    monitor = GradientFlowMonitor((torch.randn(8, 3), torch.randint(0, 2, (8,))), min_snr=0.0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        monitor.measure(Dead(), step=1)
        monitor.measure(Dead(), step=2)
    messages = [str(w.message) for w in caught if issubclass(w.category, GradientWarning)]
    assert len(messages) == 1 and "'dead' vanishes" in messages[0]


def test_trainer_callback_logs_per_layer_metrics(tmp_path):
    from qepi.data import load_dataset
    from qepi.diagnostics.entropy import EntropyMonitor
    from qepi.training import Trainer, read_metrics

    cfg = update(Config(), circuit={"n_qubits": 2, "n_layers": 1},
                 model={"d_model": 4, "n_heads": 1, "d_ff": 8},
                 data={"task": "parity", "seq_len": 3, "n_train": 8, "n_dev": 4, "n_test": 4},
                 train={"epochs": 1, "batch_size": 4})
    ds = load_dataset(cfg.data)
    model = HybridTransformer(cfg, ds.spec)
    grads = GradientFlowMonitor(ds.train.take(torch.arange(4)), every=2, n_groups=2, min_snr=0.0)
    entropy = EntropyMonitor(ds.dev.x, ds.dev.mask)
    Trainer(model, cfg, ds, run_dir=tmp_path, callbacks=[grads, entropy], progress=False).fit()
    records = read_metrics(tmp_path / "metrics.jsonl")
    steps = [r for r in records if r.get("kind") == "train"]
    assert "grad_norm/embedding.core.layer" in steps[0]
    (logged,) = [r for r in records if r.get("kind") == "entropy"]
    assert logged["epoch"] == 0 and "entanglement/blocks.0.attention.core.layer" in logged
    assert "grad/embedding.core.layer/snr" in steps[1]  # step 2: every=2
    assert [row["step"] for row in grads.history] == [2]
    assert len(entropy.history) == 1 and "predictive_entropy" in entropy.history[0]


def test_training_monitors_run_with_the_experiment_runner(tmp_path):
    from qepi.data import load_dataset
    from qepi.diagnostics import training_monitors
    from qepi.experiments import run

    cfg = update(Config(), circuit={"n_qubits": 2, "n_layers": 1},
                 model={"d_model": 4, "n_heads": 1, "d_ff": 8},
                 data={"task": "parity", "seq_len": 3, "n_train": 8, "n_dev": 4, "n_test": 4},
                 train={"epochs": 2, "batch_size": 4})
    monitors = training_monitors(load_dataset(cfg.data, cfg.run.seed), probe_size=4, every=1)
    monitors[0].min_snr = 0.0
    run(cfg, tmp_path / "run", callbacks=monitors, progress=False, report=False)
    assert [row["step"] for row in monitors[0].history] == [1, 2, 3, 4]
    assert [row["epoch"] for row in monitors[1].history] == [0, 1]


def test_shot_snr_grows_with_shots_on_aer():
    from qepi.circuits import build_circuit
    from qepi.config import Backend, Circuit
    from qepi.layers import QuantumLayer

    spec = build_circuit(Circuit(n_qubits=2, n_layers=1))
    snr = {}
    for shots in (100, 1600):
        torch.manual_seed(0)
        layer = QuantumLayer(spec.qfunc, spec.weight_shapes, n_qubits=2,
                             backend=Backend(name="aer", shots=shots))
        model = nn.Sequential(layer, nn.Linear(2, 2)).double()
        x, y = torch.rand(8, 2, dtype=torch.float64), torch.tensor([0, 1] * 4)
        stats = gradient_flow(model, (x, y), n_groups=2, repeats=8)
        snr[shots] = stats["0"]["shot_snr"]
        assert math.isfinite(snr[shots])
    assert snr[1600] > 2 * snr[100]  # shot noise shrinks like 1/sqrt(shots): 4x in expectation


def test_monitors_do_not_change_training():
    from qepi.data import load_dataset
    from qepi.diagnostics import training_monitors
    from qepi.training import Trainer, seed_everything

    cfg = update(Config(), circuit={"n_qubits": 2, "n_layers": 1},
                 model={"d_model": 4, "n_heads": 1, "d_ff": 8, "dropout": 0.2},
                 data={"task": "parity", "seq_len": 3, "n_train": 8, "n_dev": 4, "n_test": 4},
                 train={"epochs": 1, "batch_size": 4})
    ds = load_dataset(cfg.data)
    weights = []
    for callbacks in ([], training_monitors(ds, probe_size=4, every=1)):
        seed_everything(0)
        model = HybridTransformer(cfg, ds.spec)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", GradientWarning)
            Trainer(model, cfg, ds, callbacks=callbacks, progress=False).fit()
        weights.append(model.state_dict())
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
