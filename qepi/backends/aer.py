"""qepi's parameter-shift engine on Qiskit Aer.

Each call traces the PennyLane circuit with the step's torch tensors
(:func:`qepi.backends.translate.trace_gates`), giving the gate angles θ = f(inputs, weights)
as one (R, P) tensor for the R = N·K rows. One NumPy array then holds every circuit the step
needs: the R unshifted rows and, for each angle that needs a gradient, the rows with that
angle shifted by ±π/2. All of them run through Qiskit templates built once per circuit
structure and only re-bound per step (:class:`qepi.compat.aer.TemplateRunner`), in chunks
of ``backend.chunk_rows`` circuits.

Tracing. All N·K rows are traced at once. Where that fails (a Python ``if`` on a weight
with K > 1 copies or on an input; a PennyLane decomposition that does not take broadcast
angles), each copy is traced with its own weights, and where that fails too, each row;
rows that share a circuit structure still run as one batch (:meth:`AerExecutor.segments`).

Measurement. Every output is a function of *linear quantities* of the state: Pauli word
values ⟨P⟩ and outcome probabilities. The words (and ``probs`` wire sets) are grouped into
qubit-wise commuting groups; each group is one template: the circuit, basis rotations, and
Aer's exact measurement probabilities (statevector, or density matrix when there is gate
noise). Readout error is a 2×2 confusion matrix per measured qubit applied to those
probabilities; a word's value is then their parity-weighted sum and ``probs`` their
marginal. The forward pass returns these quantities Q (R, L) and keeps their Jacobian
∂Q/∂θ (R, L, P) from parameter shift (exact for anything linear in the state). The outputs
are then computed from Q in torch, so coefficients and the chain rule need nothing more:

- ``expval(Σ c_i P_i)`` = Σ c_i ⟨P_i⟩, with the coefficients c_i kept as torch tensors
  (trainable, or computed from inputs: ∂/∂c_i = ⟨P_i⟩);
- ``var(H)`` = ⟨H²⟩ - ⟨H⟩², with ⟨H²⟩ = Σ c_i c_j ⟨P_i P_j⟩ over commuting pairs;
- ``probs(wires)``: the marginal probabilities, PennyLane's outcome order.

Observables without a Pauli form in PennyLane (``Hermitian``, ``Projector``) are decomposed
into Pauli words from their matrix.

Shots. With ``backend.shots = S > 0`` every executed circuit gets its own independent draw,
as on hardware: its counts are multinomial(S, p) over its exact outcome probabilities p
(gate noise and readout error included), so estimates and parameter-shift gradients are
unbiased with the variance of S real measurements; ``var`` and ``probs`` come from the same
sampled counts as the word values of their group. Draws are counter-based
(:class:`qepi.backends.sampling.ShotSampler`): the circuits of a call read the Philox stream
keyed by (seed, call number) at their measurement group, in the order of their logical
circuit ids, where the id names the row and the shift (unshifted, +π/2 or -π/2 on angle j).
Therefore identical rows in one call, and the same angles in two calls, draw independently;
a seed gives the same sequence of draws; ``backend.chunk_rows`` does not change any result
(row blocks come in id order); and a run resumed from :meth:`AerExecutor.state_dict` (the
seed and the number of calls so far, saved in training checkpoints) is bit-identical to an
uninterrupted one. :meth:`AerExecutor.reseed` restarts the sequence.

Noise (``backend.noise``): ``"depolarizing"`` puts Qiskit's ``depolarizing_error`` with
``depolarizing_1q`` / ``depolarizing_2q`` after every 1- and 2-qubit gate (3-qubit gates
stay ideal) and flips each measured bit with probability ``readout_error``; the name of a
fake IBM backend (``qiskit_ibm_runtime.fake_provider``, e.g. ``"FakeManilaV2"``) transpiles
each template once to that device (optimisation level 0, so every angle stays an affine
function of one θ) and uses its noise model and readout errors.

Mitigation (``backend.mitigation``, :mod:`qepi.backends.mitigation`): ``"zne"`` adds a
globally folded template per measurement group and noise scale factor (folded before
transpiling to a device) and extrapolates the quantities of every circuit to zero noise;
``"readout"`` corrects each template's sampled counts with M3, calibrated by two circuits
run through this engine. Parameter shift differentiates the mitigated quantities, and
``stats`` counts the extra circuits and shots (``mitigation_circuits``, ``mitigation_shots``).

Aer's own per-call Python work (transpiling, assembling circuits and binds, building a
``Result``) is what dominates a plain ``AerSimulator.run`` for small circuits; on Aer's
private path (:mod:`qepi.compat.aer`) it is done once per template, and rows are split
between copies of the template that Aer runs as parallel experiments (``backend.threads``
copies; 0 = every core). Outside the tested qiskit-aer versions the public
``AerSimulator.run`` path gives the same numbers, more slowly.

Which angles to shift: angles whose torch tensor does not require a gradient are never
shifted, and :meth:`AerExecutor.shifting` takes a boolean mask broadcastable to
(N, K, P): False entries are not shifted and get zero Jacobian columns (e.g. for gates
silenced by an epigenetic mark). :meth:`AerExecutor.trace` shows which gate angle ``j`` is.

Example:
    >>> import torch
    >>> from qepi.circuits import build_circuit
    >>> from qepi.config import Backend, Circuit
    >>> spec = build_circuit(Circuit(n_qubits=2, n_layers=1))
    >>> run = AerExecutor(spec.qfunc, 2, Backend(name="aer"))
    >>> w = torch.zeros(1, 1, 2, 3, requires_grad=True)
    >>> out = run(torch.zeros(3, 1, 2, dtype=torch.float64), {"weights": w})  # (N, K, n_outputs)
    >>> out.shape, run.stats.circuits  # 3 rows + 3 rows x 6 angles x 2 shifts
    (torch.Size([3, 1, 2]), 39)
    >>> out.sum().backward(); w.grad.shape
    torch.Size([1, 1, 2, 3])
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from qepi.backends.base import (BackendEntry, Capabilities, ExecutionStats, ExecutorBase,
                                broadcast_weights, register_backend)
from qepi.backends.mitigation import CALIBRATION_CALL, Mitigation, check_mitigation
from qepi.backends.sampling import ShotSampler
from qepi.backends.translate import (SHIFT, Measurement, Traced, gates_to_circuit,
                                     multiply_words, trace_gates)
from qepi.config import Backend
from qepi.errors import UserError

_MAX_PLANS = 16  # templates kept per executor (one set per circuit structure)
_ONE_QUBIT = ("rx", "ry", "rz", "p", "x", "y", "z", "h", "s", "t", "sx", "sdg", "tdg", "sxdg")
_TWO_QUBIT = ("cx", "cy", "cz", "swap", "ecr", "rxx", "ryy", "rzz")


def check_backend(backend: Backend) -> None:
    """Raise UserError naming the first unusable ``backend`` value for the aer engine."""
    if backend.shots < 0:
        raise UserError(f"backend.shots must be >= 0, got {backend.shots}")
    if backend.chunk_rows < 1:
        raise UserError(f"backend.chunk_rows must be >= 1, got {backend.chunk_rows}")
    for key in ("depolarizing_1q", "depolarizing_2q", "readout_error"):
        value = getattr(backend, key)
        if not 0.0 <= value <= 1.0:
            raise UserError(f"backend.{key} must lie in [0, 1], got {value}")
    if backend.noise != "depolarizing":
        for key in ("depolarizing_1q", "depolarizing_2q", "readout_error"):
            if getattr(backend, key):
                raise UserError(f"backend.{key} needs backend.noise='depolarizing'")
    if backend.noise not in ("", "depolarizing") and not backend.noise.startswith("Fake"):
        raise UserError(
            f"backend.noise={backend.noise!r}: expected '', 'depolarizing' or a fake IBM "
            f"backend such as 'FakeManilaV2'"
        )
    check_mitigation(backend)


def validate(backend: Backend) -> None:
    """:func:`check_backend`, and the fake IBM backend named by ``backend.noise`` exists."""
    check_backend(backend)
    if backend.noise.startswith("Fake"):
        fake_backend_class(backend.noise)


def state_bytes(n_qubits: int, backend: Backend) -> int:
    """A 2ⁿ statevector, or a 4ⁿ density matrix when gates are noisy."""
    noisy = backend.noise.startswith("Fake") or (
        backend.noise == "depolarizing" and (backend.depolarizing_1q or backend.depolarizing_2q))
    return 16 * (4 if noisy else 2) ** n_qubits


def fake_backend_class(name: str) -> type:
    """The class of the fake IBM backend ``name`` in ``qiskit_ibm_runtime.fake_provider``."""
    try:
        from qiskit_ibm_runtime import fake_provider
    except ImportError:  # pragma: no cover - depends on the install
        raise UserError(
            f"backend.noise={name!r} needs qiskit-ibm-runtime: pip install 'qepi[ibm]'"
        ) from None
    cls = getattr(fake_provider, name, None)
    if cls is None or not isinstance(cls, type):
        raise UserError(f"backend.noise={name!r}: no such fake backend in qiskit_ibm_runtime")
    return cls


def fake_backend(name: str):
    """The fake IBM backend ``name`` from ``qiskit_ibm_runtime.fake_provider``."""
    return fake_backend_class(name)()


def readout_confusions(noise_model) -> dict[int | None, np.ndarray]:
    """Readout errors of a qiskit-aer ``NoiseModel`` (its public ``to_dict``) as
    ``{qubit: P(measured = column | true = row)}``; key ``None`` applies to every qubit."""
    out: dict[int | None, np.ndarray] = {}
    for error in noise_model.to_dict()["errors"]:
        if error["type"] != "roerror":
            continue
        matrix = np.asarray(error["probabilities"], dtype=float)
        if matrix.shape != (2, 2):
            raise UserError("a correlated readout error on several qubits is not supported")
        for qubits in error.get("gate_qubits", [None]):
            out[None if qubits is None else int(qubits[0])] = matrix
    return out


def qwc_groups(bases: list[str]) -> list[list[int]]:
    """Greedy qubit-wise commuting groups of measurement ``bases`` (one letter of ``IXYZ``
    per wire; indices into ``bases``).

    >>> qwc_groups(["ZI", "XI", "IZ", "XX"])
    [[0, 2], [1, 3]]
    """
    groups: list[tuple[list[str], list[int]]] = []
    for i, word in enumerate(bases):
        for basis, members in groups:
            if all(a == "I" or b == "I" or a == b for a, b in zip(word, basis)):
                for q, a in enumerate(word):
                    if a != "I":
                        basis[q] = a
                members.append(i)
                break
        else:
            groups.append((list(word), [i]))
    return [members for _, members in groups]


def shifted_rows(theta: np.ndarray, shift: np.ndarray):
    """Every angle row a step evaluates: ``theta`` (R, P), then for each of the M True
    entries (r, j) of ``shift`` the row r with angle j shifted by +π/2, then by -π/2.

    Returns ``(rows (R + 2M, P), r indices (M,), j indices (M,))``.

    >>> rows, r, j = shifted_rows(np.zeros((2, 2)), np.array([[True, False], [False, True]]))
    >>> (rows / SHIFT).tolist()
    [[0.0, 0.0], [0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]]
    """
    rows, cols = np.nonzero(shift)
    m = len(rows)
    plus = theta[rows].copy()  # (M, P)
    plus[np.arange(m), cols] += SHIFT
    minus = theta[rows].copy()
    minus[np.arange(m), cols] -= SHIFT
    return np.concatenate([theta, plus, minus]), rows, cols


def circuit_ids(row_ids: np.ndarray, rows: np.ndarray, cols: np.ndarray,
                n_angles: int) -> np.ndarray:
    """Logical ids of the circuits :func:`shifted_rows` lists for the rows ``row_ids`` (B,) of
    a call: ``row·(2P+1)`` unshifted, ``+ 1 + 2j`` for +π/2 on angle j, ``+ 2 + 2j`` for -π/2
    (``rows`` index into ``row_ids``; P = ``n_angles``, the most angles of any row).

    >>> circuit_ids(np.array([1, 2]), np.array([0]), np.array([1]), n_angles=2).tolist()
    [5, 10, 8, 9]
    """
    stride = 2 * n_angles + 1
    base = row_ids * stride
    shifted = row_ids[rows] * stride + 2 * cols
    return np.concatenate([base, shifted + 1, shifted + 2]).astype(np.int64)


def shift_estimates(outputs: np.ndarray, n_rows: int, rows: np.ndarray, cols: np.ndarray,
                    n_angles: int) -> tuple[np.ndarray, np.ndarray]:
    """Quantities (B, L) and their parameter-shift Jacobian (B, L, P) from the outputs
    (B + 2M, L) of the circuits :func:`shifted_rows` lists for B rows (M shifted angles at
    ``rows``, ``cols``); angles not shifted get zero columns.

    >>> values, jacobian = shift_estimates(np.array([[0.5], [0.9], [0.1]]), 1, np.array([0]),
    ...                                    np.array([1]), n_angles=2)
    >>> values.tolist(), jacobian.tolist()
    ([[0.5]], [[[0.0, 0.4]]])
    """
    m = len(rows)
    jacobian = np.zeros((n_rows, outputs.shape[1], n_angles))  # (B, L, P)
    jacobian[rows, :, cols] = (outputs[n_rows:n_rows + m] - outputs[n_rows + m:]) / 2
    return outputs[:n_rows], jacobian


@dataclass
class Segment:
    """Rows of a call that share one circuit structure (:meth:`AerExecutor.segments`): one
    trace of it, and the angles and coefficients of its G rows."""

    traced: Traced  # one trace of the structure (gates, measurements)
    theta: torch.Tensor  # (G, P) angles of the G rows, differentiable
    coefficients: list  # per measurement, per word: a number or a tensor of shape () or (G,)
    needs_grad: list[bool]  # (P,) whether angle j needs a gradient in some row
    rows: np.ndarray  # (G,) indices into the call's N*K rows

    @classmethod
    def join(cls, parts: list[tuple[Traced, np.ndarray]]) -> "Segment":
        """One segment from traces of the same structure, each covering ``rows`` (G_i,)."""
        first = parts[0][0]
        p = len(first.angles)
        theta = torch.cat([t.angle_matrix().expand(len(r), p) for t, r in parts])  # (G, P)
        coefficients = [[torch.cat([_per_row(t.coefficients[o][i], len(r)) for t, r in parts])
                         for i in range(len(m.words))]
                        for o, m in enumerate(first.measurements)]
        needs_grad = [any(t.angles[j].requires_grad for t, _ in parts) for j in range(p)]
        return cls(first, theta, coefficients, needs_grad, np.concatenate([r for _, r in parts]))


def _per_row(coefficient, n_rows: int) -> torch.Tensor:
    """A coefficient (a number, or a tensor of shape () or (n_rows,)) as (n_rows,) float64."""
    return torch.as_tensor(coefficient, dtype=torch.float64).expand(n_rows)


@dataclass
class MeasurementGroup:
    """One measurement basis: how its outcome probabilities give quantities."""

    columns: np.ndarray  # (n_cols,) indices into the plan's quantities
    matrix: np.ndarray  # (2**m, n_cols): outcome probabilities -> those quantities
    readout: list[np.ndarray]  # one 2x2 confusion matrix per measured qubit (bit 0 first)
    qubits: list[int]  # the measured physical qubits (bit 0 first)
    scale: int  # index of the template's noise scale factor (Mitigation.scale_factors)


class Plan:
    """The templates of one circuit structure and how outputs follow from their quantities.

    Quantities (L columns): the value of every Pauli word in ``words``, then for every wire
    set in ``probs`` its ``2**len(wires)`` outcome probabilities. The words and wire sets
    are measured in qubit-wise commuting groups; ``templates(body, bases)`` makes one circuit
    per group basis (e.g. :meth:`AerExecutor.build_templates`), for the body folded to each
    scale factor of ``mitigation`` (:mod:`qepi.backends.mitigation`), kept in ``templates``;
    ``runner(templates, params)`` is what evaluates them.
    """

    def __init__(self, traced: Traced, templates: Callable[[Any, list[list[str]]], list],
                 readout: Callable[[int], np.ndarray], runner: Callable[[list, list], Any],
                 mitigation: Mitigation):
        from qiskit.circuit import Parameter

        n = traced.n_qubits
        identity = "I" * n
        words: set[str] = set()
        self.probs: list[tuple[int, ...]] = []
        for m in traced.measurements:
            if m.kind == "probs":
                if m.wires not in self.probs:
                    self.probs.append(m.wires)
                continue
            words.update(m.words)
            if m.kind == "var":  # ⟨H²⟩ needs the products of commuting words
                words.update(w for a in m.words for b in m.words
                             for phase, w in [multiply_words(a, b)] if phase.imag == 0)
        words.discard(identity)
        self.words = sorted(words)
        column = {w: i for i, w in enumerate(self.words)}
        column[identity] = -1  # the constant 1 appended after the quantities
        self.probs_start, start = {}, len(self.words)
        for wires in self.probs:
            self.probs_start[wires], start = start, start + 2 ** len(wires)
        self.n_quantities = start
        self.recipes = [self._recipe(m, column) for m in traced.measurements]

        # measurement items: a word measures its own letters; a probs set measures Z
        bases = list(self.words)
        for wires in self.probs:
            bases.append("".join("Z" if q in wires else "I" for q in range(n)))
        params = [Parameter(f"t{j}") for j in range(len(traced.angles))]
        groups = qwc_groups(bases)
        group_bases = []  # per group, one letter of IXYZ per wire
        for members in groups:
            basis = ["I"] * n
            for i in members:
                for q, a in enumerate(bases[i]):
                    basis[q] = a if a != "I" else basis[q]
            group_bases.append(basis)
        # templates(body, bases) -> per basis (circuit measuring it, physical measured qubits)
        body = gates_to_circuit(traced, params)
        compiled = [templates(mitigation.fold(body, scale), group_bases) if groups else []
                    for scale in mitigation.scale_factors]
        circuits, self.groups = [], []
        for scale_index, per_basis in enumerate(compiled):
            for members, basis, (qc, physical) in zip(groups, group_bases, per_basis):
                measured = [q for q in range(n) if basis[q] != "I"]
                columns, blocks = [], []
                for i in members:
                    if i < len(self.words):
                        columns.append(i)
                        blocks.append(self._signs(self.words[i], measured)[:, None])
                    else:
                        wires = self.probs[i - len(self.words)]
                        columns.extend(range(self.probs_start[wires],
                                             self.probs_start[wires] + 2 ** len(wires)))
                        blocks.append(self._marginal(wires, measured))
                circuits.append(qc)
                self.groups.append(MeasurementGroup(
                    np.array(columns), np.concatenate(blocks, axis=1),
                    [readout(q) for q in physical], physical, scale_index))
        self.templates = circuits  # one per group basis and scale factor
        self.runner = runner(circuits, params) if circuits else None

    @staticmethod
    def _signs(word: str, measured: list[int]) -> np.ndarray:
        """(2**m,) parity ±1 of each outcome of the measured qubits for ``word``."""
        outcomes = np.arange(2 ** len(measured))
        signs = np.ones(len(outcomes))
        for bit, q in enumerate(measured):
            if word[q] != "I":
                signs[(outcomes >> bit) & 1 == 1] *= -1
        return signs

    @staticmethod
    def _marginal(wires: tuple[int, ...], measured: list[int]) -> np.ndarray:
        """(2**m, 2**k) 0/1 map from outcomes of the measured qubits (bit i = measured[i]) to
        outcomes of ``wires`` in PennyLane's order (first wire most significant)."""
        outcomes = np.arange(2 ** len(measured))
        index = np.zeros(len(outcomes), dtype=np.int64)
        for wire in wires:
            index = 2 * index + ((outcomes >> measured.index(wire)) & 1)
        matrix = np.zeros((len(outcomes), 2 ** len(wires)))
        matrix[outcomes, index] = 1.0
        return matrix

    def _recipe(self, m: Measurement, column: dict[str, int]) -> tuple:
        """How output ``m`` follows from the quantities (see :meth:`outputs`)."""
        if m.kind == "probs":
            start = self.probs_start[m.wires]
            return ("probs", slice(start, start + m.width))
        cols = torch.tensor([column[w] for w in m.words], dtype=torch.long)
        if m.kind == "expval":
            return ("expval", cols)
        pairs = [(i, j, phase.real, column[w])
                 for i, a in enumerate(m.words) for j, b in enumerate(m.words)
                 for phase, w in [multiply_words(a, b)] if phase.imag == 0]
        i, j, sign, col = zip(*pairs)
        return ("var", cols, torch.tensor(i), torch.tensor(j),
                torch.tensor(sign, dtype=torch.float64), torch.tensor(col))

    def outputs(self, quantities: torch.Tensor, coefficients: list) -> torch.Tensor:
        """Outputs (R, n_outputs) from quantities (R, L) and each measurement's coefficients."""
        r = quantities.shape[0]
        q = torch.cat([quantities, torch.ones(r, 1, dtype=quantities.dtype)], dim=1)  # (R, L+1)
        columns = []
        for recipe, coeffs in zip(self.recipes, coefficients):
            if recipe[0] == "probs":
                columns.append(q[:, recipe[1]])
                continue
            c = torch.stack([x.to("cpu", torch.float64).expand(r) if isinstance(x, torch.Tensor)
                             else torch.full((r,), x, dtype=torch.float64)
                             for x in coeffs], dim=1)  # (R, T)
            mean = (c * q[:, recipe[1]]).sum(dim=1)  # (R,)
            if recipe[0] == "expval":
                columns.append(mean[:, None])
                continue
            _, _, i, j, sign, col = recipe
            square = (c[:, i] * c[:, j] * sign * q[:, col]).sum(dim=1)  # (R,) ⟨H²⟩
            columns.append((square - mean**2)[:, None])
        return torch.cat(columns, dim=1)

