"""qepi's ``default.qubit`` and ``lightning.qubit`` executors against plain PennyLane QNodes.

The reference is :func:`qepi.backends.support.per_row_reference`: a ``default.qubit`` QNode
with backprop, run one row and one copy at a time (no broadcasting, no rewritten
measurements), with PennyLane's eigendecomposition cache emptied before every run. Each regression test below is a circuit
that once came back wrong or with a raw PennyLane error.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pennylane as qml
import pytest
import torch
from hypothesis import HealthCheck, given, settings

from qepi.backends import make_executor
from qepi.backends.pennylane import PennyLaneExecutor
from qepi.backends.support import per_row_reference
from qepi.config import Backend
from qepi.errors import UserError


def _load_fuzz():
    """tests/backends/test_fuzz.py (its program strategy, reference and checks)."""
    spec = importlib.util.spec_from_file_location("qepi_fuzz_programs",
                                                  Path(__file__).with_name("test_fuzz.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


fuzz = _load_fuzz()
BACKENDS = ["default.qubit", "lightning.qubit"]
# both compute in float64: Lightning agrees with default.qubit to rounding (~1e-15)
TOL = 1e-10


def batch(n=3, k=2, features=2, seed=0):
    gen = torch.Generator().manual_seed(seed)
    inputs = torch.rand(n, k, features, generator=gen, dtype=torch.float64) * 4 - 2
    weights = torch.rand(k, 4, generator=gen, dtype=torch.float64) * 4 - 2
    return inputs, {"weights": weights}


def assert_matches_reference(backend, circuit, n_wires, inputs, weights, tol=TOL):
    """``backend``'s values and gradients (inputs, weights) are default.qubit's, row by row."""
    want, want_grads = fuzz.with_grads(
        lambda x, w: per_row_reference(circuit, n_wires, x, w), inputs, weights)
    got, got_grads = fuzz.with_grads(make_executor(circuit, n_wires, backend), inputs, weights)
    assert got.shape == want.shape
    torch.testing.assert_close(got, want, rtol=0, atol=tol)
    for name, g, h in zip(["inputs", *weights], got_grads, want_grads):
        torch.testing.assert_close(g, h, rtol=0, atol=tol, msg=lambda m, name=name: f"{name}: {m}")


@settings(max_examples=40, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(program=fuzz.programs())
def test_default_qubit_executor_matches_plain_qnodes(program):
    """Broadcast over rows and copies, default.qubit gives the row-by-row QNode's values and
    gradients (inputs, weights, observable coefficients), or a one-line UserError."""
    fuzz.check("default.qubit", program)


@pytest.mark.parametrize("backend", BACKENDS)
def test_variance_of_an_observable_with_tensor_coefficients(backend):
    """Lightning's adjoint method cannot differentiate a variance, nor parameter shift its
    observable's coefficients; PennyLane cannot take the eigenvalues of a batched sum."""
    def circuit(inputs, weights):
        qml.RY(inputs[..., 0], wires=0)
        qml.CRX(weights[..., 1], wires=[0, 1])
        qml.RX(inputs[..., 1] * weights[..., 0], wires=1)
        return [qml.var(inputs[..., 0] * qml.X(0) + weights[..., 2] * qml.Z(0) @ qml.Y(1)
                        + 0.5 * qml.Z(1)),
                qml.var(weights[..., 3] * qml.X(1))]

    assert_matches_reference(backend, circuit, 2, *batch())


@pytest.mark.parametrize("backend", BACKENDS)
def test_expval_of_coefficients_computed_from_batched_inputs(backend):
    """Lightning's adjoint method gives zero for observable coefficients and PennyLane's
    parameter shift an invalid gradient for batched ones; default.qubit once returned one
    wrong value for every row (a batch of coefficients on an unbatched state)."""
    def circuit(inputs, weights):
        qml.RY(inputs[..., 1] * weights[..., 0], wires=0)
        return (qml.expval(inputs[..., 0] * qml.X(0)),
                qml.expval(weights[..., 1] * qml.Z(0) - inputs[..., 1] * qml.Y(0)))

    def no_gate(inputs, weights):  # the state has no batch dimension, the coefficients have
        return qml.expval(weights[..., 1] * qml.Z(0) - inputs[..., 1] * qml.Y(0) @ qml.X(1))

    assert_matches_reference(backend, circuit, 1, *batch(k=1))
    assert_matches_reference(backend, no_gate, 2, *batch(k=2))


