"""OpenQASM 3 export of qepi circuits, symbolic or with a trained model's angles bound.

Circuits are traced with Qiskit ``Parameter`` objects standing in for angles, decomposed
into the gate set of qepi's Aer engine (:mod:`qepi.backends.translate`: one-angle rotations
and fixed gates, so what is exported is what the Aer backend runs) and written with
``qiskit.qasm3.dumps``. Free angles become ``input float[64]`` declarations: the data
angles ``x_i`` of a layer, and in the catalog also the weights ``w_<layer>_<wire>_<k>``.

Example:
    >>> import pennylane as qml
    >>> def circuit(x):
    ...     qml.RY(x[0], wires=0)
    ...     qml.CNOT([0, 1])
    >>> print(circuit_qasm(circuit, 2, symbols("x", (1,))))
    OPENQASM 3.0;
    include "stdgates.inc";
    input float[64] x_0;
    qubit[2] q;
    ry(x_0) q[0];
    cx q[0], q[1];
    <BLANKLINE>
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from qepi.errors import UserError
from qepi.layers import QuantumLayer


def symbols(prefix: str, shape: tuple[int, ...]) -> np.ndarray:
    """An object array of Qiskit Parameters named ``prefix_i_j...`` with ``shape``."""
    from qiskit.circuit import Parameter

    out = np.empty(shape, dtype=object)
    for index in np.ndindex(*shape):
        out[index] = Parameter("_".join([prefix, *map(str, index)]))
    return out


def _scalar(value):
    if isinstance(value, np.ndarray):
        value = value.item()
    if isinstance(value, torch.Tensor):
        value = value.item()
    return value if hasattr(value, "parameters") else float(value)


def to_quantum_circuit(qfunc: Callable, n_qubits: int, *args, measure: bool = False, **kwargs):
    """``qfunc(*args, **kwargs)`` as a Qiskit ``QuantumCircuit`` in the Aer engine's gate set.

    Arguments may hold numbers or Qiskit Parameters (object arrays from :func:`symbols`).
    With ``measure`` every qubit is measured at the end.
    """
    import pennylane as qml
    from qiskit import QuantumCircuit

    from qepi.backends.translate import FIXED_GATES, SHIFTABLE_GATES, flatten_op

    tape = qml.tape.make_qscript(qfunc)(*args, **kwargs)
    ops: list = []
    for op in tape.operations:
        flatten_op(op, ops)
    qc = QuantumCircuit(n_qubits)
    for op in ops:
        wires = [int(w) for w in op.wires]
        if op.name in FIXED_GATES:
            getattr(qc, FIXED_GATES[op.name])(*wires)
        else:
            getattr(qc, SHIFTABLE_GATES[op.name])(_scalar(op.data[0]), *wires)
    if measure:
        qc.measure_all()
    return qc


def circuit_qasm(qfunc: Callable, n_qubits: int, *args, measure: bool = False,
                 comment: str = "", **kwargs) -> str:
    """OpenQASM 3 text of ``qfunc(*args, **kwargs)``; ``comment`` lines go first as ``//``."""
    from qiskit import qasm3

    text = qasm3.dumps(to_quantum_circuit(qfunc, n_qubits, *args, measure=measure, **kwargs))
    lines = [f"// {line}" if line else "//" for line in comment.splitlines()]
    return "\n".join(lines + [text.rstrip("\n")]) + "\n"


def layer_qasm(layer: nn.Module, copy: int = 0) -> str:
    """OpenQASM 3 of one copy of a trained QuantumLayer: weights bound, inputs ``x_i`` free,
    every qubit measured (the layer's outputs are <Z_i> on every wire, qubit i = wire i)."""
    if not 0 <= copy < layer.copies:
        raise ValueError(f"copy {copy} out of range: the layer has {layer.copies} copies")
    weights = {name: w[copy].detach().double().numpy() for name, w in layer.per_copy_weights().items()}
    n_inputs = int(layer.n_qubits)
    comment = (f"qepi QuantumLayer, copy {copy} of {layer.copies}: learned weights bound.\n"
               f"Inputs x_0..x_{n_inputs - 1}: the layer's input angles for one token.\n"
               f"Outputs: <Z> of every qubit (qubit i = wire i), estimated from the measurements.")
    return circuit_qasm(layer.qfunc, layer.n_qubits, symbols("x", (n_inputs,)), measure=True,
                        comment=comment, **weights)


def export_model_qasm(model: nn.Module, out_dir: str | Path) -> list[Path]:
    """Write every copy of every QuantumLayer of ``model`` as ``<layer>.copy<k>.qasm`` in
    ``out_dir``, with ``manifest.json`` listing them. Returns the written paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest, paths = [], []
    for name, layer in model.named_modules():
        if not isinstance(layer, QuantumLayer):
            continue
        for k in range(layer.copies):
            path = out_dir / f"{name or 'layer'}.copy{k}.qasm"
            path.write_text(layer_qasm(layer, k))
            paths.append(path)
            manifest.append({"file": path.name, "layer": name, "copy": k,
                             "n_qubits": layer.n_qubits, "inputs": [f"x_{i}" for i in range(layer.n_qubits)],
                             "outputs": "<Z_i> on every qubit i"})
    if not manifest:
        raise UserError("the model has no quantum layer to export")
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return paths


__all__ = ["circuit_qasm", "export_model_qasm", "layer_qasm", "symbols", "to_quantum_circuit"]
