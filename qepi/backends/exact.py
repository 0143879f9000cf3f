"""``exact``: qepi's compiled torch statevector simulator for small circuits.

A layer's circuit is compiled once per executor:

1. **Trace.** ``qfunc`` is recorded on sentinel inputs and weights while
   :mod:`qepi.backends.exact_trace` watches every torch operation, templates are
   decomposed into gates, and every gate parameter is traced back to where it comes
   from: a column of the inputs or an entry of the weights (only when every operation
   on the way is a plain selection), a constant (computed from neither), or any other
   torch expression of them (recorded per row count with
   :func:`qepi.compat.torch.record_graph`, e.g. the ``x_i * x_{i+1}`` phases of IQP or
   ``relu(x)``). A fresh trace on new random values must reproduce every parameter. What
   cannot be proven this way — a value of the inputs or weights reaching Python
   (``if w[0] > 0``, ``.item()``), an observable computed from them — makes the circuit
   *traced*: re-traced on every call, copy by copy, on the call's own tensors and
   simulated gate by gate (``strategy == "traced"``, ``describe()`` says why). A gate is
   *data* when one of its parameters depends on the inputs, *weights* otherwise.
2. **Segment.** Leading single-qubit gates build a product state (one 2-vector per
   wire, then their Kronecker product). Gates before the first data gate act on one row.
   Runs of gates holding trainable weights become *weight blocks*; data gates (and
   constant gates between them) are applied to every sample. Consecutive diagonal phase
   gates (RZ, PhaseShift, IsingZZ, MultiRZ, CRZ, …) are merged into a single phase
   vector; constant permutation gates (CNOT, SWAP, X, CZ, Toffoli, …) into one gather.
3. **Strategy.** With ``fold`` every weight block is folded each step into one dense
   2ⁿ×2ⁿ unitary per copy (single-qubit layers as Kronecker products, other gates run on
   the identity; differentiable in torch) and applied to all samples as one batched
   matmul; with ``gates`` every gate is applied to every sample. A cost model
   (:func:`estimate_costs`) picks the cheaper per call: folding for few qubits, gate by
   gate beyond the crossover (7 qubits for 3 copies x 512 rows of a 2-layer strongly
   entangling circuit on CPU).
4. **Measure.** ``expval``, ``var`` and ``probs`` (any wires, any order, or
   ``op=`` a Pauli word), in any mix. Observables sharing their diagonalizing gates are
   read together as ``|ψ|²`` times an eigenvalue matrix (``⟨Z_i⟩`` needs no extra gate);
   Pauli words are rotated wire by wire and any other observable is diagonalized from its
   matrix. Other measurements, mid-circuit measurements, noise channels and non-qubit
   gates are refused with a one-line UserError.

Amplitudes stay real until the first complex gate (RY/CNOT/CZ-only circuits never leave
real arithmetic). ``Backend(dtype="float32")`` computes in float32/complex64; inputs on a
CUDA device are simulated there. Gates without a qepi kernel use PennyLane's own
(batched) matrix.

Example:
    >>> import torch
    >>> from qepi.circuits import build_circuit
    >>> from qepi.config import Backend, Circuit
    >>> spec = build_circuit(Circuit(n_qubits=3, n_layers=2, encoding="iqp"))
    >>> run = ExactExecutor(spec.qfunc, spec.n_qubits, Backend(name="exact"))
    >>> out = run(torch.rand(5, 2, 3), {"weights": torch.rand(2, 2, 3, 3)})  # (N, K, F)
    >>> out.shape, run.stats.circuits
    (torch.Size([5, 2, 3]), 10)
    >>> run.strategy, run.choose_strategy(n_rows=512, copies=2)  # 5 rows: folding does not pay
    ('gates', 'fold')
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from qepi.backends.base import (MEASUREMENT_KINDS, BackendEntry, Capabilities, ExecutionStats,
                                ExecutorBase, register_backend)
from qepi.backends.exact_trace import Origin, Trace, measurement_kind, record, trace_circuit
from qepi.backends.mitigation import refuse_mitigation
from qepi.compat.torch import record_graph
from qepi.config import Backend
from qepi.errors import UserError

STRATEGIES = ("auto", "fold", "gates")
TRACE_ROWS = 3  # rows of the sentinel inputs used to trace the circuit

# Diagonal gates exp(i θ c) with c a fixed vector over the gate's local basis states.
_PHASE_COEFFS: dict[str, np.ndarray] = {
    "RZ": np.array([-0.5, 0.5]),
    "PhaseShift": np.array([0.0, 1.0]),
    "U1": np.array([0.0, 1.0]),
    "IsingZZ": np.array([-0.5, 0.5, 0.5, -0.5]),
    "CRZ": np.array([0.0, 0.0, -0.5, 0.5]),
    "ControlledPhaseShift": np.array([0.0, 0.0, 0.0, 1.0]),
    "CPhase": np.array([0.0, 0.0, 0.0, 1.0]),
}


def _rot_matrix(phi, theta, omega):
    # [[e^{-i(φ+ω)/2} c, -e^{i(φ-ω)/2} s], [e^{-i(φ-ω)/2} s, e^{i(φ+ω)/2} c]], real parts first
    c, s = torch.cos(theta / 2), torch.sin(theta / 2)
    plus, minus = (phi + omega) / 2, (phi - omega) / 2
    pc, ps = torch.cos(plus) * c, torch.sin(plus) * c
    ms, mss = torch.cos(minus) * s, torch.sin(minus) * s
    real = torch.stack([pc, -ms, ms, pc], -1)
    imag = torch.stack([-ps, -mss, -mss, ps], -1)
    return torch.complex(real, imag)


def _rx_matrix(theta):
    c, s = torch.cos(theta / 2), torch.sin(theta / 2)
    zero = torch.zeros_like(c)
    return torch.complex(torch.stack([c, zero, zero, c], -1), torch.stack([zero, -s, -s, zero], -1))


def _ry_matrix(theta):
    c, s = torch.cos(theta / 2), torch.sin(theta / 2)
    return torch.stack([c, -s, s, c], -1)


def _controlled(block):
    """(..., 4) entries of a 2x2 target block -> (..., 16) entries of the controlled gate."""
    one, zero = torch.ones_like(block[..., 0]), torch.zeros_like(block[..., 0])
    a, b, c, d = block.unbind(-1)
    return torch.stack([one, zero, zero, zero, zero, one, zero, zero,
                        zero, zero, a, b, zero, zero, c, d], -1)


# Dense gates: name -> builder(params (K, R') each) -> (K, R', d*d) entries, row-major.
_DENSE_BUILDERS: dict[str, Callable] = {
    "RX": _rx_matrix,
    "RY": _ry_matrix,
    "Rot": _rot_matrix,
    "CRX": lambda t: _controlled(_rx_matrix(t)),
    "CRY": lambda t: _controlled(_ry_matrix(t)),
    "CRot": lambda a, b, c: _controlled(_rot_matrix(a, b, c)),
}


# ----------------------------------------------------------------------------- tracing


def _tensor_params(qfunc: Callable, names: list[str]) -> Callable:
    """f(x, *weights) -> every tensor-valued gate parameter, in circuit order."""

    def params(x, *ws):
        ops, _ = record(qfunc, x, dict(zip(names, ws)))
        return [p for op in ops for p in op.data if isinstance(p, torch.Tensor)]

    return params


def _structure(ops) -> list[tuple]:
    """What must not change between two traces of a compiled circuit."""
    return [(op.name, tuple(op.wires), len(op.data)) for op in ops]


def _check_matrix_shape(op, matrix) -> None:
    d = 2 ** len(op.wires)
    if tuple(matrix.shape[-2:]) != (d, d):
        raise UserError(f"exact backend: {op.name} is not a qubit gate (its matrix is "
                        f"{tuple(matrix.shape[-2:])} on {len(op.wires)} wire(s)); exact "
                        f"simulates qubits")


def _op_matrix(op, dtype: torch.dtype) -> torch.Tensor:
    """``op``'s matrix as a (d, d) or (B, d, d) tensor of ``dtype`` (complex), its batch of
    parameters included; ops whose matrix fails on (or ignores) the batch are built row by row."""
    from pennylane.ops.functions import bind_new_parameters

    batch = op.batch_size
    try:
        matrix = torch.as_tensor(op.matrix())
        batched_ok = batch is None or (matrix.dim() == 3 and matrix.shape[0] == batch)
    except Exception as error:  # noqa: BLE001 - PennyLane's own failure, named below
        if batch is None:
            raise UserError(f"exact backend: cannot build the matrix of {op.name} "
                            f"({type(error).__name__}); use backend.name='default.qubit'") from None
        batched_ok = False
    if not batched_ok:
        try:
            ndims = op.ndim_params
        except AttributeError:  # arithmetic ops (SProd, Sum): scalar coefficients
            ndims = (0,) * len(op.data)
        rows = [bind_new_parameters(op, [p[b] if _ndim(p) > nd else p
                                         for p, nd in zip(op.data, ndims)])
                for b in range(batch)]
        matrix = torch.stack([_op_matrix(row, dtype) for row in rows])
    _check_matrix_shape(op, matrix)
    return matrix.to(dtype).resolve_conj().resolve_neg()


def _ndim(value) -> int:
    return value.dim() if isinstance(value, torch.Tensor) else np.ndim(value)


def _output_widths(measurements, n_qubits: int) -> list[int]:
    """Columns of each measurement: 1 for expval and var, 2**wires for probs."""
    return [2 ** len(mp.wires or range(n_qubits)) if measurement_kind(mp) == "probs" else 1
            for mp in measurements]


def _unproven(trace: Trace) -> str | None:
    """Why one trace of the circuit cannot stand for all values, or None."""
    if trace.escapes:
        return f"{trace.escapes[0]} reached Python (the circuit may depend on its value)"
    for mp in trace.measurements:
        origins = [trace.origin(p) for p in (mp.obs.data if mp.obs is not None else ())]
        sources = sorted(set().union(*(o.sources for o in origins if o is not None)))
        if sources:
            return (f"the observable of qml.{measurement_kind(mp)}() is computed from "
                    f"{', '.join(sources)}")
    return None


def _numpy(value) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().resolve_conj().resolve_neg().numpy()
    return np.asarray(value)


def _diagonalize(obs) -> tuple[list, np.ndarray, list]:
    """(gates, eigenvalues, wires): after ``gates``, ``obs`` is diagonal on ``wires`` with
    these eigenvalues. Pauli words use their one-wire rotations; anything else is
    diagonalized from its matrix (never from PennyLane's eigendecomposition cache, see
    :mod:`qepi.compat.pennylane`)."""
    import pennylane as qml

    rep = obs.pauli_rep
    if rep is not None and len(rep) <= 1:
        word, coeff = next(iter(rep.items())) if rep else ({}, 0.0)
        coeff = complex(_numpy(coeff))
        if abs(coeff.imag) < 1e-12:
            eig = np.array([coeff.real])
            gates = []
            for wire, pauli in word.items():
                eig = np.kron(eig, [1.0, -1.0])
                gates += {"X": [qml.Hadamard(wire)], "Y": qml.PauliY(wire).diagonalizing_gates(),
                          "Z": []}[pauli]
            return gates, eig, list(word)
    matrix = _numpy(qml.matrix(obs)).astype(np.complex128)
    eig, vectors = np.linalg.eigh(matrix)
    return [qml.QubitUnitary(vectors.conj().T, wires=obs.wires)], eig, list(obs.wires)


def _probs_gates(mp) -> list:
    """Gates that rotate ``qml.probs(op=...)`` into the computational basis (none without
    ``op``); only Pauli words have a basis order qepi can match."""
    if mp.obs is None:
        return []
    rep = mp.obs.pauli_rep
    if rep is None or len(rep) != 1:
        raise UserError(f"exact backend: qml.probs(op={mp.obs.name}) is only supported for "
                        f"Pauli words; use qml.probs(wires=...) after rotating the basis")
    return mp.diagonalizing_gates()


# ----------------------------------------------------------------------------- program


@dataclass
class _Gate:
    """One step of the compiled program.

    kind: ``phase`` (merged diagonal phases exp(i Σ θ_g c_g)), ``perm`` (constant
    permutation with phases), ``dense`` (a k-qubit matrix, constant or parametrised).
    """

    kind: str
    axes: tuple[int, ...] = ()  # wire positions (dense)
    slots: list[list[int]] = field(default_factory=list)  # parameter slots per merged gate
    coeffs: np.ndarray | None = None  # (G, D) phase coefficients (phase)
    index: np.ndarray | None = None  # (D,) source index (perm)
    factor: np.ndarray | None = None  # (D,) phases (perm) or None when all ones
    matrix: np.ndarray | None = None  # (d, d) constant (dense)
    builder: Callable | None = None  # params (K, G, R') -> (K, G, R', d*d) entries
    op: object = None  # PennyLane op for the generic matrix path (dense)
    data: bool = False  # depends on the inputs
    weights: bool = False  # depends on the trainable weights
    name: str = ""


def _local_to_full(values: np.ndarray, axes: tuple[int, ...], n: int) -> np.ndarray:
    """A vector over the basis of ``axes`` -> the same vector over all 2**n basis states."""
    basis = np.arange(2**n)
    local = np.zeros(2**n, dtype=np.int64)
    for a in axes:
        local = local * 2 + ((basis >> (n - 1 - a)) & 1)
    return values[local]


def _monomial(matrix: np.ndarray, axes: tuple[int, ...], n: int):
    """(index, factor) over all 2**n basis states when the k-qubit ``matrix`` on ``axes`` has
    one non-zero per row and column (``new[b] = factor[b] * old[index[b]]``), else None."""
    nonzero = np.abs(matrix) > 1e-12
    if not (nonzero.sum(1) == 1).all() or not (nonzero.sum(0) == 1).all():
        return None
    local_index = nonzero.argmax(1)
    local_factor = matrix[np.arange(len(local_index)), local_index]
    basis = np.arange(2**n)
    local = _local_to_full(np.arange(len(local_index)), axes, n)  # local basis state of b
    source = basis.copy()
    k = len(axes)
    for j, a in enumerate(axes):  # replace the bits on ``axes`` by the source's local bits
        bit = 1 << (n - 1 - a)
        source_bit = (local_index[local] >> (k - 1 - j)) & 1
        source = (source & ~bit) | (source_bit * bit)
    return source, local_factor[local]


class _Program:
    """A circuit compiled into gates, segments and measurement groups.

    ``fallback`` is None when the compiled form is proven to hold for every value of the
    inputs and weights; otherwise it says why the circuit is re-traced on every call.
    """

    def __init__(self, qfunc: Callable, n_qubits: int, names: list[str],
                 feature_dim: int, weight_shapes: list[tuple[int, ...]]):
        self.n = n_qubits
        self.names = names
        self.weight_shapes = weight_shapes
        self.param_fn = _tensor_params(qfunc, names)
        gen = torch.Generator().manual_seed(1234)
        m = TRACE_ROWS

        def sentinels():
            x = torch.randn(m, feature_dim, generator=gen, dtype=torch.float64)
            ws = [torch.randn(s, generator=gen, dtype=torch.float64) for s in weight_shapes]
            return x, ws

        x1, w1 = sentinels()
        trace = trace_circuit(qfunc, x1, dict(zip(names, w1)))
        ops, measurements = trace.ops, trace.measurements
        self.widths = _output_widths(measurements, n_qubits)
        self.n_outputs = sum(self.widths)
        self.fallback = _unproven(trace)
        if self.fallback:
            return
        # arange sentinels tell which entry a proven selection picks
        w_numel = [math.prod(s) for s in weight_shapes]
        x_ar = torch.arange(m * feature_dim, dtype=torch.float64).reshape(m, feature_dim) + 1
        w_ar, offset = [], m * feature_dim + 1
        for s, count in zip(weight_shapes, w_numel):
            w_ar.append(torch.arange(count, dtype=torch.float64).reshape(s) + offset)
            offset += count
        ranged = self.param_fn(x_ar, *w_ar)
        if len(ranged) != sum(isinstance(p, torch.Tensor) for op in ops for p in op.data):
            self.fallback = "its gates changed between two traces"
            return
        w_offsets = dict(zip(names, np.cumsum([0, *w_numel[:-1]]).tolist()))
        w_sizes = dict(zip(names, w_numel))

        # parameter slots: ("x", column) | ("w", flat index) | ("g", graph output) | ("c", value)
        self.sources: list[tuple[str, object]] = []
        self.slot_data: list[bool] = []
        self.slot_weight: list[bool] = []
        self.slot_batched: list[bool] = []  # carries a row dimension
        graph_outputs: list[int] = []
        tensor_index = 0
        slots_per_op = []
        for op in ops:
            op_slots = []
            ndim_params = getattr(op, "ndim_params", (0,) * len(op.data))
            for j, p in enumerate(op.data):
                op_slots.append(len(self.sources))
                is_tensor = isinstance(p, torch.Tensor)
                origin = trace.origin(p)
                self.slot_batched.append(is_tensor and p.dim() > ndim_params[j])
                self.slot_data.append(origin is not None and "inputs" in origin.sources)
                self.slot_weight.append(origin is not None and bool(origin.sources - {"inputs"}))
                if origin is None:
                    value = p.detach().clone() if is_tensor else torch.as_tensor(np.asarray(p))
                    self.sources.append(("c", value))
                else:
                    source = self._selection(origin, ranged[tensor_index], feature_dim,
                                             w_offsets, w_sizes)
                    if source is None:
                        source = ("g", len(graph_outputs))
                        graph_outputs.append(tensor_index)
                    self.sources.append(source)
                tensor_index += is_tensor
            slots_per_op.append(op_slots)
        self.graph_outputs = graph_outputs
        self.graph_fn = self._subset(graph_outputs)
        self.graphs: dict[int, Callable] = {}  # recorded parameter graphs by row count
        self.fallback = self._verify(qfunc, ops, measurements, *sentinels())
        if self.fallback:
            return
        gates = _merge([self._gate(op, slots) for op, slots in zip(ops, slots_per_op)], n_qubits)
        self.measure = self._measurements(measurements)
        self._segment(gates)

    def _verify(self, qfunc: Callable, ops, measurements, x, ws) -> str | None:
        """Why the compiled parameters fail to reproduce a fresh trace on new values, or None."""
        import pennylane as qml

        new_ops, new_measurements = record(qfunc, x, dict(zip(self.names, ws)))
        if _structure(new_ops) != _structure(ops) or len(new_measurements) != len(
                measurements) or not all(map(qml.equal, new_measurements, measurements)):
            return "its gates or measurements changed between two traces"
        w_flat = torch.cat([w.reshape(-1) for w in ws]) if ws else torch.zeros(0)
        graph = self.graph_fn(x, *ws) if self.graph_outputs else []
        expected = [(op, p) for op in new_ops for p in op.data]
        for (kind, where), (op, value) in zip(self.sources, expected):
            got = {"x": lambda: x[:, where], "w": lambda: w_flat[where],
                   "g": lambda: graph[where], "c": lambda: where}[kind]()
            got, value = _numpy(got), _numpy(value)
            if got.shape != value.shape or not np.allclose(got, value, rtol=1e-12, atol=1e-12):
                return f"a parameter of {op.name} did not reproduce on new values"
        return None

    def _segment(self, gates: list[_Gate]) -> None:
        """Gates before the first data gate act on |0…0⟩; then data runs and weight runs."""
        # leading single-qubit gates make a product state: one 2-vector per wire, then kron
        n_product = next((i for i, g in enumerate(gates) if not _single(g)), len(gates))
        all_gates = gates
        self.product, gates = gates[:n_product], gates[n_product:]
        # the prefix (before any data gate) runs on one row; a data product state has N rows
        first_data = next((i for i, g in enumerate(gates) if g.data), len(gates))
        if any(g.data for g in self.product):
            first_data = 0
        self.prefix = gates[:first_data]
        runs: list[list[_Gate]] = []
        for g in gates[first_data:]:
            if runs and g.data == runs[-1][-1].data:
                runs[-1].append(g)
            else:
                runs.append([g])
        # a run is folded only when it holds trainable weights; constant runs stay per sample
        self.segments = [
            ("weights" if not r[0].data and any(g.weights for g in r) else "data", r) for r in runs
        ]
        self.weight_runs = [r for kind, r in self.segments if kind == "weights"]
        # folding plan: neighbouring single-qubit gates become one Kronecker-product layer
        self.fold_plans = {}
        for run in self.weight_runs:
            plan: list[tuple[str, object]] = []
            for g in run:
                if _single(g):
                    if not plan or plan[-1][0] != "layer":
                        plan.append(("layer", []))
                    plan[-1][1].append(g)
                else:
                    plan.append(("gate", g))
            self.fold_plans[id(run)] = plan
        kinds = [kind for kind, _ in self.sources]
        self.x_slots = [s for s, kind in enumerate(kinds) if kind == "x"]
        self.w_slots = [s for s, kind in enumerate(kinds) if kind == "w"]
        self.graph_slots = [s for s, kind in enumerate(kinds) if kind == "g"]
        self.const_slots = [s for s, kind in enumerate(kinds) if kind == "c"]
        self.x_cols = np.array([self.sources[s][1] for s in self.x_slots], dtype=np.int64)
        self.x_pos = {s: i for i, s in enumerate(self.x_slots)}
        self.w_pos = {s: i for i, s in enumerate(self.w_slots)}
        self.w_index = np.array([self.sources[s][1] for s in self.w_slots], dtype=np.int64)
        # parametrised dense gates are built together, one group per (gate, data or weights)
        groups: dict[tuple[str, bool], list[_Gate]] = {}
        self.generic_gates = []
        for g in all_gates:
            if g.kind == "dense" and g.matrix is None:
                if g.builder is not None:
                    groups.setdefault((g.name, g.data), []).append(g)
                else:
                    self.generic_gates.append(g)
        self.dense_groups = [
            (gs[0].builder, 2 ** len(gs[0].axes), gs) for gs in groups.values()
        ]

    def _subset(self, indices: list[int]) -> Callable:
        fn = self.param_fn

        def subset(x, *ws):
            out = fn(x, *ws)
            return [out[i] for i in indices]

        return subset

    @staticmethod
    def _selection(origin: Origin, ranged: torch.Tensor, feature_dim: int,
                   w_offsets: dict[str, int], w_sizes: dict[str, int]):
        """("x", column) or ("w", flat index) for a proven plain selection of one input
        column (one value per row) or of one weight entry; None for anything else.

        ``ranged`` is the parameter traced on arange sentinels: inputs 1, 2, … row by row,
        then every weight's entries in order, so its values name the entries selected.
        """
        if origin.selection is None:
            return None
        if origin.selection == "inputs":
            if ranged.dim() != 1 or ranged.shape[0] != TRACE_ROWS:
                return None
            col = int(ranged[0].item()) - 1
            cols = torch.arange(TRACE_ROWS, dtype=torch.float64) * feature_dim + col + 1
            return ("x", col) if 0 <= col < feature_dim and torch.equal(ranged, cols) else None
        if ranged.dim() != 0:
            return None
        flat = int(ranged.item()) - (TRACE_ROWS * feature_dim + 1)
        start = w_offsets[origin.selection]
        return ("w", flat) if start <= flat < start + w_sizes[origin.selection] else None

    def _axes(self, wires, name: str) -> tuple[int, ...]:
        """Positions of ``wires`` among the circuit's wires 0..n-1."""
        try:
            return tuple(range(self.n).index(w) for w in wires)
        except ValueError:
            raise UserError(
                f"exact backend: {name} acts on wires {list(wires)}; the circuit has "
                f"wires 0..{self.n - 1}"
            ) from None

    def _gate(self, op, slots: list[int]) -> _Gate:
        import pennylane as qml

        axes = self._axes(op.wires, op.name)
        data = any(self.slot_data[s] for s in slots)
        weights = any(self.slot_weight[s] for s in slots)
        constant = not data and not weights and all(self.sources[s][0] == "c" for s in slots)
        if constant:
            matrix = _numpy(qml.matrix(op)).astype(np.complex128)
            _check_matrix_shape(op, matrix)
            monomial = _monomial(matrix, axes, self.n)
            if monomial is not None:
                index, factor = monomial
                return _Gate("perm", axes, index=index,
                             factor=None if np.allclose(factor, 1) else factor, name=op.name)
            return _Gate("dense", axes, matrix=matrix, name=op.name)
        if op.name in _PHASE_COEFFS:
            coeffs = _local_to_full(_PHASE_COEFFS[op.name], axes, self.n)[None]
            return _Gate("phase", axes, [slots], coeffs=coeffs, data=data, weights=weights,
                         name=op.name)
        if op.name == "MultiRZ":
            signs = np.array([1 - 2 * (bin(b).count("1") % 2) for b in range(2 ** len(axes))])
            coeffs = _local_to_full(-0.5 * signs.astype(float), axes, self.n)[None]
            return _Gate("phase", axes, [slots], coeffs=coeffs, data=data, weights=weights,
                         name=op.name)
        builder = _DENSE_BUILDERS.get(op.name)
        return _Gate("dense", axes, [slots], builder=builder, op=None if builder else op,
                     data=data, weights=weights, name=op.name)

    def _measurements(self, measurements) -> list[_Readout]:
        """Measurements grouped by the gates that diagonalize them (``probs`` needs none)."""
        import pennylane as qml

        groups: dict[tuple, _Readout] = {}
        for position, mp in enumerate(measurements):
            kind = measurement_kind(mp)
            if kind == "probs":
                gates = _probs_gates(mp)
                axes = self._axes(mp.wires or range(self.n), "qml.probs()")
            else:
                gates, eig, wires = _diagonalize(mp.obs)
                axes = self._axes(wires, mp.obs.name)
            key = tuple(
                (g.name, tuple(g.wires), _numpy(qml.matrix(g)).tobytes()) for g in gates
            )
            if key not in groups:
                groups[key] = _Readout(_merge([self._gate(g, []) for g in gates], self.n))
            readout = groups[key]
            if kind == "probs":
                readout.items.append((position, kind, axes))
                continue
            rows = [readout.add_row(_local_to_full(eig, axes, self.n))]
            if kind == "var":
                rows.append(readout.add_row(_local_to_full(eig**2, axes, self.n)))
            readout.items.append((position, kind, rows))
        readouts = list(groups.values())
        # one group of expectation values in circuit order: its table rows are the outputs
        self.direct = len(readouts) == 1 and [item[:2] for item in readouts[0].items] == [
            (i, "expval") for i in range(len(measurements))]
        return readouts


