"""Any PennyLane gate and every supported measurement on the aer engine, against
default.qubit (values and gradients w.r.t. inputs, weights and observable coefficients),
on both of Aer's call paths."""

from __future__ import annotations

import numpy as np
import pennylane as qml
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qepi.backends.aer import AerExecutor
from qepi.compat.aer import private_path_available
from qepi.config import Backend
from qepi.errors import UserError

F64 = torch.float64
N_QUBITS = 3


def reference(circuit, x, w):
    """default.qubit with backprop, row by row, outputs flattened as TorchLayer does."""
    qnode = qml.QNode(circuit, qml.device("default.qubit", wires=N_QUBITS), interface="torch",
                      diff_method="backprop")
    rows = []
    for r in range(x.shape[0]):
        results = qnode(x[r, 0], w[0])
        results = results if isinstance(results, (list, tuple)) else [results]
        rows.append(torch.cat([torch.atleast_1d(v).to(F64) for v in results]))
    return torch.stack(rows)[:, None]  # (N, 1, n_outputs)


def values_and_grads(run, x, w):
    x = x.detach().clone().requires_grad_(True)
    w = w.detach().clone().requires_grad_(True)
    y = run(x, w)
    scale = torch.linspace(0.5, 1.5, y.shape[-1], dtype=F64)
    gx, gw = torch.autograd.grad((y * scale).sum(), [x, w])
    return y.detach(), gx, gw


def assert_matches_default_qubit(circuit, x, w, backend=Backend(name="aer"), path="auto",
                                 atol=1e-8, want_fn=None):
    """Values and gradients of ``circuit`` on aer equal default.qubit's (or ``want_fn``'s)."""
    executor = AerExecutor(circuit, N_QUBITS, backend, path=path)
    got = values_and_grads(lambda x, w: executor(x, {"weights": w}), x, w)
    want = values_and_grads(want_fn or (lambda x, w: reference(circuit, x, w)), x, w)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, atol=atol, rtol=0)
    return executor


def _herm(w):
    """A 2x2 Hermitian matrix from four reals (torch, differentiable)."""
    return torch.stack([torch.stack([w[0] + 0j, w[1] + 1j * w[2]]),
                        torch.stack([w[1] - 1j * w[2], w[3] + 0j])])


def _unitary(n_wires: int, seed: int):
    from scipy.stats import unitary_group

    return unitary_group.rvs(2**n_wires, random_state=seed)


