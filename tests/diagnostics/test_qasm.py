"""OpenQASM 3 export, loaded back with Qiskit: the same expectation values as default.qubit."""

import json

import numpy as np
import pytest
import torch
from qiskit import qasm3
from qiskit.quantum_info import SparsePauliOp, Statevector

from qepi.circuits import get_ansatz
from qepi.config import Config, update
from qepi.diagnostics.qasm import circuit_qasm, export_model_qasm, layer_qasm, symbols
from qepi.diagnostics.states import circuit_states
from qepi.models import HybridTransformer, InputSpec


def z_expectations(qasm_text: str, values: dict[str, float]) -> np.ndarray:
    """<Z_i> of every qubit of an exported circuit, by Qiskit's Statevector."""
    qc = qasm3.loads(qasm_text)
    qc.remove_final_measurements()
    qc = qc.assign_parameters({p: values[p.name] for p in qc.parameters})
    state = Statevector(qc)
    n = qc.num_qubits
    # Qiskit labels are little-endian: qubit i is the i-th letter from the right
    return np.array([state.expectation_value(SparsePauliOp("I" * (n - 1 - i) + "Z" + "I" * i)).real
                     for i in range(n)])


@pytest.mark.parametrize("encoding,ansatz", [("angle", "strongly_entangling"), ("iqp", "sim14"),
                                             ("iqp", "hardware_efficient")])
def test_trained_model_export_gives_the_same_expectation_values(tmp_path, encoding, ansatz):
    cfg = update(Config(), circuit={"n_qubits": 3, "n_layers": 2, "encoding": encoding, "ansatz": ansatz,
                                    "reupload": ansatz == "sim14"},
                 model={"d_model": 4, "n_heads": 1, "d_ff": 8})
    torch.manual_seed(1)
    model = HybridTransformer(cfg, InputSpec(seq_len=3, n_classes=2, vocab_size=4))
    paths = export_model_qasm(model, tmp_path)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert [m["file"] for m in manifest] == [p.name for p in paths]
    assert len(paths) == 1 + 3  # embedding + Q, K, V of one head
    angles = torch.rand(2, 3, 3, dtype=torch.float64) * 2 - 1  # (N, K, F) for the attention core
    layer = model.blocks[0].attention.core.layer
    expected = layer(angles).detach().numpy()  # (N, K, 3) on default.qubit
    for k in range(3):
        text = (tmp_path / f"blocks.0.attention.core.layer.copy{k}.qasm").read_text()
        for row in range(2):
            values = {f"x_{i}": float(angles[row, k, i]) for i in range(3)}
            assert z_expectations(text, values) == pytest.approx(expected[row, k], abs=1e-10)


def test_layer_qasm_declares_inputs_and_measures(tmp_path):
    cfg = update(Config(), circuit={"n_qubits": 2, "n_layers": 1})
    model = HybridTransformer(cfg, InputSpec(seq_len=2, n_classes=2, vocab_size=2))
    text = layer_qasm(model.embedding.core.layer)
    assert text.startswith("// qepi QuantumLayer")
    assert "input float[64] x_0;" in text and "input float[64] x_1;" in text
    assert "measure" in text and "w_" not in text  # weights are bound, not free
    with pytest.raises(ValueError, match="copy"):
        layer_qasm(model.embedding.core.layer, copy=1)


def test_symbolic_ansatz_matches_default_qubit_state():
    ansatz = get_ansatz("sim14")
    shape = ansatz.shape(1, 3)
    text = circuit_qasm(lambda w: ansatz(w, range(3)), 3, symbols("w", shape))
    weights = np.random.default_rng(0).uniform(0, 2 * np.pi, shape)
    qc = qasm3.loads(text)
    qc = qc.assign_parameters(
        {p: weights[tuple(int(i) for i in p.name.split("_")[1:])] for p in qc.parameters})
    expected = circuit_states(lambda w: ansatz(w, range(3)), 3, weights)[0]
    # Qiskit orders amplitudes little-endian: reverse the qubits to compare with PennyLane
    got = np.asarray(Statevector(qc).reverse_qargs().data)
    assert abs(np.vdot(expected, got)) == pytest.approx(1.0, abs=1e-10)