@dataclass
class _Readout:
    """Measurements read from one diagonalized state: ``table`` (D, P) maps its
    probabilities to eigenvalue sums; items are (output position, kind, table rows or axes)."""

    gates: list[_Gate]
    rows: list[np.ndarray] = field(default_factory=list)  # (D,) each
    items: list[tuple] = field(default_factory=list)

    def add_row(self, row: np.ndarray) -> int:
        self.rows.append(row)
        return len(self.rows) - 1

    @property
    def table(self) -> np.ndarray:
        return np.stack(self.rows, 1)  # (D, P)


def _marginal(probs: torch.Tensor, axes: tuple[int, ...], n: int) -> torch.Tensor:
    """(K, D, R) probabilities -> (K, 2**len(axes), R) marginal over ``axes`` in that order
    (first axis most significant)."""
    k_, _, r_ = probs.shape
    t = probs.reshape(k_, *[2] * n, r_)
    others = [1 + a for a in range(n) if a not in axes]
    if others:
        t = t.sum(others)  # remaining axes in increasing order
    kept = sorted(axes)
    t = t.permute(0, *[1 + kept.index(a) for a in axes], len(axes) + 1)
    return t.reshape(k_, 2 ** len(axes), r_)


def _single(gate: _Gate) -> bool:
    """A dense gate on one wire (2x2 matrix)."""
    return gate.kind == "dense" and len(gate.axes) == 1


