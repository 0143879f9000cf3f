"""qepi's parameter-shift engine on Qiskit Aer.

Each call traces the PennyLane circuit with the step's torch tensors
(:func:`qepi.backends.translate.trace_gates`), giving the gate angles θ = f(inputs, weights)
as one (R, P) tensor for the R = N·K rows. One NumPy array then holds every circuit the step
needs: the R unshifted rows and, for each angle that needs a gradient, the rows with that
angle shifted by ±π/2. All of them run through a Qiskit template that was assembled for
Aer once per circuit structure and is only re-bound (Aer's runtime parameter binding) per
step, in chunks of ``backend.chunk_rows`` circuits. The forward pass returns the
expectation values and keeps the Jacobian ∂⟨O⟩/∂θ (R, O, P); the backward pass is a
matrix product, and torch's chain rule carries it to inputs and weights alike.

Measurement. Observables are Pauli sums. Their words are grouped into qubit-wise commuting
groups; each group is one template: the circuit, basis rotations, and Aer's exact
measurement probabilities (statevector, or density matrix when there is noise). A word's
value is the parity-weighted sum of the probabilities. Readout error is a 2×2 confusion
matrix per measured qubit applied to those probabilities.

Shots. With ``backend.shots = S > 0`` the counts of each circuit are drawn in NumPy from a
multinomial(S, p) over its exact outcome probabilities p: this is exactly the distribution
of S independent measurements (gate noise and readout error included, since p already
holds them), so the estimates and the parameter-shift gradients built from them are
unbiased with the right variance. Each circuit draws from its own Philox generator keyed
by (seed, measurement group, the circuit's angle values), so an estimate never depends on
where its circuit sits in the batch or chunk, and Aer's own shot loop (whose seeds follow
the experiment's position) is not needed.

Noise (``backend.noise``): ``"depolarizing"`` puts Qiskit's ``depolarizing_error`` with
``depolarizing_1q`` / ``depolarizing_2q`` after every 1- and 2-qubit gate (3-qubit gates
stay ideal) and flips each measured bit with probability ``readout_error``; the name of a
fake IBM backend (``qiskit_ibm_runtime.fake_provider``, e.g. ``"FakeManilaV2"``) transpiles
each template once to that device (optimisation level 0, so every angle stays an affine
function of one θ) and uses its noise model and readout errors.

Aer's own per-call Python work (transpiling, assembling circuits and binds, building a
``Result``) is what dominates a plain ``AerSimulator.run`` for small circuits; here it is
done once per template, and rows are split between copies of the template that Aer runs as
parallel experiments (``backend.threads`` copies; 0 = every core).

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
import gc
import os
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from qepi.backends.base import (BackendEntry, Capabilities, ExecutionStats, ExecutorBase,
                                broadcast_weights, register_backend)
from qepi.backends.translate import SHIFT, Traced, gates_to_circuit, trace_gates
from qepi.config import Backend
from qepi.errors import UserError

_MAX_PLANS = 16  # assembled templates kept per executor (one per circuit structure)
_MIN_ROWS_PER_COPY = 64  # fewer rows per parallel experiment cost more than they gain
_ONE_QUBIT = ("rx", "ry", "rz", "p", "x", "y", "z", "h", "s", "t", "sx", "sdg", "tdg", "sxdg")
_TWO_QUBIT = ("cx", "cy", "cz", "swap", "iswap", "ecr", "rxx", "ryy", "rzz")


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


def _qwc_groups(words: list[str]) -> list[list[int]]:
    """Greedy qubit-wise commuting groups of ``words`` (indices into ``words``)."""
    groups: list[tuple[list[str], list[int]]] = []
    for i, word in enumerate(words):
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


def _mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser on uint64 arrays (wrapping arithmetic)."""
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def row_keys(values: np.ndarray, salt: int) -> np.ndarray:
    """A 64-bit key per row of ``values`` (C, P) that depends only on ``salt`` and the row."""
    bits = np.ascontiguousarray(values, dtype=np.float64).view(np.uint64)  # (C, P)
    key = np.full(len(values), np.uint64(salt & 0xFFFFFFFFFFFFFFFF), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for j in range(bits.shape[1]):
            key = _mix64(key ^ bits[:, j] ^ np.uint64(j + 1))
        return _mix64(key)


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


def restrict_noise(noise: dict, qubits: set[int]) -> dict:
    """Aer's serialised noise model keeping only errors on ``qubits`` (readout errors dropped:
    they are applied to the probabilities as confusion matrices)."""
    errors = []
    for error in noise.get("errors", []):
        if error["type"] == "roerror":
            continue
        if "gate_qubits" in error:
            kept = [q for q in error["gate_qubits"] if set(q) <= qubits]
            if not kept:
                continue
            error = {**error, "gate_qubits": kept}
        errors.append(error)
    return {"errors": errors} if errors else {}


@dataclass
class _Group:
    """One measurement basis: its template's Aer bindings and how to read its words."""

    # ((op, pos), j, a, b): the Aer op parameter at (op, pos) is a·θ_j + b
    bindings: list[tuple[tuple[int, int], int, float, float]]
    words: list[int]  # indices into _Plan.words
    signs: np.ndarray  # (2**m, n_words) parity ±1 of each outcome for each word
    readout: list[np.ndarray]  # one 2x2 confusion matrix per measured qubit (bit 0 first)


class _Plan:
    """Templates of one circuit structure, assembled for Aer once."""

    def __init__(self, traced: Traced, device, readout: Callable[[int], np.ndarray], copies: int,
                 noise: dict):
        from qiskit.circuit import Parameter, ParameterExpression
        from qiskit_aer.backends.aer_compiler import assemble_circuits

        n = traced.n_qubits
        self.n_angles = len(traced.angles)
        self.words = sorted({w for terms in traced.observables for _, w in terms})
        self.coeffs = np.zeros((len(traced.observables), len(self.words)))  # (O, W)
        for o, terms in enumerate(traced.observables):
            for c, w in terms:
                self.coeffs[o, self.words.index(w)] += c
        params = [Parameter(f"t{j}") for j in range(self.n_angles)]
        circuits, self.groups = [], []
        for members in _qwc_groups(self.words):
            basis = ["I"] * n
            for i in members:
                for q, a in enumerate(self.words[i]):
                    basis[q] = a if a != "I" else basis[q]
            measured = [q for q in range(n) if basis[q] != "I"] or [0]
            qc = gates_to_circuit(traced, params)
            for q in measured:
                if basis[q] == "X":
                    qc.h(q)
                elif basis[q] == "Y":
                    qc.sdg(q)
                    qc.h(q)
            physical = measured
            if device is not None:
                qc, physical = self._to_device(qc, measured, device)
            qc.save_probabilities(physical, label="p")
            signs = np.ones((2 ** len(measured), len(members)))
            outcomes = np.arange(2 ** len(measured))
            for col, i in enumerate(members):
                for bit, q in enumerate(measured):
                    if self.words[i][q] != "I":
                        signs[(outcomes >> bit) & 1 == 1, col] *= -1
            confusion = [readout(q) for q in physical]
            circuits.append(qc)
            self.groups.append(_Group([], members, signs, confusion))
        self.circuits = circuits
        used = {qc.find_bit(q).index for qc in circuits for inst in qc.data for q in inst.qubits}
        self.noise = restrict_noise(noise, used)  # Aer's noise dict, only for used qubits
        # `copies` assembled copies of every template: Aer runs experiments in parallel,
        # so a chunk's rows are split between copies to use every core
        self.copies = copies
        assembled, idx_maps = assemble_circuits([qc for qc in circuits for _ in range(copies)])
        self.aer_circuits = [assembled[g * copies:(g + 1) * copies] for g in range(len(circuits))]
        for g, (qc, group) in enumerate(zip(circuits, self.groups)):
            for i, inst in enumerate(qc.data):
                for pos, value in enumerate(inst.operation.params):
                    if isinstance(value, ParameterExpression) and value.parameters:
                        where = (idx_maps[g * copies][i], pos)
                        group.bindings.append((where, *self._affine(value, params)))

    @staticmethod
    def _affine(expr, params) -> tuple[int, float, float]:
        """``expr`` as a·θ_j + b (a transpiled angle); anything else is an error."""
        if len(expr.parameters) != 1:
            raise UserError(f"transpiled angle {expr} depends on several gate angles")
        (p,) = expr.parameters
        b = float(expr.bind({p: 0.0}))
        a = float(expr.bind({p: 1.0})) - b
        if abs(float(expr.bind({p: 2.0})) - (2 * a + b)) > 1e-9:
            raise UserError(f"transpiled angle {expr} is not affine in {p}")
        return params.index(p), a, b

    @staticmethod
    def _to_device(qc, measured, device):
        from qiskit import transpile

        tqc = transpile(qc, backend=device, optimization_level=0, seed_transpiler=0)
        layout = tqc.layout.final_index_layout()  # virtual qubit -> physical qubit
        return tqc, [layout[q] for q in measured]


class _ParameterShift(torch.autograd.Function):
    """values = f(θ) with a precomputed Jacobian: backward is grad @ J."""

    @staticmethod
    def forward(ctx, theta, values, jacobian):  # theta (R, P), values (R, O), jacobian (R, O, P)
        ctx.save_for_backward(jacobian)
        return values.clone()

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        (jacobian,) = ctx.saved_tensors
        return torch.einsum("ro,rop->rp", grad, jacobian), None, None


class AerExecutor(ExecutorBase):
    """Executor for ``backend.name == "aer"``: parameter-shift gradients on Qiskit Aer.

    Follows the executor contract of :mod:`qepi.backends`; ``stats`` counts every circuit
    evaluated (shifted ones included) and the shots spent.
    """

    capabilities = Capabilities(measurements=frozenset({"expval"}), shots=True, noise=True,
                                shift_mask=True, trace=True)

    def __init__(self, qfunc: Callable, n_qubits: int, backend: Backend, seed: int = 0):
        check_backend(backend)
        self.qfunc, self.n_qubits, self.backend, self.seed = qfunc, n_qubits, backend, seed
        self.stats = ExecutionStats()
        self.shift_mask = None  # None or a bool tensor broadcastable to (N, K, P)
        self._plans: dict[tuple, _Plan] = {}
        self._sim = None  # Aer objects are made on first use, and again after a fork
        self._pid = os.getpid()
        self._device = None  # the fake IBM backend named by backend.noise
        self._noise = None  # the noise model as Aer's dict
        self._readout_errors: dict[int, np.ndarray] = {}  # physical qubit -> 2x2 confusion
        self._threads = 1  # parallel experiments per Aer call (set with the simulator)
        self._library_dir = ""

    # -- public helpers -------------------------------------------------------------
    def trace(self, inputs: torch.Tensor, weights: dict[str, torch.Tensor]) -> Traced:
        """The traced gates and angles for inputs (N, K, F) and weights {name: (K, ...)}."""
        n, k, f = inputs.shape
        rows = inputs.reshape(n * k, f).to(torch.float64)  # (N*K, F)
        row_weights = broadcast_weights({m: w.to(torch.float64) for m, w in weights.items()}, n)
        return trace_gates(self.qfunc, rows, row_weights, self.n_qubits)

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

    def shift_matrix(self, traced: Traced, n: int, k: int) -> torch.Tensor:
        """(N*K, P) bool: the angles a step shifts (those needing a gradient, within the mask)."""
        r, p = n * k, len(traced.angles)
        shift = torch.zeros(r, p, dtype=torch.bool)
        if not torch.is_grad_enabled():
            return shift
        shift[:, [a.requires_grad for a in traced.angles]] = True
        if self.shift_mask is not None:
            mask = torch.as_tensor(self.shift_mask, dtype=torch.bool)
            try:
                shift &= mask.expand(n, k, p).reshape(r, p)
            except RuntimeError:
                raise UserError(
                    f"shift mask of shape {tuple(mask.shape)} does not broadcast "
                    f"to (N, K, P) = {(n, k, p)}"
                ) from None
        return shift

    # -- the step -------------------------------------------------------------------
    def __call__(self, inputs: torch.Tensor, weights: dict[str, torch.Tensor]) -> torch.Tensor:
        n, k, _ = inputs.shape
        traced = self.trace(inputs, weights)
        theta = traced.angle_matrix().expand(n * k, len(traced.angles)).cpu()  # (R, P)
        shift = self.shift_matrix(traced, n, k)  # (R, P)
        values, jacobian = self._evaluate(traced, theta.detach().numpy(), shift.numpy())
        out = _ParameterShift.apply(theta, torch.from_numpy(values), torch.from_numpy(jacobian))
        return out.reshape(n, k, -1).to(device=inputs.device, dtype=inputs.dtype)  # (N, K, O)

    def _plan(self, traced: Traced) -> _Plan:
        if self._pid != os.getpid():  # a forked child rebuilds every Aer object
            self._plans, self._sim, self._pid = {}, None, os.getpid()
        plan = self._plans.get(traced.structure)
        if plan is None:
            self._setup()
            if len(self._plans) >= _MAX_PLANS:  # structures that vary with the data
                self._plans.pop(next(iter(self._plans)))
            plan = self._plans[traced.structure] = _Plan(
                traced, self._device, self._readout, self._threads, self._noise
            )
        return plan

    def _setup(self) -> None:
        if self._sim is not None:
            return
        from qiskit_aer import AerSimulator
        from qiskit_aer.backends.backend_utils import LIBRARY_DIR
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
        if noise is not None:
            for qubits, error in noise._local_readout_errors.items():
                self._readout_errors[qubits[0]] = np.asarray(error.probabilities, dtype=float)
        noisy = noise is not None and not noise.is_ideal()
        self._threads = b.threads or os.cpu_count() or 1
        self._sim = AerSimulator(
            method="density_matrix" if noisy else "statevector",
            runtime_parameter_bind_enable=True,
            max_parallel_threads=b.threads,
            max_parallel_experiments=0,
            seed_simulator=self.seed,
        )
        self._noise = noise.to_dict(serializable=True) if noisy else {}
        self._library_dir = LIBRARY_DIR

    def _readout(self, qubit: int) -> np.ndarray:
        """P(measured = column | true = row) for one physical qubit."""
        if self.backend.noise == "depolarizing":
            r = self.backend.readout_error
            return np.array([[1 - r, r], [r, 1 - r]])
        return self._readout_errors.get(qubit, np.eye(2))

    def _run(self, plan: _Plan, values: np.ndarray) -> np.ndarray:
        """Word expectation values (C, W) of the circuits with angle rows ``values`` (C, P)."""
        # Aer's own run path minus its per-call work: the templates were assembled once
        # (aer_compiler.assemble_circuits), the noise model serialised once, and the result
        # dict is read directly instead of becoming a qiskit Result (AerSimulator._execute_circuits
        # and AerBackend._execute_circuits_job do the same steps on every call).
        from qiskit_aer.backends.aer_compiler import generate_aer_config

        c = len(values)
        copies = max(1, min(plan.copies, c // _MIN_ROWS_PER_COPY))
        parts = np.array_split(np.arange(c), copies)
        circuits, parameterizations = [], []
        for g, group in enumerate(plan.groups):
            if not group.bindings:  # a template without angles runs once
                circuits.append(plan.aer_circuits[g][0])
                parameterizations.append([])
                continue
            columns = [(where, (a * values[:, j] + b)) for where, j, a, b in group.bindings]
            for copy, rows in enumerate(parts):
                circuits.append(plan.aer_circuits[g][copy])
                parameterizations.append([[where, col[rows].tolist()] for where, col in columns])
        config = generate_aer_config(plan.circuits, self._sim.options, shots=1)
        config.library_dir = self._library_dir
        config.parameterizations = parameterizations
        gc_was_enabled = gc.isenabled()
        gc.disable()  # the result holds one small dict per circuit: no need to scan them
        try:
            output = self._sim._controller.execute(circuits, plan.noise, config)
        finally:
            if gc_was_enabled:
                gc.enable()
        if not output.get("success", False):
            raise RuntimeError(f"Aer simulation failed: {output.get('status')}")
        results = output["results"]  # binds of every copy of template 0, then of template 1, ...
        words = np.empty((c, len(plan.words)))  # (C, W)
        start = 0
        for g, group in enumerate(plan.groups):
            if group.bindings:
                probs = np.stack([res["data"]["p"] for res in results[start:start + c]])
                start += c
            else:  # a template without angles runs once
                probs = np.repeat(results[start]["data"]["p"][None], c, axis=0)
                start += 1
            probs = self._measure(probs, group, values, g)  # (C, 2**m)
            words[:, group.words] = probs @ group.signs
        return words

    def _measure(self, probs: np.ndarray, group: _Group, values: np.ndarray, g: int) -> np.ndarray:
        """Apply readout confusion and, with shots, replace probabilities by sampled frequencies."""
        m = len(group.readout)
        if any(not np.array_equal(mat, np.eye(2)) for mat in group.readout):
            tensor = probs.reshape(len(probs), *([2] * m))  # axis 1 is the last measured bit
            for bit, mat in enumerate(group.readout):
                tensor = np.moveaxis(np.tensordot(tensor, mat, axes=([m - bit], [0])), -1, m - bit)
            probs = tensor.reshape(len(probs), -1)
        shots = self.backend.shots
        if not shots:
            return probs
        probs = np.clip(probs, 0.0, None)
        probs /= probs.sum(axis=1, keepdims=True)
        freqs = np.empty_like(probs)
        keys = row_keys(values, self.seed * 1_000_003 + g)
        for c, key in enumerate(keys.tolist()):
            rng = np.random.Generator(np.random.Philox(key=key))
            freqs[c] = rng.multinomial(shots, probs[c]) / shots
        return freqs

    def _evaluate(self, traced: Traced, theta: np.ndarray, shift: np.ndarray):
        """Values (R, O) and Jacobian (R, O, P) from the unshifted and ±π/2 rows.

        Rows are taken in blocks of at most ``backend.chunk_rows`` circuits (at least one
        row each), so memory stays bounded whatever the batch; one Aer run per block.
        """
        plan = self._plan(traced)
        r, p = theta.shape
        values = np.empty((r, len(plan.coeffs)))  # (R, O)
        jacobian = np.zeros((r, len(plan.coeffs), p))  # (R, O, P)
        cost = np.cumsum(1 + 2 * shift.sum(axis=1))  # circuits up to and including each row
        start = 0
        while start < r:
            done = cost[start - 1] if start else 0
            stop = int(np.searchsorted(cost, done + self.backend.chunk_rows, side="right"))
            stop = max(start + 1, stop)
            every, rows, cols = shifted_rows(theta[start:stop], shift[start:stop])  # (B + 2M, P)
            outputs = self._run(plan, every) @ plan.coeffs.T  # (B + 2M, O)
            b, m = stop - start, len(rows)
            values[start:stop] = outputs[:b]
            jacobian[start + rows, :, cols] = (outputs[b:b + m] - outputs[b + m:]) / 2
            self.stats.add(len(every), self.backend.shots)
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

__all__ = ["AerExecutor", "check_backend", "fake_backend", "fake_backend_class", "row_keys",
           "shifted_rows"]