def _to_device(qc, measured: list[int], device):
    """``qc`` transpiled to ``device`` at optimisation level 0 (every angle stays an affine
    function of one θ), and the physical qubits of the ``measured`` wires."""
    from qiskit import transpile
    from qiskit.exceptions import QiskitError

    if qc.num_qubits > device.num_qubits:
        raise UserError(f"backend.noise={type(device).__name__}: the device has {device.num_qubits} "
                        f"qubits, the circuit {qc.num_qubits}")
    try:
        tqc = transpile(qc, backend=device, optimization_level=0, seed_transpiler=0)
    except QiskitError as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(f"backend.noise={type(device).__name__}: the circuit does not transpile to "
                        f"the device ({first})") from None
    layout = tqc.layout.final_index_layout()  # virtual qubit -> physical qubit
    return tqc, [layout[q] for q in measured]


class _ParameterShift(torch.autograd.Function):
    """values = f(θ) with a precomputed Jacobian: backward is grad @ J, and ``on_backward(grad)``
    (when given) sees the incoming gradient (R, L)."""

    @staticmethod
    def forward(ctx, theta, values, jacobian, on_backward=None):
        # theta (R, P), values (R, L), jacobian (R, L, P)
        ctx.save_for_backward(jacobian)
        ctx.on_backward = on_backward
        return values.clone()

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        (jacobian,) = ctx.saved_tensors
        if ctx.on_backward is not None:
            ctx.on_backward(grad.detach().numpy())
        return torch.einsum("rl,rlp->rp", grad, jacobian), None, None, None


