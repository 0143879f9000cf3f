"""Batched torch simulation of measurement templates: statevector, or Pauli-transfer density.

:class:`TorchTemplateRunner` evaluates the same templates as
:class:`qepi.compat.aer.TemplateRunner` (a ``QuantumCircuit`` whose angles are affine
functions a·θ_j + b of the Parameters ``params[j]``, ending with
``save_probabilities(qubits)``) and returns the same exact outcome probabilities, but all C
angle rows of a call are simulated at once in torch. Only the qubits the template touches
are simulated (a template transpiled to a 5-qubit device that uses 3 of them is a 3-qubit
simulation).

Without noise the state is a batched statevector (C, 2**n). With noise it is the density
matrix in the Pauli basis, r_P = Tr(ρP) for the 4**n Pauli words P (C, 4**n), real: a
channel is its Pauli transfer matrix R_ij = Tr(P_i E(P_j)) / 2**k. Either way a template is
compiled once into few batched steps:

- consecutive one-qubit gates on a qubit (with their noise) become one per-row 2×2 (or 4×4
  transfer) matrix, applied with one ``einsum``; every angle gate's matrix is
  ``B0 + cos(αθ)·Bc + sin(αθ)·Bs`` with constant B's, so rows cost a few multiplications, and
  the first such products of every qubit make the initial state as a product of vectors;
  statevector steps of this kind on several qubits (5 to 13 qubits) go together as two
  batched matrix products, one on the high and one on the low half of the qubits;
- gates whose matrix has one entry per row and column (CX, CZ, SWAP and, in the Pauli basis,
  every Clifford gate followed by depolarizing noise) are index maps with factors, and
  consecutive ones compose into a single gather over the state;
- anything else (a general multi-qubit gate or channel) is a dense matrix on its qubits.

Parameter-shift rows (:meth:`TorchTemplateRunner.shifted_probabilities`: each row, then
each shifted angle of it up and down) need far fewer statevector states than rows, since a
shifted row differs from its row in one rotation: a rotation in a qubit's first gates costs
one state per row and qubit, one in its last gates none, any other Pauli rotation one state
for both shifts (see :meth:`_Program._shift_block`). At 6 qubits with a strongly entangling
ansatz that is 7 states per row instead of 73.

Noise is read from a qiskit-aer ``NoiseModel`` through its public ``to_dict`` /
``QuantumError.from_dict``: every quantum error becomes a superoperator (the sum of its
terms) applied after the gates it names on the qubits it names, exactly as Aer's
density-matrix method does (an error on specific qubits replaces the all-qubit error of the
same gate there). Errors on instructions a template does not contain (``measure``, ``reset``,
``id``, ``delay``) have no effect, as in Aer's run of the template; readout errors are
applied by the caller as confusion matrices. Anything else (an error entry of another kind,
a gate without a torch matrix) is refused with one :class:`~qepi.errors.UserError`.

Example:
    >>> import numpy as np
    >>> import qiskit_aer  # adds QuantumCircuit.save_probabilities
    >>> from qiskit import QuantumCircuit
    >>> from qiskit.circuit import Parameter
    >>> theta = Parameter("t0")
    >>> qc = QuantumCircuit(2)
    >>> _ = qc.ry(theta, 0)
    >>> _ = qc.cx(0, 1)
    >>> _ = qc.save_probabilities([0, 1], label="p")
    >>> runner = TorchTemplateRunner([qc], [theta])
    >>> np.round(runner.probabilities(np.array([[0.0], [np.pi / 2]]))[0], 12).tolist()
    [[1.0, 0.0, 0.0, 0.0], [0.5, 0.0, 0.0, 0.5]]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from qepi.errors import UserError

_PAULI_ROTATIONS = ("rx", "ry", "rz", "rxx", "ryy", "rzz", "rzx")  # exp(-iθG/2), G² = 1
_PHASES = ("p", "u1")  # diag(1, e^{iθ})
_IGNORED = ("barrier",)
# Aer's density-matrix method leaves out the terms of a quantum error whose probability is at
# most 1e-10 (without renormalising; measured on qiskit-aer 0.18: FakeManilaV2's cx error on
# qubits (0, 1) has 8.9e-11 terms); qepi does the same so both agree to rounding.
AER_ERROR_THRESHOLD = 1e-10
_UNUSED_BY_TEMPLATES = ("measure", "reset", "id", "delay")  # errors there never apply
BLOCK_ENTRIES = 2**17  # state entries simulated at once (1 MiB in float64)
# qubit counts at which one-qubit steps on several qubits go faster as one _Layer (measured
# on a 2-core machine, 1,024 rows: 1.3x to 1.7x at 7 to 13 qubits, even at 5, slower below)
LAYER_QUBITS = range(5, 14)
OTHER, LEADING, FINAL, TURNED = range(4)  # how a shifted angle is simulated (_Program._index_angles)
_PAULIS = np.array([[[1, 0], [0, 1]], [[0, 1], [1, 0]], [[0, -1j], [1j, 0]], [[1, 0], [0, -1]]])


def _superop(kraus: Sequence[np.ndarray]) -> np.ndarray:
    """(d², d²) superoperator Σ conj(K) ⊗ K acting on ρ vectorised as index a + d·b."""
    return sum(np.kron(np.conj(k), k) for k in kraus)


def pauli_basis(k: int) -> np.ndarray:
    """(4**k, 2**k, 2**k) Pauli words on k qubits; word index Σ_t digit_t·4**t (digits
    I, X, Y, Z = 0..3; qubit t of the word is bit t of the matrix index, as in Qiskit).

    >>> pauli_basis(2)[1 + 4 * 3].real.astype(int).tolist()  # Z on qubit 1, X on qubit 0
    [[0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, -1], [0, 0, -1, 0]]
    """
    words = np.ones((1, 1, 1), dtype=complex)
    for _ in range(k):  # the next qubit is the more significant one
        words = np.einsum("pab,wcd->pwacbd", _PAULIS, words).reshape(
            4 * len(words), 2 * words.shape[1], 2 * words.shape[1])
    return words


def transfer_matrix(superop: np.ndarray) -> np.ndarray:
    """Pauli transfer matrix (4**k, 4**k), real, of a k-qubit superoperator (index a + d·b).

    >>> from qiskit_aer.noise import depolarizing_error
    >>> from qiskit.quantum_info import SuperOp
    >>> np.round(np.diag(transfer_matrix(SuperOp(depolarizing_error(0.3, 1)).data)), 12).tolist()
    [1.0, 0.7, 0.7, 0.7]
    """
    d = int(round(np.sqrt(superop.shape[0])))
    words = pauli_basis(d.bit_length() - 1)  # (4**k, d, d)
    vectors = words.transpose(0, 2, 1).reshape(len(words), d * d)  # column-stacked vec(P_j)
    images = (vectors @ superop.T).reshape(len(words), d, d).transpose(0, 2, 1)  # E(P_j)
    return np.einsum("iab,jba->ij", words, images).real / d


def noise_channels(noise_model) -> tuple[dict, dict]:
    """Gate errors of a qiskit-aer ``NoiseModel`` as superoperators.

    Returns ``(local, default)``: ``local[(gate, qubits)]`` and ``default[gate]`` are
    (d², d²) arrays (qubit order of the gate, little-endian as in Qiskit).
    """
    from qiskit.quantum_info import SuperOp
    from qiskit_aer.noise import QuantumError

    local: dict[tuple[str, tuple[int, ...]], np.ndarray] = {}
    default: dict[str, np.ndarray] = {}
    if noise_model is None:
        return local, default
    for error in noise_model.to_dict()["errors"]:
        if error["type"] == "roerror":
            continue  # applied to the probabilities as confusion matrices
        unknown = set(error) - {"type", "id", "operations", "instructions", "probabilities",
                                "gate_qubits"}
        if error["type"] != "qerror" or unknown:
            raise UserError(f"noise model error of type {error['type']!r} with "
                            f"{sorted(unknown) or 'no qubits'} cannot be simulated by the exact "
                            f"backend; use backend.name='aer'")
        operations = [op for op in error["operations"] if op not in _UNUSED_BY_TEMPLATES]
        if not operations:
            continue
        quantum_error = QuantumError.from_dict(error)
        channel = sum(p * SuperOp(circuit).data  # column-stacked: index a + d·b, as here
                      for circuit, p in zip(quantum_error.circuits, quantum_error.probabilities)
                      if p > AER_ERROR_THRESHOLD)
        for op in operations:
            if "gate_qubits" in error:
                for qubits in error["gate_qubits"]:
                    key = (op, tuple(int(q) for q in qubits))
                    local[key] = channel if key not in local else channel @ local[key]
            else:
                default[op] = channel if op not in default else channel @ default[op]
    return local, default


@dataclass
class _Matrix:
    """A step's matrix on its qubits: ``constant``, or ``b0 + cos(α·θ)·bc + sin(α·θ)·bs``
    with θ = a·values[:, j] + b (``angle`` = (j, a, b, α))."""

    constant: torch.Tensor | None = None  # (d, d)
    angle: tuple[int, float, float, float] = (0, 0.0, 0.0, 1.0)
    terms: tuple[torch.Tensor, ...] = ()  # (b0, bc, bs), each (d, d)

    def left(self, matrix: np.ndarray) -> "_Matrix":
        """``matrix`` @ self."""
        m = torch.as_tensor(matrix)
        if self.constant is not None:
            return _Matrix(m @ self.constant)
        return _Matrix(None, self.angle, tuple(m @ t for t in self.terms))

    def rows(self, values: torch.Tensor) -> torch.Tensor:
        """(1 or C, d, d) for angle rows ``values`` (C, P)."""
        if self.constant is not None:
            return self.constant[None]
        j, a, b, alpha = self.angle
        theta = (alpha * (a * values[:, j] + b))[:, None, None]  # (C, 1, 1)
        b0, bc, bs = self.terms
        return b0 + torch.cos(theta) * bc + torch.sin(theta) * bs


@dataclass
class _Local:
    """A product of one-qubit matrices (applied first to last) on qubit ``qubit``."""

    qubit: int
    factors: list[_Matrix]
    slot: int = 0  # its row in the program's table of one-qubit factors


@dataclass
class _Dense:
    """A matrix on ``axes`` (axes[0] the least significant digit of the matrix index)."""

    axes: tuple[int, ...]
    matrix: _Matrix


@dataclass
class _Gather:
    """state'[:, i] = factor[i] · state[:, source[i]] over the whole state."""

    source: torch.Tensor  # (D,) long
    factor: torch.Tensor  # (D,)
    axes: tuple[int, ...]  # the qubits it acts on

    def then(self, other: "_Gather") -> "_Gather":
        """This map followed by ``other``."""
        return _Gather(self.source[other.source], other.factor * self.factor[other.source],
                       tuple(sorted(set(self.axes) | set(other.axes))))


