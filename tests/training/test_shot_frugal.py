"""SPSA and Rosalin: convergence, unbiased estimates, the shot rule, state round trips,
per-weight shots in the engine, and `qepi train` with each optimiser."""

import json
import math

import numpy as np
import pytest
import torch

from qepi.backends.noisy import NoisyExactExecutor
from qepi.circuits import build_circuit
from qepi.cli import main as cli_main
from qepi.config import Backend, Circuit
from qepi.errors import UserError
from qepi.training.shot_frugal import SPSA, Rosalin, allocate_shots

TINY = "tests/tiny.toml"


def test_spsa_converges_on_a_quadratic():
    target = torch.tensor([0.5, -1.0, 2.0])
    w = torch.nn.Parameter(torch.zeros(3))
    opt = SPSA([w], lr=0.3, perturbation=0.1, stability=5.0, seed=1)
    for _ in range(300):
        opt.step(lambda: ((w - target) ** 2).sum())
    assert torch.allclose(w.detach(), target, atol=0.05)


def test_spsa_gradient_estimate_is_unbiased():
    # a quadratic's SPSA estimate is exactly unbiased: E[Δ Δᵀ] = I, E[Δ_i Δ_j Δ_k] = 0
    a = torch.tensor([[2.0, 0.5, 0.0], [0.5, 1.0, -0.3], [0.0, -0.3, 3.0]])
    w = torch.nn.Parameter(torch.tensor([0.3, -0.7, 1.1]))
    opt = SPSA([w], perturbation=0.2)
    closure = lambda: w @ a @ w + w.sum()  # noqa: E731
    samples = torch.stack([opt.gradient_estimate(closure, k=0, sample=m)[0] for m in range(4000)])
    exact = 2 * a @ w.detach() + 1
    stderr = samples.std(0) / math.sqrt(len(samples))
    assert torch.all((samples.mean(0) - exact).abs() < 4 * stderr)


def test_spsa_state_round_trips_and_resumes_the_same_perturbations():
    closure_for = lambda w: (lambda: ((w - 1) ** 2).sum())  # noqa: E731
    w1 = torch.nn.Parameter(torch.zeros(4))
    opt1 = SPSA([w1], seed=3)
    for _ in range(5):
        opt1.step(closure_for(w1))
    w2 = torch.nn.Parameter(w1.detach().clone())
    opt2 = SPSA([w2], seed=3)
    opt2.load_state_dict(opt1.state_dict())
    for _ in range(5):
        opt1.step(closure_for(w1))
        opt2.step(closure_for(w2))
    assert torch.equal(w1, w2)


def test_rosalin_allocation_follows_the_rule_by_hand():
    # L = 2, α = 0.1: s_i = ceil(2·2·0.1·ξ / (1.8 χ²)) = ceil(0.2222 ξ/χ²) -> 23, 3, 4
    # gain per shot γ: 2.0e-5, 1.6e-3, 3.1e-3 -> the third is best, s_max = 4; clip to [2, 4]
    chi, xi = torch.tensor([0.1, 0.3, 0.5]), torch.tensor([1.0, 1.0, 4.0])
    assert allocate_shots(chi, xi, 0.1, 2.0, 0.99, 0.0, 0, 2).tolist() == [4, 3, 4]
    # min_shots raises the floor; b·μ^k regularises a zero gradient mean
    assert allocate_shots(chi, xi, 0.1, 2.0, 0.99, 0.0, 0, 3).tolist() == [4, 3, 4]
    s = allocate_shots(torch.zeros(2), torch.ones(2), 0.1, 2.0, 0.5, 0.01, 1, 2)
    assert s.tolist() == [math.ceil(0.4 / (1.8 * 0.01 * 0.5))] * 2


def _circuit_layer(shots: int = 200, copies: int = 2):
    from qepi.layers import QuantumLayer

    spec = build_circuit(Circuit(n_qubits=2, n_layers=1))
    return QuantumLayer(spec.qfunc, spec.weight_shapes, n_qubits=2, copies=copies, seed=5,
                        backend=Backend(name="exact", shots=shots))


def test_engine_runs_each_weight_element_with_its_shots():
    layer = _circuit_layer(shots=100, copies=2)
    x = torch.rand(3, 2, 2, dtype=torch.float64)  # (N, K, F)
    shots = torch.arange(2, 2 + layer.weights.numel()).reshape(layer.weights.shape)
    with layer.spending({"weights": shots}) as variances:
        layer(x).sum().backward()
    # 6 unshifted rows x 100 shots, and per row 2 x its copy's allocation; inputs not shifted
    assert layer.execution_stats().shots == 6 * 100 + 3 * 2 * int(shots.sum())
    assert variances["weights"].shape == layer.weights.shape


def test_engine_variance_matches_the_spread_of_repeated_gradients():
    spec = build_circuit(Circuit(n_qubits=2, n_layers=1))
    w = torch.rand(1, *spec.weight_shapes["weights"], dtype=torch.float64, requires_grad=True)
    x = torch.rand(4, 1, 2, dtype=torch.float64)
    shots = torch.full(w.shape, 50)
    run = NoisyExactExecutor(spec.qfunc, 2, Backend(name="exact", shots=100), seed=2)
    grads, reported = [], []
    for _ in range(400):
        w.grad = None
        with run.spending({"weights": shots}) as spent:
            (run(x, {"weights": w}) * torch.tensor([1.0, -2.0])).sum().backward()
        grads.append(w.grad.clone())
        reported.append(spent.weight_variances["weights"])
    empirical = torch.stack(grads).var(0) * 50  # single-shot variance
    expected = torch.stack(reported).mean(0)
    # the sample variance of 400 estimates is within ~±25% (4 standard errors of a chi-square)
    assert torch.all((empirical - expected).abs() <= 0.3 * expected + 1e-9)


