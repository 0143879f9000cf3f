"""PennyLane circuit -> flat gate list with torch angles -> Qiskit template.

:func:`trace_gates` records a quantum function once per call with torch tensors (rows
broadcast along a leading batch dimension) and decomposes every operation down to
:data:`SHIFTABLE_GATES` (one angle, two-term parameter-shift rule
``df/dθ = [f(θ + π/2) - f(θ - π/2)] / 2``) and :data:`FIXED_GATES` (no angle). The angles
stay torch tensors, differentiable in whatever they were computed from.

:func:`to_qiskit` turns the gate list into a ``QuantumCircuit`` with one plain
``Parameter`` per angle; :func:`bind_row` gives the bound circuit of one row, e.g. for
``qiskit.qasm3.dumps``. PennyLane wire ``i`` is Qiskit qubit ``i``; since Qiskit orders
bits little-endian, Pauli words in Qiskit's ``SparsePauliOp`` are written reversed.

Example:
    >>> import pennylane as qml, torch
    >>> def circuit(inputs, weights):
    ...     qml.RY(inputs[..., 0], wires=0)
    ...     qml.CRX(weights[0], wires=[0, 1])
    ...     return [qml.expval(qml.PauliZ(1)), qml.expval(qml.PauliX(0) @ qml.PauliZ(1))]
    >>> traced = trace_gates(circuit, torch.rand(5, 1), {"weights": torch.rand(1)}, n_qubits=2)
    >>> [g.name for g in traced.gates]
    ['RY', 'RZ', 'RY', 'CNOT', 'RY', 'CNOT', 'RZ']
    >>> traced.n_rows, traced.observables
    (5, [[(1.0, 'IZ')], [(1.0, 'XZ')]])
    >>> qc, params = to_qiskit(traced)
    >>> qc.num_qubits, len(params), traced.angle_matrix().shape
    (2, 5, torch.Size([5, 5]))
    >>> from qiskit.qasm3 import dumps
    >>> "ry(" in dumps(bind_row(traced, row=0))
    True
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from qepi.errors import UserError

# PennyLane name -> Qiskit name for gates with one angle and a two-term shift rule (their
# generators have two eigenvalues that differ by 1: RX(θ) = exp(-iθX/2),
# PhaseShift(θ) = diag(1, e^{iθ}), IsingZZ(θ) = exp(-iθ Z⊗Z/2), ...).
SHIFTABLE_GATES: dict[str, str] = {
    "RX": "rx",
    "RY": "ry",
    "RZ": "rz",
    "PhaseShift": "p",
    "IsingXX": "rxx",
    "IsingYY": "ryy",
    "IsingZZ": "rzz",
}

# PennyLane name -> Qiskit name for gates without an angle.
FIXED_GATES: dict[str, str] = {
    "PauliX": "x",
    "PauliY": "y",
    "PauliZ": "z",
    "Hadamard": "h",
    "S": "s",
    "T": "t",
    "SX": "sx",
    "Adjoint(S)": "sdg",
    "Adjoint(T)": "tdg",
    "Adjoint(SX)": "sxdg",
    "CNOT": "cx",
    "CY": "cy",
    "CZ": "cz",
    "SWAP": "swap",
    "ISWAP": "iswap",
    "ECR": "ecr",
    "Toffoli": "ccx",
    "CSWAP": "cswap",
}

# Operations without any effect on expectation values.
_DROPPED = {"Identity", "GlobalPhase", "Barrier"}

SHIFT = math.pi / 2  # the shift of every angle in SHIFTABLE_GATES


@dataclass(frozen=True)
class Gate:
    """One gate: PennyLane ``name``, qubit indices, and either an index into
    ``Traced.angles`` (``angle``) or a constant angle (``const``; ``None`` for fixed gates)."""

    name: str
    wires: tuple[int, ...]
    angle: int | None = None
    const: float | None = None


@dataclass
class Traced:
    """A circuit as gates, per-gate torch angles and measured Pauli observables.

    ``angles[j]`` has shape (n_rows,) or () and feeds gate ``g`` with ``g.angle == j``.
    ``observables[o]`` is output ``o`` as a list of ``(coefficient, word)``; a word has one
    letter of ``IXYZ`` per wire, wire 0 first.
    """

    n_qubits: int
    gates: list[Gate]
    angles: list[torch.Tensor]
    observables: list[list[tuple[float, str]]]
    n_rows: int | None  # None when nothing was batched
    structure: tuple = field(init=False)

    def __post_init__(self):
        # everything but the angle values: equal structures share one Qiskit template
        obs = tuple(tuple(o) for o in self.observables)
        self.structure = (self.n_qubits, tuple(self.gates), obs)

    def angle_matrix(self, dtype: torch.dtype = torch.float64) -> torch.Tensor:
        """Every angle of every row as one differentiable (n_rows, n_angles) tensor."""
        rows = self.n_rows or 1
        if not self.angles:
            return torch.zeros(rows, 0, dtype=dtype)
        return torch.stack([a.to(dtype).expand(rows) for a in self.angles], dim=-1)


def flatten_op(op, out: list) -> None:
    """Append ``op`` decomposed down to supported gates to ``out``."""
    name = op.name
    if name in _DROPPED:
        return
    if name in SHIFTABLE_GATES or name in FIXED_GATES:
        out.append(op)
        return
    if not op.has_decomposition:
        raise UserError(
            f"gate {name} cannot be run by the aer backend: it has no decomposition into "
            f"gates with a two-term shift rule ({', '.join(SHIFTABLE_GATES)}) and fixed gates"
        )
    for sub in op.decomposition():
        flatten_op(sub, out)


def _pauli_terms(mp, n_qubits: int) -> list[tuple[float, str]]:
    from pennylane.measurements import ExpectationMP

    if not isinstance(mp, ExpectationMP) or mp.obs is None:
        raise UserError(
            f"the aer backend measures expectation values only, got {mp.__class__.__name__}"
        )
    rep = mp.obs.pauli_rep
    if rep is None:
        raise UserError(f"observable {mp.obs} is not a sum of Pauli words (aer backend)")
    terms = []
    for word, coeff in rep.items():
        coeff = complex(coeff.detach() if isinstance(coeff, torch.Tensor) else coeff)
        if abs(coeff.imag) > 1e-12:
            raise UserError(f"observable {mp.obs} has a complex coefficient")
        letters = ["I"] * n_qubits
        for wire, letter in word.items():
            letters[_wire_index(wire, n_qubits)] = letter
        terms.append((float(coeff.real), "".join(letters)))
    return terms


def _wire_index(wire, n_qubits: int) -> int:
    if isinstance(wire, (int, np.integer)) and 0 <= int(wire) < n_qubits:
        return int(wire)
    raise UserError(f"wire {wire!r} is not one of the integer wires 0..{n_qubits - 1}")


def trace_gates(
    qfunc: Callable,
    inputs: torch.Tensor,
    weights: dict[str, torch.Tensor],
    n_qubits: int | None = None,
) -> Traced:
    """Record ``qfunc(inputs, **weights)`` and decompose it into shiftable and fixed gates.

    ``inputs`` is (R, F) (or (F,)); weights are unbatched or carry a leading R dimension.
    Wires must be the integers 0..n_qubits-1 (``n_qubits`` defaults to the largest wire + 1).
    Raises :class:`~qepi.errors.UserError` naming a gate that cannot be decomposed.
    """
    import pennylane as qml

    tape = qml.tape.make_qscript(qfunc)(inputs, **weights)
    if n_qubits is None:
        n_qubits = 1 + max((w for w in tape.wires if isinstance(w, int)), default=0)
    ops: list = []
    for op in tape.operations:
        flatten_op(op, ops)
    gates, angles = [], []
    n_rows = inputs.shape[0] if inputs.dim() > 1 else None
    for op in ops:
        wires = tuple(_wire_index(w, n_qubits) for w in op.wires)
        if op.name in FIXED_GATES:
            gates.append(Gate(op.name, wires))
            continue
        (theta,) = op.parameters
        if not isinstance(theta, torch.Tensor) and np.ndim(theta) == 0:
            gates.append(Gate(op.name, wires, const=float(theta)))
            continue
        theta = torch.as_tensor(theta)  # a NumPy angle array becomes a constant tensor
        if theta.dim() > 1 or (theta.dim() == 1 and n_rows not in (None, len(theta))):
            raise UserError(f"gate {op.name} on wires {wires}: angle of shape {tuple(theta.shape)}")
        if theta.dim() == 1 and n_rows is None:
            n_rows = len(theta)
        gates.append(Gate(op.name, wires, angle=len(angles)))
        angles.append(theta)
    observables = [_pauli_terms(mp, n_qubits) for mp in tape.measurements]
    return Traced(n_qubits, gates, angles, observables, n_rows)


def gates_to_circuit(traced: Traced, params) -> "qiskit.QuantumCircuit":  # noqa: F821
    """The gates of ``traced`` as a ``QuantumCircuit``; ``params[j]`` is angle ``j``
    (a ``Parameter`` or a number)."""
    from qiskit import QuantumCircuit

    qc = QuantumCircuit(traced.n_qubits)
    for g in traced.gates:
        if g.name in FIXED_GATES:
            getattr(qc, FIXED_GATES[g.name])(*g.wires)
        else:
            theta = params[g.angle] if g.angle is not None else g.const
            getattr(qc, SHIFTABLE_GATES[g.name])(theta, *g.wires)
    return qc


def qiskit_pauli(word: str) -> str:
    """A qepi word (wire 0 first) as a Qiskit Pauli label (qubit 0 last)."""
    return word[::-1]


def to_qiskit(traced: Traced, save_expectation_values: bool = True):
    """A template with one plain ``Parameter`` per angle: ``(QuantumCircuit, [Parameter])``.

    With ``save_expectation_values`` every output is saved as an Aer expectation value
    labelled ``out{o}``.
    """
    from qiskit.circuit import Parameter
    from qiskit.quantum_info import SparsePauliOp

    params = [Parameter(f"t{j}") for j in range(len(traced.angles))]
    qc = gates_to_circuit(traced, params)
    if save_expectation_values:
        from qiskit_aer.library import SaveExpectationValue

        for o, terms in enumerate(traced.observables):
            op = SparsePauliOp([qiskit_pauli(w) for _, w in terms], [c for c, _ in terms])
            qc.append(SaveExpectationValue(op, label=f"out{o}"), range(traced.n_qubits))
    return qc, params


def bind_row(traced: Traced, row: int = 0, save_expectation_values: bool = False):
    """The circuit of one row with every angle bound to its value (for OpenQASM export)."""
    values = traced.angle_matrix().detach()[row].tolist()
    qc = gates_to_circuit(traced, values)
    if save_expectation_values:
        template, params = to_qiskit(traced)
        qc = template.assign_parameters(dict(zip(params, values)))
    return qc


__all__ = [
    "FIXED_GATES",
    "SHIFT",
    "SHIFTABLE_GATES",
    "Gate",
    "Traced",
    "bind_row",
    "gates_to_circuit",
    "qiskit_pauli",
    "to_qiskit",
    "trace_gates",
]