@dataclass
class _Layer:
    """One-qubit steps on distinct qubits of an n-qubit statevector, applied at once: with
    each row's state as a (2**h, 2**l) matrix S (h high qubits, l = n // 2 low ones),
    (A ⊗ B)|ψ⟩ is A·S·Bᵀ, two batched matrix products instead of one small one per qubit."""

    steps: list[_Local]
    n: int

    def apply(self, state: torch.Tensor, local: torch.Tensor) -> torch.Tensor:
        """``state`` (c, 2**n) after the layer, with the rows' one-qubit matrices ``local``
        (c, S, 2, 2) (see :meth:`_Program._local_matrices`)."""
        c, low = state.shape[0], self.n // 2
        by_qubit = {step.qubit: local[:, step.slot] for step in self.steps}  # q -> (c, 2, 2)
        matrix = state.view(c, 2 ** (self.n - low), 2**low)  # (c, 2**h, 2**l)
        high_factor = _kron([by_qubit.get(q) for q in range(self.n - 1, low - 1, -1)])
        low_factor = _kron([by_qubit.get(q) for q in range(low - 1, -1, -1)])
        if high_factor is not None:
            matrix = high_factor @ matrix
        if low_factor is not None:
            matrix = matrix @ low_factor.transpose(-1, -2)
        return matrix.reshape(c, -1)


