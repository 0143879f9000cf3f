"""Shots and noise on the exact backend, checked against Qiskit Aer.

The torch simulator's exact outcome probabilities are compared with Aer's density-matrix
method run directly (``AerSimulator`` + ``save_probabilities``) on the same templates; the
executor's noisy values and gradients without shots with the aer backend's; shot estimates
with a χ² test against the exact noisy probabilities.
"""

from __future__ import annotations

import numpy as np
import pennylane as qml
import pytest
import torch
from scipy import stats

from qepi.backends import make_executor
from qepi.backends.noisy import NoisyExactExecutor
from qepi.backends.torchsim import TorchTemplateRunner
from qepi.circuits import build_circuit
from qepi.config import Backend, Circuit
from qepi.errors import UserError

DEPOLARIZING = {"noise": "depolarizing", "depolarizing_1q": 0.02, "depolarizing_2q": 0.07,
                "readout_error": 0.03}
NOISES = [{}, DEPOLARIZING, {"noise": "FakeManilaV2"}]
CIRCUITS = [Circuit(n_qubits=2, n_layers=2), Circuit(n_qubits=3, n_layers=1, ansatz="hardware_efficient"),
            Circuit(n_qubits=4, n_layers=1, encoding="iqp", ansatz="sim14")]


def _aer_reference(templates, params, values, noise_model):
    """Aer's exact probabilities of every template (public AerSimulator.run)."""
    from qiskit_aer import AerSimulator

    sim = AerSimulator(method="density_matrix" if noise_model else "statevector",
                       noise_model=noise_model)
    binds = [{p: values[:, j].tolist() for j, p in enumerate(params) if p in qc.parameters}
             for qc in templates]
    result = sim.run(templates, parameter_binds=binds, shots=1).result()
    out, i = [], 0
    for qc in templates:
        count = len(values) if qc.parameters else 1
        probs = np.stack([result.data(i + r)["p"] for r in range(count)])
        out.append(probs if qc.parameters else np.repeat(probs, len(values), axis=0))
        i += count
    return out


def _noise_model(noise):
    from qiskit_aer.noise import NoiseModel, depolarizing_error
    from qiskit_ibm_runtime.fake_provider import FakeManilaV2

    if noise.get("noise") == "FakeManilaV2":
        return FakeManilaV2(), NoiseModel.from_backend(FakeManilaV2())
    model = NoiseModel()
    model.add_all_qubit_quantum_error(depolarizing_error(0.02, 1), ["rx", "ry", "rz", "p", "h", "sdg"])
    model.add_all_qubit_quantum_error(depolarizing_error(0.07, 2), ["cx", "cz", "rzz", "crx"])
    return None, model


@pytest.mark.parametrize("circuit", CIRCUITS, ids=lambda c: f"{c.n_qubits}q-{c.ansatz}-{c.encoding}")
@pytest.mark.parametrize("noise", ["depolarizing", "FakeManilaV2"])
def test_probabilities_agree_with_aer_density_matrix(circuit, noise):
    import qiskit_aer  # noqa: F401  (adds save_probabilities)
    from qiskit import transpile
    from qiskit.circuit import Parameter

    from qepi.backends.translate import gates_to_circuit, trace_gates

    spec = build_circuit(circuit)
    rng = np.random.default_rng(0)
    x = torch.rand(3, circuit.n_qubits, dtype=torch.float64)
    w = {k: torch.rand(*s, dtype=torch.float64) for k, s in spec.weight_shapes.items()}
    traced = trace_gates(spec.qfunc, x, w, circuit.n_qubits)
    params = [Parameter(f"t{j}") for j in range(len(traced.angles))]
    qc = gates_to_circuit(traced, params)
    qc.h(0)  # an X-basis measurement on wire 0
    device, model = _noise_model({"noise": noise})
    measured = list(range(circuit.n_qubits))
    if device is not None:
        qc = transpile(qc, backend=device, optimization_level=0, seed_transpiler=0)
        layout = qc.layout.final_index_layout()
        measured = [layout[q] for q in measured]
    qc.save_probabilities(measured, label="p")
    values = rng.uniform(-np.pi, np.pi, (5, len(params)))
    got = TorchTemplateRunner([qc], params, model).probabilities(values)[0]
    expected = _aer_reference([qc], params, values, model)[0]
    np.testing.assert_allclose(got, expected, atol=1e-10, rtol=0)


def _probs_circuit(inputs, weights):
    qml.AngleEmbedding(inputs, wires=range(3))
    qml.StronglyEntanglingLayers(weights, wires=range(3))
    return [qml.probs(wires=[0, 2]), qml.expval(qml.PauliX(1) @ qml.PauliY(2)),
            qml.var(qml.PauliZ(0) + 0.5 * qml.PauliX(1))]


