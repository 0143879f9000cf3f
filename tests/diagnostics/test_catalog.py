"""The committed circuits/ catalog is what `qepi circuits export circuits/` writes today."""

import json
from pathlib import Path

import numpy as np
import pennylane as qml
import pytest
from qiskit import qasm3
from qiskit.quantum_info import Statevector

from qepi.circuits import ANSATZE, ENCODINGS, Ansatz
from qepi.diagnostics.catalog import catalog_entries, check_catalog, export_catalog
from qepi.diagnostics.qasm import circuit_qasm, symbols
from qepi.diagnostics.states import circuit_states

CATALOG = Path(__file__).resolve().parents[2] / "circuits"
SMALL = {"n_qubits": 2, "n_layers": 1, "n_pairs": 100, "n_samples": 50}


def test_committed_catalog_is_up_to_date():
    stale = check_catalog(CATALOG)
    assert not stale, f"circuits/ is out of date ({', '.join(stale)}): run `qepi circuits export circuits/`"


def test_catalog_lists_every_shipped_circuit():
    data = json.loads((CATALOG / "catalog.json").read_text())
    assert {(r["kind"], r["name"]) for r in data["circuits"]} == (
        {("encoding", e) for e in ENCODINGS} | {("ansatz", a) for a in ANSATZE})
    readme = (CATALOG / "README.md").read_text()
    for row in data["circuits"]:
        assert f"| {row['name']} | {row['kind']} |" in readme
        assert 0.0 <= row["entangling_capability"] <= 1.0
        assert row["expressibility"] < data["idle_expressibility"]


@pytest.mark.parametrize("change", ["edit", "delete", "extra"])
def test_check_detects_a_stale_catalog(tmp_path, change):
    export_catalog(tmp_path, **SMALL)
    assert check_catalog(tmp_path, **SMALL) == []
    qasm = tmp_path / "ansatz-sim14.qasm"
    if change == "edit":
        qasm.write_text(qasm.read_text().replace("cx q[", "cz q[", 1))
    elif change == "delete":
        qasm.unlink()
    else:
        (tmp_path / "ansatz-old.qasm").write_text("OPENQASM 3.0;\n")
    assert check_catalog(tmp_path, **SMALL) != []


def _rx_only(w, wires, entangling, index):
    for i, wire in enumerate(wires):
        qml.RX(w[..., i, 0], wires=wire)


def test_a_changed_circuit_changes_the_catalog(tmp_path, monkeypatch):
    export_catalog(tmp_path, **SMALL)
    basic = ANSATZE["basic_entangler"]
    monkeypatch.setitem(ANSATZE, "basic_entangler", Ansatz(basic.name, 1, _rx_only, basic.doc))
    stale = check_catalog(tmp_path, **SMALL)
    assert "ansatz-basic_entangler.qasm" in stale and "README.md" in stale


def test_symbolic_qasm_of_every_entry_loads_and_matches_pennylane():
    rng = np.random.default_rng(0)
    for entry in catalog_entries(3, 2):
        text = circuit_qasm(entry.qfunc, 3, symbols(entry.prefix, entry.param_shape))
        values = rng.uniform(0, 2 * np.pi, entry.param_shape)
        qc = qasm3.loads(text)
        qc = qc.assign_parameters(
            {p: values[tuple(int(i) for i in p.name.split("_")[1:])] for p in qc.parameters})
        got = np.asarray(Statevector(qc).reverse_qargs().data)  # Qiskit is little-endian
        expected = circuit_states(entry.qfunc, 3, values)[0]
        assert abs(np.vdot(expected, got)) == pytest.approx(1.0, abs=1e-10), entry.stem