GATES = {
    "ISWAP": lambda w: qml.ISWAP(wires=[0, 1]),
    "SISWAP": lambda w: qml.SISWAP(wires=[1, 2]),
    "SQISW": lambda w: qml.SQISW(wires=[2, 0]),
    "ECR": lambda w: qml.ECR(wires=[0, 2]),
    "CSWAP": lambda w: qml.CSWAP(wires=[2, 0, 1]),
    "CH": lambda w: qml.CH(wires=[1, 0]),
    "CRot": lambda w: qml.CRot(w[0], w[1], w[2], wires=[2, 1]),
    "ControlledPhaseShift": lambda w: qml.ControlledPhaseShift(w[0], wires=[0, 1]),
    "IsingXY": lambda w: qml.IsingXY(w[1], wires=[0, 1]),
    "PSWAP": lambda w: qml.PSWAP(w[0], wires=[0, 2]),
    "PauliRot": lambda w: qml.PauliRot(w[0], "XYZ", wires=[0, 1, 2]),
    "U2": lambda w: qml.U2(w[0], w[1], wires=1),
    "SingleExcitation": lambda w: qml.SingleExcitation(w[0], wires=[0, 1]),
    "ctrl(ISWAP)": lambda w: qml.ctrl(qml.ISWAP(wires=[0, 1]), control=2),
    "ctrl(RX) on 2 controls": lambda w: qml.ctrl(qml.RX(w[0], wires=0), control=[1, 2],
                                                 control_values=[1, 0]),
    "ctrl(IsingXX)": lambda w: qml.ctrl(qml.IsingXX(w[0], wires=[0, 1]), control=2),
    "adjoint(ISWAP)": lambda w: qml.adjoint(qml.ISWAP(wires=[1, 2])),
    "adjoint(SISWAP)": lambda w: qml.adjoint(qml.SISWAP(wires=[1, 2])),
    "adjoint(Rot)": lambda w: qml.adjoint(qml.Rot(w[0], w[1], w[2], wires=1)),
    "adjoint(SX)": lambda w: qml.adjoint(qml.SX(0)),
    "MultiControlledX": lambda w: qml.MultiControlledX(wires=[0, 1, 2], control_values=[0, 1]),
    "CCZ": lambda w: qml.CCZ(wires=[0, 1, 2]),
    "QFT": lambda w: qml.QFT(wires=[0, 1, 2]),
    "DiagonalQubitUnitary (trainable)": lambda w: qml.DiagonalQubitUnitary(
        torch.exp(1j * w[:4]), wires=[0, 1]),
    "QubitUnitary 1 wire (trainable)": lambda w: qml.QubitUnitary(
        torch.linalg.matrix_exp(1j * _herm(w)), wires=0),
    "QubitUnitary 2 wires (constant)": lambda w: qml.QubitUnitary(_unitary(2, 1), wires=[2, 0]),
    "QubitUnitary 3 wires (constant)": lambda w: qml.QubitUnitary(_unitary(3, 2),
                                                                 wires=[1, 0, 2]),
    "ControlledQubitUnitary (trainable)": lambda w: qml.ControlledQubitUnitary(
        torch.linalg.matrix_exp(1j * _herm(w)), wires=[2, 1]),
    "BlockEncode (no decomposition: its matrix)": lambda w: qml.BlockEncode(
        _unitary(1, 3)[:1, :2] * 0.8, wires=[1, 0]),
    "ctrl(BlockEncode)": lambda w: qml.ctrl(qml.BlockEncode(_unitary(1, 4)[:1, :2] * 0.8,
                                                            wires=[0, 2]), control=1),
}


def _gate_circuit(gate):
    def circuit(inputs, weights):
        for q in range(N_QUBITS):
            qml.RY(inputs[..., q], wires=q)
            qml.RZ(weights[q + 4], wires=q)
        gate(weights)
        qml.CNOT(wires=[0, 1])
        return [qml.expval(qml.PauliZ(0)), qml.expval(qml.PauliX(1) @ qml.PauliY(2)),
                qml.expval(qml.PauliY(0))]
    return circuit


