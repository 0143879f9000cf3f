"""The circuit catalog: every shipped encoding and ansatz as OpenQASM 3, a drawing, descriptors.

:func:`export_catalog` writes, for each circuit, ``<kind>-<name>.qasm`` (free angles as
``input float[64]``: data ``x_i``, weights ``w_<layer>_<wire>_<k>``), ``<kind>-<name>.txt``
(a ``qml.draw`` drawing), and ``catalog.json`` plus a ``README.md`` table of qubits, depth,
two-qubit gates, parameters, expressibility and entangling capability. Everything is
seeded, so the output is byte-for-byte reproducible and :func:`check_catalog` can tell
when the committed catalog is out of date.

Example:
    >>> [(e.kind, e.name) for e in catalog_entries(2, 1)][:3]
    [('encoding', 'angle'), ('encoding', 'iqp'), ('ansatz', 'strongly_entangling')]
"""

from __future__ import annotations

import filecmp
import json
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from qepi.circuits import ANSATZE, ENCODINGS
from qepi.diagnostics.descriptors import N_BINS, circuit_structure, entangling_capability, expressibility
from qepi.diagnostics.qasm import circuit_qasm, symbols, to_quantum_circuit

N_QUBITS = 4  # the catalog's circuit width (the default circuit.n_qubits)
N_LAYERS = 2  # ansatz layers (the default circuit.n_layers)
N_PAIRS = 5000  # fidelity pairs for expressibility (as in Sim et al. 2019)
N_SAMPLES = 2000  # states for entangling capability
SEED = 0


@dataclass(frozen=True)
class CatalogEntry:
    """One catalogued circuit: ``qfunc(params)`` with ``params`` of ``param_shape`` (or batched)."""

    kind: str  # encoding | ansatz
    name: str
    n_qubits: int
    n_layers: int  # 0 for encodings
    qfunc: Callable
    param_shape: tuple[int, ...]
    prefix: str  # symbol prefix of the parameters in the QASM: x (data) or w (weights)
    doc: str

    @property
    def stem(self) -> str:
        return f"{self.kind}-{self.name}"


def catalog_entries(n_qubits: int = N_QUBITS, n_layers: int = N_LAYERS) -> list[CatalogEntry]:
    """Every shipped encoding (parameters: the data angles) and ansatz (parameters: weights)."""
    wires = list(range(n_qubits))
    entries = []
    for name, encode in ENCODINGS.items():
        doc = (encode.__doc__ or "").strip().splitlines()[0]
        entries.append(CatalogEntry("encoding", name, n_qubits, 0,
                                    lambda x, encode=encode: encode(x, wires), (n_qubits,), "x", doc))
    for name, ansatz in ANSATZE.items():
        entries.append(CatalogEntry("ansatz", name, n_qubits, n_layers,
                                    lambda w, ansatz=ansatz: ansatz(w, wires),
                                    ansatz.shape(n_layers, n_qubits), "w", ansatz.doc))
    return entries


def _round(value: float) -> float:
    return round(value, 4) + 0.0  # + 0.0 turns -0.0 into 0.0


def describe(entry: CatalogEntry, n_pairs: int = N_PAIRS, n_samples: int = N_SAMPLES,
             seed: int = SEED) -> dict:
    """Descriptors of one entry: structure as written and as exported, and Sim et al.'s two."""
    zeros = np.zeros(entry.param_shape)
    structure = circuit_structure(entry.qfunc, zeros)
    qc = to_quantum_circuit(entry.qfunc, entry.n_qubits, zeros)
    return {
        "kind": entry.kind, "name": entry.name, "qubits": entry.n_qubits, "layers": entry.n_layers,
        "parameters": int(np.prod(entry.param_shape)),
        "depth": structure["depth"], "two_qubit_gates": structure["two_qubit_gates"],
        "qasm_depth": qc.depth(), "qasm_two_qubit_gates": qc.num_nonlocal_gates(),
        "expressibility": _round(expressibility(entry.qfunc, entry.n_qubits, entry.param_shape,
                                                n_pairs, N_BINS, seed)),
        "entangling_capability": _round(entangling_capability(entry.qfunc, entry.n_qubits,
                                                              entry.param_shape, n_samples, seed)),
    }


def drawing(entry: CatalogEntry) -> str:
    """A ``qml.draw`` text drawing of the entry (angles not shown)."""
    import pennylane as qml

    def circuit(params):
        entry.qfunc(params)
        return qml.state()

    draw = qml.draw(circuit, decimals=None, wire_order=range(entry.n_qubits))
    return draw(np.zeros(entry.param_shape)) + "\n"


def _idle_expressibility(n_qubits: int, n_pairs: int, seed: int) -> float:
    import pennylane as qml

    def idle(params):
        for w in range(n_qubits):
            qml.Identity(w)

    return _round(expressibility(idle, n_qubits, (1,), n_pairs, N_BINS, seed))