@pytest.mark.parametrize("noise", NOISES, ids=["ideal", "depolarizing", "FakeManilaV2"])
def test_values_and_gradients_without_shots_match_aer(noise):
    torch.manual_seed(1)
    x = torch.rand(4, 2, 3, dtype=torch.float64)  # (N, K, F)
    w = torch.rand(2, 1, 3, 3, dtype=torch.float64, requires_grad=True)
    results = []
    for name in ("aer", "exact"):
        backend = Backend(name=name, **noise)
        if not noise:  # exact without shots or noise is the compiled simulator: force ours
            run = NoisyExactExecutor(_probs_circuit, 3, backend) if name == "exact" else \
                make_executor(_probs_circuit, 3, backend)
        else:
            run = make_executor(_probs_circuit, 3, backend)
        out = run(x, {"weights": w})
        (grad,) = torch.autograd.grad(out.square().sum(), w)
        results.append((out.detach(), grad))
    if noise:
        assert isinstance(make_executor(_probs_circuit, 3, Backend(name="exact", **noise)),
                          NoisyExactExecutor)
    torch.testing.assert_close(results[1][0], results[0][0], atol=1e-10, rtol=0)
    torch.testing.assert_close(results[1][1], results[0][1], atol=1e-10, rtol=0)


def test_noiseless_values_match_default_qubit():
    torch.manual_seed(2)
    x = torch.rand(3, 1, 3, dtype=torch.float64)
    w = torch.rand(1, 1, 3, 3, dtype=torch.float64)
    out = NoisyExactExecutor(_probs_circuit, 3, Backend(name="exact"))(x, {"weights": w})
    qnode = qml.QNode(_probs_circuit, qml.device("default.qubit", wires=3), interface="torch")
    for r in range(3):
        expected = torch.cat([torch.atleast_1d(t) for t in qnode(x[r, 0], w[0])])
        torch.testing.assert_close(out[r, 0], expected, atol=1e-12, rtol=0)


@pytest.mark.parametrize("noise", [DEPOLARIZING, {"noise": "FakeManilaV2"}],
                         ids=["depolarizing", "FakeManilaV2"])
def test_shot_counts_pass_chi2_against_exact_noisy_probabilities(noise):
    shots, rows = 400, 60
    x = torch.full((rows, 1, 3), 0.7, dtype=torch.float64)  # identical rows, separate draws
    w = torch.linspace(-1, 1, 9, dtype=torch.float64).reshape(1, 1, 3, 3)
    exact = make_executor(_probs_circuit, 3, Backend(name="exact", **noise))
    sampled = make_executor(_probs_circuit, 3, Backend(name="exact", shots=shots, **noise), seed=3)
    p = exact(x, {"weights": w})[0, 0, :4].numpy()  # probs of wires (0, 2)
    counts = np.rint(sampled(x, {"weights": w})[:, 0, :4].numpy() * shots).sum(axis=0)
    chi2 = ((counts - rows * shots * p) ** 2 / (rows * shots * p)).sum()
    assert stats.chi2.sf(chi2, df=3) > 1e-4


def test_shot_gradients_are_unbiased_parameter_shift_estimates():
    x = torch.full((200, 1, 3), 0.3, dtype=torch.float64)
    w = torch.linspace(-1, 1, 9, dtype=torch.float64).reshape(1, 1, 3, 3).requires_grad_(True)

    def grad(run):
        (g,) = torch.autograd.grad(run(x, {"weights": w})[:, 0, 4].mean(), w)
        return g

    exact = grad(make_executor(_probs_circuit, 3, Backend(name="exact", **DEPOLARIZING)))
    sampled = make_executor(_probs_circuit, 3, Backend(name="exact", shots=100, **DEPOLARIZING))
    estimate = grad(sampled)
    # each of 200 rows: (f(+) - f(-)) / 2 of 100-shot ±1 values: standard error <= 1/sqrt(400)/sqrt(2)
    assert (estimate - exact).abs().max() < 5 * 0.05 / np.sqrt(2)
    assert sampled.stats.shots == sampled.stats.circuits * 100


def test_refusals_name_the_setting():
    spec = build_circuit(Circuit(n_qubits=2, n_layers=1))
    for backend, match in [(Backend(name="exact", shots=10, dtype="float32"), "backend.dtype"),
                           (Backend(name="exact", noise="depolarizing", strategy="fold"),
                            "backend.strategy"),
                           (Backend(name="exact", noise="Nowhere"), "backend.noise"),
                           (Backend(name="exact", readout_error=0.1), "backend.readout_error")]:
        with pytest.raises(UserError, match=match):
            make_executor(spec.qfunc, 2, backend)