def _kron(factors: list[torch.Tensor | None]) -> torch.Tensor | None:
    """Row-wise Kronecker product (c, 2**k, 2**k) of k factors (c, 2, 2), most significant
    first; None stands for the identity, and all None gives None."""
    present = next((f for f in factors if f is not None), None)
    if present is None:
        return None
    eye = torch.eye(2, dtype=present.dtype).expand_as(present)
    product = None
    for factor in factors:
        factor = eye if factor is None else factor
        if product is None:
            product = factor
        else:
            c, d = product.shape[0], product.shape[1] * 2
            product = (product[:, :, None, :, None] * factor[:, None, :, None, :]).reshape(c, d, d)
    return product


def _qubits(step) -> tuple[int, ...]:
    """The qubits a step acts on."""
    return (step.qubit,) if isinstance(step, _Local) else step.axes


class _Program:
    """One template compiled into batched steps on its used qubits (see the module docs)."""

    def __init__(self, qc, params: Sequence, channels: tuple[dict, dict] | None):
        from qiskit.circuit import ParameterExpression

        index = {p: j for j, p in enumerate(params)}
        used = sorted({qc.find_bit(q).index for inst in qc.data for q in inst.qubits})
        local = {q: i for i, q in enumerate(used)}
        self.n = len(used)
        self.density = channels is not None
        self.base = 4 if self.density else 2  # Pauli digits or computational bits
        self.dtype = torch.float64 if self.density else torch.complex128
        self.measured: list[int] = []
        self.steps: list = []
        pending: dict[int, list[_Matrix]] = {}  # qubit -> one-qubit factors not yet emitted
        for inst in qc.data:
            op = inst.operation
            physical = tuple(qc.find_bit(q).index for q in inst.qubits)
            qubits = tuple(local[q] for q in physical)
            if op.name == "save_probabilities":
                self.measured = list(qubits)
                continue
            if op.name in _IGNORED:
                continue
            noise = None
            if channels is not None:
                noise = channels[0].get((op.name, physical), channels[1].get(op.name))
            angle = op.params[0] if len(op.params) == 1 else None
            if isinstance(angle, ParameterExpression) and angle.parameters:
                matrix = self._angle_matrix(op, _affine(angle, index))
            else:
                try:
                    unitary = op.to_matrix()
                except Exception:  # qiskit raises its own error types for gates without a matrix
                    unitary = None
                if unitary is None:
                    raise UserError(f"instruction {op.name} cannot be simulated by the exact "
                                    f"backend; use backend.name='aer'")
                matrix = _Matrix(torch.tensor(self._lift(unitary), dtype=self.dtype))
            if noise is not None:
                matrix = matrix.left(torch.as_tensor(transfer_matrix(noise)))
            if len(qubits) == 1:
                pending.setdefault(qubits[0], []).append(matrix)
                continue
            for q in qubits:
                self._flush(pending, q)
            self._append(qubits, matrix)
        for q in sorted(pending):
            self._flush(pending, q)
        # the first gates on each qubit, before any multi-qubit step: a product state
        self.leading = next((i for i, step in enumerate(self.steps)
                             if not isinstance(step, _Local)), len(self.steps))
        self._tabulate()
        if not self.density and self.n in LAYER_QUBITS:
            self._group_layers()
        self._index_angles(len(params))

    def _index_angles(self, n_angles: int) -> None:
        """How :meth:`shifted_probabilities` treats a shift of each angle j of the rows. Where
        j enters a single gate, a Pauli rotation exp(-iθG/2) with θ = ``_scale[j]``·v_j + b,
        in step ``_step[j]`` (factor ``_factor[j]`` of one-qubit step ``_slot[j]``, or slot
        -1), ``_kind[j]`` is LEADING in the leading product state, FINAL in the final
        one-qubit steps (those followed by nothing but a permutation of basis states), else
        TURNED; any other angle is OTHER. Statevector templates only."""
        n_steps = len(self.steps)
        self.tail_start = n_steps - int(bool(self.steps) and isinstance(self.steps[-1], _Gather))
        self.final_start, final_qubits = self.tail_start, set()
        while self.final_start > self.leading and isinstance(self.steps[self.final_start - 1],
                                                              (_Local, _Layer)):
            step = self.steps[self.final_start - 1]
            qubits = {one.qubit for one in (step.steps if isinstance(step, _Layer) else [step])}
            if qubits & final_qubits:
                break
            final_qubits |= qubits
            self.final_start -= 1
        self._kind = torch.full((n_angles,), OTHER, dtype=torch.long)
        self._scale = torch.full((n_angles,), torch.nan, dtype=torch.float64)
        self._step, self._slot, self._factor = (torch.full((n_angles,), -1, dtype=torch.long)
                                                for _ in range(3))
        self._slot_qubit = torch.zeros(len(self.table[0]), dtype=torch.long)
        self._leading_qubits = torch.tensor([s.qubit for s in self.steps[:self.leading]],
                                            dtype=torch.long)
        self._leading_slots = torch.tensor([s.slot for s in self.steps[:self.leading]],
                                           dtype=torch.long)
        if self.density:
            return
        index = torch.arange(2**self.n)
        low = [index[(index >> q) & 1 == 0] for q in range(self.n)]  # q's bit 0
        self._bit_halves = torch.stack([torch.stack([i, i + 2**q]) for q, i in enumerate(low)])
        place = index.clone()  # where the permutation after the final steps sends index t
        if self.tail_start < n_steps:
            place[self.steps[-1].source] = index.clone()
        # per qubit q, the (D,) order taking q's bit-0 then bit-1 halves to the final outcomes
        self._final_order = torch.argsort(place[self._bit_halves.reshape(self.n, -1)], dim=1)
        uses: dict[int, list[tuple[int, int, int, _Matrix]]] = {}  # j -> (step, slot, k, factor)
        for k, step in enumerate(self.steps):
            for one in step.steps if isinstance(step, _Layer) else [step]:
                if isinstance(one, _Local):
                    self._slot_qubit[one.slot] = one.qubit
                factors = one.factors if isinstance(one, _Local) else [getattr(one, "matrix", None)]
                for position, factor in enumerate(factors):
                    if factor is not None and factor.constant is None:
                        slot = one.slot if isinstance(one, _Local) else -1
                        uses.setdefault(factor.angle[0], []).append((k, slot, position, factor))
        for j, found in uses.items():
            k, slot, position, factor = found[0]
            if len(found) > 1 or factor.angle[3] != 0.5 or factor.angle[1] == 0:
                continue  # several gates, or not a Pauli rotation: OTHER
            self._scale[j], self._step[j], self._slot[j], self._factor[j] = (
                factor.angle[1], k, slot, position)
            final = slot >= 0 and self.final_start <= k < self.tail_start
            self._kind[j] = LEADING if k < self.leading else FINAL if final else TURNED

    def _group_layers(self) -> None:
        """Merge runs of at least two one-qubit steps on distinct qubits (after the leading
        product state) into :class:`_Layer` steps."""
        grouped: list = list(self.steps[:self.leading])
        run: list[_Local] = []
        for step in self.steps[self.leading:] + [None]:
            if isinstance(step, _Local) and step.qubit not in {s.qubit for s in run}:
                run.append(step)
                continue
            grouped.extend([_Layer(run, self.n)] if len(run) > 1 else run)
            run = [step] if isinstance(step, _Local) else []
            if step is not None and not isinstance(step, _Local):
                grouped.append(step)
        self.steps = grouped

    def _lift(self, unitary: np.ndarray) -> np.ndarray:
        """The unitary itself, or its Pauli transfer matrix in the density picture."""
        return transfer_matrix(np.kron(np.conj(unitary), unitary)) if self.density else unitary

    def _angle_matrix(self, op, angle: tuple[int, float, float]) -> _Matrix:
        """``op``'s matrix as b0 + cos(αθ)·bc + sin(αθ)·bs."""
        if op.name not in _PAULI_ROTATIONS + _PHASES:
            raise UserError(f"gate {op.name} with an angle cannot be simulated by the "
                            f"exact backend; use backend.name='aer'")
        gate = type(op)
        if self.density or op.name in _PHASES:  # linear in 1, cos θ, sin θ
            at = {t: self._lift(gate(t).to_matrix()) for t in (0.0, np.pi / 2, np.pi)}
            b0 = (at[0.0] + at[np.pi]) / 2
            terms, alpha = (b0, at[0.0] - b0, at[np.pi / 2] - b0), 1.0
        else:  # exp(-iθG/2) = cos(θ/2)·1 - i·sin(θ/2)·G, with -iG = U(π)
            one = np.eye(2 ** gate(0.0).num_qubits)
            terms, alpha = (0 * one, one, gate(np.pi).to_matrix()), 0.5
        return _Matrix(None, (*angle, alpha), tuple(torch.as_tensor(t, dtype=self.dtype)
                                                    for t in terms))

    def _flush(self, pending: dict[int, list[_Matrix]], qubit: int) -> None:
        factors = pending.pop(qubit, None)
        if not factors:
            return
        merged: list[_Matrix] = []  # neighbouring constants multiplied once, here
        for f in factors:
            if merged and f.constant is not None and merged[-1].constant is not None:
                merged[-1] = _Matrix(f.constant @ merged[-1].constant)
            else:
                merged.append(f)
        # gates on other qubits commute with it: place it right after the last step on its
        # qubit, so that index maps stay adjacent (and compose) and first gates come first
        at = next((i + 1 for i in range(len(self.steps) - 1, -1, -1)
                   if qubit in _qubits(self.steps[i])), 0)
        self.steps.insert(at, _Local(qubit, merged))

    def _append(self, axes: tuple[int, ...], matrix: _Matrix) -> None:
        """A multi-qubit step: an index map where the matrix allows it, else dense."""
        gather = self._gather(axes, matrix.constant) if matrix.constant is not None else None
        last = self.steps[-1] if self.steps else None
        if gather is not None and isinstance(last, _Gather):
            self.steps[-1] = last.then(gather)
        elif gather is not None:
            self.steps.append(gather)
        elif (isinstance(last, _Dense) and last.axes == axes and last.matrix.constant is not None
              and matrix.constant is not None):
            last.matrix = _Matrix(matrix.constant @ last.matrix.constant)
        else:
            self.steps.append(_Dense(axes, matrix))

    def _gather(self, axes: tuple[int, ...], matrix: torch.Tensor) -> _Gather | None:
        """``matrix`` on ``axes`` as a map over the whole state, if it has one entry per row."""
        nonzero = matrix.abs() > 1e-14
        if not bool((nonzero.sum(dim=1) == 1).all()):
            return None
        column = nonzero.to(torch.int64).argmax(dim=1)  # (d,) the source of each row
        value = matrix[torch.arange(len(matrix)), column]  # (d,)
        base = self.base
        full = torch.arange(base ** self.n)
        digits = [(full // base**a) % base for a in axes]
        row = sum(d * base**t for t, d in enumerate(digits))  # (D,) local index of each entry
        source = full - sum(d * base**a for d, a in zip(digits, axes))
        src_local = column[row]
        source = source + sum(((src_local // base**t) % base) * base**a for t, a in enumerate(axes))
        return _Gather(source, value[row], axes)

    def probabilities(self, values: torch.Tensor) -> torch.Tensor:
        """Outcome probabilities (C, 2**m) of the measured qubits (bit i = measured[i]).

        Rows are simulated in blocks of about ``BLOCK_ENTRIES`` state entries, so that each
        block's state stays in the processor's cache between steps.
        """
        rows = max(1, BLOCK_ENTRIES // self.base**self.n)
        return torch.cat([self._measure(self._evolve(values[start:start + rows]))
                          for start in range(0, values.shape[0], rows)])

    def shifted_probabilities(self, values: torch.Tensor, n_unshifted: int,
                              rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
        """:meth:`probabilities` of rows laid out as B = ``n_unshifted`` rows, then each of
        them (``rows`` (M,)) with angle ``cols`` (M,) shifted up, then the same shifted down.

        A shifted row differs from its row in one angle, so a statevector template needs
        far fewer states than rows (:meth:`_shift_block`); where an angle allows none of
        that (see :meth:`_index_angles`), or in the density picture, every row is simulated.
        Rows go in blocks of about ``BLOCK_ENTRIES`` state entries.
        """
        m = len(rows)
        if m == 0 or bool((self._kind[cols] == OTHER).any()):
            return self.probabilities(values)
        b = n_unshifted
        order = torch.argsort(rows, stable=True)  # pairs grouped by row
        rows, cols = rows[order], cols[order]
        shifted = torch.stack([values[b:b + m], values[b + m:]])[:, order]  # (2, M, P) up, down
        first = torch.searchsorted(rows, torch.arange(b + 1)).tolist()  # each row's pairs
        size = self.base**self.n
        out = torch.empty(b + 2 * m, 2 ** len(self.measured), dtype=torch.float64)  # (C, 2**m)
        in_order = bool((order == torch.arange(m)).all())
        places = None if in_order else torch.stack([b + order, b + m + order])  # (2, M) rows
        start = 0
        while start < b:  # rows whose states (with their pairs') fill about one block
            stop = start + 1
            while stop < b and (stop + 1 - start + first[stop + 1] - first[start]) * size \
                    <= BLOCK_ENTRIES:
                stop += 1
            pairs = slice(first[start], first[stop])
            out[start:stop], block = self._shift_block(values[start:stop], shifted[:, pairs],
                                                       rows[pairs] - start, cols[pairs])
            for sign in range(2):
                if in_order:
                    out[b + sign * m + pairs.start:b + sign * m + pairs.stop] = block[sign]
                else:
                    out[places[sign, pairs]] = block[sign]
            start = stop
        return out

    def _shift_block(self, values: torch.Tensor, shifted: torch.Tensor, rows: torch.Tensor,
                     cols: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Probabilities (R, 2**m) of the angle rows ``values`` (R, P), and (2, M, 2**m) of
        ``shifted`` (2, M, P): row ``rows[i]`` with angle ``cols[i]`` shifted up and down.

        - LEADING angle, in qubit q's first gates: its shifted vector w of q is α·v + β·v⊥
          (v the row's vector, v⊥ orthogonal to it), so the shifted state is α·ψ + β·χ, with
          χ the row's state with v⊥ in place of v: one more state per row and qubit.
        - FINAL angle, in qubit q's last one-qubit step M: after it only basis states are
          permuted, so the shifted state is M'·M† on q of the row's state before that
          permutation, and its probabilities come from that state alone.
        - TURNED angle, a Pauli rotation elsewhere: R(θ + Δ) = cos(Δ/2)·R(θ) +
          sin(Δ/2)·R(θ + π), so the shifted state is cos(Δ/2)·ψ + sin(Δ/2)·φ, with φ the
          row's state with that rotation turned by π, split off the row's path at its step.
        """
        r, n, m = len(values), self.n, len(rows)
        kind, slot = self._kind[cols], self._slot[cols]  # (M,) each
        lead, final, turn = (torch.nonzero(kind == k).flatten() for k in (LEADING, FINAL, TURNED))
        local, before = self._local_matrices(values, prefixes=True)  # (R, S, 2, 2), (R, S, T, 2, 2)
        # a one-qubit step with its rotation turned by 2h is M·(cos h·1 + sin h·K), with
        # K = P†·R(π)·P and P the step's factors before the rotation
        in_step = torch.nonzero(slot >= 0).flatten()
        step_rows, step_slots = rows[in_step], slot[in_step]
        position = self._factor[cols[in_step]]
        prefix = before[step_rows, step_slots, position]  # (·, 2, 2)
        turn_of = torch.zeros(m, 2, 2, dtype=self.dtype)  # (M, 2, 2) K
        turn_of[in_step] = prefix.mH @ self._turn[step_slots, position] @ prefix
        matrix_of = torch.zeros(m, 2, 2, dtype=self.dtype)  # (M, 2, 2) M
        matrix_of[in_step] = local[step_rows, step_slots]
        taken = shifted.gather(2, cols.expand(2, -1)[..., None])[..., 0]  # (2, M) shifted angles
        half = self._scale[cols] * (taken - values[rows, cols]) / 2  # (2, M)

        # the leading product states of the rows and of χ, one per (row, qubit) of LEADING pairs
        vectors = torch.zeros(r, n, 2, dtype=self.dtype)  # (R, n, 2) each qubit's M|0⟩
        vectors[:, :, 0] = 1
        vectors[:, self._leading_qubits] = local[:, self._leading_slots, :, 0]
        lead_rows, lead_qubit = rows[lead], self._slot_qubit[slot[lead]]  # (L,) each
        chi_keys, chi_of = torch.unique(lead_rows * n + lead_qubit, return_inverse=True)
        chi_rows, chi_qubits = chi_keys // n, chi_keys % n  # (X,) each
        chi_vectors = vectors[chi_rows]  # (X, n, 2)
        chi_vectors[torch.arange(len(chi_keys)), chi_qubits] = _orthogonal(
            vectors[chi_rows, chi_qubits])
        state = _product_state(torch.cat([vectors, chi_vectors]))  # (R + X, D)
        active_local = torch.cat([local, local[chi_rows]])  # the matrices each state follows
        active_values = torch.cat([values, values[chi_rows]])

        # TURNED pairs split off at their step
        split, turn_rows = [], rows[turn]
        if len(turn):
            turned = values[turn_rows].clone()  # (T, P)
            turned[torch.arange(len(turn)), cols[turn]] += torch.pi / self._scale[cols[turn]]
            turned_local = local[turn_rows]  # (T, S, 2, 2)
            in_local = slot[turn] >= 0
            turned_local[in_local, slot[turn][in_local]] = (matrix_of[turn[in_local]]
                                                            @ turn_of[turn[in_local]])
            at = self._step[cols[turn]]
        for k in range(self.leading, self.final_start):
            new = torch.nonzero(at == k).flatten() if len(turn) else []
            if len(new):  # from the row's state before step k
                split.append(new)
                state = torch.cat([state, state[turn_rows[new]]])
                active_local = torch.cat([active_local, turned_local[new]])
                active_values = torch.cat([active_values, turned[new]])
            state = self._apply_step(self.steps[k], state, active_local, active_values)

        for step in self.steps[self.final_start:self.tail_start]:
            state = self._apply_step(step, state, active_local, active_values)
        before_tail = state[:r]  # (R, D) the rows' states before the final permutation
        for step in self.steps[self.tail_start:]:
            state = self._apply_step(step, state, active_local, active_values)

        psi = state[:r]  # (R, D)
        probs = psi.real.square() + psi.imag.square()
        out = torch.empty(2, m, state.shape[1], dtype=torch.float64)  # (2, M, D)
        if len(lead):  # |α·ψ + β·χ|²
            basis = _square_terms(psi[chi_rows], state[r:r + len(chi_keys)])  # (X, 4, D)
            # the shifted vector M'|0⟩ = α·v + β·v⊥, with M|1⟩ = det M·v⊥
            matrix = matrix_of[lead]  # (L, 2, 2)
            det = matrix[:, 0, 0] * matrix[:, 1, 1] - matrix[:, 0, 1] * matrix[:, 1, 0]  # (L,)
            cos, sin = torch.cos(half[:, lead]), torch.sin(half[:, lead])  # (2, L)
            alpha = cos + sin * turn_of[lead, 0, 0]  # (2, L)
            beta = sin * turn_of[lead, 1, 0] * det
            out[:, lead] = torch.einsum("slc,lcd->sld", _square_weights(alpha, beta),
                                        basis[chi_of])
        if len(final):  # bit b of q: |N_b0·u0 + N_b1·u1|², N = M'·M†, u the row's amplitudes
            final_qubit = self._slot_qubit[slot[final]]  # (F,)
            keys, key_of = torch.unique(rows[final] * n + final_qubit, return_inverse=True)
            halves = self._bit_halves[keys % n]  # (Y, 2, D/2) indices with q's bit 0, 1
            amplitudes = before_tail[keys // n]  # (Y, D)
            basis = _square_terms(amplitudes.gather(1, halves[:, 0]),
                                  amplitudes.gather(1, halves[:, 1]))  # (Y, 4, D/2)
            matrix = matrix_of[final]  # (F, 2, 2) M
            rotated = matrix @ turn_of[final] @ matrix.mH  # (F, 2, 2) M·K·M†
            h = half[:, final, None, None]  # (2, F, 1, 1)
            matrices = torch.cos(h) * torch.eye(2) + torch.sin(h) * rotated  # (2, F, 2, 2) N
            weights = _square_weights(matrices[..., 0], matrices[..., 1])  # (2, F, 2, 4)
            bits = torch.einsum("sfbc,fce->sfbe", weights, basis[key_of])  # (2, F, 2, D/2)
            out[:, final] = bits.reshape(2, len(final), -1).gather(
                2, self._final_order[final_qubit].expand(2, -1, -1))  # (2, F, D)
        if len(turn):  # |cos h·ψ + sin h·φ|² = cos²h·|ψ|² + sin²h·|φ|² + sin 2h·Re(ψ̄φ)
            phi = torch.empty(len(turn), state.shape[1], dtype=state.dtype)
            phi[torch.cat(split)] = state[r + len(chi_keys):]
            own = psi[turn_rows]
            cross = own.real * phi.real + own.imag * phi.imag  # (T, D)
            h = half[:, turn, None]  # (2, T, 1)
            out[:, turn] = (torch.cos(h).square() * probs[turn_rows]
                            + torch.sin(h).square() * (phi.real.square() + phi.imag.square())
                            + torch.sin(2 * h) * cross)
        return self._marginal(probs), self._marginal(out.reshape(2 * m, state.shape[1])).reshape(
            2, m, 2 ** len(self.measured))

    def _local_matrices(self, values: torch.Tensor, prefixes: bool = False):
        """(c, S, d, d): the product of every one-qubit step's factors, for angle rows (c, P);
        all factors of all steps at once (see :meth:`_tabulate`). With ``prefixes``, also
        (c, S, T, d, d): the product of each step's factors before factor t."""
        j, a, b, alpha, terms = self.table  # (S, T) each, terms (S, T, 3, 2·d²) real
        taken = values[:, j] if values.shape[1] else torch.zeros(len(values), *j.shape,
                                                                 dtype=values.dtype)
        theta = alpha * (a * taken + b)  # (c, S, T)
        weights = torch.stack([torch.ones_like(theta), torch.cos(theta), torch.sin(theta)], -1)
        factors = torch.einsum("cstk,stkm->cstm", weights, terms)  # (c, S, T, 2·d² or d²) real
        if self.dtype.is_complex:
            factors = torch.view_as_complex(factors.reshape(*theta.shape, self.base**2, 2))
        factors = factors.reshape(*theta.shape, self.base, self.base)  # (c, S, T, d, d)
        partial = [factors[:, :, 0]]
        for t in range(1, factors.shape[2]):
            partial.append(factors[:, :, t] @ partial[-1])
        if not prefixes:
            return partial[-1]  # (c, S, d, d)
        eye = torch.eye(self.base, dtype=self.dtype).expand_as(partial[0])
        return partial[-1], torch.stack([eye] + partial[:-1], dim=2)

    def _tabulate(self) -> None:
        """Stack the factors of the one-qubit steps (S steps, at most T factors each, padded
        with identities) as ``b0 + cos(α(a·θ_j + b))·bc + sin(…)·bs``: index, affine and
        matrix tables for :meth:`_local_matrices`."""
        local = [step for step in self.steps if isinstance(step, _Local)]
        d, t = self.base, max((len(step.factors) for step in local), default=1)
        j = torch.zeros(len(local), t, dtype=torch.long)
        a, b, alpha = (torch.zeros(len(local), t, dtype=torch.float64) for _ in range(3))
        b0 = torch.eye(d, dtype=self.dtype).repeat(len(local), t, 1, 1)  # (S, T, d, d)
        bc, bs = torch.zeros_like(b0), torch.zeros_like(b0)
        for s, step in enumerate(local):
            step.slot = s
            for k, factor in enumerate(step.factors):
                if factor.constant is not None:
                    b0[s, k] = factor.constant
                    continue
                j[s, k], a[s, k], b[s, k], alpha[s, k] = factor.angle
                b0[s, k], bc[s, k], bs[s, k] = factor.terms
        terms = torch.stack([b0, bc, bs], dim=2).reshape(len(local), t, 3, d * d)  # (S, T, 3, d²)
        if terms.is_complex():  # real and imaginary parts interleaved: (S, T, 3, 2·d²)
            terms = torch.view_as_real(terms).reshape(len(local), t, 3, 2 * d * d)
        self.table = (j, a, b, alpha, terms)
        self._turn = bs  # (S, T, d, d) each factor at angle π: -iG for a Pauli rotation

    def _evolve(self, values: torch.Tensor) -> torch.Tensor:
        """Final states (c, base**n) of the c angle rows ``values`` (c, P)."""
        c, n, base = values.shape[0], self.n, self.base
        local = self._local_matrices(values)  # (c, S, d, d)
        # |0⟩ of one qubit: amplitudes (1, 0), or Pauli coefficients (1, 0, 0, 1) (I and Z)
        zero = torch.tensor([1.0, 0.0] if base == 2 else [1.0, 0.0, 0.0, 1.0], dtype=self.dtype)
        vectors = zero.repeat(c, n, 1)  # (c, n, base)
        vectors[:, self._leading_qubits] = local[:, self._leading_slots] @ zero
        state = _product_state(vectors)
        for step in self.steps[self.leading:]:
            state = self._apply_step(step, state, local, values)
        return state

    def _apply_step(self, step, state: torch.Tensor, local: torch.Tensor,
                    values: torch.Tensor) -> torch.Tensor:
        """``step`` on the states (c, base**n) of rows with one-qubit matrices ``local``
        (c, S, d, d) and angle rows ``values`` (c, P)."""
        c, n, base = state.shape[0], self.n, self.base
        if isinstance(step, _Gather):
            return torch.index_select(state, 1, step.source) * step.factor
        if isinstance(step, _Layer):
            return step.apply(state, local)
        if isinstance(step, _Local):
            high, low = base ** (n - 1 - step.qubit), base**step.qubit
            view = state.view(c, high, base, low)
            matrix = local[:, step.slot]  # (c, d, d)
            if low >= high:  # a batched matmul is fastest on the leading digits
                return torch.matmul(matrix[:, None], view).reshape(c, -1)
            return torch.einsum("cab,chbl->chal", matrix, view).reshape(c, -1)
        return _apply(state, step.matrix.rows(values), step.axes, n, base)

    def _measure(self, state: torch.Tensor) -> torch.Tensor:
        c, n, m = state.shape[0], self.n, len(self.measured)
        if self.density:  # p(x) = Σ_S r_{Z_S} (-1)^{x·S} / 2**m over subsets S of measured
            subsets = torch.arange(2**m)
            bits = (subsets[:, None] >> torch.arange(m)) & 1  # (2**m, m)
            words = (bits * 3 * 4 ** torch.tensor(self.measured)).sum(dim=1)  # (2**m,)
            parity = (bits.to(torch.float64) @ bits.to(torch.float64).T) % 2  # (x, S)
            return state[:, words] @ (1 - 2 * parity).T / 2**m
        return self._marginal(state.real.square() + state.imag.square())

    def _marginal(self, probs: torch.Tensor) -> torch.Tensor:
        """Probabilities (c, 2**m) of the measured qubits from those of all (c, 2**n)."""
        c, n, m = probs.shape[0], self.n, len(self.measured)
        tensor = probs.reshape(c, *[2] * n)  # axis 1 + (n - 1 - q) is qubit q
        kept = [1 + n - 1 - q for q in reversed(self.measured)]  # most significant first
        dropped = [a for a in range(1, n + 1) if a not in kept]
        if dropped:
            tensor = tensor.sum(dim=dropped, keepdim=True)
        order = [0] + kept + dropped
        return tensor.permute(order).reshape(c, 2**m)


def _product_state(vectors: torch.Tensor) -> torch.Tensor:
    """The product states (c, base**n) of per-qubit vectors (c, n, base); qubit 0 is the
    least significant digit."""
    c, n, _ = vectors.shape
    state = vectors[:, n - 1]
    for q in range(n - 2, -1, -1):
        state = (state[:, :, None] * vectors[:, q, None, :]).reshape(c, -1)  # (c, base**(n-q))
    return state


def _square_terms(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(…, 4, D) real: |a|², |b|², Re(āb) and Im(āb) of amplitudes ``a``, ``b`` (…, D), so
    that |x·a + y·b|² is ``_square_weights(x, y)`` (…, 4) times these terms."""
    overlap = a.conj() * b
    return torch.stack([a.real.square() + a.imag.square(), b.real.square() + b.imag.square(),
                        overlap.real, overlap.imag], dim=-2)


def _square_weights(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """(…, 4) real: |x|², |y|², 2·Re(x̄y) and -2·Im(x̄y) (see :func:`_square_terms`)."""
    mixed = x.conj() * y
    return torch.stack([x.abs().square(), y.abs().square(), 2 * mixed.real, -2 * mixed.imag],
                       dim=-1)


def _orthogonal(v: torch.Tensor) -> torch.Tensor:
    """Unit vectors (c, 2) orthogonal to the unit vectors ``v`` (c, 2)."""
    return torch.stack([-v[:, 1].conj(), v[:, 0].conj()], dim=-1)


def _affine(expr, index: dict) -> tuple[int, float, float]:
    """``expr`` as a·θ_j + b; anything else is refused."""
    if len(expr.parameters) != 1:
        raise UserError(f"transpiled angle {expr} depends on several gate angles")
    (p,) = expr.parameters
    b = float(expr.bind({p: 0.0}))
    a = float(expr.bind({p: 1.0})) - b
    if abs(float(expr.bind({p: 2.0})) - (2 * a + b)) > 1e-9:
        raise UserError(f"transpiled angle {expr} is not affine in {p}")
    return index[p], a, b


def _apply(state: torch.Tensor, matrix: torch.Tensor, axes: tuple[int, ...], digits: int,
           base: int) -> torch.Tensor:
    """``matrix`` (1 or C, d, d) on the digits ``axes`` (axes[0] least significant of the
    matrix index) of ``state`` (C, base**digits), whose flat index is little-endian."""
    c, k = state.shape[0], len(axes)
    tensor = state.reshape(c, *[base] * digits)  # axis 1 + (digits - 1 - q) is digit q
    targets = [1 + digits - 1 - q for q in reversed(axes)]  # most significant first
    rest = [a for a in range(1, digits + 1) if a not in targets]
    moved = tensor.permute([0] + rest + targets).reshape(c, -1, base**k)  # (C, rest, d)
    moved = moved @ matrix.transpose(-1, -2)
    inverse = np.argsort([0] + rest + targets).tolist()
    return moved.reshape(c, *[base] * digits).permute(inverse).reshape(c, -1)


class TorchTemplateRunner:
    """Exact outcome probabilities of templates, simulated in batched torch.

    The same interface as :class:`qepi.compat.aer.TemplateRunner`: ``probabilities(values)``
    takes angle rows (C, P) and returns one (C, 2**m) array per template. With a
    ``noise_model`` (qiskit-aer ``NoiseModel``) the density matrix is simulated.
    """

    def __init__(self, templates: Sequence, params: Sequence, noise_model=None):
        channels = noise_channels(noise_model) if noise_model is not None else None
        self.programs = [_Program(qc, params, channels) for qc in templates]

    def probabilities(self, values: np.ndarray) -> list[np.ndarray]:
        """Probabilities (C, 2**m) of every template for angle rows ``values`` (C, P)."""
        rows = torch.as_tensor(np.asarray(values, dtype=np.float64))
        with torch.no_grad():
            return [program.probabilities(rows).numpy() for program in self.programs]

    def shifted_probabilities(self, values: np.ndarray, n_unshifted: int, rows: np.ndarray,
                              cols: np.ndarray) -> list[np.ndarray]:
        """:meth:`probabilities` of parameter-shift rows (C = B + 2M, P) laid out as
        :func:`qepi.backends.aer.shifted_rows` lists them: B = ``n_unshifted`` rows, then
        row ``rows[i]`` with angle ``cols[i]`` shifted up, then shifted down (i < M). Equal to
        :meth:`probabilities` to rounding, simulating a few states per row instead of one
        per shifted row where the template allows (see :meth:`_Program._shift_block`).

        >>> import qiskit_aer  # adds QuantumCircuit.save_probabilities
        >>> from qiskit import QuantumCircuit
        >>> from qiskit.circuit import Parameter
        >>> theta = Parameter("t0")
        >>> qc = QuantumCircuit(1)
        >>> _ = qc.rx(theta, 0)
        >>> _ = qc.save_probabilities([0], label="p")
        >>> runner = TorchTemplateRunner([qc], [theta])
        >>> values = np.array([[0.3], [0.3 + np.pi / 2], [0.3 - np.pi / 2]])
        >>> paired = runner.shifted_probabilities(values, 1, np.array([0]), np.array([0]))[0]
        >>> bool(np.allclose(paired, runner.probabilities(values)[0], atol=1e-14))
        True
        """
        values = torch.as_tensor(np.asarray(values, dtype=np.float64))
        rows, cols = torch.as_tensor(rows, dtype=torch.long), torch.as_tensor(cols, dtype=torch.long)
        with torch.no_grad():
            return [program.shifted_probabilities(values, n_unshifted, rows, cols).numpy()
                    for program in self.programs]


__all__ = ["TorchTemplateRunner", "noise_channels", "pauli_basis", "transfer_matrix"]