class TestGates:
    @pytest.mark.parametrize("name", list(GATES))
    def test_gate_matches_default_qubit(self, name):
        gen = torch.Generator().manual_seed(len(name))
        x = torch.rand(2, 1, N_QUBITS, generator=gen, dtype=F64)
        w = torch.rand(1, 7, generator=gen, dtype=F64)
        assert_matches_default_qubit(_gate_circuit(GATES[name]), x, w)

    def test_qubit_unitary_from_inputs(self):
        def circuit(inputs, weights):
            h = torch.stack([torch.stack([inputs[..., 0] + 0j, weights[0] + 1j * inputs[..., 1]]),
                             torch.stack([weights[0] - 1j * inputs[..., 1], -inputs[..., 0] + 0j])])
            h = torch.movedim(h, (0, 1), (-2, -1))  # (N, 2, 2), or (2, 2) for one row
            qml.QubitUnitary(torch.linalg.matrix_exp(1j * h), wires=1)
            qml.CNOT(wires=[1, 2])
            return [qml.expval(qml.PauliZ(2)), qml.expval(qml.PauliX(1))]

        gen = torch.Generator().manual_seed(4)
        assert_matches_default_qubit(circuit, torch.rand(3, 1, 2, generator=gen, dtype=F64),
                                     torch.rand(1, 1, generator=gen, dtype=F64))

    @pytest.mark.parametrize("controlled", [False, True])
    def test_trainable_multiwire_unitary(self, controlled):
        def gate(w):
            u = torch.linalg.matrix_exp(1j * torch.kron(_herm(w), _herm(w.flip(0))))
            if controlled:
                return qml.ControlledQubitUnitary(u, wires=[2, 0, 1])
            return qml.QubitUnitary(u, wires=[1, 0])

        gen = torch.Generator().manual_seed(11)
        x = torch.rand(2, 1, N_QUBITS, generator=gen, dtype=F64)
        w = torch.rand(1, 7, generator=gen, dtype=F64)
        assert_matches_default_qubit(_gate_circuit(gate), x, w)

    def test_constant_unitary_close_to_the_identity(self):
        # PennyLane's own two-qubit decomposition of this matrix is off by ~3e-3
        v = _unitary(2, 0)
        u = v @ np.diag(np.exp(1j * np.array([0.0, 4.4e-3, 3.2e-3, 0.0]))) @ v.conj().T
        circuit = _gate_circuit(lambda w: qml.QubitUnitary(u, wires=[0, 2]))
        gen = torch.Generator().manual_seed(13)
        assert_matches_default_qubit(circuit, torch.rand(2, 1, N_QUBITS, generator=gen, dtype=F64),
                                     torch.rand(1, 7, generator=gen, dtype=F64))

    def test_trainable_multiwire_unitary_from_inputs(self):
        def circuit(inputs, weights):  # a broadcast matrix: traced row by row
            eye = torch.eye(2, dtype=F64)
            h = (torch.kron(_herm(weights[:4]), eye)
                 + inputs[..., 0, None, None] * torch.kron(eye, _herm(weights[1:5])))  # (N, 4, 4)
            qml.RY(inputs[..., 1], wires=2)
            qml.QubitUnitary(torch.linalg.matrix_exp(1j * h), wires=[2, 0])
            return [qml.expval(qml.PauliZ(2) @ qml.PauliX(0)), qml.probs(wires=[0])]

        gen = torch.Generator().manual_seed(12)
        assert_matches_default_qubit(circuit, torch.rand(3, 1, 2, generator=gen, dtype=F64),
                                     torch.rand(1, 5, generator=gen, dtype=F64))

    def test_undecomposable_gate_is_named_without_raw_errors(self):
        def circuit(inputs, weights):  # PennyLane cannot decompose a broadcast 2-wire unitary
            qml.QubitUnitary(torch.tensor(np.stack([_unitary(2, 1)] * 2)), wires=[0, 1])
            return [qml.expval(qml.PauliZ(0))]

        run = AerExecutor(circuit, N_QUBITS, Backend(name="aer"))
        with pytest.raises(UserError, match="gate QubitUnitary on wires .* cannot decompose"):
            run(torch.rand(2, 1, 3), {"weights": torch.rand(1, 1)})


def _measured_circuit(measure):
    def circuit(inputs, weights):
        qml.RY(inputs[..., 0], wires=0)
        qml.RX(inputs[..., 1] * weights[0], wires=1)
        qml.CRY(weights[1], wires=[0, 2])
        qml.IsingXX(weights[2], wires=[1, 2])
        qml.Hadamard(0)
        qml.CNOT(wires=[0, 1])
        qml.RY(weights[3], wires=0)
        return measure(inputs, weights)
    return circuit


