"""Circuits against hand calculations, PennyLane's own templates and a Qiskit statevector."""

import numpy as np
import pennylane as qml
import pytest

from qepi.circuits import ANSATZE, ENCODINGS, build_circuit, get_ansatz, get_encoding
from qepi.config import Circuit


def _state(qfunc, n_qubits, *args):
    dev = qml.device("default.qubit", wires=n_qubits)

    @qml.qnode(dev)
    def circuit():
        qfunc(*args)
        return qml.state()

    return np.asarray(circuit())


def _expvals(spec, inputs, weights):
    dev = qml.device("default.qubit", wires=spec.n_qubits)
    return np.asarray(qml.QNode(spec.qfunc, dev)(inputs, weights))


class TestHandComputedValues:
    def test_angle_encoding_gives_cosines(self):
        x = np.array([0.3, -1.1, 2.0])
        spec = build_circuit(Circuit(n_qubits=3, ansatz="hardware_efficient", n_layers=1))
        weights = np.zeros(spec.weight_shapes["weights"])
        # RY(x) then RY(0), RZ(0) and a CZ ladder: <Z_i> = cos(x_i)
        np.testing.assert_allclose(_expvals(spec, x, weights), np.cos(x), atol=1e-12)

    def test_hardware_efficient_adds_ry_angles(self):
        x = np.array([0.4, 0.9])
        spec = build_circuit(Circuit(n_qubits=2, ansatz="hardware_efficient", n_layers=1))
        w = np.random.default_rng(0).uniform(0, 2 * np.pi, spec.weight_shapes["weights"])
        # after RY(x) RY(w): RZ and the CZ ladder commute with Z, so <Z_i> = cos(x_i + w_i)
        expected = np.cos(x + w[0, :, 0])
        np.testing.assert_allclose(_expvals(spec, x, w), expected, atol=1e-12)

    def test_iqp_encoding_state(self):
        x0, x1 = 0.7, -0.2
        state = _state(get_encoding("iqp"), 2, np.array([x0, x1]), [0, 1])
        # H|0>H|0> = uniform; RZ(x) and IsingZZ(x0 x1) are diagonal phases exp(-i angle * z / 2)
        z = np.array([1, -1])
        z0, z1 = np.meshgrid(z, z, indexing="ij")
        expected = 0.5 * np.exp(-0.5j * (x0 * z0 + x1 * z1 + x0 * x1 * z0 * z1)).ravel()
        np.testing.assert_allclose(state, expected, atol=1e-12)

    def test_basic_entangler_cnot_flips_second_qubit(self):
        # RX(pi) on wire 0 then CNOT(0,1): |11>, so <Z> = (-1, -1)
        spec = build_circuit(Circuit(n_qubits=2, ansatz="basic_entangler", n_layers=1))
        w = np.array([[[np.pi], [0.0]]])
        np.testing.assert_allclose(_expvals(spec, np.zeros(2), w), [-1.0, -1.0], atol=1e-12)


class TestAgainstPennyLaneTemplates:
    @pytest.mark.parametrize("n_qubits, n_layers", [(2, 1), (3, 2), (4, 3)])
    def test_strongly_entangling_equals_template(self, n_qubits, n_layers):
        w = np.random.default_rng(1).uniform(0, 2 * np.pi, (n_layers, n_qubits, 3))
        ours = _state(get_ansatz("strongly_entangling"), n_qubits, w, range(n_qubits))
        theirs = _state(qml.StronglyEntanglingLayers, n_qubits, w, range(n_qubits))
        np.testing.assert_allclose(ours, theirs, atol=1e-12)

    @pytest.mark.parametrize("n_qubits", [2, 3, 4])
    def test_basic_entangler_equals_template(self, n_qubits):
        w = np.random.default_rng(2).uniform(0, 2 * np.pi, (2, n_qubits, 1))
        ours = _state(get_ansatz("basic_entangler"), n_qubits, w, range(n_qubits))
        theirs = _state(qml.BasicEntanglerLayers, n_qubits, w[..., 0], range(n_qubits))
        np.testing.assert_allclose(ours, theirs, atol=1e-12)