def hermitian_circuit(measure):
    """A circuit measuring Hermitians whose matrices are computed from inputs and weights."""
    def circuit(inputs, weights):
        qml.RY(inputs[..., 1] * weights[..., 0], wires=0)
        qml.CNOT(wires=[0, 1])
        a, b = weights[..., 1], inputs[..., 0]
        matrix = torch.stack([torch.stack([a, b], -1), torch.stack([b, -a], -1)], -2)
        return measure(matrix, torch.kron(matrix, matrix + 0.25 * torch.eye(2)))

    return circuit


def test_expval_of_a_hermitian_computed_from_tensors():
    """Lightning reads it from the Pauli decomposition of its matrix (PennyLane has no batched
    Hermitian, so the default.qubit executor runs it on one row)."""
    circuit = hermitian_circuit(lambda one, two: (qml.expval(qml.Hermitian(one, wires=1)),
                                                  qml.expval(qml.Hermitian(two, wires=[1, 0]))))
    assert_matches_reference("lightning.qubit", circuit, 2, *batch())
    assert_matches_reference("default.qubit", circuit, 2, *batch(1, 1))


@pytest.mark.parametrize("backend", BACKENDS)
def test_variance_of_a_hermitian_computed_from_tensors(backend):
    """PennyLane diagonalises a Hermitian in NumPy, so default.qubit's variance of it has no
    gradient; both executors give <H²> - <H>², here checked against default.qubit's
    expectation values of H² and H (one row on default.qubit: no batched Hermitian)."""
    variance = hermitian_circuit(lambda one, two: (qml.var(qml.Hermitian(one, wires=1)),
                                                   qml.var(qml.Hermitian(two, wires=[1, 0]))))
    moments = hermitian_circuit(lambda one, two: (
        qml.expval(qml.Hermitian(one @ one, wires=1)), qml.expval(qml.Hermitian(one, wires=1)),
        qml.expval(qml.Hermitian(two @ two, wires=[1, 0])),
        qml.expval(qml.Hermitian(two, wires=[1, 0]))))

    def from_moments(inputs, weights):
        out = per_row_reference(moments, 2, inputs, weights)  # (N, K, 4)
        return out[..., ::2] - out[..., 1::2] ** 2

    inputs, weights = batch() if backend == "lightning.qubit" else batch(1, 1)
    want, want_grads = fuzz.with_grads(from_moments, inputs, weights)
    got, got_grads = fuzz.with_grads(make_executor(variance, 2, backend), inputs, weights)
    torch.testing.assert_close(got, want, rtol=0, atol=TOL)
    for g, h in zip(got_grads, want_grads):
        torch.testing.assert_close(g, h, rtol=0, atol=TOL)
    assert want_grads[0].abs().max() > 0.1  # the gradient PennyLane's var misses


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("wires", [[0], [2, 0], None])
def test_probabilities(backend, wires):
    def circuit(inputs, weights):
        qml.RY(inputs[..., 0], wires=0)
        qml.CRY(weights[..., 0] * inputs[..., 1], wires=[0, 2])
        qml.RX(weights[..., 1], wires=1)
        return qml.probs(wires=wires) if wires else qml.probs()

    assert_matches_reference(backend, circuit, 3, *batch())
    if wires != [0]:  # wire 2 stays |0> where wire 0 is |0>: impossible outcomes are zero
        assert (make_executor(circuit, 3, backend)(*batch()) >= 0).all()