MEASUREMENTS = {
    "trainable coefficients": lambda x, w: [qml.expval(w[4] * qml.Z(0) + w[5] * qml.Z(1))],
    "coefficients from inputs": lambda x, w: [qml.expval(x[..., 0] * qml.X(0) @ qml.Z(2)
                                                         + 0.5 * qml.Y(1))],
    "Hamiltonian with identity": lambda x, w: [qml.expval(qml.Hamiltonian(
        w[4:6], [qml.Identity(0), qml.X(1) @ qml.X(2)]))],
    "Hermitian from weights": lambda x, w: [qml.expval(qml.Hermitian(_herm(w[2:6]), wires=1))],
    "Hermitian on 2 wires": lambda x, w: [qml.expval(qml.Hermitian(
        torch.kron(_herm(w[2:6]), _herm(w[:4])), wires=[2, 0]))],
    "Projector": lambda x, w: [qml.expval(qml.Projector([1, 0], wires=[0, 2]))],
    "var of a word": lambda x, w: [qml.var(qml.X(0) @ qml.Y(1))],
    "var of a non-commuting sum": lambda x, w: [qml.var(w[4] * qml.X(0) @ qml.X(1)
                                                        + w[5] * qml.Z(0) @ qml.Z(1) + qml.Y(2))],
    "var with coefficients from inputs": lambda x, w: [qml.var(x[..., 1] * qml.Z(0) + qml.X(0))],
    "probs of all wires": lambda x, w: [qml.probs()],
    "probs in another order": lambda x, w: [qml.probs(wires=[2, 0])],
    "mixed list": lambda x, w: [qml.probs(wires=[1]), qml.expval(w[4] * qml.Z(1)),
                                qml.var(qml.Z(1) @ qml.Z(0)), qml.probs(wires=[0, 1]),
                                qml.expval(qml.X(2))],
}