class TestAgainstQiskit:
    """Qiskit orders qubits little-endian: PennyLane wire i is Qiskit qubit n-1-i."""

    @staticmethod
    def _qiskit_state(build, n_qubits):
        from qiskit import QuantumCircuit
        from qiskit.quantum_info import Statevector

        qc = QuantumCircuit(n_qubits)
        build(qc, lambda wire: n_qubits - 1 - wire)
        return np.asarray(Statevector(qc).data)

    def test_iqp_encoding_with_sim14(self):
        n = 3
        rng = np.random.default_rng(3)
        x = rng.uniform(-1, 1, n)
        w = rng.uniform(0, 2 * np.pi, (1, n, 4))

        def ours():
            get_encoding("iqp")(x, range(n))
            get_ansatz("sim14")(w, range(n))

        def build(qc, q):
            for i in range(n):
                qc.h(q(i))
            for i in range(n):
                qc.rz(x[i], q(i))
            for i in range(n - 1):
                qc.rzz(x[i] * x[i + 1], q(i), q(i + 1))
            for i in range(n):
                qc.ry(w[0, i, 0], q(i))
            for i in reversed(range(n)):
                qc.crx(w[0, i, 1], q(i), q((i + 1) % n))
            for i in range(n):
                qc.ry(w[0, i, 2], q(i))
            for i in [n - 1, *range(n - 1)]:
                qc.crx(w[0, i, 3], q(i), q((i - 1) % n))

        np.testing.assert_allclose(_state(ours, n), self._qiskit_state(build, n), atol=1e-12)


class TestShapesAndRegistry:
    @pytest.mark.parametrize("name", list(ANSATZE))
    def test_each_ansatz_owns_its_shape(self, name):
        ansatz = get_ansatz(name)
        shape = ansatz.shape(2, 3)
        assert shape[:2] == (2, 3)
        ansatz.validate(np.zeros(shape), 3)
        ansatz.validate(np.zeros((5, *shape)), 3)  # a leading batch dimension is allowed
        with pytest.raises(ValueError, match=name):
            ansatz.validate(np.zeros((2, 4, shape[-1])), 3)

    def test_unknown_names_list_the_known_ones(self):
        with pytest.raises(ValueError, match="strongly_entangling"):
            get_ansatz("nope")
        with pytest.raises(ValueError, match="angle"):
            get_encoding("nope")

    def test_feature_count_must_match_wires(self):
        spec = build_circuit(Circuit(n_qubits=3))
        with pytest.raises(ValueError, match="3 wires"):
            _expvals(spec, np.zeros(4), np.zeros(spec.weight_shapes["weights"]))

    def test_registry_covers_required_circuits(self):
        assert {"angle", "iqp"} <= set(ENCODINGS)
        assert {"strongly_entangling", "hardware_efficient", "basic_entangler", "sim14"} <= set(ANSATZE)


class TestEntanglingSwitch:
    @pytest.mark.parametrize("encoding", list(ENCODINGS))
    @pytest.mark.parametrize("ansatz", list(ANSATZE))
    def test_no_entanglement_control_has_only_one_qubit_gates(self, encoding, ansatz):
        spec = build_circuit(Circuit(n_qubits=3, encoding=encoding, ansatz=ansatz, entangling=False))
        w = np.random.default_rng(4).uniform(0, 2 * np.pi, spec.weight_shapes["weights"])
        tape = qml.tape.make_qscript(spec.qfunc)(np.full(3, 0.3), w)
        assert all(len(op.wires) == 1 for op in tape.operations)
        full = build_circuit(Circuit(n_qubits=3, encoding=encoding, ansatz=ansatz))
        full_tape = qml.tape.make_qscript(full.qfunc)(np.full(3, 0.3), w)
        assert any(len(op.wires) > 1 for op in full_tape.operations)

    def test_reupload_encodes_before_every_layer(self):
        spec = build_circuit(Circuit(n_qubits=2, ansatz="basic_entangler", n_layers=3, reupload=True))
        w = np.zeros(spec.weight_shapes["weights"])
        tape = qml.tape.make_qscript(spec.qfunc)(np.array([0.1, 0.2]), w)
        assert [op.name for op in tape.operations].count("RY") == 3 * 2
