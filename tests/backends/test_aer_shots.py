"""Shots as on hardware: every executed circuit draws independently, a seed reproduces the
sequence of draws, chunking changes nothing and a restored executor continues bit-identically."""

from __future__ import annotations

import math

import numpy as np
import pennylane as qml
import pytest
import torch
from scipy import stats

from qepi.backends.aer import AerExecutor
from qepi.backends.sampling import ShotSampler
from qepi.circuits import build_circuit
from qepi.config import Backend, Circuit

F64 = torch.float64


def _ry_rx(inputs, weights):
    qml.RY(inputs[..., 0], wires=0)
    qml.RX(weights[0], wires=0)
    return [qml.expval(qml.PauliZ(0))]  # cos(x) cos(w)


def _within_chi2_interval(samples: np.ndarray, sigma2: float, level: float = 0.999) -> bool:
    """(n - 1) s² / σ² lies in the central ``level`` interval of χ²(n - 1)."""
    n = len(samples)
    statistic = (n - 1) * samples.var(ddof=1) / sigma2
    low, high = stats.chi2.ppf([(1 - level) / 2, (1 + level) / 2], n - 1)
    return bool(low <= statistic <= high)


class TestIndependentDraws:
    @pytest.mark.parametrize("seed", [0, 1, 2])
    def test_identical_rows_have_the_variance_of_independent_measurements(self, seed):
        x, w, shots, rows = 0.7, 0.4, 400, 64
        run = AerExecutor(_ry_rx, 1, Backend(name="aer", shots=shots), seed=seed)
        y = run(torch.full((rows, 1, 1), x, dtype=F64), {"weights": torch.tensor([[w]])})
        estimates = y.flatten().numpy()
        z = math.cos(x) * math.cos(w)
        assert _within_chi2_interval(estimates, (1 - z**2) / shots)  # a ±1 outcome over S shots
        assert abs(estimates.mean() - z) < 4 * math.sqrt((1 - z**2) / shots / rows)
        assert run.stats.circuits == rows and run.stats.shots == rows * shots

    def test_sampler_frequencies_have_multinomial_variance(self):
        sampler, probs = ShotSampler(shots=50, seed=4), np.array([[0.2, 0.3, 0.5]] * 200)
        freqs = sampler.frequencies(probs, sampler.next_call())  # (200, 3)
        for k, p in enumerate(probs[0]):
            assert _within_chi2_interval(freqs[:, k], p * (1 - p) / 50)
        again = sampler.frequencies(probs, sampler.next_call())
        assert not np.array_equal(freqs, again)

    def test_a_repeated_call_draws_again_and_a_seed_reproduces_the_sequence(self):
        x, w = torch.full((4, 1, 1), 0.3, dtype=F64), {"weights": torch.tensor([[0.2]])}
        first = AerExecutor(_ry_rx, 1, Backend(name="aer", shots=100), seed=7)
        calls = [first(x, w) for _ in range(3)]
        assert not torch.equal(calls[0], calls[1]) and not torch.equal(calls[1], calls[2])
        second = AerExecutor(_ry_rx, 1, Backend(name="aer", shots=100), seed=7)
        assert all(torch.equal(second(x, w), y) for y in calls)
        other = AerExecutor(_ry_rx, 1, Backend(name="aer", shots=100), seed=8)
        assert not torch.equal(other(x, w), calls[0])
        first.reseed(7)
        assert torch.equal(first(x, w), calls[0])


def _values_and_grads(run, x, w):
    x = x.detach().clone().requires_grad_(True)
    w = w.detach().clone().requires_grad_(True)
    y = run(x, {"weights": w})
    return (y.detach(), *torch.autograd.grad((y * torch.linspace(0.5, 1.5, y.shape[-1])).sum(),
                                             [x, w]))