@dataclass
class ShotSpending:
    """What :meth:`AerExecutor.spending` yields.

    ``shots`` gives the shots of the ±π/2 circuits either per angle (an int tensor
    broadcastable to (N, K, P)) or per weight element ({name: (K, *shape)}, for circuits
    whose every weight-dependent angle is one weight element). The backward passes fill in
    the single-shot variance of the parameter-shift estimate of ∂loss/∂θ_j: per call, one
    (N*K, P) tensor in ``variances`` (zeros where not shifted), and with per-weight shots
    its sum per weight element in ``weight_variances`` ({name: (K, *shape)}).
    """

    shots: torch.Tensor | dict[str, torch.Tensor]
    variances: list[torch.Tensor] = field(default_factory=list)  # one (N*K, P) per call
    weight_variances: dict[str, torch.Tensor] = field(default_factory=dict)  # name -> (K, *shape)


class _ShiftVariance:
    """Collects the shifted circuits' sampled outcome frequencies of one segment and, given the
    backward pass's gradient g (G, L) w.r.t. the quantities, adds the single-shot variance of
    ĝ_j = g·(Q(θ+π/2 e_j) - Q(θ-π/2 e_j))/2 for every shifted (row, angle) to ``out``:
    Var = (Var₊ + Var₋)/4, each the sample variance (with Bessel's correction) over one
    circuit's outcomes of the outcome value v(o) = Σ_l g_l · (quantity l of outcome o)."""

    def __init__(self, plan: Plan, out: torch.Tensor, rows: np.ndarray,
                 weight_out: dict[str, torch.Tensor] | None = None, sources: list | None = None,
                 copies: int = 1):
        self.plan, self.out, self.rows = plan, out, rows  # out (N*K, P); rows (G,) into out
        self.parts: list[tuple] = []  # (r (M,), j (M,), shots (M,), [(plus, minus) per group])
        # per-weight sums: {name: (K, W)} and, per angle, None or (name, element (K,))
        self.weight_out, self.sources, self.copies = weight_out, sources, copies

    def add(self, r: np.ndarray, j: np.ndarray, shots: np.ndarray, freqs: list) -> None:
        self.parts.append((r, j, shots, freqs))

    def __call__(self, grad: np.ndarray) -> None:  # grad (G, L)
        variance = np.zeros((len(self.rows), self.out.shape[1]))  # (G, P)
        for r, j, shots, freqs in self.parts:
            bessel = shots / np.maximum(shots - 1, 1)  # (M,)
            for group, (plus, minus) in zip(self.plan.groups, freqs):
                value = grad[r][:, group.columns] @ group.matrix.T  # (M, 2**m) per outcome
                for f in (plus, minus):  # (M, 2**m) sampled frequencies
                    spread = (f * value**2).sum(1) - (f * value).sum(1) ** 2
                    np.add.at(variance, (r, j), bessel * spread / 4)
        self.out[self.rows] += torch.from_numpy(variance)
        if self.weight_out is None:
            return
        copy = self.rows % self.copies  # (G,)
        for j, source in enumerate(self.sources):
            if source is not None:
                name, element = source
                np.add.at(self.weight_out[name].numpy(), (copy, element[copy]), variance[:, j])