def _merge(gates: list[_Gate], n: int) -> list[_Gate]:
    """Merge neighbouring phase gates of the same kind (data or weights) and constant perms."""
    out: list[_Gate] = []
    for g in gates:
        prev = out[-1] if out else None
        if prev is not None and g.kind == "phase" and prev.kind == "phase" and (
            prev.data, prev.weights) == (g.data, g.weights):
            out[-1] = _Gate("phase", slots=prev.slots + g.slots,
                            coeffs=np.concatenate([prev.coeffs, g.coeffs]),
                            data=g.data, weights=g.weights, name=f"{prev.name}+{g.name}")
        elif prev is not None and g.kind == "perm" and prev.kind == "perm":
            # new[i] = f_g[i] * (f_p * s)[idx_p][idx_g[i]]
            index = prev.index[g.index]
            f_prev = np.ones(2**n) if prev.factor is None else prev.factor
            f_g = np.ones(2**n) if g.factor is None else g.factor
            factor = f_g * f_prev[g.index]
            out[-1] = _Gate("perm", index=index,
                            factor=None if np.allclose(factor, 1) else factor,
                            name=f"{prev.name}+{g.name}")
        else:
            out.append(g)
    return out


# ----------------------------------------------------------------------------- engine
#
# A state is a (K, D, R) tensor: copies, 2**n amplitudes (wire 0 most significant), rows.
# Rows are innermost so that a per-sample gate broadcasts over contiguous memory. A gate
# parameter is a (K, R') tensor with R' = 1 (shared by all rows) or R' = R.