class TestMeasurements:
    @pytest.mark.parametrize("name", list(MEASUREMENTS))
    def test_measurement_matches_default_qubit(self, name):
        gen = torch.Generator().manual_seed(len(name))
        x = torch.rand(3, 1, 2, generator=gen, dtype=F64)
        w = torch.rand(1, 6, generator=gen, dtype=F64)
        assert_matches_default_qubit(_measured_circuit(MEASUREMENTS[name]), x, w,
                                     Backend(name="aer", chunk_rows=17))

    @settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(data=st.data())
    def test_random_measurement_lists_match_default_qubit(self, data):
        words = st.text(alphabet="IXYZ", min_size=N_QUBITS, max_size=N_QUBITS)
        wire_sets = st.permutations(range(N_QUBITS)).flatmap(
            lambda p: st.integers(1, N_QUBITS).map(lambda k: p[:k]))
        spec = data.draw(st.lists(st.one_of(
            st.tuples(st.sampled_from(["expval", "var"]), st.lists(words, min_size=1, max_size=3)),
            st.tuples(st.just("probs"), wire_sets)), min_size=1, max_size=3))

        def pauli(word):
            ops = [{"X": qml.X, "Y": qml.Y, "Z": qml.Z}[a](q) for q, a in enumerate(word) if a != "I"]
            return qml.prod(*ops) if ops else qml.Identity(0)

        def observable(i, arg, w):
            return qml.sum(*[w[(i + t) % 6] * pauli(word) for t, word in enumerate(arg)])

        def measure(x, w):
            return [qml.probs(wires=list(arg)) if kind == "probs" else
                    (qml.expval if kind == "expval" else qml.var)(observable(i, arg, w))
                    for i, (kind, arg) in enumerate(spec)]

        def want(x, w):
            """From default.qubit's state: <ψ|M|ψ>, <ψ|M²|ψ> - <ψ|M|ψ>², marginals of |ψ|²."""
            qnode = qml.QNode(_measured_circuit(lambda x, w: qml.state()),
                              qml.device("default.qubit", wires=N_QUBITS), interface="torch")
            rows = []
            for r in range(x.shape[0]):
                psi = qnode(x[r, 0], w[0])  # (2**n,)
                row = []
                for i, (kind, arg) in enumerate(spec):
                    if kind == "probs":
                        p = (psi.abs() ** 2).reshape([2] * N_QUBITS)
                        summed = [q for q in range(N_QUBITS) if q not in arg]
                        p = p.sum(dim=summed) if summed else p
                        kept = sorted(arg)
                        row.append(p.permute([kept.index(q) for q in arg]).reshape(-1))
                        continue
                    m_psi = qml.matrix(observable(i, arg, w[0]), wire_order=range(N_QUBITS)) @ psi
                    mean = (psi.conj() @ m_psi).real
                    value = mean if kind == "expval" else (m_psi.abs() ** 2).sum() - mean**2
                    row.append(value.reshape(1))
                rows.append(torch.cat(row))
            return torch.stack(rows)[:, None]  # (N, 1, n_outputs)

        gen = torch.Generator().manual_seed(data.draw(st.integers(0, 1000)))
        x = torch.rand(2, 1, 2, generator=gen, dtype=F64)
        w = torch.rand(1, 6, generator=gen, dtype=F64)
        assert_matches_default_qubit(_measured_circuit(measure), x, w, want_fn=want)

    def test_readout_error_scales_probs_and_var_consistently(self):
        r = 0.1
        circuit = _measured_circuit(lambda x, w: [qml.probs(wires=[0]), qml.expval(qml.Z(0)),
                                                  qml.var(qml.Z(0))])
        x, w = torch.rand(3, 1, 2, dtype=F64), torch.rand(1, 6, dtype=F64)
        ideal = reference(circuit, x, w)
        y = AerExecutor(circuit, N_QUBITS, Backend(name="aer", noise="depolarizing",
                                                    readout_error=r))(x, {"weights": w})
        p0 = ideal[..., 0] * (1 - r) + ideal[..., 1] * r  # a flipped bit moves probability
        z = (1 - 2 * r) * ideal[..., 2]
        torch.testing.assert_close(y[..., 0], p0, atol=1e-12, rtol=0)
        torch.testing.assert_close(y[..., 2], z, atol=1e-12, rtol=0)
        torch.testing.assert_close(y[..., 3], 1 - z**2, atol=1e-12, rtol=0)

    @pytest.mark.parametrize("measure, message", [
        (lambda x, w: [qml.sample(qml.Z(0))], "measurement SampleMP"),
        (lambda x, w: [qml.probs(op=qml.X(0))], r"probs\(op=...\)"),
        (lambda x, w: [qml.expval(qml.X(0) @ qml.Y(0))], "complex coefficient"),
        (lambda x, w: [qml.expval(qml.Hermitian(np.eye(2**9), wires=range(9)))], "wire"),
    ])
    def test_unsupported_measurement_is_one_user_error(self, measure, message):
        run = AerExecutor(_measured_circuit(measure), N_QUBITS, Backend(name="aer"))
        with pytest.raises(UserError, match=message):
            run(torch.rand(2, 1, 2), {"weights": torch.rand(1, 6)})


class TestPaths:
    """Aer's public run path gives the numbers of the private one (and of default.qubit)."""

    def test_public_path_equals_private_path_and_default_qubit(self):
        circuit = _measured_circuit(MEASUREMENTS["mixed list"])
        gen = torch.Generator().manual_seed(9)
        x = torch.rand(70, 1, 2, generator=gen, dtype=F64)  # > 64 rows: parallel copies
        w = torch.rand(1, 6, generator=gen, dtype=F64)
        public = assert_matches_default_qubit(circuit, x, w, path="public")
        assert public.path == "public"
        assert private_path_available()  # the installed qiskit-aer is a tested release
        private = assert_matches_default_qubit(circuit, x, w, Backend(name="aer", threads=2),
                                               path="private")
        got = [values_and_grads(lambda x, w: run(x, {"weights": w}), x, w)
               for run in (public, private)]
        for a, b in zip(*got):
            torch.testing.assert_close(a, b, atol=1e-12, rtol=0)

    @pytest.mark.parametrize("noise", [
        {"noise": "depolarizing", "depolarizing_1q": 0.05, "depolarizing_2q": 0.1,
         "readout_error": 0.02},
        {"noise": "FakeManilaV2"},
    ])
    def test_paths_agree_under_noise_and_shots(self, noise):
        circuit = _measured_circuit(MEASUREMENTS["mixed list"])
        x, w = torch.rand(4, 1, 2, dtype=F64), torch.rand(1, 6, dtype=F64, requires_grad=True)
        outs = []
        for path in ("public", "private"):
            run = AerExecutor(circuit, N_QUBITS, Backend(name="aer", shots=100, **noise),
                              seed=3, path=path)
            y = run(x, {"weights": w})
            outs.append((y.detach(), torch.autograd.grad(y.sum(), w)[0]))
        torch.testing.assert_close(outs[0], outs[1], atol=1e-12, rtol=0)

    def test_circuit_wider_than_the_fake_device_is_refused(self):
        def circuit(inputs, weights):
            for q in range(6):
                qml.RY(inputs[..., 0], wires=q)
            return [qml.expval(qml.Z(5))]

        run = AerExecutor(circuit, 6, Backend(name="aer", noise="FakeManilaV2"))
        with pytest.raises(UserError, match="FakeManilaV2.*5 qubits"):
            run(torch.rand(1, 1, 1), {"weights": torch.zeros(1, 1)})