class AerExecutor(ExecutorBase):
    """Executor for ``backend.name == "aer"``: parameter-shift gradients on Qiskit Aer.

    Follows the executor contract of :mod:`qepi.backends`; ``stats`` counts every circuit
    evaluated (shifted ones included) and the shots spent. ``path`` picks Aer's call
    (:data:`qepi.compat.aer.PATHS`: ``"auto"`` takes the private fast path where the
    installed qiskit-aer is a tested version); ``self.path`` is the one chosen.
    ``simulator(templates, params, noise_model)``, when given, replaces Aer: it returns an
    object with ``probabilities(values)`` as :class:`qepi.compat.aer.TemplateRunner` has
    (the ``exact`` backend's shots and noise use :class:`qepi.backends.torchsim.TorchTemplateRunner`).
    """

    capabilities = Capabilities(measurements=frozenset({"expval", "var", "probs"}), shots=True,
                                noise=True, shift_mask=True, shift_shots=True, trace=True,
                                bounds_memory=True,  # blocks of backend.chunk_rows circuits
                                mitigation=True)  # backend.mitigation, see qepi.backends.mitigation

    @staticmethod
    def check_settings(backend: Backend) -> None:
        """The check of ``backend`` this executor's constructor runs (a subclass for another
        backend replaces it): :func:`check_backend`."""
        check_backend(backend)

    def __init__(self, qfunc: Callable, n_qubits: int, backend: Backend, seed: int = 0,
                 path: str = "auto", simulator: Callable | None = None):
        from qepi.compat.aer import resolve_path

        self.check_settings(backend)
        self.qfunc, self.n_qubits, self.backend, self.seed = qfunc, n_qubits, backend, seed
        self.path = resolve_path(path)  # the Aer call used: "private" or "public"
        # simulator(templates, params, noise_model) -> a runner like TemplateRunner (None: Aer)
        self.simulator = simulator
        self.stats = ExecutionStats()
        self.shift_mask = None  # None or a bool tensor broadcastable to (N, K, P)
        self.spent: ShotSpending | None = None  # shots per shifted angle (see spending)
        self.sampler = ShotSampler(backend.shots, seed) if backend.shots else None
        self.mitigation = Mitigation.from_backend(backend)
        self._plans: dict[tuple, Plan] = {}
        self._ready = False  # Aer settings are made on first use, and again after a fork
        self._pid = os.getpid()
        self._device = None  # the fake IBM backend named by backend.noise
        self._noise_model = None  # gate noise as a qiskit-aer NoiseModel (None: ideal gates)
        self._readout_errors: dict[int | None, np.ndarray] = {}  # physical qubit -> 2x2
        self._options: dict[str, Any] = {}
        self._copies = 1  # template copies Aer runs as parallel experiments

    # -- the random stream ----------------------------------------------------------
    def reseed(self, seed: int) -> None:
        """Restart shot sampling at ``seed``."""
        self.seed = seed
        self.mitigation.forget_calibration()
        if self.sampler is not None:
            self.sampler.reseed(seed)

    def state_dict(self) -> dict[str, Any]:
        """The sampler's seed and call count (empty without shots)."""
        return {} if self.sampler is None else {"sampler": self.sampler.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue the draws :meth:`state_dict` described."""
        if self.sampler is not None and "sampler" in state:
            self.sampler.load_state_dict(state["sampler"])
            self.seed = self.sampler.seed
            self.mitigation.forget_calibration()

    # -- public helpers -------------------------------------------------------------
    def trace(self, inputs: torch.Tensor, weights: dict[str, torch.Tensor]) -> Traced:
        """The traced gates and angles for inputs (N, K, F) and weights {name: (K, ...)},
        every row at once (see :meth:`segments` for circuits that cannot be traced so)."""
        n, k, f = inputs.shape
        rows = inputs.reshape(n * k, f).to(torch.float64)  # (N*K, F)
        row_weights = broadcast_weights({m: w.to(torch.float64) for m, w in weights.items()}, n)
        return trace_gates(self.qfunc, rows, row_weights, self.n_qubits)

    def segments(self, inputs: torch.Tensor,
                 weights: dict[str, torch.Tensor]) -> list[Segment]:
        """The call's N*K rows traced as one batch where possible, else copy by copy (each
        copy's weights unbatched), else row by row, grouped by circuit structure.

        A batched trace fails where the circuit function branches on a batched value (a
        Python ``if`` on a weight with K > 1 copies, or on an input) or where a PennyLane
        decomposition does not take broadcast parameters. Raises UserError when a single row
        cannot be traced either.

        >>> import pennylane as qml, torch
        >>> def circuit(inputs, weights):
        ...     if weights[..., 0] > 0:  # the structure depends on the copy's weights
        ...         qml.RX(inputs[..., 0], wires=0)
        ...     return qml.expval(qml.PauliZ(0))
        >>> run = AerExecutor(circuit, 1, Backend(name="aer"))
        >>> parts = run.segments(torch.zeros(3, 2, 1), {"weights": torch.tensor([[1.0], [-1.0]])})
        >>> [(len(p.traced.gates), p.rows.tolist()) for p in parts]  # (G,) rows of (N, K)
        [(1, [0, 2, 4]), (0, [1, 3, 5])]
        """
        n, k, f = inputs.shape
        try:
            traced = self.trace(inputs, weights)
        except Exception:  # noqa: BLE001 - traced again in smaller pieces below
            pass
        else:
            theta = traced.angle_matrix().expand(n * k, len(traced.angles))  # (R, P)
            return [Segment(traced, theta, traced.coefficients,
                             [a.requires_grad for a in traced.angles], np.arange(n * k))]
        rows = inputs.to(torch.float64)  # (N, K, F)
        copies = [{m: w[c].to(torch.float64) for m, w in weights.items()} for c in range(k)]
        parts = None
        if k > 1:
            try:
                parts = [(trace_gates(self.qfunc, rows[:, c], copies[c], self.n_qubits),
                          np.arange(n) * k + c) for c in range(k)]
            except Exception:  # noqa: BLE001 - traced row by row below
                pass
        if parts is None:
            parts = [(self._trace_row(rows[r // k, r % k], copies[r % k]), np.array([r]))
                     for r in range(n * k)]
        by_structure: dict[tuple, list] = {}
        for traced, row_ids in parts:
            by_structure.setdefault(traced.structure, []).append((traced, row_ids))
        return [Segment.join(members) for members in by_structure.values()]

    def _trace_row(self, inputs: torch.Tensor, weights: dict[str, torch.Tensor]) -> Traced:
        """One row, unbatched: inputs (F,), weights {name: (...)}."""
        try:
            return trace_gates(self.qfunc, inputs, weights, self.n_qubits)
        except UserError:
            raise
        except Exception as err:  # noqa: BLE001 - the circuit function or PennyLane failed
            first = str(err).strip().splitlines()[0] if str(err).strip() else ""
            raise UserError(f"the circuit cannot be traced for the aer backend: "
                            f"{type(err).__name__}: {first}") from err

    @contextlib.contextmanager
    def shifting(self, mask):
        """Within the block, shift only angles where ``mask`` (broadcastable to (N, K, P)) is True.

        >>> import torch
        >>> from qepi.circuits import build_circuit
        >>> from qepi.config import Backend, Circuit
        >>> spec = build_circuit(Circuit(n_qubits=1, n_layers=1))
        >>> run = AerExecutor(spec.qfunc, 1, Backend(name="aer"))
        >>> w = torch.zeros(1, 1, 1, 3, requires_grad=True)
        >>> with run.shifting(torch.tensor([False, True, False, False])):  # (P,): RY(x), Rot
        ...     run(torch.zeros(2, 1, 1), {"weights": w}).sum().backward()
        >>> run.stats.circuits  # 2 rows + 2 rows x 1 angle x 2 shifts
        6
        >>> w.grad.flatten().tolist()
        [0.0, 0.0, 0.0]
        """
        previous = self.shift_mask
        self.shift_mask = mask
        try:
            yield self
        finally:
            self.shift_mask = previous

    @contextlib.contextmanager
    def spending(self, shots):
        """Within the block, run the ±π/2 circuits of angle j in row (n, k) with
        ``shots[n, k, j]`` shots (ints broadcastable to (N, K, P); 0 = not shifted), or give
        ``shots`` per weight element, {name: (K, *shape)}: then the angles that are one weight
        element get that element's shots (an angle that is a function of weights otherwise
        raises a UserError) and the others ``backend.shots``. Unshifted circuits keep
        ``backend.shots``. Yields a :class:`ShotSpending` whose variances the backward
        passes fill in (Rosalin's per-parameter shot allocation reads them).

        >>> import torch
        >>> from qepi.circuits import build_circuit
        >>> from qepi.config import Backend, Circuit
        >>> spec = build_circuit(Circuit(n_qubits=1, n_layers=1))
        >>> run = AerExecutor(spec.qfunc, 1, Backend(name="aer", shots=100))
        >>> w = torch.zeros(1, 1, 1, 3, requires_grad=True)
        >>> with run.spending(torch.tensor([0, 10, 20, 30])) as spent:  # (P,): RY(x), Rot
        ...     run(torch.zeros(2, 1, 1), {"weights": w}).sum().backward()
        >>> run.stats.circuits, run.stats.shots  # 2 x 100 unshifted + 2 x 2 x (10 + 20 + 30)
        (14, 440)
        >>> spent.variances[0].shape  # (N*K, P)
        torch.Size([2, 4])
        """
        if self.sampler is None:
            raise UserError("shots per shifted angle need backend.shots > 0")
        if isinstance(shots, dict):
            shots = {name: torch.as_tensor(s, dtype=torch.int64) for name, s in shots.items()}
            low = min((int(s.min()) for s in shots.values() if s.numel()), default=0)
        else:
            shots = torch.as_tensor(shots, dtype=torch.int64)
            low = int(shots.min()) if shots.numel() else 0
        if low < 0:
            raise UserError("shots per shifted angle must be >= 0")
        previous, self.spent = self.spent, ShotSpending(shots)
        try:
            yield self.spent
        finally:
            self.spent = previous

    def _shift_shots(self, shift: torch.Tensor, n: int, k: int, rows: np.ndarray | None,
                     sources: list | None = None) -> np.ndarray:
        """(G, P) int64: shots of each shifted (row, angle) within :meth:`spending`, 0 where
        not shifted; with shots per weight element, ``sources`` says which element angle j is."""
        p = shift.shape[1]
        if sources is not None:
            copy = (np.arange(n * k) if rows is None else rows) % k  # (G,)
            shots = np.full(shift.shape, self.backend.shots, dtype=np.int64)  # (G, P)
            for j, source in enumerate(sources):
                if source is not None:
                    name, element = source
                    shots[:, j] = self.spent.shots[name].reshape(k, -1).numpy()[copy, element[copy]]
            return np.where(shift.numpy(), shots, 0)
        try:
            spent = self.spent.shots.expand(n, k, p).reshape(n * k, p)  # (N*K, P)
        except RuntimeError:
            raise UserError(f"shots per shifted angle of shape {tuple(self.spent.shots.shape)} "
                            f"do not broadcast to (N, K, P) = {(n, k, p)}") from None
        spent = spent if rows is None else spent[rows]
        return np.where(shift.numpy(), spent.numpy(), 0)

    @staticmethod
    def angle_sources(part: Segment, weights: dict[str, torch.Tensor], k: int) -> list:
        """For each angle j of ``part``: None when no weight moves it, else ``(name,
        element)`` with ``element`` (K,) the flat index of the weight element of each copy
        that the angle equals (up to inputs added to it). Raises UserError for an angle that
        is any other function of the weights (found by autograd on the traced angles)."""
        names = [m for m, w in weights.items() if w.requires_grad]
        per_copy = np.bincount(part.rows % k, minlength=k)  # (K,) rows of each copy
        sources = []
        for j, needs in enumerate(part.needs_grad):
            if not needs or not names:
                sources.append(None)
                continue
            grads = torch.autograd.grad(part.theta[:, j].sum(), [weights[m] for m in names],
                                        retain_graph=True, allow_unused=True)
            found = [(m, g.reshape(k, -1)) for m, g in zip(names, grads)
                     if g is not None and bool(g.any())]
            if not found:
                sources.append(None)
                continue
            name, g = found[0]
            element = g.abs().argmax(dim=1).numpy()  # (K,)
            one = torch.zeros_like(g)
            one[np.arange(k), element] = torch.as_tensor(per_copy, dtype=g.dtype)
            if len(found) > 1 or not torch.equal(g, one):
                raise UserError(f"gate angle {j} of the circuit is not a single weight element "
                                f"(it is another function of the weights); shots per weight "
                                f"need angles such as RY(weights[0]); use train.optimizer = "
                                f"'adam' or 'spsa' for this circuit")
            sources.append((name, element))
        return sources

    def shift_matrix(self, traced: Traced, n: int, k: int) -> torch.Tensor:
        """(N*K, P) bool: the angles a step shifts (those needing a gradient, within the mask)."""
        return self._shift([a.requires_grad for a in traced.angles], n, k)

    def _shift(self, needs_grad: list[bool], n: int, k: int,
               rows: np.ndarray | None = None) -> torch.Tensor:
        """(G, P) bool: :meth:`shift_matrix` for the angles ``needs_grad`` (P,) of ``rows``."""
        r, p = n * k, len(needs_grad)
        shift = torch.zeros(r, p, dtype=torch.bool)
        if not torch.is_grad_enabled():
            return shift if rows is None else shift[rows]
        shift[:, needs_grad] = True
        if self.shift_mask is not None:
            mask = torch.as_tensor(self.shift_mask, dtype=torch.bool)
            try:
                shift &= mask.expand(n, k, p).reshape(r, p)
            except RuntimeError:
                raise UserError(
                    f"shift mask of shape {tuple(mask.shape)} does not broadcast "
                    f"to (N, K, P) = {(n, k, p)}"
                ) from None
        return shift if rows is None else shift[rows]

    # -- the step -------------------------------------------------------------------
    def __call__(self, inputs: torch.Tensor, weights: dict[str, torch.Tensor]) -> torch.Tensor:
        n, k, _ = inputs.shape
        segments = self.segments(inputs, weights)
        call = self.sampler.next_call() if self.sampler is not None else 0
        id_angles = max(len(part.needs_grad) for part in segments)  # circuit ids stay unique
        variance = None  # (N*K, P) single-shot variances of the shifted angles, from backward
        per_weight = self.spent is not None and isinstance(self.spent.shots, dict)
        if self.spent is not None and torch.is_grad_enabled():
            variance = torch.zeros(n * k, id_angles, dtype=torch.float64)
            self.spent.variances.append(variance)
            if per_weight:
                for name, w in weights.items():
                    self.spent.weight_variances.setdefault(
                        name, torch.zeros(w.shape, dtype=torch.float64))
        plans, thetas, shifts, shift_shots, recorders = [], [], [], [], []
        for part in segments:
            plan = self._plan(part.traced)
            subset = None if len(part.rows) == n * k else part.rows
            shift = self._shift(part.needs_grad, n, k, subset).numpy()  # (G, P)
            part_shots, sources = None, None
            if self.spent is not None and shift.any():  # (grad enabled)
                if per_weight:
                    sources = self.angle_sources(part, weights, k)
                part_shots = self._shift_shots(torch.from_numpy(shift), n, k, subset,
                                               sources)  # (G, P)
                shift &= part_shots > 0
            recorder = None
            if variance is not None:
                recorder = _ShiftVariance(
                    plan, variance, part.rows, sources and {
                        name: v.view(k, -1) for name, v in self.spent.weight_variances.items()},
                    sources, k)
            plans.append(plan)
            thetas.append(part.theta.cpu())  # (G, P)
            shifts.append(shift)
            shift_shots.append(part_shots)
            recorders.append(recorder)
        estimates = self.evaluate_segments(plans, [t.detach().numpy() for t in thetas], shifts,
                                           [part.rows for part in segments], call, id_angles,
                                           shift_shots, recorders)
        outputs = []
        for part, plan, theta, recorder, (values, jacobian) in zip(segments, plans, thetas,
                                                                   recorders, estimates):
            quantities = _ParameterShift.apply(theta, torch.from_numpy(values),
                                               torch.from_numpy(jacobian), recorder)  # (G, L)
            outputs.append(plan.outputs(quantities, part.coefficients))  # (G, n_outputs)
        if len({o.shape[1] for o in outputs}) > 1:
            raise UserError("the circuit's measurements differ between rows; the aer "
                            "backend needs the same measurements in every row")
        out = torch.cat(outputs)  # (R, n_outputs), rows in segment order
        order = np.concatenate([part.rows for part in segments])  # (R,)
        if np.any(order[1:] < order[:-1]):
            out = out[torch.from_numpy(np.argsort(order))]  # rows in (N, K) order
        return out.reshape(n, k, -1).to(device=inputs.device, dtype=inputs.dtype)  # (N, K, O)

    def _plan(self, traced: Traced) -> Plan:
        if self._pid != os.getpid():  # a forked child rebuilds every Aer object
            self._plans, self._ready, self._pid = {}, False, os.getpid()
        plan = self._plans.get(traced.structure)
        if plan is None:
            self._setup()
            if len(self._plans) >= _MAX_PLANS:  # structures that vary with the data
                self._plans.pop(next(iter(self._plans)))
            plan = self._plans[traced.structure] = Plan(
                traced, self.build_templates, self._readout, self._runner, self.mitigation)
        return plan

    def build_templates(self, body, bases: list[list[str]]) -> list[tuple[Any, list[int]]]:
        """One Aer template per measurement basis: ``body`` (the traced circuit, angles as
        Parameters), the basis change of ``bases[g]`` (one letter of ``IXYZ`` per wire), on the
        device of ``backend.noise`` if any, saving the probabilities of the measured qubits.
        Returns, per basis, the template and its measured physical qubits (bit 0 first).
        A subclass running elsewhere overrides it (see :mod:`qepi.backends.runtime`)."""
        import qiskit_aer  # noqa: F401  (adds QuantumCircuit.save_probabilities)

        out = []
        for basis in bases:
            qc = body.copy()
            measured = [q for q, letter in enumerate(basis) if letter != "I"]
            for q in measured:
                if basis[q] == "X":
                    qc.h(q)
                elif basis[q] == "Y":
                    qc.sdg(q)
                    qc.h(q)
            physical = measured
            if self._device is not None:
                qc, physical = _to_device(qc, measured, self._device)
            qc.save_probabilities(physical, label="p")
            out.append((qc, physical))
        return out

    def _runner(self, circuits: list, params: list):
        from qepi.compat.aer import TemplateRunner

        if self.simulator is not None:
            return self.simulator(circuits, params, self._noise_model)
        return TemplateRunner(circuits, params, self._options, self._noise_model,
                              copies=self._copies, path=self.path)

    def _setup(self) -> None:
        if self._ready:
            return
        from qiskit_aer.noise import NoiseModel, depolarizing_error

        b = self.backend
        noise = None
        if b.noise == "depolarizing":
            noise = NoiseModel()
            for p, size, gates in [(b.depolarizing_1q, 1, _ONE_QUBIT),
                                   (b.depolarizing_2q, 2, _TWO_QUBIT)]:
                if p > 0:
                    noise.add_all_qubit_quantum_error(depolarizing_error(p, size), gates)
        elif b.noise:
            self._device = fake_backend(b.noise)
            noise = NoiseModel.from_backend(self._device)
            self._readout_errors = readout_confusions(noise)
        noisy = noise is not None and not noise.is_ideal()
        self._noise_model = noise if noisy else None
        self._copies = b.threads or os.cpu_count() or 1
        self._options = {"method": "density_matrix" if noisy else "statevector",
                         "runtime_parameter_bind_enable": True,
                         "max_parallel_threads": b.threads, "max_parallel_experiments": 0}
        self._ready = True

    def _readout(self, qubit: int) -> np.ndarray:
        """P(measured = column | true = row) for one physical qubit."""
        if self.backend.noise == "depolarizing":
            r = self.backend.readout_error
            return np.array([[1 - r, r], [r, 1 - r]])
        return self._readout_errors.get(qubit, self._readout_errors.get(None, np.eye(2)))

    def _run(self, plan: Plan, values: np.ndarray, layout: tuple, call: int, ids: np.ndarray,
             shots: np.ndarray | None = None, frequencies: list | None = None) -> np.ndarray:
        """Quantities (C, L) of the circuits with angle rows ``values`` (C, P), laid out as
        :func:`shifted_rows` lists them (``layout`` = (B, rows, cols): B unshifted rows and
        the rows and angles shifted), ids (C,) and shots (C,) (default ``backend.shots``):
        each template's sampled frequencies,
        readout-corrected and extrapolated to zero noise where ``backend.mitigation`` asks
        (:mod:`qepi.backends.mitigation`). Each group's sampled frequencies (C, 2**m) at
        noise scale 1, before mitigation, are appended to ``frequencies`` when it is given."""
        scales = len(self.mitigation.scale_factors)
        estimates = np.empty((scales, len(values), plan.n_quantities))  # (S, C, L)
        if plan.runner is None:
            return estimates[0]
        every = plan.runner.shifted_probabilities(values, *layout)
        for t, (group, probs) in enumerate(zip(plan.groups, every)):
            probs = self._measure(probs, group, call, ids, t, shots)  # (C, 2**m)
            if frequencies is not None and group.scale == 0:
                frequencies.append(probs)
            if self.mitigation.readout:
                probs = self.mitigation.correct_readout(probs, group.qubits, self.backend.shots,
                                                        self._calibration)
            estimates[group.scale][:, group.columns] = probs @ group.matrix
        return self.mitigation.extrapolate(estimates)  # (C, L)

    def _calibration(self, qubits: list[int]) -> np.ndarray:
        """Readout calibration of physical ``qubits``: (2, Q, 2), for the circuit preparing
        every one in |0⟩ (index 0) and the one flipping every one to |1⟩ with X gates (1),
        the frequency each qubit read 0 and 1 in ``backend.readout_cal_shots`` shots.

        Both circuits run through this executor's simulator, gate noise and readout
        confusion. Readout errors are independent per qubit, so each qubit's marginal is
        drawn on its own, keyed by (seed, :data:`CALIBRATION_CALL`, qubit): the same draws
        whenever and in whatever order qubits are calibrated.
        """
        from qiskit import QuantumCircuit

        self._setup()
        width = self._device.num_qubits if self._device is not None else self.n_qubits
        circuits = []
        for prepared in (0, 1):
            qc = QuantumCircuit(width)
            for q in qubits if prepared else ():
                qc.x(q)
            qc.save_probabilities(qubits, label="p")
            circuits.append(qc)
        shots = self.backend.readout_cal_shots
        sampler = ShotSampler(shots, self.seed)
        read = np.empty((2, len(qubits), 2))  # (prepared, Q, read value)
        for prepared, probs in enumerate(self._runner(circuits, []).probabilities(np.zeros((1, 0)))):
            joint = probs[0].reshape([2] * len(qubits))  # axis Q - 1 - i is qubits[i]
            for i, q in enumerate(qubits):
                axes = tuple(a for a in range(len(qubits)) if a != len(qubits) - 1 - i)
                marginal = joint.sum(axis=axes) @ self._readout(q)  # (2,) read 0, 1
                read[prepared, i] = sampler.frequencies(marginal[None], CALIBRATION_CALL,
                                                        np.array([prepared]), stream=q)[0]
        self.stats.add(2, shots, mitigation=True)
        return read

    def _measure(self, probs: np.ndarray, group: MeasurementGroup, call: int, ids: np.ndarray,
                 g: int, shots: np.ndarray | None = None) -> np.ndarray:
        """Apply readout confusion and, with shots, replace probabilities by sampled frequencies."""
        m = len(group.readout)
        if any(not np.array_equal(mat, np.eye(2)) for mat in group.readout):
            tensor = probs.reshape(len(probs), *([2] * m))  # axis 1 is the last measured bit
            for bit, mat in enumerate(group.readout):
                tensor = np.moveaxis(np.tensordot(tensor, mat, axes=([m - bit], [0])), -1, m - bit)
            probs = tensor.reshape(len(probs), -1)
        if self.sampler is None:
            return probs
        return self.sampler.frequencies(probs, call, ids, stream=g, shots=shots)

    def evaluate_segments(self, plans: list[Plan], thetas: list[np.ndarray],
                          shifts: list[np.ndarray], row_ids: list[np.ndarray], call: int,
                          id_angles: int, shift_shots: list | None = None,
                          recorders: list | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per segment of a call, quantities (G, L) and their Jacobian (G, L, P) from its plan,
        angle rows ``thetas`` (G, P), angles to shift ``shifts`` (G, P), row numbers
        ``row_ids`` (G,), and optionally shots of the shifted circuits (G, P) and a variance
        recorder (see :meth:`_evaluate`). Segment by segment here; a subclass that runs every
        circuit of a call at once overrides it (see :mod:`qepi.backends.runtime`)."""
        none = [None] * len(plans)
        return [self._evaluate(plan, theta, shift, call, rows, id_angles, part_shots, recorder)
                for plan, theta, shift, rows, part_shots, recorder
                in zip(plans, thetas, shifts, row_ids, shift_shots or none, recorders or none)]

    def _evaluate(self, plan: Plan, theta: np.ndarray, shift: np.ndarray, call: int,
                  row_ids: np.ndarray, id_angles: int, shift_shots: np.ndarray | None = None,
                  recorder: _ShiftVariance | None = None):
        """Quantities (R, L) and their Jacobian (R, L, P) from the unshifted and ±π/2 rows;
        ``row_ids`` (R,) number the rows within the call for the circuit ids (with
        ``id_angles`` >= P, see :func:`circuit_ids`). ``shift_shots`` (R, P) are the shots of
        the shifted circuits (default ``backend.shots``); ``recorder`` keeps their outcome
        frequencies for the variance of the gradient estimate.

        Rows are taken in blocks of at most ``backend.chunk_rows`` circuits (at least one
        row each), so memory stays bounded whatever the batch; one Aer run per block.
        """
        r, p = theta.shape
        values = np.empty((r, plan.n_quantities))  # (R, L)
        jacobian = np.zeros((r, plan.n_quantities, p))  # (R, L, P)
        cost = np.cumsum(1 + 2 * shift.sum(axis=1))  # circuits up to and including each row
        start = 0
        while start < r:
            done = cost[start - 1] if start else 0
            stop = int(np.searchsorted(cost, done + self.backend.chunk_rows, side="right"))
            stop = max(start + 1, stop)
            every, rows, cols = shifted_rows(theta[start:stop], shift[start:stop])  # (B + 2M, P)
            ids = circuit_ids(row_ids[start:stop], rows, cols, id_angles)  # (B + 2M,)
            b, m = stop - start, len(rows)
            shots = np.full(len(every), self.backend.shots, dtype=np.int64)  # (B + 2M,)
            if shift_shots is not None:
                shots[b:] = np.tile(shift_shots[start + rows, cols], 2)
            frequencies = [] if recorder is not None else None
            outputs = self._run(plan, every, (stop - start, rows, cols), call, ids,
                                shots if self.sampler else None, frequencies)  # (B + 2M, L)
            values[start:stop], jacobian[start:stop] = shift_estimates(outputs, b, rows, cols, p)
            if recorder is not None:
                recorder.add(start + rows, cols, shots[b:b + m],
                             [(f[b:b + m], f[b + m:]) for f in frequencies])
            self.stats.add(len(every))
            self.stats.shots += int(shots.sum())
            scales = len(self.mitigation.scale_factors)
            self.stats.add(len(every) * (scales - 1), self.backend.shots, mitigation=True)
            start = stop
        return values, jacobian


register_backend(BackendEntry(
    "aer",
    build=lambda qfunc, n_qubits, backend, seed=0: AerExecutor(qfunc, n_qubits, backend, seed=seed),
    validate=validate,
    state_bytes=state_bytes,
    summary="qepi's parameter-shift engine on Qiskit Aer: shots and noise as on hardware",
    capabilities=AerExecutor.capabilities,
))

__all__ = ["AerExecutor", "MeasurementGroup", "Plan", "Segment", "ShotSpending", "check_backend",
           "circuit_ids", "fake_backend", "fake_backend_class", "qwc_groups", "readout_confusions",
           "shift_estimates", "shifted_rows"]
