"""The torch template simulator against Aer on random templates (hypothesis).

Random circuits of angle gates (affine in one parameter), Clifford and non-Clifford constant
gates on 1-3 qubits, with and without noise (depolarizing, amplitude damping, thermal
relaxation, Pauli channels; on all qubits or on chosen ones): the outcome probabilities of
the measured qubits agree with Aer's statevector / density-matrix method to 1e-10. This
covers every compilation path of :mod:`qepi.backends.torchsim`: fused one-qubit products
(one qubit at a time, or several as one layer), composed index maps (permutations with phases, Clifford transfer matrices with Pauli noise),
dense multi-qubit matrices and channels.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qepi.backends import torchsim
from qepi.backends.torchsim import TorchTemplateRunner

EXAMPLES = int(os.environ.get("QEPI_FUZZ_EXAMPLES", "40"))
ANGLE_GATES = {"rx": 1, "ry": 1, "rz": 1, "p": 1, "rxx": 2, "ryy": 2, "rzz": 2, "rzx": 2}
CONSTANT_GATES = {"h": 1, "s": 1, "sdg": 1, "x": 1, "y": 1, "z": 1, "sx": 1, "t": 1,
                  "cx": 2, "cz": 2, "swap": 2, "ecr": 2, "cy": 2, "ccx": 3}  # gates Aer's density matrix runs


@st.composite
def templates(draw):
    n = draw(st.integers(1, 4))
    n_params = draw(st.integers(1, 3))
    ops = []
    for _ in range(draw(st.integers(1, 14))):
        table = draw(st.sampled_from([ANGLE_GATES, CONSTANT_GATES]))
        name = draw(st.sampled_from(sorted(g for g, k in table.items() if k <= n)))
        qubits = draw(st.permutations(range(n)))[:table[name]]
        angle = None
        if table is ANGLE_GATES:
            angle = (draw(st.integers(0, n_params - 1)), draw(st.sampled_from([1.0, -0.5, 2.0])),
                     draw(st.floats(-3, 3)))
        ops.append((name, tuple(qubits), angle))
    measured = draw(st.permutations(range(n)))[:draw(st.integers(1, n))]
    noise = draw(st.sampled_from(["none", "depolarizing", "damping", "thermal", "pauli", "local"]))
    return n, n_params, ops, list(measured), noise


def _build(n, n_params, ops, measured):
    import qiskit_aer  # noqa: F401  (adds save_probabilities)
    from qiskit import QuantumCircuit
    from qiskit.circuit import Parameter

    params = [Parameter(f"t{j}") for j in range(n_params)]
    qc = QuantumCircuit(n)
    for name, qubits, angle in ops:
        if angle is None:
            getattr(qc, name)(*qubits)
        else:
            j, a, b = angle
            getattr(qc, name)(a * params[j] + b, *qubits)
    qc.save_probabilities(measured, label="p")
    return qc, params


def _noise_model(kind):
    from qiskit_aer.noise import (NoiseModel, amplitude_damping_error, depolarizing_error,
                                  pauli_error, thermal_relaxation_error)

    if kind == "none":
        return None
    one = list(ANGLE_GATES)[:4] + [g for g, k in CONSTANT_GATES.items() if k == 1]
    two = [g for g, k in {**ANGLE_GATES, **CONSTANT_GATES}.items() if k == 2]
    model = NoiseModel()
    if kind == "depolarizing":
        model.add_all_qubit_quantum_error(depolarizing_error(0.03, 1), one)
        model.add_all_qubit_quantum_error(depolarizing_error(0.08, 2), two)
    elif kind == "damping":
        model.add_all_qubit_quantum_error(amplitude_damping_error(0.1), one)
        model.add_all_qubit_quantum_error(amplitude_damping_error(0.05).tensor(
            amplitude_damping_error(0.02)), two)
    elif kind == "thermal":
        model.add_all_qubit_quantum_error(thermal_relaxation_error(50, 40, 3), one)
        model.add_all_qubit_quantum_error(thermal_relaxation_error(50, 30, 8).expand(
            thermal_relaxation_error(40, 20, 8)), two)
    elif kind == "pauli":
        model.add_all_qubit_quantum_error(pauli_error([("X", 0.02), ("Z", 0.05), ("I", 0.93)]), one)
        model.add_all_qubit_quantum_error(pauli_error([("XZ", 0.04), ("YY", 0.01), ("II", 0.95)]), two)
    else:  # errors on chosen qubits replace the all-qubit error there
        model.add_all_qubit_quantum_error(depolarizing_error(0.02, 1), one)
        model.add_quantum_error(amplitude_damping_error(0.2), one, [0])
        model.add_quantum_error(depolarizing_error(0.1, 2), two, [0, 1])
    return model


def _aer_probabilities(qc, params, values, model):
    from qiskit_aer import AerSimulator

    sim = AerSimulator(method="density_matrix" if model else "statevector", noise_model=model)
    binds = [{p: values[:, j].tolist() for j, p in enumerate(params) if p in qc.parameters}]
    if not qc.parameters:
        probs = sim.run(qc, shots=1).result().data(0)["p"]
        return np.repeat(np.asarray(probs)[None], len(values), axis=0)
    result = sim.run([qc], parameter_binds=binds, shots=1).result()
    return np.stack([result.data(r)["p"] for r in range(len(values))])


@pytest.mark.fuzz
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(template=templates(), seed=st.integers(0, 2**16), layers=st.booleans())
def test_random_templates_agree_with_aer(template, seed, layers, monkeypatch):
    n, n_params, ops, measured, noise = template
    # one-qubit steps on several qubits as one layer at any size, or never
    monkeypatch.setattr(torchsim, "LAYER_QUBITS", range(2, 20) if layers else range(0))
    qc, params = _build(n, n_params, ops, measured)
    model = _noise_model(noise)
    values = np.random.default_rng(seed).uniform(-np.pi, np.pi, (3, n_params))
    got = TorchTemplateRunner([qc], params, model).probabilities(values)[0]
    np.testing.assert_allclose(got, _aer_probabilities(qc, params, values, model), atol=1e-10,
                               rtol=0)


def test_many_rows_are_simulated_in_blocks_with_the_same_result():
    """More rows than one block holds: the blocks' results are joined in row order."""
    qc, params = _build(3, 1, [("ry", (0,), (0, 1.0, 0.0)), ("cx", (0, 1), None),
                               ("rzz", (1, 2), (0, 0.5, 0.3))], [2, 0])
    model = _noise_model("depolarizing")
    values = np.linspace(-3, 3, 40)[:, None]  # (40, 1)
    whole = TorchTemplateRunner([qc], params, model).probabilities(values)[0]
    original = torchsim.BLOCK_ENTRIES
    try:
        torchsim.BLOCK_ENTRIES = 7 * 4**3  # 7 rows per block
        blocks = TorchTemplateRunner([qc], params, model).probabilities(values)[0]
    finally:
        torchsim.BLOCK_ENTRIES = original
    np.testing.assert_allclose(blocks, whole, atol=1e-14, rtol=0)
    np.testing.assert_allclose(whole, _aer_probabilities(qc, params, values, model), atol=1e-10,
                               rtol=0)