@pytest.mark.parametrize("backend", BACKENDS)
def test_gates_without_an_adjoint_derivative_of_their_own(backend):
    """Lightning's adjoint method cannot use these as they are (no generator, no frequencies,
    a broadcast PennyLane splits wrongly, or parameters it numbers its own way)."""
    def circuit(inputs, weights):
        qml.RY(inputs[..., 0], wires=0)
        qml.RY(inputs[..., 1], wires=1)
        qml.PCPhase(inputs[..., 0] * weights[..., 0], dim=1, wires=[0])
        qml.PSWAP(inputs[..., 1] + weights[..., 1], wires=[0, 1])
        qml.ctrl(qml.Rot, control=2)(weights[..., 0], inputs[..., 1], weights[..., 2], wires=0)
        qml.ctrl(qml.U2, control=0)(inputs[..., 0], weights[..., 3], wires=2)
        qml.adjoint(qml.PauliRot(inputs[..., 1] * weights[..., 2], "XZ", wires=[1, 2]))
        qml.adjoint(qml.BlockEncode([[0.3, 0.4]], wires=[2, 0]))
        qml.FermionicSWAP(weights[..., 3], wires=[0, 1])
        return qml.expval(qml.X(0) @ qml.Y(1)), qml.var(qml.Z(2)), qml.probs(wires=[1])

    assert_matches_reference(backend, circuit, 3, *batch())


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("n", "k"), [(3, 1), (1, 1), (1, 2), (2, 2)])
def test_identical_measurements_keep_a_column_each(backend, n, k):
    def circuit(inputs, weights):
        qml.RY(inputs[..., 0] * weights[..., 0], wires=0)
        return [qml.expval(-0.5 * qml.X(0)) for _ in range(3)]

    inputs, weights = batch(n, k)
    assert_matches_reference(backend, circuit, 1, inputs, weights)
    assert make_executor(circuit, 1, backend)(inputs, weights).shape == (n, k, 3)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_coefficient_close_to_an_earlier_one_gets_its_own_eigenvalues(backend):
    """PennyLane caches the eigenvalues of ``0.7 Z + X`` under a hash that prints 4 decimals:
    the next call with 0.70001 once got the old eigenvalues, and no gradient."""
    def circuit(inputs, weights):
        qml.RY(inputs[..., 0], wires=0)
        return qml.var(weights[..., 0] * qml.Z(0) + qml.X(0))

    run = make_executor(circuit, 1, backend)
    inputs = torch.full((1, 1, 1), 0.4, dtype=torch.float64)
    for coefficient in [0.7, 0.70001]:
        weights = {"weights": torch.full((1, 4), coefficient, dtype=torch.float64)}
        want, want_grads = fuzz.with_grads(
            lambda x, w: per_row_reference(circuit, 1, x, w), inputs, weights)
        got, got_grads = fuzz.with_grads(run, inputs, weights)
        torch.testing.assert_close(got, want, rtol=0, atol=TOL)
        torch.testing.assert_close(got_grads[1], want_grads[1], rtol=0, atol=TOL)


@pytest.mark.parametrize("trainable", [True, False])
def test_lightning_values_keep_float64_digits(trainable):
    """PennyLane turns Lightning's Python floats into float32 tensors (~1e-8 off); qepi keeps
    them in float64, so one row agrees with default.qubit to rounding, whether or not the
    circuit has anything to differentiate."""
    hermitian = np.array([[1.3, 0.2 - 0.7j], [0.2 + 0.7j, -0.4]])

    def circuit(inputs, weights):
        if trainable:
            qml.RY(inputs[..., 0], wires=0)
            qml.RX(weights[..., 0], wires=0)
        return qml.expval(qml.Z(0)), qml.var(qml.X(0)), qml.var(qml.Hermitian(hermitian, 0))

    inputs, weights = batch(1, 1)
    got = make_executor(circuit, 1, "lightning.qubit")(inputs, weights)
    want = per_row_reference(circuit, 1, inputs, weights)
    assert got.dtype == torch.float64
    torch.testing.assert_close(got, want, rtol=0, atol=1e-12)