def test_versions_outside_the_tested_range_take_the_public_path(monkeypatch):
    import qepi.compat.aer as compat

    monkeypatch.setattr(compat, "installed_version", lambda: (0, 19, 0))
    compat.private_path_available.cache_clear()
    try:
        assert not compat.private_path_available()
        circuit = _measured_circuit(MEASUREMENTS["probs in another order"])
        x, w = torch.rand(2, 1, 2, dtype=F64), torch.rand(1, 6, dtype=F64)
        assert assert_matches_default_qubit(circuit, x, w).path == "public"
    finally:
        compat.private_path_available.cache_clear()


def test_bench_reports_the_public_path_beside_the_private_one(capsys):
    import json

    from qepi.cli import main

    assert main(["bench", "aer", "--qubits", "2", "--layers", "1", "--tokens", "2", "--repeats",
                 "1", "--pennylane-tokens", "0", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["aer_path"] == "private" and report["circuits"] == 2 * (1 + 2 * 6)
    assert report["qepi_step_s"] > 0 and report["qepi_public_step_s"] > 0


@pytest.mark.parametrize("path", ["private", "public"])
def test_aer_failures_are_one_line_errors(path):
    import qiskit_aer  # noqa: F401  (adds QuantumCircuit.save_probabilities)
    from qiskit import QuantumCircuit
    from qiskit.circuit import Gate, Parameter

    from qepi.compat.aer import TemplateRunner, simulation_failure

    theta = Parameter("t0")
    qc = QuantumCircuit(2)
    qc.ry(theta, 0)
    qc.append(Gate("mystery", 1, []), [1])  # qepi never emits a gate Aer lacks: a bug
    qc.save_probabilities([0], label="p")
    with pytest.raises(RuntimeError, match="a qepi bug: .*mystery") as err:
        TemplateRunner([qc], [theta], {"method": "statevector"}, path=path).probabilities(
            np.zeros((2, 1)))
    assert "\n" not in str(err.value) and not isinstance(err.value, UserError)
    memory = simulation_failure("ERROR: Insufficient memory to run circuit circuit-1\nmore")
    assert isinstance(memory, UserError) and "\n" not in str(memory)


def reference_copies(circuit, n_qubits, x, weights):
    """default.qubit with backprop, one row and one copy at a time: (N, K, n_outputs)."""
    qnode = qml.QNode(circuit, qml.device("default.qubit", wires=n_qubits), interface="torch",
                      diff_method="backprop")
    out = torch.empty(x.shape[0], x.shape[1], 0, dtype=F64)
    rows = []
    for r in range(x.shape[0]):
        copies = []
        for c in range(x.shape[1]):
            results = qnode(x[r, c], **{m: w[c] for m, w in weights.items()})
            results = results if isinstance(results, (list, tuple)) else [results]
            copies.append(torch.cat([torch.atleast_1d(v).to(F64) for v in results]))
        rows.append(torch.stack(copies))
    return torch.stack(rows) if rows else out


def assert_copies_match_default_qubit(circuit, n_qubits, x, weights, backend=Backend(name="aer")):
    """K > 1 copies: values and gradients (inputs, every weight) equal default.qubit's."""
    def values_and_all_grads(run):
        xs = x.detach().clone().requires_grad_(True)
        ws = {m: w.detach().clone().requires_grad_(True) for m, w in weights.items()}
        y = run(xs, ws)
        scale = torch.linspace(0.5, 1.5, y.numel(), dtype=F64).reshape(y.shape)
        return [y.detach(), *torch.autograd.grad((y * scale).sum(), [xs, *ws.values()])]

    executor = AerExecutor(circuit, n_qubits, backend)
    got = values_and_all_grads(executor)
    want = values_and_all_grads(lambda xs, ws: reference_copies(circuit, n_qubits, xs, ws))
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, atol=1e-8, rtol=0)
    return executor


def _copies_case(n=3, k=2, features=2, n_weights=4, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(n, k, features, generator=gen, dtype=F64) * 4 - 2
    w = torch.rand(k, n_weights, generator=gen, dtype=F64) * 4 - 2
    return x, {"weights": w}


class TestBatchedTracing:
    """Circuits PennyLane cannot trace for all rows at once are traced copy by copy or row
    by row and still match default.qubit (found by tests/backends/test_fuzz.py)."""

    def test_branch_on_a_weight_with_two_copies(self):
        def circuit(inputs, weights):
            qml.RY(inputs[..., 0], wires=0)
            if weights[..., 0] > 0:  # Python if: one structure per copy
                qml.CRX(weights[..., 1] * inputs[..., 1], wires=[0, 1])
            return [qml.expval(qml.PauliZ(1)), qml.expval(weights[..., 2] * qml.PauliX(0))]

        w = torch.tensor([[0.7, 1.1, -0.4, 0.0], [-0.3, 0.9, 0.6, 0.0]], dtype=F64)
        x, _ = _copies_case()
        run = assert_copies_match_default_qubit(circuit, 2, x, {"weights": w})
        parts = run.segments(x, {"weights": w})
        assert sorted(p.rows.tolist() for p in parts) == [[0, 2, 4], [1, 3, 5]]

    def test_branch_on_an_input_is_traced_row_by_row(self):
        def circuit(inputs, weights):
            qml.RY(weights[..., 0], wires=0)
            if inputs[..., 0] > 0:
                qml.IsingXX(inputs[..., 1] * weights[..., 1], wires=[0, 1])
            return [qml.probs(wires=[1, 0])]

        x, w = _copies_case(n=4, k=2, seed=3)
        assert_copies_match_default_qubit(circuit, 2, x, w)

    @pytest.mark.parametrize("wrapper", ["adjoint", "ctrl"])
    @pytest.mark.parametrize("gate", ["ISWAP", "PSWAP", "SISWAP", "CRot", "U2"])
    def test_wrapped_gates_with_batched_angles(self, gate, wrapper):
        def build(inputs, weights):
            angles = [inputs[..., 1] * weights[..., j] for j in range(3)]
            if gate == "PSWAP":
                return qml.PSWAP(angles[0], wires=[0, 1])
            if gate == "CRot":
                return qml.CRot(*angles, wires=[1, 0])
            if gate == "U2":
                return qml.U2(angles[0], angles[1], wires=1)
            return getattr(qml, gate)(wires=[0, 1])

        def circuit(inputs, weights):
            qml.RY(inputs[..., 0], wires=0)
            qml.RX(weights[..., 3], wires=1)
            if wrapper == "adjoint":
                qml.adjoint(build)(inputs, weights)
            else:
                qml.ctrl(build, control=2, control_values=False)(inputs, weights)
            return [qml.expval(qml.PauliX(0) @ qml.PauliY(1)), qml.expval(qml.PauliZ(1))]

        for n in (1, 2):  # one row: a broadcast dimension of size 1
            x, w = _copies_case(n=n, k=2, seed=len(gate))
            assert_copies_match_default_qubit(circuit, 3, x, w)

    @pytest.mark.parametrize("wrapper", ["none", "adjoint", "ctrl"])
    @pytest.mark.parametrize("n_wires", [1, 2])
    def test_special_unitary(self, n_wires, wrapper):
        def special_unitary(inputs, weights):
            theta = torch.stack(torch.broadcast_tensors(*[
                (inputs[..., j % 2] * weights[..., j % 4]) / (j + 1)
                for j in range(4**n_wires - 1)]), -1)  # (R, 4**n - 1)
            qml.SpecialUnitary(theta, wires=list(range(n_wires)))

        def circuit(inputs, weights):
            qml.RY(inputs[..., 0], wires=0)
            if wrapper == "ctrl":  # a controlled decomposition of PennyLane's zero-angle rotations
                qml.Hadamard(n_wires)
                qml.ctrl(special_unitary, control=n_wires)(inputs, weights)
            elif wrapper == "adjoint":
                qml.adjoint(special_unitary)(inputs, weights)
            else:
                special_unitary(inputs, weights)
            return [qml.expval(qml.PauliX(0)), qml.probs(wires=list(range(n_wires)))]

        for n, k in [(1, 1), (2, 2)]:  # unbatched and batched angles
            x, w = _copies_case(n=n, k=k, seed=n_wires)
            assert_copies_match_default_qubit(circuit, n_wires + 1, x, w)

    def test_split_rows_with_shots_are_reproducible_and_chunk_independent(self):
        def circuit(inputs, weights):
            qml.RY(inputs[..., 0], wires=0)
            if weights[..., 0] > 0:
                qml.CNOT(wires=[0, 1])
            return [qml.expval(qml.PauliZ(1))]

        x = torch.full((4, 2, 1), 1.2, dtype=F64)  # identical rows
        w = torch.tensor([[0.5], [-0.5]], dtype=F64, requires_grad=True)
        outs = []
        for chunk_rows in (1, 1000):
            run = AerExecutor(circuit, 2, Backend(name="aer", shots=64, chunk_rows=chunk_rows),
                              seed=7)
            outs.append(run(x, {"weights": w}).detach())
        torch.testing.assert_close(outs[0], outs[1], atol=0, rtol=0)
        assert (outs[0][:, 1] == 1).all()  # copy 1 has no CNOT: wire 1 stays |0>
        assert len(set(outs[0][:, 0, 0].tolist())) > 1  # identical rows draw independently


class TestObservableMessages:
    def test_hermitian_on_one_wire_is_measured_with_two_copies(self):
        rng = np.random.default_rng(5)
        a = rng.normal(size=(2, 2)) + 1j * rng.normal(size=(2, 2))

        def circuit(inputs, weights):
            qml.RY(inputs[..., 0] * weights[..., 0], wires=0)
            return [qml.expval(qml.Hermitian(a + a.conj().T, wires=0)),
                    qml.var(qml.Hermitian(a + a.conj().T, wires=0))]

        x, w = _copies_case(seed=5)
        assert_copies_match_default_qubit(circuit, 1, x, w)

    def test_refused_matrix_observable_is_named_on_one_line(self):
        def circuit(inputs, weights):
            qml.RY(inputs[..., 0], wires=0)
            return [qml.expval(qml.Hermitian(np.eye(2**9), wires=range(9)))]

        run = AerExecutor(circuit, 9, Backend(name="aer"))
        with pytest.raises(UserError, match=r"observable Hermitian on wires \[0, 1,.*8\]") as err:
            run(torch.rand(2, 2, 1), {"weights": torch.rand(2, 1)})
        assert "\n" not in str(err.value)