def test_rosalin_state_round_trips():
    layer = _circuit_layer()
    opt = Rosalin([layer], lr=0.1, lipschitz=1.0, min_shots=4)
    x = torch.rand(3, 2, 2)
    for _ in range(2):
        opt.zero_grad()
        with opt.measuring():
            layer(x).sum().backward()
        opt.step()
    again = Rosalin([layer], lr=0.1, lipschitz=1.0, min_shots=4)
    again.load_state_dict(opt.state_dict())
    for key in ("shots", "chi", "xi"):
        assert torch.equal(again.state[layer.weights][key], opt.state[layer.weights][key])
    assert again.state["step"] == 2


def test_rosalin_refuses_invalid_settings_and_weight_functions():
    layer = _circuit_layer()
    with pytest.raises(UserError, match="lr \\* lipschitz < 2"):
        Rosalin([layer], lr=1.0, lipschitz=2.0)
    import pennylane as qml

    from qepi.layers import QuantumLayer

    def doubled(inputs, weights):
        qml.RY(2 * weights[0], wires=0)
        return qml.expval(qml.PauliZ(0))

    odd = QuantumLayer(doubled, {"weights": (1,)}, n_qubits=1, backend=Backend(name="aer", shots=10))
    opt = Rosalin([odd])
    with pytest.raises(UserError, match="not a single weight element"):
        with opt.measuring():
            odd(torch.zeros(1, 1)).sum().backward()


@pytest.mark.parametrize("optimizer", ["spsa", "rosalin"])
def test_qepi_train_runs_and_reports_shots(tmp_path, optimizer, capsys):
    out = tmp_path / optimizer
    code = cli_main(["train", TINY, "--set", f"train.optimizer={optimizer}", "--set",
                     "backend.name=exact", "--set", "backend.shots=50", "--out", str(out), "--quiet"])
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    steps = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    steps = [s for s in steps if s["kind"] == "train"]
    assert summary["optimizer"] == optimizer
    assert summary["train_shots"] == sum(s["step_shots"] for s in steps) > 0
    assert "training steps" in capsys.readouterr().out
    key = "spsa_a" if optimizer == "spsa" else "rosalin_shots_mean"
    assert all(key in s for s in steps)


def test_spsa_runs_no_weight_shifted_circuit(tmp_path):
    from qepi.config import apply_overrides, load
    from qepi.data import load_dataset
    from qepi.models import HybridTransformer
    from qepi.training import Trainer, seed_everything

    counts = {}
    for optimizer in ("adam", "spsa"):
        cfg = apply_overrides(load(TINY), [f"train.optimizer={optimizer}", "backend.name=exact",
                                           "backend.shots=10", "train.max_steps=1"])
        ds = load_dataset(cfg.data, 0)
        seed_everything(0)
        trainer = Trainer(HybridTransformer(cfg, ds.spec), cfg, ds, progress=False)
        trainer.train_step(ds.train.take(torch.arange(4)))
        counts[optimizer] = trainer.execution_counts()["circuits"]
    # 2-qubit angle encoding + strongly entangling layer: 2 input angles, 6 weight angles.
    # adam: rows x (1 + 2·8); spsa: rows x (1 + 2·2) for the gradient pass + 2 rows for Δ±
    rows = counts["adam"] // 17
    assert counts["adam"] == rows * 17 and counts["spsa"] == rows * (5 + 2)


def test_rosalin_refused_without_shots(tmp_path, capsys):
    code = cli_main(["train", TINY, "--set", "train.optimizer=rosalin", "--out",
                     str(tmp_path / "r"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "needs backend.shots > 0" in err and len(err.strip().splitlines()) == 1


def test_rosalin_refused_with_mitigation(tmp_path, capsys):
    code = cli_main(["train", TINY, "--set", "train.optimizer=rosalin", "--set",
                     "backend.name=exact", "--set", "backend.shots=50", "--set",
                     "backend.noise=depolarizing", "--set", "backend.depolarizing_1q=0.01", "--set",
                     "backend.mitigation=['zne']",
                     "--out", str(tmp_path / "r"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "unmitigated" in err and len(err.strip().splitlines()) == 1


def test_resume_continues_spsa_bit_identically(tmp_path):
    from qepi.experiments import runner
    from qepi.config import apply_overrides, load

    cfg = apply_overrides(load(TINY), ["train.optimizer=spsa", "backend.name=exact",
                                       "backend.shots=20", "train.epochs=2", "data.n_train=12",
                                       "train.patience=0", "train.restore_best=false"])
    full = runner.run(cfg, tmp_path / "full", progress=False, report=False)
    part = tmp_path / "part"
    with pytest.raises(KeyboardInterrupt):
        runner.run(cfg, part, progress=False, report=False, callbacks=[_StopAfter(3)])
    resumed = runner.resume(part, progress=False, report=False)
    for name, value in full.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[name]), name
    assert np.isclose(full.summary["train_shots"], resumed.summary["train_shots"])


class _StopAfter:
    def __init__(self, steps):
        self.steps = steps

    def on_checkpoint(self, trainer, path):
        if trainer.step >= self.steps:
            raise KeyboardInterrupt