class TestReproducible:
    def test_chunking_changes_nothing(self):
        spec = build_circuit(Circuit(n_qubits=2, n_layers=1))
        gen = torch.Generator().manual_seed(3)
        x = torch.rand(6, 2, 2, generator=gen, dtype=F64)
        w = torch.rand(2, 1, 2, 3, generator=gen, dtype=F64)
        results = []
        for chunk_rows, threads in [(20000, 0), (7, 1), (1, 2)]:
            backend = Backend(name="aer", shots=50, chunk_rows=chunk_rows, threads=threads,
                              noise="depolarizing", readout_error=0.05)
            run = AerExecutor(spec.qfunc, 2, backend, seed=5)
            results.append([_values_and_grads(run, x, w) for _ in range(2)])  # two calls
        for other in results[1:]:
            for (y, gx, gw), (y2, gx2, gw2) in zip(results[0], other):
                assert torch.equal(y, y2) and torch.equal(gx, gx2)
                torch.testing.assert_close(gw, gw2, atol=1e-12, rtol=0)  # sums in another order

    def test_restored_state_continues_the_draws(self):
        spec = build_circuit(Circuit(n_qubits=2, n_layers=1))
        x, w = torch.rand(3, 1, 2, dtype=F64), torch.rand(1, 1, 2, 3, dtype=F64)
        backend = Backend(name="aer", shots=64)
        run = AerExecutor(spec.qfunc, 2, backend, seed=11)
        _values_and_grads(run, x, w)
        state = run.state_dict()
        assert state == {"sampler": {"seed": 11, "calls": 1}}
        expected = [_values_and_grads(run, x, w) for _ in range(2)]
        resumed = AerExecutor(spec.qfunc, 2, backend, seed=0)
        resumed.load_state_dict(state)
        for want in expected:
            for a, b in zip(_values_and_grads(resumed, x, w), want):
                assert torch.equal(a, b)
        assert AerExecutor(spec.qfunc, 2, Backend(name="aer")).state_dict() == {}


class TestUnbiasedUnderShots:
    def test_parameter_shift_gradients_are_unbiased(self):
        x0, w0, shots, rows = 0.7, 0.4, 100, 400
        run = AerExecutor(_ry_rx, 1, Backend(name="aer", shots=shots), seed=1)
        x = torch.full((rows, 1, 1), x0, dtype=F64, requires_grad=True)
        w = torch.tensor([[w0]], dtype=F64, requires_grad=True)
        run(x, {"weights": w}).sum().backward()
        grads = x.grad.flatten().numpy()  # one independent estimate per row
        exact = -math.sin(x0) * math.cos(w0)
        assert abs(grads.mean() - exact) < 4 * grads.std(ddof=1) / math.sqrt(rows)
        # each shifted estimate carries variance (1 - <Z>²)/S; the gradient halves their difference
        z_plus = math.cos(x0 + math.pi / 2) * math.cos(w0)
        z_minus = math.cos(x0 - math.pi / 2) * math.cos(w0)
        sigma2 = ((1 - z_plus**2) + (1 - z_minus**2)) / (4 * shots)
        assert _within_chi2_interval(grads, sigma2)
        assert abs(w.grad.item() / rows - (-math.cos(x0) * math.sin(w0))) < 0.05

    def test_expval_var_and_probs_share_their_counts(self):
        def circuit(inputs, weights):
            qml.RY(inputs[..., 0], wires=0)
            qml.CNOT(wires=[0, 1])
            return [qml.probs(wires=[0]), qml.expval(qml.Z(0)), qml.var(qml.Z(0)),
                    qml.expval(qml.Z(0) @ qml.Z(1))]

        run = AerExecutor(circuit, 2, Backend(name="aer", shots=37, noise="depolarizing",
                                              readout_error=0.1), seed=2)
        y = run(torch.rand(20, 1, 1, dtype=F64), {"weights": torch.zeros(1, 1)})  # (N, 1, 5)
        p0, p1, z, var = y[..., 0], y[..., 1], y[..., 2], y[..., 3]
        torch.testing.assert_close(p0 + p1, torch.ones_like(p0), atol=1e-12, rtol=0)
        torch.testing.assert_close(z, p0 - p1, atol=1e-12, rtol=0)
        torch.testing.assert_close(var, 1 - z**2, atol=1e-12, rtol=0)
        assert torch.all((p0 * 37 - (p0 * 37).round()).abs() < 1e-9)  # whole counts