@pytest.mark.parametrize("gate", [
    lambda w: qml.ctrl(qml.U1(w[..., 0], wires=0), control=1),
    lambda w: qml.ctrl(qml.U3(w[..., 0], w[..., 1], w[..., 2], wires=0), control=1),
    lambda w: qml.ctrl(qml.CRot(w[..., 0], w[..., 1], w[..., 2], wires=[0, 1]), control=2),
    lambda w: qml.QubitUnitary(qml.matrix(qml.RX(w[..., 0], 0) @ qml.RY(w[..., 1], 1)), [0, 1]),
    lambda w: qml.PCPhase(w[..., 0], dim=1, wires=[0, 2]),
], ids=["ctrl-U1", "ctrl-U3", "ctrl-CRot", "QubitUnitary", "PCPhase"])
def test_gates_at_angle_zero_keep_their_derivatives(gate):
    """PennyLane's decompositions drop a controlled gate at angle 0 (two CNOTs are left) or
    are singular there (a QubitUnitary at the identity): Lightning once gave zero or wrong
    derivatives for weights initialised at zero."""
    def circuit(inputs, weights):
        for wire in range(3):
            qml.RY(inputs[..., wire % 2], wires=wire)
            qml.Hadamard(wires=wire)
        gate(weights)
        return qml.expval(qml.X(0) @ qml.Y(1) @ qml.Z(2)), qml.probs(wires=[0, 1])

    inputs, weights = batch(2, 1)
    weights = {"weights": torch.zeros_like(weights["weights"])}
    assert_matches_reference("lightning.qubit", circuit, 3, inputs, weights)


def test_lightning_runs_circuits_whose_structure_follows_the_values():
    """Lightning runs one tape per row, so a circuit may branch on a row's values in Python;
    default.qubit broadcasts and refuses it in one line."""
    def circuit(inputs, weights):
        if inputs[..., 0] > 0:
            qml.RX(inputs[..., 1] * weights[..., 0], wires=0)
        return qml.expval(qml.Z(0))

    inputs, weights = batch(4, 2, seed=3)
    assert (inputs[..., 0] > 0).any() and (inputs[..., 0] <= 0).any()
    assert_matches_reference("lightning.qubit", circuit, 1, inputs, weights)
    with pytest.raises(UserError, match=r"default.qubit .*lightning.qubit") as refused:
        make_executor(circuit, 1, "default.qubit")(inputs, weights)
    assert "\n" not in str(refused.value)


@pytest.mark.parametrize(("measure", "match"), [
    (lambda: qml.probs(op=qml.X(0)), r"probs in the eigenbasis of PauliX; use backend.name="),
    (lambda: qml.expval(qml.measure(0)), r"expval of a mid-circuit measurement; use backend"),
    (lambda: qml.state(), r"measurement state: a quantum layer returns expval, var or probs"),
])
def test_lightning_refuses_measurements_it_cannot_read_in_one_line(measure, match):
    def circuit(inputs, weights):
        qml.RY(inputs[..., 0], wires=0)
        return measure()

    with pytest.raises(UserError, match=match) as refused:
        make_executor(circuit, 1, "lightning.qubit")(*batch())
    assert "\n" not in str(refused.value)


def test_a_failure_of_pennylanes_backward_is_a_user_error():
    """Parameter shift cannot differentiate the coefficients of a variance's observable: on a
    user's own QNode, PennyLane fails during backward, which qepi names in one line."""
    @qml.qnode(qml.device("default.qubit", wires=1), diff_method="parameter-shift")
    def circuit(inputs, weights):
        qml.RY(inputs[..., 0], wires=0)
        return qml.var(weights[..., 0] * qml.X(0))

    run = PennyLaneExecutor.from_qnode(circuit, "inputs")
    inputs, weights = batch(2, 1)
    out = run(inputs, {"weights": weights["weights"].requires_grad_()})
    with pytest.raises(UserError, match=r"cannot differentiate this circuit \(ValueError: "
                                        r"Cannot differentiate .*\); drop the QNode's "
                                        r"diff_method='parameter-shift'") as refused:
        out.sum().backward()
    assert "\n" not in str(refused.value)


def test_lightning_reports_adjoint_and_counts_rows():
    def circuit(inputs, weights):
        qml.RY(inputs[..., 0], wires=0)
        return qml.expval(qml.Z(0))

    run = make_executor(circuit, 1, Backend(name="lightning.qubit"))
    run(*batch(3, 2))
    assert run.diff_method == "adjoint" and run.stats.circuits == 6