def test_noise_model_errors_that_cannot_be_converted_are_refused():
    from qiskit_aer.noise import NoiseModel, ReadoutError, depolarizing_error

    from qepi.backends.torchsim import noise_channels

    model = NoiseModel()
    model.add_all_qubit_quantum_error(depolarizing_error(0.1, 1), ["sx"])
    model.add_readout_error(ReadoutError([[0.9, 0.1], [0.2, 0.8]]), [0])
    local, default = noise_channels(model)
    assert set(default) == {"sx"} and not local  # readout stays a confusion matrix
    import qiskit_aer  # noqa: F401
    from qiskit import QuantumCircuit

    qc = QuantumCircuit(1)
    qc.reset(0)
    qc.save_probabilities([0], label="p")
    with pytest.raises(UserError, match="reset"):
        TorchTemplateRunner([qc], [], model)


ANGLES = (0.9, -1.3, 2.1)


def _chain(inputs):
    qml.RY(ANGLES[0], wires=0)
    qml.RX(ANGLES[1], wires=1)
    qml.CNOT(wires=[0, 1])
    qml.RY(ANGLES[2], wires=2)
    qml.CNOT(wires=[1, 2])
    return qml.probs(wires=[0, 1, 2])


def _aer_counts(noise: str, shots: int) -> np.ndarray:
    """The same circuit measured by Aer's own sampler (gate noise and readout error in Aer's
    noise model), as counts in PennyLane's outcome order (wire 0 most significant)."""
    from qiskit import QuantumCircuit, transpile
    from qiskit_aer import AerSimulator
    from qiskit_aer.noise import NoiseModel, ReadoutError, depolarizing_error
    from qiskit_ibm_runtime.fake_provider import FakeManilaV2

    qc = QuantumCircuit(3, 3)
    qc.ry(ANGLES[0], 0)
    qc.rx(ANGLES[1], 1)
    qc.cx(0, 1)
    qc.ry(ANGLES[2], 2)
    qc.cx(1, 2)
    qc.measure([0, 1, 2], [0, 1, 2])
    if noise == "FakeManilaV2":
        model = NoiseModel.from_backend(FakeManilaV2())
        qc = transpile(qc, backend=FakeManilaV2(), optimization_level=0, seed_transpiler=0)
    else:
        model = NoiseModel()
        model.add_all_qubit_quantum_error(depolarizing_error(0.05, 1), ["rx", "ry"])
        model.add_all_qubit_quantum_error(depolarizing_error(0.1, 2), ["cx"])
        model.add_all_qubit_readout_error(ReadoutError([[0.96, 0.04], [0.04, 0.96]]))
    counts = AerSimulator(noise_model=model, seed_simulator=11).run(qc, shots=shots).result().get_counts()
    out = np.zeros(8)
    for key, count in counts.items():  # key "c2 c1 c0"
        out[int(key[::-1], 2)] += count  # reversed: c0 (wire 0) most significant
    return out


@pytest.mark.parametrize("noise", ["depolarizing", "FakeManilaV2"])
def test_shot_counts_come_from_the_same_distribution_as_aers_own_sampling(noise):
    """A two-sample χ² test (homogeneity) between exact's sampled counts and Aer's own
    sampler on the same noisy circuit: Aer's noise model, transpilation and readout errors
    on one side, qepi's conversion of them and its ShotSampler on the other."""
    settings = ({"noise": "depolarizing", "depolarizing_1q": 0.05, "depolarizing_2q": 0.1,
                 "readout_error": 0.04} if noise == "depolarizing" else {"noise": noise})
    rows, shots = 100, 200
    run = make_executor(_chain, 3, Backend(name="exact", shots=shots, **settings), seed=5)
    ours = np.rint(run(torch.zeros(rows, 1, 1, dtype=torch.float64), {})[:, 0].numpy()
                   * shots).sum(axis=0)  # (8,) counts over rows x shots
    theirs = _aer_counts(noise, rows * shots)
    table = np.stack([ours, theirs])[:, (ours + theirs) > 0]
    assert stats.chi2_contingency(table).pvalue > 1e-4
    # and the test can fail: Aer without its noise is far from exact's noisy counts
    ideal = np.rint(make_executor(_chain, 3, Backend(name="exact"))(
        torch.zeros(1, 1, 1, dtype=torch.float64), {})[0, 0].numpy() * rows * shots)
    assert stats.chi2_contingency(np.stack([ours, ideal])[:, (ours + ideal) > 0]).pvalue < 1e-6