def _readme(rows: list[dict], settings: dict, idle: float) -> str:
    header = ("| circuit | kind | qubits | parameters | depth | two-qubit gates | QASM depth "
              "| QASM two-qubit gates | expressibility (KL from Haar, lower = more expressive) "
              "| entangling capability (Meyer–Wallach) | files |")
    lines = [
        "# The circuit catalog",
        "",
        "Every encoding and ansatz that qepi ships, generated by `qepi circuits export circuits/`. "
        "Do not edit by hand: `tests/diagnostics/test_catalog.py` regenerates the catalog and "
        "fails when these files are out of date.",
        "",
        f"Settings: {settings['n_qubits']} qubits, {settings['n_layers']} ansatz layers; "
        f"parameters uniform on [0, 2π) (encodings: the data angles); expressibility from "
        f"{settings['n_pairs']} state pairs in {N_BINS} fidelity bins, entangling capability "
        f"from {settings['n_samples']} states (Sim et al. 2019); seed {settings['seed']}.",
        "",
        header,
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        stem = f"{r['kind']}-{r['name']}"
        lines.append(
            f"| {r['name']} | {r['kind']} | {r['qubits']} | {r['parameters']} | {r['depth']} "
            f"| {r['two_qubit_gates']} | {r['qasm_depth']} | {r['qasm_two_qubit_gates']} "
            f"| {r['expressibility']:.4f} | {r['entangling_capability']:.4f} "
            f"| [{stem}.qasm]({stem}.qasm), [{stem}.txt]({stem}.txt) |")
    lines += [
        "",
        f"For scale: {settings['n_qubits']} idle wires (every state the same) score an "
        f"expressibility of {idle:.4f}; Haar-random states score 0.",
        "",
        "- *depth* and *two-qubit gates* count PennyLane operations as written (a `Rot` or a "
        "`CRX` is one gate); the QASM columns count the exported circuit, decomposed into the "
        "gate set of qepi's Aer engine (one-angle rotations, `cx`, `cz`, `h`, ...).",
        "- In the `.qasm` files free angles are `input float[64]` declarations: `x_i` is the "
        "data angle of wire i, `w_l_i_k` weight k of wire i in layer l. Wire i is qubit i.",
        "- A trained model's circuits, with its learned weights bound, are exported by "
        "`qepi circuits model RUN_DIR --out DIR`.",
        "",
        "## Circuits",
        "",
    ]
    for r in rows:
        lines.append(f"- **{r['name']}** ({r['kind']}): {r['doc']}")
    return "\n".join(lines) + "\n"


def export_catalog(out_dir: str | Path, n_qubits: int = N_QUBITS, n_layers: int = N_LAYERS,
                   n_pairs: int = N_PAIRS, n_samples: int = N_SAMPLES, seed: int = SEED) -> list[Path]:
    """Write the catalog into ``out_dir``; returns the paths written."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows, paths = [], []
    for entry in catalog_entries(n_qubits, n_layers):
        comment = f"qepi {entry.kind} {entry.name!r}: {n_qubits} qubits" + (
            f", {n_layers} layers" if entry.kind == "ansatz" else "")
        qasm = circuit_qasm(entry.qfunc, n_qubits, symbols(entry.prefix, entry.param_shape), comment=comment)
        for suffix, text in ((".qasm", qasm), (".txt", drawing(entry))):
            path = out_dir / f"{entry.stem}{suffix}"
            path.write_text(text)
            paths.append(path)
        rows.append({**describe(entry, n_pairs, n_samples, seed), "doc": entry.doc})
    settings = {"n_qubits": n_qubits, "n_layers": n_layers, "n_pairs": n_pairs,
                "n_samples": n_samples, "n_bins": N_BINS, "seed": seed}
    idle = _idle_expressibility(n_qubits, n_pairs, seed)
    (out_dir / "catalog.json").write_text(
        json.dumps({"settings": settings, "idle_expressibility": idle, "circuits": rows}, indent=2) + "\n")
    (out_dir / "README.md").write_text(_readme(rows, settings, idle))
    return [*paths, out_dir / "catalog.json", out_dir / "README.md"]


def check_catalog(catalog_dir: str | Path, **settings) -> list[str]:
    """Names of the files in ``catalog_dir`` that differ from a fresh export (missing, changed
    or extra); an empty list means the catalog is up to date."""
    catalog_dir = Path(catalog_dir)
    with tempfile.TemporaryDirectory() as tmp:
        fresh = {p.name for p in export_catalog(tmp, **settings)}
        present = {p.name for p in catalog_dir.iterdir() if p.is_file()} if catalog_dir.is_dir() else set()
        stale = sorted(name for name in fresh if name not in present
                       or not filecmp.cmp(Path(tmp) / name, catalog_dir / name, shallow=False))
    return stale + sorted(present - fresh)


__all__ = ["CatalogEntry", "catalog_entries", "check_catalog", "describe", "drawing", "export_catalog"]