def _promote(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Make a real and a complex tensor both complex (matmul needs one dtype)."""
    if a.is_complex() == b.is_complex():
        return a, b
    if a.is_complex():
        return a, b.to(a.dtype)
    return a.to(b.dtype), b


def _apply_dense(state: torch.Tensor, g: torch.Tensor, axes: tuple[int, ...], n: int):
    """state (K, D, R); g (K', d, d, R') acting on wire positions ``axes``."""
    k_, dim, r_ = state.shape
    d = 2 ** len(axes)
    if g.is_complex() and not state.is_complex():
        state = state.to(g.dtype)  # once, instead of in every product
    if len(axes) == 1:  # no permutation: view the wire as its own axis
        high = 2 ** axes[0]
        s = state.reshape(k_, high, 2, dim // (2 * high), r_)
        s0, s1 = s.unbind(2)  # (K, high, low, R)
        g00, g01, g10, g11 = g.reshape(g.shape[0], 1, 4, 1, g.shape[-1]).unbind(2)
        out = torch.stack([g00 * s0 + g01 * s1, g10 * s0 + g11 * s1], 2)
        return out.reshape(out.shape[0], dim, out.shape[-1])
    others = [a for a in range(n) if a not in axes]
    order = others + list(axes)
    s = state.reshape(k_, *[2] * n, r_).permute(0, *[1 + a for a in order], n + 1)
    s = s.reshape(k_, dim // d, 1, d, r_)
    out = (g.reshape(g.shape[0], 1, d, d, g.shape[-1]) * s).sum(3)  # (K, D/d, d, R)
    out = out.reshape(out.shape[0], *[2] * n, out.shape[-1])
    inverse = np.argsort(order)
    out = out.permute(0, *[1 + int(i) for i in inverse], n + 1)
    return out.reshape(out.shape[0], dim, out.shape[-1])


# Cost-model constants, fitted to CPU time (one thread) of a 2-layer strongly entangling
# circuit, K=3 copies x 512 rows, at 4-8 qubits: folding wins up to 6 qubits, gate by gate
# from 7 on (`qepi bench exact --strategies` measures both).
GATE_S = 40e-6  # fixed cost of one gate application, forward + backward
AMP_S = 6e-9  # cost per amplitude and local basis state of a gate application
MAC_S = 0.2e-9  # cost per real multiply-add of a matmul, forward + backward


def estimate_costs(program: _Program, n_rows: int, copies: int) -> dict[str, float]:
    """Estimated seconds (forward + backward) of the weight blocks under each strategy.

    A gate on E amplitudes with local dimension d costs ``GATE_S + AMP_S * E * d``. A
    folded block costs its single-qubit layers as Kronecker products merged by (2ⁿ)³
    matmuls, its other gates on the 2ⁿ identity columns, and one (2ⁿ, 2ⁿ) × (2ⁿ, N)
    complex matmul per copy, at ``MAC_S`` per real multiply-add. Everything else (data
    gates, measurement) costs the same under both strategies and is left out.
    """
    dim = 2**program.n
    costs = {"fold": 0.0, "gates": 0.0}
    for run in program.weight_runs:
        for g in run:
            d = 2 ** len(g.axes) if g.kind == "dense" else 1
            costs["gates"] += GATE_S + AMP_S * copies * n_rows * dim * d
        for kind, item in program.fold_plans[id(run)]:
            if kind == "layer":
                costs["fold"] += GATE_S * program.n + MAC_S * 4 * copies * dim**3
            else:
                d = 2 ** len(item.axes) if item.kind == "dense" else 1
                costs["fold"] += GATE_S + AMP_S * copies * dim * dim * d
        costs["fold"] += GATE_S + MAC_S * 4 * copies * n_rows * dim * dim
    return costs


def _select(t: torch.Tensor, index: np.ndarray, executor: ExactExecutor, key) -> torch.Tensor:
    """``t[:, index]``: a view when the indices are evenly spaced, else an index_select."""
    if len(index) == 1 or (len(index) > 1 and np.all(np.diff(index) == index[1] - index[0])
                           and index[1] > index[0]):
        step = int(index[1] - index[0]) if len(index) > 1 else 1
        start = int(index[0])
        return t[:, start : start + step * (len(index) - 1) + 1 : step]
    return t.index_select(1, executor._const(key, lambda: index, t.device))


class _Values(dict):
    """Gate parameters of one call by slot; ``gather`` stacks several as (K, G, R')."""

    def __init__(self, program: _Program, executor: ExactExecutor, device):
        super().__init__()
        self.program, self.executor, self.device = program, executor, device
        self.x_cols: torch.Tensor | None = None  # (K, nx, N) selected input columns
        self.w_sel: torch.Tensor | None = None  # (K, nw, 1) selected weight entries

    def __missing__(self, slot: int) -> torch.Tensor:
        return self.gather([slot])[:, 0]

    def gather(self, slots: list[int]) -> torch.Tensor:
        p = self.program
        key = tuple(slots)
        kinds = {p.sources[s][0] for s in slots}
        if kinds == {"w"}:
            index = np.array([p.w_pos[s] for s in slots])
            return _select(self.w_sel, index, self.executor, ("gw", key))
        if kinds == {"x"}:
            index = np.array([p.x_pos[s] for s in slots])
            return _select(self.x_cols, index, self.executor, ("gx", key))
        return torch.stack(torch.broadcast_tensors(*[self[s] for s in slots]), 1)


def check_backend(backend: Backend) -> None:
    """Raise UserError naming the first unusable ``backend`` value for :class:`ExactExecutor`
    (shots and noise are simulated by :class:`qepi.backends.noisy.NoisyExactExecutor`,
    which ``backend.name='exact'`` builds for them)."""
    for key in ("shots", "noise", "depolarizing_1q", "depolarizing_2q", "readout_error"):
        if getattr(backend, key):
            raise UserError(
                f"backend.{key}={getattr(backend, key)!r}: ExactExecutor computes exact noiseless "
                f"values; build the exact backend with make_executor (NoisyExactExecutor) for "
                f"shots and noise")
    refuse_mitigation(backend, "ExactExecutor computes exact noiseless values, there is nothing "
                               "to mitigate")
    if backend.dtype not in ("float64", "float32"):
        raise UserError(f"backend.dtype: expected float64 or float32, got {backend.dtype!r}")
    requested = getattr(backend, "strategy", "auto")
    if requested not in STRATEGIES:
        raise UserError(
            f"backend.strategy: unknown strategy {requested!r} "
            f"(known: {', '.join(STRATEGIES)})")


class ExactExecutor(ExecutorBase):
    """Evaluates K copies of a circuit on N rows with qepi's compiled torch simulator.

    ``executor(inputs (N, K, F), {name: (K, *shape)}) -> (N, K, n_outputs)``, differentiable
    in inputs and weights (and observable coefficients computed from them). ``strategy`` is
    the strategy of the latest call: ``fold`` or ``gates``, chosen by :func:`estimate_costs`
    unless ``Backend(strategy=...)`` forces one, or ``traced`` when one trace of the circuit
    cannot stand for all values (it branches on a weight, or its observable is computed
    from the weights or inputs): the circuit is then traced again on every call, copy by
    copy, and simulated gate by gate. ``describe()`` says what was compiled, or why not.

    Example:
        >>> import pennylane as qml, torch
        >>> def circuit(inputs, weights):
        ...     qml.AngleEmbedding(inputs, wires=range(2))
        ...     qml.BasicEntanglerLayers(weights, wires=range(2))
        ...     return qml.expval(qml.PauliZ(0) @ qml.PauliZ(1))
        >>> run = ExactExecutor(circuit, 2, Backend(name="exact"))
        >>> run(torch.zeros(3, 1, 2), {"weights": torch.zeros(1, 3, 2)}).flatten()
        tensor([1., 1., 1.])
        >>> print(run.describe())  # doctest: +ELLIPSIS
        exact backend, 2 qubits, float64: strategy gates (auto) at N=3, K=1; ...
        >>> def branching(inputs, weights):
        ...     qml.RY(inputs[..., 0], wires=0)
        ...     if weights[0] > 0:
        ...         qml.Hadamard(wires=0)
        ...     return qml.expval(qml.PauliZ(0)), qml.probs(wires=[0])
        >>> run = ExactExecutor(branching, 1, Backend(name="exact"))
        >>> run(torch.zeros(2, 1, 1), {"weights": torch.ones(1, 1)}).shape  # 1 + 2 columns
        torch.Size([2, 1, 3])
        >>> print(run.describe())  # doctest: +ELLIPSIS
        exact backend, 1 qubits, float64: strategy traced (auto) at N=2, K=1: ... Tensor.__bool__ ...
    """

    capabilities = Capabilities(measurements=frozenset(MEASUREMENT_KINDS))

    def __init__(self, qfunc: Callable, n_qubits: int, backend: Backend = Backend(name="exact")):
        check_backend(backend)
        requested = getattr(backend, "strategy", "auto")
        self.qfunc = qfunc
        self.n_qubits = n_qubits
        self.backend = backend
        self.requested = requested
        self.dtype = torch.float32 if backend.dtype == "float32" else torch.float64
        self._complex = torch.complex64 if backend.dtype == "float32" else torch.complex128
        self.stats = ExecutionStats()
        self.strategy: str | None = None  # strategy of the latest call
        self._programs: dict[tuple, _Program] = {}
        self._program: _Program | None = None
        self._consts: dict[tuple, torch.Tensor] = {}
        self._last_shape = (0, 0)

    # -- compilation --------------------------------------------------------------------

    def compile(self, n_features: int, weights: dict[str, torch.Tensor]) -> _Program:
        """The compiled program for these feature and weight shapes (traced once, cached)."""
        names = list(weights)
        shapes = [tuple(w.shape[1:]) for w in weights.values()]
        key = (n_features, tuple(names), tuple(shapes))
        if key not in self._programs:
            self._programs[key] = _Program(self.qfunc, self.n_qubits, names, n_features, shapes)
        self._program = self._programs[key]
        return self._program

    def choose_strategy(self, n_rows: int, copies: int) -> str:
        """``fold``, ``gates`` or ``traced`` for a call on ``n_rows`` rows of ``copies`` copies."""
        if self._program is not None and self._program.fallback:
            if self.requested != "auto":
                raise UserError(
                    f"backend.strategy={self.requested!r}: the exact backend cannot compile this "
                    f"circuit ({self._program.fallback}); use strategy 'auto'")
            return "traced"
        if self.requested != "auto":
            return self.requested
        if self._program is None or not self._program.weight_runs:
            return "gates"
        costs = estimate_costs(self._program, n_rows, copies)
        return "fold" if costs["fold"] < costs["gates"] else "gates"

    def describe(self) -> str:
        """One line: the strategy chosen, and what the compiled circuit consists of."""
        head = f"exact backend, {self.n_qubits} qubits, {self.backend.dtype}"
        p = self._program
        if p is None:
            return f"{head}: not compiled yet (compiles on the first call)"
        n, k = self._last_shape
        if p.fallback:
            return (f"{head}: strategy traced ({self.requested}) at N={n}, K={k}: re-traced on "
                    f"every call and simulated gate by gate because {p.fallback}")
        data_gates = sum(len(r) for kind, r in p.segments if kind == "data")
        return (
            f"{head}: strategy {self.strategy} ({self.requested}) at N={n}, K={k}; "
            f"{len(p.prefix)} gate(s) on |0>, {len(p.weight_runs)} weight block(s) "
            f"({sum(len(r) for r in p.weight_runs)} gates), {data_gates} per-sample gate(s), "
            f"{len(p.measure)} measurement group(s) for {p.n_outputs} output(s)"
        )

    # -- execution ----------------------------------------------------------------------

    def _const(self, key, make: Callable[[], np.ndarray], device) -> torch.Tensor:
        """A compile-time array as a tensor on ``device`` (real unless it has to be complex)."""
        full = (key, device, self.dtype)
        if full not in self._consts:
            value = np.asarray(make())
            if np.iscomplexobj(value) and np.allclose(np.imag(value), 0):
                value = np.real(value)
            if np.iscomplexobj(value):
                dtype = torch.complex64 if self.dtype == torch.float32 else torch.complex128
            elif value.dtype.kind in "iu":
                dtype = torch.long
            else:
                dtype = self.dtype
            self._consts[full] = torch.as_tensor(value, dtype=dtype, device=device)
        return self._consts[full]

    def _slot_values(self, p: _Program, x: torch.Tensor, weights) -> list[torch.Tensor]:
        """Every gate parameter of this call: (K, N) for data, (K, 1) when shared by rows."""
        k_, _, n_rows = x.shape
        device = x.device
        values = _Values(p, self, device)
        if p.x_slots:
            cols = _select(x, p.x_cols, self, "xcols")  # (K, nx, N)
            values.x_cols = cols
        if p.w_slots:
            wflat = torch.cat([weights[m].reshape(k_, -1) for m in p.names], 1).to(self.dtype)
            sel = _select(wflat, p.w_index, self, "widx")
            values.w_sel = sel.unsqueeze(-1)  # (K, nw, 1)
        if p.graph_slots:
            rows = x.transpose(1, 2)  # (K, N, F)
            per_copy = [
                self._run_graph(p, n_rows,
                                (rows[k], *[weights[m][k].to(self.dtype) for m in p.names]))
                for k in range(k_)
            ]
            for i, slot in enumerate(p.graph_slots):
                v = self._cast(torch.stack([c[i] for c in per_copy]))  # (K, N, ...) or (K, ...)
                values[slot] = v if p.slot_batched[slot] else v.unsqueeze(1)
        for slot in p.const_slots:
            const = self._const(("c", slot), lambda s=slot: _numpy(p.sources[s][1]), device)
            values[slot] = const.reshape(1, 1, *const.shape)
        return values

    def _run_graph(self, p: _Program, n_rows: int, args) -> list[torch.Tensor]:
        """The parameter graph on one copy, recorded once per row count (a recording may hold
        the row count as a constant) and checked against a plain trace when recorded."""
        graph = p.graphs.get(n_rows)
        if graph is None:
            plain = tuple(a.detach() for a in args)
            graph = record_graph(p.graph_fn, plain)
            same = all(torch.equal(a, b) for a, b in zip(graph(*plain), p.graph_fn(*plain)))
            graph = p.graphs[n_rows] = graph if same else p.graph_fn
        return graph(*args)

    def _matrices(self, p: _Program, values) -> dict[int, torch.Tensor]:
        """Matrices of every parametrised dense gate, (K, d, d, R'), built group by group."""
        mats = {}
        for builder, d, gates in p.dense_groups:
            n_args = len(gates[0].slots[0])
            args = [values.gather([g.slots[0][i] for g in gates]) for i in range(n_args)]
            entries = builder(*args)  # (K, G, R', d*d)
            entries = entries.reshape(*entries.shape[:3], d, d).permute(0, 1, 3, 4, 2)
            for g, matrix in zip(gates, entries.unbind(1)):
                mats[id(g)] = matrix  # (K, d, d, R')
        for g in p.generic_gates:
            mats[id(g)] = self._generic_matrix(g, [values[s] for s in g.slots[0]])
        return mats

    def _generic_matrix(self, gate: _Gate, params: list[torch.Tensor]) -> torch.Tensor:
        """PennyLane's own matrix of an op without a qepi kernel: (K, d, d, R')."""
        from pennylane.ops.functions import bind_new_parameters

        k_ = max(v.shape[0] for v in params)
        r_ = max(v.shape[1] for v in params)
        flat = [v.expand(k_, r_, *v.shape[2:]).reshape(k_ * r_, *v.shape[2:]) for v in params]
        matrix = _op_matrix(bind_new_parameters(gate.op, flat), self._complex)  # (K*R', d, d)
        return matrix.reshape(k_, r_, *matrix.shape[-2:]).permute(0, 2, 3, 1)

    def _cast(self, value: torch.Tensor) -> torch.Tensor:
        """``value`` in the executor's real or complex dtype."""
        return value.to(self._complex if value.is_complex() else self.dtype).resolve_conj()

    def _apply(self, state: torch.Tensor, gate: _Gate, values, mats, device) -> torch.Tensor:
        if gate.kind == "perm":
            state = state.index_select(1, self._const(("i", id(gate)), lambda: gate.index, device))
            if gate.factor is not None:
                factor = self._const(("f", id(gate)), lambda: gate.factor, device)
                state = state * factor[:, None]
            return state
        if gate.kind == "phase":
            theta = values.gather([s[0] for s in gate.slots])  # (K, G, R')
            coeffs = self._const(("c", id(gate)), lambda: gate.coeffs.T, device)  # (D, G)
            angle = coeffs @ theta  # (K, D, R')
            return state * torch.complex(torch.cos(angle), torch.sin(angle))
        return _apply_dense(state, self._matrix(gate, mats, device), gate.axes, self.n_qubits)

    def _matrix(self, gate: _Gate, mats, device) -> torch.Tensor:
        """The (K', d, d, R') matrix of a dense gate."""
        if gate.matrix is not None:
            return self._const(("m", id(gate)), lambda: gate.matrix, device)[None, :, :, None]
        return mats[id(gate)]

    def _product_state(self, p: _Program, mats, device) -> torch.Tensor:
        """The leading single-qubit gates on |0…0⟩: a 2-vector per wire, then their kron."""
        zero = self._const("zero2", lambda: np.eye(2, 1), device)[None]  # (1, 2, 1)
        if not p.product:
            return self._const("zero", lambda: np.eye(2**p.n, 1), device)[None]  # (1, D, 1)
        vectors = [zero] * p.n
        touched = [False] * p.n
        for gate in p.product:
            g, w = self._matrix(gate, mats, device), gate.axes[0]  # (K', 2, 2, R')
            # G|0> is G's first column; later gates multiply the wire's vector
            if touched[w]:
                g, v = _promote(g, vectors[w])
                vectors[w] = (g * v[:, None]).sum(2)
            else:
                vectors[w] = g[:, :, 0]
            touched[w] = True
        state = vectors[0]
        for v in vectors[1:]:  # (K, 2^w, R) kron (K, 2, R)
            state, v = _promote(state, v)
            state = state[:, :, None] * v[:, None]
            state = state.reshape(state.shape[0], -1, state.shape[-1])
        return state

    def _fold(self, plan, values, mats, device) -> torch.Tensor:
        """A weight block as one (K, D, D) unitary; single-qubit layers as Kronecker products."""
        n, dim = self.n_qubits, 2**self.n_qubits
        unitary = None
        for kind, item in plan:
            if kind == "layer":
                per_wire: list[torch.Tensor | None] = [None] * n
                for gate in item:  # (K', 2, 2) each: products of the wire's gates
                    g, w = self._matrix(gate, mats, device)[..., 0], gate.axes[0]
                    if per_wire[w] is not None:
                        g, prev = _promote(g, per_wire[w])
                        g = g @ prev
                    per_wire[w] = g
                eye2 = self._const("eye2", lambda: np.eye(2), device)[None]
                layer = None
                for g in per_wire:
                    g = eye2 if g is None else g
                    if layer is None:
                        layer = g
                    else:
                        layer, g = _promote(layer, g)
                        layer = layer[:, :, None, :, None] * g[:, None, :, None, :]
                        layer = layer.reshape(layer.shape[0], layer.shape[1] * 2, -1)
                if unitary is None:
                    unitary = layer
                else:
                    layer, unitary = _promote(layer, unitary)
                    unitary = layer @ unitary
            else:
                if unitary is None:
                    unitary = self._const("eye", lambda: np.eye(dim), device)[None]  # (1, D, D)
                unitary = self._apply(unitary, item, values, mats, device)
        return unitary

    def __call__(self, inputs: torch.Tensor, weights: dict[str, torch.Tensor]) -> torch.Tensor:
        n_rows, k_, n_features = inputs.shape
        for name, w in weights.items():
            if w.shape[0] != k_:
                raise UserError(
                    f"exact backend: weight {name!r} has {w.shape[0]} copies, inputs have {k_}")
        p = self.compile(n_features, weights)
        strategy = self.choose_strategy(n_rows, k_)
        self.strategy, self._last_shape = strategy, (n_rows, k_)
        if strategy == "traced":
            result = self._traced(inputs, weights)  # (N, K, n_outputs)
        else:
            result = self._compiled(p, strategy, inputs, weights)
        self.stats.add(n_rows * k_)
        return result.to(inputs.dtype)

    def _compiled(self, p: _Program, strategy: str, inputs: torch.Tensor, weights):
        """The compiled program on a call's tensors: (N, K, n_outputs)."""
        n_rows, k_, _ = inputs.shape
        device = inputs.device
        x = inputs.permute(1, 2, 0).to(self.dtype)  # (K, F, N)
        values = self._slot_values(p, x, weights)
        mats = self._matrices(p, values)
        state = self._product_state(p, mats, device)  # (K or 1, D, N or 1)
        for gate in p.prefix:
            state = self._apply(state, gate, values, mats, device)  # (K or 1, D, 1)
        for kind, run in p.segments:
            if kind == "weights" and strategy == "fold":
                unitary = self._fold(p.fold_plans[id(run)], values, mats, device)  # (K, D, D)
                unitary, state = _promote(unitary, state)
                state = unitary @ state  # (K, D, N)
            else:
                for gate in run:
                    state = self._apply(state, gate, values, mats, device)
        blocks: list[torch.Tensor] = [None] * len(p.widths)  # type: ignore[list-item]
        for readout in p.measure:
            phi = state
            for gate in readout.gates:
                phi = self._apply(phi, gate, values, mats, device)
            # |amplitude|^2: (K, D, R)
            probs = torch.view_as_real(phi).square().sum(-1) if phi.is_complex() else phi.square()
            if readout.rows:
                table = self._const(("e", id(readout)), lambda r=readout: r.table.T, device)
                vals = table @ probs  # (K, P, R)
                if p.direct:  # every output, in order
                    result = vals.transpose(1, 2)  # (K, R, n_outputs)
                    break
            for position, kind, where in readout.items:
                if kind == "expval":
                    blocks[position] = vals[:, where[0] : where[0] + 1]  # (K, 1, R)
                elif kind == "var":
                    mean, square = vals[:, where[0] : where[0] + 1], vals[:, where[1] : where[1] + 1]
                    blocks[position] = square - mean.square()
                else:
                    blocks[position] = _marginal(probs, where, self.n_qubits)  # (K, 2^k, R)
        else:
            result = torch.cat(blocks, 1).transpose(1, 2)  # (K, R, n_outputs)
        return result.expand(k_, n_rows, p.n_outputs).transpose(0, 1)  # (N, K, n_outputs)

    # -- the traced path ----------------------------------------------------------------

    def _traced(self, inputs: torch.Tensor, weights: dict[str, torch.Tensor]) -> torch.Tensor:
        """Each copy traced on its own tensors and simulated gate by gate: (N, K, n_outputs)."""
        x = inputs.to(self.dtype)
        copies = []
        for k in range(inputs.shape[1]):
            ops, measurements = record(
                self.qfunc, x[:, k], {m: w[k].to(self.dtype) for m, w in weights.items()})
            copies.append(self._simulate(ops, measurements, inputs.device))  # (R, n_outputs)
        width = max(c.shape[-1] for c in copies)
        if any(c.shape[-1] != width for c in copies):
            raise UserError("exact backend: the circuit's measurements differ between copies")
        return torch.stack([c.expand(inputs.shape[0], width) for c in copies], 1)

    def _simulate(self, ops, measurements, device) -> torch.Tensor:
        """Gates applied one by one to |0…0⟩, then every measurement: (R, n_outputs)."""
        n = self.n_qubits
        axes = self._program._axes
        state = self._const("zero", lambda: np.eye(2**n, 1), device)[None]  # (1, D, 1)
        state = state.to(self._complex)

        def apply(state, op):
            return _apply_dense(state, _as_gate(_op_matrix(op, self._complex).to(device)),
                                axes(op.wires, op.name), n)

        for op in ops:
            state = apply(state, op)  # (1, D, R)
        blocks = []
        for mp in measurements:
            kind = measurement_kind(mp)
            if kind == "probs":
                phi = state
                for gate in _probs_gates(mp):
                    phi = apply(phi, gate)
                probs = phi.real.square() + phi.imag.square()
                blocks.append(_marginal(probs, axes(mp.wires or range(n), "qml.probs()"), n))
                continue
            o_psi = apply(state, mp.obs)  # O|ψ⟩: (1, D, R)
            mean = (state.conj() * o_psi).real.sum(1, keepdim=True)  # (1, 1, R)
            if kind == "var":  # ⟨O²⟩ - ⟨O⟩² with ⟨O²⟩ = |O|ψ⟩|²
                blocks.append((o_psi.real.square() + o_psi.imag.square()).sum(1, keepdim=True)
                              - mean.square())
            else:
                blocks.append(mean)
        rows = max(b.shape[-1] for b in blocks)
        return torch.cat([b.expand(1, b.shape[1], rows) for b in blocks], 1)[0].T  # (R, n_out)


def _as_gate(matrix: torch.Tensor) -> torch.Tensor:
    """(d, d) or (B, d, d) matrix -> the engine's (1, d, d, 1 or B) gate layout."""
    return matrix[None, ..., None] if matrix.dim() == 2 else matrix.permute(1, 2, 0)[None]


def state_bytes(n_qubits: int, backend: Backend) -> int:
    """A statevector of 2ⁿ complex amplitudes in ``backend.dtype`` (a 4ⁿ density matrix
    when gates are noisy)."""
    if backend.noise:
        from qepi.backends.aer import state_bytes as noisy_state_bytes

        return noisy_state_bytes(n_qubits, backend)
    return (8 if backend.dtype == "float32" else 16) * 2**n_qubits


def _sampled_or_noisy(backend: Backend) -> bool:
    """Whether ``backend`` asks for shots, noise or mitigation (NoisyExactExecutor's job)."""
    return bool(backend.shots or backend.noise or backend.depolarizing_1q
                or backend.depolarizing_2q or backend.readout_error or backend.mitigation)


def _build(qfunc, n_qubits: int, backend: Backend, seed: int = 0):
    """The compiled simulator, or with shots or noise the parameter-shift engine on torch."""
    if _sampled_or_noisy(backend):
        from qepi.backends.noisy import NoisyExactExecutor

        return NoisyExactExecutor(qfunc, n_qubits, backend, seed=seed)
    return ExactExecutor(qfunc, n_qubits, backend)


def _validate(backend: Backend) -> None:
    if _sampled_or_noisy(backend):
        from qepi.backends.noisy import validate as validate_noisy

        validate_noisy(backend)
    else:
        check_backend(backend)


register_backend(BackendEntry(
    "exact",
    build=_build,
    validate=_validate,
    state_bytes=state_bytes,
    summary="qepi's compiled torch statevector simulator: fastest for small circuits; "
            "shots and noise by parameter shift on a batched torch density matrix",
    capabilities=dataclasses.replace(ExactExecutor.capabilities, shots=True, noise=True,
                                     mitigation=True),
))
