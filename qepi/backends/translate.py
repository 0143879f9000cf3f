"""PennyLane circuit -> flat gate list with torch angles -> Qiskit template.

:func:`trace_gates` records a quantum function once per call with torch tensors (rows
broadcast along a leading batch dimension) and decomposes every operation (PennyLane's own
decompositions, applied until nothing else is left) down to :data:`SHIFTABLE_GATES` (one
angle, two-term parameter-shift rule ``df/dθ = [f(θ + π/2) - f(θ - π/2)] / 2``) and
:data:`FIXED_GATES` (no angle), all native to Aer's statevector and density-matrix methods.
The angles stay torch tensors, differentiable in whatever they were computed from (a
trainable ``QubitUnitary`` matrix included; on 2 or more wires, where PennyLane's
decomposition is not differentiable in torch, see :func:`gradient_rotations`).

Measurements become :class:`Measurement` records: ``expval`` and ``var`` of an observable
written as Pauli words (its ``pauli_rep``, or the Pauli decomposition of its matrix) whose
coefficients stay torch tensors in :attr:`Traced.coefficients` (trainable coefficients
keep their gradient), and ``probs`` of some wires.

:func:`to_qiskit` turns the gate list into a ``QuantumCircuit`` with one plain
``Parameter`` per angle; :func:`bind_row` gives the bound circuit of one row, e.g. for
``qiskit.qasm3.dumps``. PennyLane wire ``i`` is Qiskit qubit ``i``; since Qiskit orders
bits little-endian, Pauli words in Qiskit's ``SparsePauliOp`` are written reversed.

Example:
    >>> import pennylane as qml, torch
    >>> def circuit(inputs, weights):
    ...     qml.RY(inputs[..., 0], wires=0)
    ...     qml.CRX(weights[0], wires=[0, 1])
    ...     return [qml.expval(qml.PauliZ(1)), qml.var(weights[1] * qml.PauliX(0) @ qml.PauliZ(1)),
    ...             qml.probs(wires=[1])]
    >>> traced = trace_gates(circuit, torch.rand(5, 1), {"weights": torch.rand(2)}, n_qubits=2)
    >>> [g.name for g in traced.gates]
    ['RY', 'RZ', 'RY', 'CNOT', 'RY', 'CNOT', 'RZ']
    >>> traced.n_rows, [(m.kind, m.words, m.wires) for m in traced.measurements]
    (5, [('expval', ('IZ',), ()), ('var', ('XZ',), ()), ('probs', (), (1,))])
    >>> qc, params = to_qiskit(traced, save_expectation_values=False)
    >>> qc.num_qubits, len(params), traced.angle_matrix().shape
    (2, 5, torch.Size([5, 5]))
    >>> from qiskit.qasm3 import dumps
    >>> "ry(" in dumps(bind_row(traced, row=0))
    True
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Union

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

# PennyLane name -> Qiskit name for gates without an angle. Every Qiskit name here is native
# to Aer's statevector and density-matrix methods; anything else (ISWAP, SISWAP, CSWAP, CH,
# controlled and adjoint forms, QubitUnitary, ...) is decomposed by PennyLane first.
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
    "ECR": "ecr",
    "Toffoli": "ccx",
}

# Operations without any effect on expectation values.
_DROPPED = {"Identity", "GlobalPhase", "Barrier"}
_MATRIX_GATES = {"QubitUnitary", "ControlledQubitUnitary"}  # gates given by a matrix
_MAX_DEPTH = 32  # nested decompositions before a gate counts as undecomposable
_MAX_MATRIX_WIRES = 8  # gates and observables given by a matrix: decompose up to this size

SHIFT = math.pi / 2  # the shift of every angle in SHIFTABLE_GATES

Coefficient = Union[float, torch.Tensor]  # a number, or a tensor of shape () or (n_rows,)


@dataclass(frozen=True)
class Gate:
    """One gate: PennyLane ``name``, qubit indices, and either an index into
    ``Traced.angles`` (``angle``) or a constant angle (``const``; ``None`` for fixed gates)."""

    name: str
    wires: tuple[int, ...]
    angle: int | None = None
    const: float | None = None


@dataclass(frozen=True)
class Measurement:
    """One measurement of the circuit, without its coefficient values.

    ``expval`` / ``var``: ``words`` are the observable's Pauli words (one letter of ``IXYZ``
    per wire, wire 0 first), with coefficients in :attr:`Traced.coefficients`. ``probs``:
    ``wires`` in PennyLane's order (the first wire is the most significant outcome bit).
    """

    kind: str  # "expval" | "var" | "probs"
    words: tuple[str, ...] = ()
    wires: tuple[int, ...] = ()

    @property
    def width(self) -> int:
        """Output columns: 1, or ``2 ** len(wires)`` for ``probs``."""
        return 2 ** len(self.wires) if self.kind == "probs" else 1


@dataclass
class Traced:
    """A circuit as gates, per-gate torch angles and its measurements.

    ``angles[j]`` has shape (n_rows,) or () and feeds gate ``g`` with ``g.angle == j``.
    ``coefficients[o][i]`` is the coefficient of ``measurements[o].words[i]`` (a number or a
    tensor of shape () or (n_rows,), differentiable where it came from weights or inputs).
    """

    n_qubits: int
    gates: list[Gate]
    angles: list[torch.Tensor]
    measurements: list[Measurement]
    coefficients: list[list[Coefficient]]
    n_rows: int | None  # None when nothing was batched
    structure: tuple = field(init=False)

    def __post_init__(self):
        # everything but the angle and coefficient values: equal structures share a template
        self.structure = (self.n_qubits, tuple(self.gates), tuple(self.measurements))

    @property
    def n_outputs(self) -> int:
        """Output columns, measurements flattened in order."""
        return sum(m.width for m in self.measurements)

    def angle_matrix(self, dtype: torch.dtype = torch.float64) -> torch.Tensor:
        """Every angle of every row as one differentiable (n_rows, n_angles) tensor."""
        rows = self.n_rows or 1
        if not self.angles:
            return torch.zeros(rows, 0, dtype=dtype)
        return torch.stack([a.to(dtype).expand(rows) for a in self.angles], dim=-1)


def flatten_op(op, out: list, depth: int = 0) -> None:
    """Append ``op`` decomposed down to supported gates to ``out``; a gate without a
    decomposition (``BlockEncode``, ...) is decomposed as the ``QubitUnitary`` of its matrix."""
    import pennylane as qml

    name = op.name
    if name in _DROPPED:
        return
    if name in SHIFTABLE_GATES or name in FIXED_GATES:
        out.append(op)
        return
    if _needs_gradient_rotations(op):
        for sub in gradient_rotations(op):
            flatten_op(sub, out, depth + 1)
        return
    try:  # PennyLane's decompositions fail with NumPy, torch or own errors
        decomposable = depth < _MAX_DEPTH and op.has_decomposition
        if decomposable and name == "QubitUnitary" and len(op.wires) >= 2:
            decomposition = checked_unitary_decomposition(op)
        elif decomposable:
            decomposition = op.decomposition()
        elif depth < _MAX_DEPTH and op.has_matrix and len(op.wires) <= _MAX_MATRIX_WIRES:
            decomposition = [qml.QubitUnitary(op.matrix(), wires=op.wires)]  # e.g. BlockEncode
        else:
            decomposition = None
    except Exception as err:  # noqa: BLE001
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(f"gate {name} on wires {list(op.wires)} cannot be run by the aer "
                        f"backend: PennyLane cannot decompose it ({first})") from None
    if decomposition is None:
        raise UserError(
            f"gate {name} cannot be run by the aer backend: it has no decomposition into "
            f"gates with a two-term shift rule ({', '.join(SHIFTABLE_GATES)}) and fixed gates"
        )
    for sub in decomposition:
        flatten_op(sub, out, depth + 1)


def checked_unitary_decomposition(op) -> list:
    """PennyLane's decomposition of a constant ``QubitUnitary`` U on 2+ wires, checked
    against U (up to a global phase, to 1e-10).

    PennyLane picks the number of CNOTs of a two-qubit decomposition with a tolerance of
    1e-7 on invariants of U, so some U (e.g. close to the identity) get a decomposition
    that is off by ~1e-3. Then U = (U V†) V is decomposed instead, with a fixed random
    unitary V; UserError where that does not reproduce U either.

    >>> import pennylane as qml, numpy as np
    >>> u = np.diag(np.exp(1j * np.array([0.0, 4.4e-3, 3.2e-3, 0.0])))
    >>> ops = checked_unitary_decomposition(qml.QubitUnitary(u, wires=[0, 1]))
    >>> m = qml.matrix(qml.tape.QuantumScript(ops), wire_order=[0, 1])
    >>> bool(np.allclose(m * (u[0, 0] / m[0, 0]), u, atol=1e-10))
    True
    """
    import pennylane as qml

    matrix = np.asarray(qml.math.unwrap(qml.math.detach(op.data[0])))
    if matrix.ndim != 2:
        return op.decomposition()  # PennyLane refuses a batch of matrices itself
    d = len(matrix)
    candidates = [lambda: op.decomposition()]
    for seed in range(3):
        v = _fixed_unitary(d, seed)
        candidates.append(lambda v=v: (qml.QubitUnitary(v, wires=op.wires).decomposition()
                                       + qml.QubitUnitary(matrix @ v.conj().T,
                                                          wires=op.wires).decomposition()))
    for candidate in candidates:
        ops = candidate()
        product = qml.matrix(qml.tape.QuantumScript(ops), wire_order=op.wires)
        overlap = np.asarray(qml.math.unwrap(product)).conj().T @ matrix  # phase · identity
        if np.abs(overlap - overlap[0, 0] * np.eye(d)).max() < 1e-10:
            return ops
    raise UserError(f"gate QubitUnitary on wires {op.wires.tolist()}: PennyLane's "
                    f"decomposition does not reproduce the matrix; use rotation gates")


def _fixed_unitary(d: int, seed: int) -> np.ndarray:
    """A fixed (seeded) Haar-random d x d unitary."""
    rng = np.random.default_rng(seed)
    q, r = np.linalg.qr(rng.normal(size=(d, d)) + 1j * rng.normal(size=(d, d)))
    return q * (np.diag(r) / np.abs(np.diag(r)))


def gradient_rotations(op) -> list:
    """A gate with a trainable matrix U(θ) as Pauli rotations of angle zero that carry its
    gradient, then U with the matrix detached (for matrices whose PennyLane decomposition
    is not differentiable in torch).

    To first order U(θ + δ) = U(θ) exp(Ω δ) with Ω = U† ∂U/∂θ anti-Hermitian, and
    Ω = -i/2 Σ_P φ'_P P over the non-identity Pauli words P with
    φ'_P = 2i tr(P Ω) / 2ⁿ (the identity part is a global phase). So PauliRot(φ_P, P), with
    φ_P = Re[2i tr(P U₀† (U - U₀))] / 2ⁿ equal to zero but with that derivative, placed
    before the constant U₀ gives the same values and gradients.

    >>> import pennylane as qml, torch
    >>> w = torch.tensor(0.3, requires_grad=True)
    >>> u = torch.linalg.matrix_exp(-0.5j * w * torch.diag(torch.tensor([1, -1, -1, 1.0])))
    >>> ops = gradient_rotations(qml.QubitUnitary(u, wires=[0, 1]))  # IsingZZ(w)
    >>> slopes = {op.hyperparameters["pauli_word"]: float(torch.autograd.grad(
    ...     op.data[0], w, retain_graph=True)[0]) for op in ops[:-1]}  # dφ_P / dw
    >>> {word: round(slope, 9) for word, slope in slopes.items() if abs(slope) > 1e-12}
    {'ZZ': 1.0}
    >>> sum(float(op.data[0].detach()) ** 2 for op in ops[:-1])  # every angle is zero
    0.0
    >>> ops[-1].name, ops[-1].data[0].requires_grad
    ('QubitUnitary', False)
    """
    import pennylane as qml

    n = len(op.wires)
    u = op.matrix()  # (..., 2**n, 2**n) in the order of op.wires, differentiable
    u0 = u.detach()
    change = u0.conj().transpose(-2, -1) @ (u - u0)  # zero, with derivative Ω dθ
    letters = {"I": np.eye(2), "X": qml.matrix(qml.X(0)), "Y": qml.matrix(qml.Y(0)),
               "Z": qml.matrix(qml.Z(0))}
    rotations = []
    for word in itertools.product("IXYZ", repeat=n):
        if set(word) == {"I"}:
            continue
        pauli = torch.as_tensor(
            functools.reduce(np.kron, [letters[a] for a in word]), dtype=change.dtype)
        trace = torch.einsum("ij,...ji->...", pauli, change)  # (...,) tr(P U₀† (U - U₀))
        angle = (2j * trace).real / 2**n
        rotations.append(qml.PauliRot(angle, "".join(word), wires=op.wires))
    return rotations + [qml.QubitUnitary(u0, wires=op.wires)]


def _needs_gradient_rotations(op) -> bool:
    """True for a gate with a trainable matrix whose PennyLane decomposition is not
    differentiable in torch (a QubitUnitary-like gate on 2+ target wires), or differentiable
    only unwrapped (SpecialUnitary, whose gradient rides on rotations of angle zero that a
    controlled decomposition turns into angles read off a matrix, where they are singular)."""
    if not torch.is_grad_enabled() or not any(
            isinstance(p, torch.Tensor) and p.requires_grad for p in op.data):
        return False
    innermost = op
    while hasattr(innermost, "base"):  # Controlled, Adjoint, ControlledQubitUnitary
        innermost = innermost.base
    if innermost.name == "SpecialUnitary":
        return True
    return op.name in _MATRIX_GATES and len(innermost.wires) >= 2


_PAULI_PRODUCTS = {("X", "Y"): (1j, "Z"), ("Y", "Z"): (1j, "X"), ("Z", "X"): (1j, "Y"),
                   ("Y", "X"): (-1j, "Z"), ("Z", "Y"): (-1j, "X"), ("X", "Z"): (-1j, "Y")}


def multiply_words(a: str, b: str) -> tuple[complex, str]:
    """The product of two Pauli words as ``(phase, word)``: ``P_a P_b = phase * P_word``.

    >>> multiply_words("XZ", "YZ")
    (1j, 'ZI')
    """
    phase, letters = 1 + 0j, []
    for p, q in zip(a, b):
        if p == "I" or q == "I":
            letters.append(q if p == "I" else p)
        elif p == q:
            letters.append("I")
        else:
            factor, letter = _PAULI_PRODUCTS[(p, q)]
            phase *= factor
            letters.append(letter)
    return phase, "".join(letters)


def _real(coeff, obs) -> Coefficient:
    """A coefficient as a real number or real tensor; a complex one is refused."""
    if isinstance(coeff, torch.Tensor):
        if coeff.is_complex():
            if coeff.detach().imag.abs().max() > 1e-10:
                raise UserError(f"observable {describe(obs)} has a complex coefficient")
            coeff = coeff.real
        return coeff
    value = complex(np.asarray(coeff).item())
    if abs(value.imag) > 1e-12:
        raise UserError(f"observable {describe(obs)} has a complex coefficient")
    return float(value.real)


def _word(pauli_word, n_qubits: int) -> str:
    letters = ["I"] * n_qubits
    for wire, letter in pauli_word.items():
        letters[_wire_index(wire, n_qubits)] = letter
    return "".join(letters)


def _add(terms: dict[str, Coefficient], word: str, coeff: Coefficient) -> None:
    terms[word] = terms[word] + coeff if word in terms else coeff


def observable_terms(obs, n_qubits: int) -> dict[str, Coefficient]:
    """``obs`` as ``{Pauli word: coefficient}``; coefficients keep their torch graph.

    Uses PennyLane's ``pauli_rep`` where it has one, walks sums, products and scalar
    products (e.g. with a batched coefficient), and otherwise decomposes the observable's
    matrix into Pauli words (``Hermitian``, ``Projector``, ...).

    >>> import pennylane as qml, torch
    >>> w = torch.tensor([0.5, 2.0])
    >>> terms = observable_terms(w[0] * qml.Z(0) + w[1] * qml.X(0) @ qml.X(1), 2)
    >>> {word: round(float(c), 3) for word, c in terms.items()}
    {'ZI': 0.5, 'XX': 2.0}
    >>> {word: round(float(c), 3) for word, c in observable_terms(qml.Projector([1], 0), 1).items()}
    {'I': 0.5, 'Z': -0.5}
    """
    import pennylane as qml
    from pennylane.ops import Prod, SProd, Sum

    rep = obs.pauli_rep
    terms: dict[str, Coefficient] = {}
    if rep is not None:
        for pauli_word, coeff in rep.items():
            _add(terms, _word(pauli_word, n_qubits), coeff)
    elif isinstance(obs, SProd):
        for word, coeff in observable_terms(obs.base, n_qubits).items():
            _add(terms, word, obs.scalar * coeff)
    elif isinstance(obs, Sum):
        for operand in obs.operands:
            for word, coeff in observable_terms(operand, n_qubits).items():
                _add(terms, word, coeff)
    elif isinstance(obs, Prod):
        terms = {"I" * n_qubits: 1.0}
        for factor in obs.operands:
            product: dict[str, Coefficient] = {}
            for word, coeff in terms.items():
                for other, factor_coeff in observable_terms(factor, n_qubits).items():
                    phase, result = multiply_words(word, other)
                    _add(product, result, phase * coeff * factor_coeff)
            terms = product
    elif obs.has_matrix and len(obs.wires) <= _MAX_MATRIX_WIRES:
        matrix = qml.matrix(obs, wire_order=obs.wires)
        if qml.math.ndim(matrix) != 2:
            raise UserError(f"observable {describe(obs)}: a batch of matrices cannot be "
                            f"measured on aer; use a constant matrix or a sum of Pauli words")
        for pauli_word, coeff in qml.pauli_decompose(matrix, wire_order=obs.wires,
                                                     pauli=True).items():
            _add(terms, _word(pauli_word, n_qubits), coeff)
    else:
        raise UserError(f"observable {describe(obs)} has no Pauli decomposition the aer "
                        f"backend can measure; use a sum of Pauli words or a Hermitian on at most "
                        f"{_MAX_MATRIX_WIRES} wires")
    return {word: _real(coeff, obs) for word, coeff in terms.items()}


def _measurement(mp, n_qubits: int) -> tuple[Measurement, list[Coefficient]]:
    from pennylane.measurements import ExpectationMP, ProbabilityMP, VarianceMP

    kind = {ExpectationMP: "expval", VarianceMP: "var", ProbabilityMP: "probs"}.get(type(mp))
    if kind is None:
        raise UserError(f"measurement {type(mp).__name__} is not supported by the aer backend "
                        f"(it measures expval, var and probs)")
    if getattr(mp, "mv", None) is not None:
        raise UserError(f"{kind} of a mid-circuit measurement is not supported by the aer backend")
    if kind == "probs":
        if mp.obs is not None:
            raise UserError("probs(op=...) is not supported by the aer backend; rotate the "
                            "basis in the circuit and use probs(wires=...)")
        wires = tuple(_wire_index(w, n_qubits) for w in mp.wires) or tuple(range(n_qubits))
        return Measurement("probs", wires=wires), []
    if mp.obs is None:
        raise UserError(f"{kind} needs an observable on the aer backend")
    terms = observable_terms(mp.obs, n_qubits)
    return Measurement(kind, words=tuple(terms)), list(terms.values())


def describe(op) -> str:
    """A one-line name for an operator or observable (its repr may print a whole matrix).

    >>> import pennylane as qml, numpy as np
    >>> describe(qml.Hermitian(np.eye(2), wires=0))
    'Hermitian on wires [0]'
    """
    return f"{op.name} on wires {op.wires.tolist()}"


def _wire_index(wire, n_qubits: int) -> int:
    if isinstance(wire, (int, np.integer)) and 0 <= int(wire) < n_qubits:
        return int(wire)
    raise UserError(f"wire {wire!r} is not one of the integer wires 0..{n_qubits - 1}")


def _rows_of(value: torch.Tensor, n_rows: int | None, what: Callable[[], str]) -> int | None:
    """Check that ``value`` is a scalar or one value per row; returns the row count.
    ``what()`` names the value in the error."""
    if value.dim() > 1 or (value.dim() == 1 and n_rows not in (None, len(value))):
        raise UserError(f"{what()}: shape {tuple(value.shape)} is neither a scalar nor one "
                        f"value per row ({n_rows} rows)")
    return len(value) if value.dim() == 1 else n_rows


def trace_gates(
    qfunc: Callable,
    inputs: torch.Tensor,
    weights: dict[str, torch.Tensor],
    n_qubits: int | None = None,
) -> Traced:
    """Record ``qfunc(inputs, **weights)`` and decompose it into shiftable and fixed gates.

    ``inputs`` is (R, F) (or (F,)); weights are unbatched or carry a leading R dimension.
    Wires must be the integers 0..n_qubits-1 (``n_qubits`` defaults to the largest wire + 1).
    Raises :class:`~qepi.errors.UserError` naming a gate or measurement that cannot be run.
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
            gates.append(Gate(op.name, wires, const=float(np.real(theta))))
            continue
        theta = torch.as_tensor(theta)  # a NumPy angle array becomes a constant tensor
        if theta.is_complex():  # e.g. from decomposing a complex matrix
            if theta.detach().imag.abs().max() > 1e-10:
                raise UserError(f"gate {op.name} on wires {wires}: complex angle")
            theta = theta.real
        n_rows = _rows_of(theta, n_rows, lambda: f"gate {op.name} on wires {wires}: angle")
        gates.append(Gate(op.name, wires, angle=len(angles)))
        angles.append(theta)
    measurements, coefficients = [], []
    for mp in tape.measurements:
        measurement, coeffs = _measurement(mp, n_qubits)
        kind = measurement.kind
        for c in coeffs:
            if isinstance(c, torch.Tensor):
                n_rows = _rows_of(c, n_rows, lambda: f"a coefficient of {kind}({describe(mp.obs)})")
        measurements.append(measurement)
        coefficients.append(coeffs)
    return Traced(n_qubits, gates, angles, measurements, coefficients, n_rows)


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

    With ``save_expectation_values`` every output, which must then be an ``expval`` with
    constant coefficients, is saved as an Aer expectation value labelled ``out{o}``.
    """
    from qiskit.circuit import Parameter
    from qiskit.quantum_info import SparsePauliOp

    params = [Parameter(f"t{j}") for j in range(len(traced.angles))]
    qc = gates_to_circuit(traced, params)
    if save_expectation_values:
        from qiskit_aer.library import SaveExpectationValue

        for o, (m, coeffs) in enumerate(zip(traced.measurements, traced.coefficients)):
            if m.kind != "expval" or any(isinstance(c, torch.Tensor) and c.dim() for c in coeffs):
                raise UserError(f"output {o}: only expval with unbatched coefficients can be "
                                f"saved as an Aer expectation value")
            values = [float(c.detach()) if isinstance(c, torch.Tensor) else c for c in coeffs]
            op = SparsePauliOp([qiskit_pauli(w) for w in m.words], values)
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
    "Measurement",
    "Traced",
    "bind_row",
    "describe",
    "flatten_op",
    "gates_to_circuit",
    "gradient_rotations",
    "multiply_words",
    "observable_terms",
    "qiskit_pauli",
    "to_qiskit",
    "trace_gates",
]
