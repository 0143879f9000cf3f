"""Barren-plateau measurement: hand-computable variances and the fit of their decay."""

import math

import numpy as np
import pennylane as qml
import pytest

from qepi.circuits import Ansatz
from qepi.diagnostics.plateau import fit_decay, gradient_variance, parse_range, plateau_curve, plot_plateau
from qepi.errors import UserError


def _ry_product(w, wires, entangling, index):
    for i, wire in enumerate(wires):
        qml.RY(w[..., i, 0], wires=wire)


# RY(θ_i) on every wire, global cost <Z...Z> = prod cos θ_i: d/dθ_0 = -sin θ_0 prod_{i>0} cos θ_i,
# whose variance over uniform angles is exactly (1/2)^n: exponential decay with rate ln 2.
RY_PRODUCT = Ansatz("ry_product", 1, _ry_product, "RY on every wire")


def test_single_qubit_variance_by_hand():
    # d/dθ cos θ = -sin θ; Var over uniform θ = 1/2
    assert gradient_variance(RY_PRODUCT, 1, 1, n_samples=4000, cost="global") == pytest.approx(0.5, rel=0.05)


def test_fit_recovers_exponential_decay():
    result = plateau_curve(RY_PRODUCT, [1, 2, 3, 4, 5], [1], n_samples=1000, cost="global")
    fit = result.fits["1"]
    assert fit.rate == pytest.approx(math.log(2), abs=0.08)
    assert fit.r2 > 0.98
    assert result.variances[0][0] == pytest.approx(0.5, rel=0.1)


def test_local_cost_of_a_product_circuit_does_not_decay():
    result = plateau_curve(RY_PRODUCT, [1, 2, 3, 4], [1], n_samples=2000, cost="local")
    assert abs(result.fits["1"].rate) < 0.1


def test_strongly_entangling_gradients_shrink_with_qubits():
    result = plateau_curve("strongly_entangling", [2, 4, 6], [3], n_samples=60)
    row = result.variances[0]
    assert row[0] > row[1] > row[2]
    assert result.fits["3"].rate > 0.3


def test_fit_decay_exact_and_errors():
    fit = fit_decay([2, 4, 6], np.exp(1.0 - 0.5 * np.array([2, 4, 6])))
    assert (fit.rate, fit.intercept, fit.r2) == pytest.approx((0.5, 1.0, 1.0))
    with pytest.raises(UserError, match="two qubit counts"):
        fit_decay([2, 3], [0.0, 1e-3])


def test_parse_range_and_errors():
    assert parse_range("2-12:5") == [2, 7, 12]
    assert parse_range("1, 4,8") == [1, 4, 8]
    for bad in ("a-b", "0", ""):
        with pytest.raises(UserError):
            parse_range(bad)
    with pytest.raises(UserError, match="cost"):
        gradient_variance("sim14", 2, 1, cost="mixed")


def test_plot(tmp_path):
    result = plateau_curve("basic_entangler", [2, 3], [1, 2], n_samples=20)
    path = plot_plateau(result, tmp_path / "p.png")
    assert path.stat().st_size > 1000
    assert '"ansatz": "basic_entangler"' in result.to_json()
