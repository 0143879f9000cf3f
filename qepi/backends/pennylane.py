"""``default.qubit`` (torch backprop) and ``lightning.qubit`` (adjoint) through PennyLane.

:class:`PennyLaneExecutor` runs a circuit on ``default.qubit`` as one broadcast QNode call and
returns the flat ``(N, K, n_outputs)`` of the executor contract for any mix of ``expval``,
``var`` and ``probs``. :meth:`PennyLaneExecutor.from_qnode` runs a user's own QNode instead
(its device, shots, ``diff_method`` and every other QNode setting), which is how
:class:`qepi.layers.QuantumLayer` honours QNode settings that qepi's backends do not cover.

:class:`LightningExecutor` runs ``lightning.qubit`` with its adjoint method, which
differentiates expectation values of constant observables only. Every measurement is
therefore rewritten into such expectation values, and the circuit's outputs are computed
from them with torch: ``var(O) = <O²> - <O>²``, ``probs`` from the ``Z`` strings of its wires,
and an observable whose coefficients are tensors from its constant Pauli words.

Example:
    >>> import pennylane as qml, torch
    >>> from qepi.config import Backend
    >>> def circuit(inputs, weights):
    ...     qml.RY(inputs[..., 0], wires=0)
    ...     qml.RX(weights, wires=1)
    ...     return qml.expval(qml.PauliZ(0)), qml.probs(wires=[0, 1])
    >>> run = LightningExecutor(circuit, 2, Backend(name="lightning.qubit"))
    >>> out = run(torch.zeros(3, 1, 1), {"weights": torch.zeros(1)})  # (N, K, 1 + 4)
    >>> out.shape, run.diff_method
    (torch.Size([3, 1, 5]), 'adjoint')
    >>> out[0, 0].tolist()
    [1.0, 1.0, 0.0, 0.0, 0.0]
"""

from __future__ import annotations

import contextlib
import functools
import itertools
from collections.abc import Callable, Iterator

import numpy as np
import torch

from qepi.backends.base import (MEASUREMENT_KINDS, BackendEntry, Capabilities, ExecutionStats,
                                ExecutorBase, broadcast_weights, register_backend)
from qepi.compat.pennylane import forget_eigendecompositions
from qepi.backends.mitigation import refuse_mitigation
from qepi.config import Backend
from qepi.errors import UserError

INSTEAD = "use backend.name='default.qubit' or 'exact'"


def measurement_kind(mp) -> str:
    """``expval``, ``var`` or ``probs`` for a PennyLane measurement; a UserError otherwise.

    >>> import pennylane as qml
    >>> measurement_kind(qml.var(qml.PauliX(0)))
    'var'
    """
    from pennylane.measurements import ExpectationMP, ProbabilityMP, VarianceMP

    for kind, cls in zip(MEASUREMENT_KINDS, (ExpectationMP, VarianceMP, ProbabilityMP)):
        if isinstance(mp, cls):
            return kind
    name = type(mp).__name__.removesuffix("MP").lower()
    raise UserError(f"measurement {name}: a quantum layer returns expval, var or probs "
                    f"(or a list of them)")


def _first_line(error: Exception) -> str:
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0] if lines else ''}"


@contextlib.contextmanager
def _float64_results() -> Iterator[None]:
    """PennyLane's torch interface turns a device's Python float results into tensors of
    torch's default dtype; within the block that is float64, so no digit is lost."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


class _NamedBackward(torch.autograd.Function):
    """``compute(*leaves)``, whose backward raises a one-line UserError (``what``, the error's
    first line and ``instead``) where PennyLane's own backward fails."""

    @staticmethod
    def forward(ctx, compute, what, instead, *leaves):
        ctx.what, ctx.instead = what, instead
        with torch.enable_grad():
            ctx.leaves = [leaf.detach().requires_grad_(leaf.requires_grad) for leaf in leaves]
            ctx.result = compute(*ctx.leaves)
        return ctx.result.detach()

    @staticmethod
    def backward(ctx, grad):
        wanted = [leaf for leaf in ctx.leaves if leaf.requires_grad]
        grads = iter([None] * len(wanted))
        if ctx.result.requires_grad and wanted:
            try:
                with _float64_results():
                    grads = iter(torch.autograd.grad(ctx.result, wanted, grad, retain_graph=True,
                                                     allow_unused=True))
            except Exception as error:  # noqa: BLE001 - PennyLane's own errors, named
                raise UserError(f"{ctx.what} cannot differentiate this circuit "
                                f"({_first_line(error)}); {ctx.instead}") from error
        return (None, None, None, *[next(grads) if leaf.requires_grad else None
                              for leaf in ctx.leaves])


def _named_backward(compute: Callable, what: str, leaves: list[torch.Tensor],
                    instead: str = INSTEAD) -> torch.Tensor:
    """``compute(*leaves)``; a failure of its backward is a UserError naming ``what`` and
    ``instead``."""
    if torch.is_grad_enabled() and any(leaf.requires_grad for leaf in leaves):
        return _NamedBackward.apply(compute, what, instead, *leaves)
    return compute(*leaves)


def _has_tensors(op) -> bool:
    return any(isinstance(p, torch.Tensor) for p in op.data)


def _trainable(op) -> bool:
    return any(isinstance(p, torch.Tensor) and p.requires_grad for p in op.data)


class PennyLaneExecutor(ExecutorBase):
    """Runs the circuit on ``default.qubit`` as one broadcast QNode call, with backprop;
    observables computed from tensors are read from their Pauli words (see :class:`Readout`)."""

    capabilities = Capabilities(measurements=frozenset(MEASUREMENT_KINDS))

    def __init__(self, qfunc: Callable, n_qubits: int, backend: Backend):
        if backend.name != "default.qubit":
            raise UserError(f"PennyLaneExecutor runs default.qubit, not {backend.name}; build "
                            f"executors with qepi.backends.make_executor")
        self.qfunc, self.n_qubits, self.backend = qfunc, n_qubits, backend
        self.diff_method = "backprop"
        self.stats = ExecutionStats()
        self.dtype = torch.float32 if backend.dtype == "float32" else torch.float64
        self.input_arg: str | None = None  # None: the circuit takes the inputs first
        self.qnode = None  # built on the first call, once the measurements are known
        self.kinds: list[str] | None = None  # measurement kinds, in order
        self.readout: Readout | None = None  # of the latest call
        self.shots = 0

    @classmethod
    def from_qnode(cls, qnode, input_arg: str, shots: int | None = None,
                   dtype: str | None = None) -> PennyLaneExecutor:
        """An executor that calls ``qnode(**{input_arg: rows}, **weights)`` itself: its device,
        ``diff_method`` and other settings as they are, with ``shots`` (an int) if given;
        computing in ``dtype`` (default float64).

        >>> import pennylane as qml, torch
        >>> @qml.qnode(qml.device("default.qubit", wires=1), diff_method="parameter-shift")
        ... def circuit(w, x):
        ...     qml.RY(x[..., 0] + w, wires=0)
        ...     return qml.expval(qml.PauliZ(0))
        >>> run = PennyLaneExecutor.from_qnode(circuit, "x", shots=100)
        >>> run(torch.zeros(2, 1, 1), {"w": torch.zeros(1)}).tolist(), run.stats.shots
        ([[[1.0]], [[1.0]]], 200)
        """
        import pennylane as qml

        run = cls.__new__(cls)
        run.qfunc, run.n_qubits, run.input_arg = qnode.func, None, input_arg
        run.backend = Backend(name=qnode.device.name)
        run.qnode = qml.set_shots(qnode, shots=shots) if shots is not None else qnode
        run.diff_method, run.stats = qnode.diff_method, ExecutionStats()
        run.dtype = torch.float32 if dtype == "float32" else torch.float64
        run.kinds, run.shots = None, run.qnode.shots.total_shots or 0
        run.qnode = run._unbroadcast(run.qnode)
        return run

    def _unbroadcast(self, qnode):
        """``qnode`` splitting batched tapes into one tape per row (one execution still), for
        gradient transforms that cannot differentiate broadcast parameters (parameter shift)."""
        import pennylane as qml

        if self.diff_method in ("backprop", "adjoint") or (self.diff_method == "best"
                                                           and not self.shots):
            return qnode
        return qml.transforms.broadcast_expand(qnode)

    def _call_qfunc(self, func: Callable, inputs, weights: dict):
        if self.input_arg is None:
            return func(inputs, **weights)
        return func(**{self.input_arg: inputs}, **weights)

    def _build(self, rows: torch.Tensor, weights: dict[str, torch.Tensor]) -> None:
        """Read the measurements from one trace; make the QNode."""
        import pennylane as qml

        tape = qml.tape.make_qscript(self._call_qfunc)(self.qfunc, rows, weights)
        self.kinds = [measurement_kind(mp) for mp in tape.measurements]
        if self.qnode is None:  # a user's QNode runs as it is
            device = qml.device(self.backend.name, wires=self.n_qubits)
            self.qnode = qml.QNode(self._read, device, interface="torch",
                                   diff_method=self.diff_method)

    def _read(self, inputs, **weights):
        """The circuit measuring what its :class:`Readout` reads the outputs from: observables
        computed from tensors become their constant Pauli words (PennyLane mishandles them:
        a batch of coefficients on an unbatched state, a variance of a tensor Hermitian
        without gradient, eigenvalues cached under 4 printed decimals)."""
        import pennylane as qml

        tape = qml.tape.make_qscript(self.qfunc)(inputs, **weights)
        self.readout = Readout(self.n_qubits)
        for mp in tape.measurements:
            self.readout.add(mp)
        for op in tape.operations:
            qml.apply(op)
        return [qml.apply(mp) for mp in self.readout.measurements]

    def _traces(self, row: torch.Tensor, weights: dict[str, torch.Tensor]) -> bool:
        """Whether the circuit records without error for one row."""
        import pennylane as qml

        try:
            qml.tape.make_qscript(self._call_qfunc)(self.qfunc, row, weights)
        except Exception:  # noqa: BLE001 - any failure: the row does not trace
            return False
        return True

    def _columns(self, result, n_rows: int) -> torch.Tensor:
        """The QNode's result as the (N*K, n_outputs) of the executor contract."""
        results = list(result) if isinstance(result, (list, tuple)) else [result]
        if self.input_arg is None:  # qepi's own QNode: its Readout's columns, (N*K?, width)
            columns = self.readout.columns(results)
        else:
            columns = [torch.as_tensor(value) if kind == "probs"
                       else torch.as_tensor(value).unsqueeze(-1)
                       for kind, value in zip(self.kinds, results)]
        # a column without the batch dimension: the circuit ignores the batch
        return torch.cat([column.expand(n_rows, column.shape[-1]) for column in columns],
                         dim=-1)  # (N*K, n_outputs)

    def __call__(self, inputs: torch.Tensor, weights: dict[str, torch.Tensor]) -> torch.Tensor:
        n, k, f = inputs.shape
        rows = inputs.reshape(n * k, f).to(self.dtype)  # (N*K, F)
        row_weights = broadcast_weights({m: w.to(self.dtype) for m, w in weights.items()}, n)
        single = rows[0] if n * k == 1 else rows  # one row runs unbatched, as in TorchLayer
        names, what = list(row_weights), f"{self.backend.name} (diff_method={self.diff_method!r})"

        def compute(single, *weights):
            result = self._call_qfunc(self.qnode, single, dict(zip(names, weights)))
            return self._columns(result, n * k)  # (N*K, n_outputs)

        try:
            # PennyLane's class-wide eigendecomposition cache may hold the eigenvalues (and the
            # autograd graph) of an observable of an earlier call: never read it
            forget_eigendecompositions()
            if self.kinds is None:
                self._build(single, row_weights)
            if self.diff_method == "backprop":  # torch's own backward (higher orders too)
                out = compute(single, *row_weights.values())
            else:
                instead = (f"drop the QNode's diff_method={self.diff_method!r}, or use "
                           f"backend.name='lightning.qubit' or 'exact'")
                with _float64_results():
                    out = _named_backward(compute, what, [single, *row_weights.values()],
                                          instead)
        except UserError:
            raise
        except Exception as err:  # noqa: BLE001 - PennyLane's own errors, named for the user
            first_row = {m: w[0] for m, w in row_weights.items()} if k > 1 else row_weights
            if n * k > 1 and self._traces(rows[0], first_row):
                raise UserError(f"{what}: the circuit fails on a batch of {n * k} rows "
                                f"({_first_line(err)}) but not on one; use backend.name="
                                f"'lightning.qubit', which runs one row at a time") from err
            raise UserError(f"{what}: {_first_line(err)}") from err
        self.stats.add(n * k, self.shots)
        return out.reshape(n, k, -1).to(inputs.dtype)  # (N, K, n_outputs)


# ----------------------------------------------------------------------------- lightning


@functools.cache
def _pauli_matrices(n_wires: int) -> tuple[list[str], torch.Tensor]:
    """Every Pauli word on ``n_wires`` wires as a string ("IXZ") and its matrix, stacked:
    (4**n_wires, 2**n_wires, 2**n_wires)."""
    single = {"I": np.eye(2), "X": np.array([[0, 1], [1, 0]]), "Y": np.array([[0, -1j], [1j, 0]]),
              "Z": np.diag([1, -1])}
    words = ["".join(w) for w in itertools.product("IXYZ", repeat=n_wires)]
    matrices = []
    for word in words:
        matrix = np.ones((1, 1))
        for letter in word:
            matrix = np.kron(matrix, single[letter])
        matrices.append(matrix)
    return words, torch.as_tensor(np.stack(matrices), dtype=torch.complex128)


def pauli_terms(obs) -> dict:
    """``obs`` as ``{PauliWord: coefficient}``, the coefficients being tensors (batched too)
    where ``obs``'s data are. Sums, products and scalar products are expanded term by term;
    another operator without a Pauli form gives every word on its wires (zeros included) with
    the coefficients of its matrix's Pauli decomposition.

    >>> import pennylane as qml, torch
    >>> terms = pauli_terms(torch.tensor(0.5) * qml.X(0) @ qml.Z(1) + qml.Y(1))
    >>> {str(word): float(c) for word, c in terms.items()}
    {'X(0) @ Z(1)': 0.5, 'Y(1)': 1.0}
    >>> terms = pauli_terms(torch.tensor([1.0, 2.0]) * qml.X(0))  # a batch of coefficients
    >>> {str(word): c.tolist() for word, c in terms.items()}
    {'X(0)': [1.0, 2.0]}
    >>> hermitian = qml.Hermitian(torch.tensor([[1.0, 2.0], [2.0, -1.0]]), wires=0)
    >>> {str(word): float(c) for word, c in pauli_terms(hermitian).items()}
    {'I': 0.0, 'X(0)': 2.0, 'Y(0)': 0.0, 'Z(0)': 1.0}
    """
    import pennylane as qml
    from pennylane.ops.op_math import Prod, SProd, Sum
    from pennylane.pauli import PauliWord

    if obs.pauli_rep is not None:
        return dict(obs.pauli_rep)
    if isinstance(obs, SProd):
        return {word: obs.scalar * c for word, c in pauli_terms(obs.base).items()}
    if isinstance(obs, Sum):
        terms: dict = {}
        for operand in obs.operands:
            for word, c in pauli_terms(operand).items():
                terms[word] = terms[word] + c if word in terms else c
        return terms
    if isinstance(obs, Prod):
        terms = {PauliWord({}): 1.0}
        for factor in obs.operands:
            product: dict = {}
            for word, c in terms.items():
                for other, d in pauli_terms(factor).items():
                    ((word_other, phase),) = (word @ other).items()
                    value = phase * c * d
                    product[word_other] = product[word_other] + value if (
                        word_other in product) else value
            terms = product
        return terms
    try:
        matrix = torch.as_tensor(qml.matrix(obs, wire_order=obs.wires)).to(torch.complex128)
    except Exception as error:  # noqa: BLE001 - PennyLane's own failure, named
        raise UserError(f"observable {obs.name}: no Pauli form and no matrix "
                        f"({_first_line(error)}); {INSTEAD}") from error
    words, paulis = _pauli_matrices(len(obs.wires))
    # (..., 4**n): tr(P M) / 2**n, real for a Hermitian M
    coefficients = torch.einsum("pij,...ji->...p", paulis, matrix).real / matrix.shape[-1]
    return {PauliWord({wire: letter for wire, letter in zip(obs.wires, word) if letter != "I"}):
            coefficients[..., p] for p, word in enumerate(words)}


@functools.cache
def _walsh(k: int) -> torch.Tensor:
    """(2**k, 2**k): (-1)^(b·s) / 2**k, the inverse Walsh-Hadamard transform on k bits.

    >>> (_walsh(2) * 4).tolist()[1]
    [1.0, -1.0, 1.0, -1.0]
    """
    hadamard = np.ones((1, 1))
    for _ in range(k):
        hadamard = np.kron(hadamard, [[1, 1], [1, -1]])
    return torch.as_tensor(hadamard / 2**k, dtype=torch.float64)


def _real(coefficient):
    """The real part of a Pauli coefficient (a float, a complex or a tensor)."""
    if isinstance(coefficient, torch.Tensor):
        return coefficient.real if coefficient.is_complex() else coefficient
    return float(np.real(coefficient))


class Readout:
    """What a device measures for a circuit's measurements, and how the circuit's outputs
    follow from the results.

    A measurement of a kind in ``native`` whose observable is constant is measured as it is
    (mid-circuit measurement statistics too, if ``mid_circuit``). Any other is read from
    expectation values of constant observables: an observable computed from tensors from its
    Pauli words (:func:`pauli_terms`), ``var(O) = <O²> - <O>²``, and ``probs`` from the
    ``Z`` strings of its wires. Results and outputs broadcast over leading batch dimensions.

    >>> import pennylane as qml, torch
    >>> readout = Readout(n_qubits=1, native={"expval"})
    >>> readout.add(qml.var(qml.X(0)))
    >>> readout.add(qml.probs(wires=[0]))
    >>> readout.measurements  # <X> for the variance (<X²> = 1), <Z> for the probabilities
    [expval(X(0)), expval(Z(0))]
    >>> results = [torch.tensor(0.6, dtype=torch.float64), torch.tensor(0.2, dtype=torch.float64)]
    >>> readout.outputs(results).tolist()
    [0.64, 0.6, 0.4]
    """

    def __init__(self, n_qubits: int, native=frozenset(MEASUREMENT_KINDS),
                 mid_circuit: bool = True):
        self.n_qubits, self.native, self.mid_circuit = n_qubits, frozenset(native), mid_circuit
        self.measurements: list = []  # what the device measures, in order
        self._words: dict = {}  # PauliWord -> the index of its expectation value
        self._columns: list[Callable] = []  # results -> (..., width), one per measurement

    def _measure(self, mp) -> int:
        self.measurements.append(mp)
        return len(self.measurements) - 1

    def _expval(self, obs) -> int:
        import pennylane as qml

        with qml.QueuingManager.stop_recording():
            return self._measure(qml.expval(obs))

    def _word(self, word) -> int | None:
        """The index of the Pauli word's expectation value; None for the identity (1)."""
        if not word:
            return None
        if word not in self._words:
            self._words[word] = self._expval(word.operation())
        return self._words[word]

    def _combination(self, terms: dict) -> Callable:
        """results -> Σ coefficient · <word>."""
        indexed = [(_real(c), self._word(word)) for word, c in terms.items()]

        def value(results):
            return sum(c * (1.0 if index is None else results[index]) for c, index in indexed)

        return value

    def add(self, mp) -> None:
        """Plan what the device measures for ``mp`` (expval, var or probs)."""
        kind = measurement_kind(mp)
        constant = mp.obs is None or not _has_tensors(mp.obs)
        if mp.mv is not None and not self.mid_circuit:
            raise UserError(f"lightning.qubit: {kind} of a mid-circuit measurement; {INSTEAD}")
        if kind in self.native and constant:
            index = self._measure(mp)
            self._columns.append(lambda results: torch.as_tensor(results[index]).unsqueeze(-1)
                                 if kind != "probs" else torch.as_tensor(results[index]))
        elif kind == "probs":
            self._columns.append(self._probabilities(mp))
        elif kind == "expval":
            combination = self._combination(pauli_terms(mp.obs))
            self._columns.append(lambda results: _as_column(combination(results)))
        else:
            self._columns.append(self._variance(mp.obs))

    def _probabilities(self, mp) -> Callable:
        """p(b) = 2⁻ᵏ Σ_s (-1)^(b·s) <Z_s>, over the subsets s of the k wires (first wire most
        significant in b and s): a Walsh-Hadamard transform of the Z strings' values."""
        from pennylane.pauli import PauliWord

        if mp.obs is not None:
            raise UserError(f"lightning.qubit: probs in the eigenbasis of {mp.obs.name}; "
                            f"{INSTEAD}")
        wires = list(mp.wires) or list(range(self.n_qubits))
        k = len(wires)
        indices = [self._word(PauliWord({wire: "Z" for j, wire in enumerate(wires)
                                         if (s >> (k - 1 - j)) & 1})) for s in range(2**k)]

        def probabilities(results):
            strings = torch.stack(torch.broadcast_tensors(*[
                torch.ones((), dtype=torch.float64) if i is None else results[i]
                for i in indices]), -1)  # (..., 2**k)
            # rounding leaves an impossible outcome at ±1e-17: clamped at zero, as default.qubit
            # gives it (a log of it is -inf, not NaN); the derivative there is zero either way
            return (strings @ _walsh(k).to(strings.dtype)).clamp(min=0)  # (..., 2**k)

        return probabilities

    def _variance(self, obs) -> Callable:
        """var(O) = <O²> - <O>²: with O = Σ c_w w over Pauli words, O² = Σ c_w c_v w v, where
        the anticommuting pairs cancel; a constant O without Pauli form as Hermitians."""
        import pennylane as qml

        if obs.pauli_rep is None and not _has_tensors(obs):
            matrix = qml.matrix(obs, wire_order=obs.wires)
            first = self._expval(obs)
            second = self._expval(qml.Hermitian(matrix @ matrix, wires=obs.wires))
            return lambda results: _as_column(results[second] - results[first] ** 2)
        terms = pauli_terms(obs)
        mean = self._combination(terms)
        squares = []  # (c_w c_v · multiplicity · phase, the index of w v)
        items = list(terms.items())
        for i, (word, c) in enumerate(items):
            for other, d in items[i:]:
                ((product, phase),) = (word @ other).items()
                if abs(phase.imag) < 0.5:  # w and v commute: w v + v w = 2 w v
                    factor = (1 if other == word else 2) * phase.real
                    squares.append((_real(c) * _real(d) * factor, self._word(product)))

        def variance(results):
            second = sum(c * (1.0 if index is None else results[index]) for c, index in squares)
            return _as_column(second - mean(results) ** 2)

        return variance

    def columns(self, results: list) -> list[torch.Tensor]:
        """The circuit's outputs, one (..., width) tensor per measurement, from the device's
        results (one per entry of ``measurements``)."""
        # a device's floats (nothing to differentiate) as float64 tensors
        results = [result if isinstance(result, torch.Tensor)
                   else torch.as_tensor(result, dtype=torch.float64) for result in results]
        return [column(results) for column in self._columns]

    def outputs(self, results: list) -> torch.Tensor:
        """The circuit's outputs (..., n_outputs) from the device's results."""
        return torch.cat(self.columns(results), dim=-1)


def _as_column(value) -> torch.Tensor:
    """A scalar (or a batch of scalars) as (..., 1)."""
    return torch.as_tensor(value, dtype=torch.float64).unsqueeze(-1)


# gates Lightning 0.45 applies and differentiates with kernels of its own, at any angle
_LIGHTNING_KERNELS = frozenset({
    "RX", "RY", "RZ", "PhaseShift", "Rot", "U1", "U2", "U3", "CRX", "CRY", "CRZ", "CRot",
    "ControlledPhaseShift", "IsingXX", "IsingXY", "IsingYY", "IsingZZ", "MultiRZ", "PauliRot",
    "SingleExcitation", "SingleExcitationMinus", "SingleExcitationPlus", "GlobalPhase", "PSWAP"})


def _lowered(op) -> list:
    """``op`` as gates whose derivatives Lightning's adjoint method gets right (0.45).

    Lightning numbers the parameters of a tape its own way: a gate it applies as a matrix
    (``DiagonalQubitUnitary``, ``BlockEncode``, a controlled or adjoint gate) enters with no
    parameter or one more, so the derivatives of every later gate are read from the wrong
    parameter; a constant gate outside its kernels therefore runs as a ``QubitUnitary``, which
    it numbers right. A trainable gate outside its kernels would be decomposed by PennyLane,
    whose decompositions drop a gate at angle 0 (``ctrl(U1(0))`` becomes two CNOTs) or are
    singular there (a ``QubitUnitary`` near the identity); it runs as its :func:`_tangent`
    instead, unless it is a template or acts on more than 4 wires (then as its decomposition). A trainable adjoint runs as the gate's own inverse (``PauliRot(-θ)`` for
    ``adjoint(PauliRot(θ))``, whose derivative Lightning gives as zero).
    """
    import pennylane as qml
    from pennylane.ops.op_math import Adjoint, Controlled, ControlledOp

    if not _trainable(op):
        wrapper = isinstance(op, Adjoint) or type(op) in (Controlled, ControlledOp)
        if (wrapper or (op.data and op.name not in _LIGHTNING_KERNELS)) and op.has_matrix:
            return [qml.QubitUnitary(qml.matrix(op), wires=op.wires)]
        return [op]
    if isinstance(op, Adjoint):
        try:
            return _lowered(op.base.adjoint())
        except qml.exceptions.AdjointUndefinedError:
            pass
    if op.name in _LIGHTNING_KERNELS:
        return [op]
    template = type(op).__module__.startswith("pennylane.templates")
    if (template or len(op.wires) > 4) and op.has_decomposition:  # a tangent: 4**wires gates
        return [gate for part in op.decomposition() for gate in _lowered(part)]
    return _tangent(op)


def _tangent(op) -> list:
    """A trainable gate U(θ) as ``QubitUnitary(U(θ₀))`` and then ``PauliRot(α_P, P)`` for every
    Pauli word P on its wires, with α = 0 at θ₀ (the gate's value) and dα/dθ such that the
    derivative is U's: U(θ) = K(θ) U(θ₀) with K(θ₀) = 1 and dK = i dH, H = Σ_P h_P P Hermitian,
    and ∏_P exp(-i α_P P / 2) = 1 + i Σ_P h_P P to first order for α_P = -2 h_P.

    >>> import pennylane as qml, torch
    >>> theta = torch.tensor(0.0, requires_grad=True)
    >>> gates = _tangent(qml.ctrl(qml.U1(theta, wires=0), control=1))
    >>> [gate.name for gate in gates][:3], len(gates)
    (['QubitUnitary', 'PauliRot', 'PauliRot'], 16)
    """
    import pennylane as qml

    wires = op.wires
    unitary = torch.as_tensor(qml.matrix(op, wire_order=wires)).to(torch.complex128)  # (d, d)
    fixed = unitary.detach()
    turn = unitary @ fixed.conj().T  # K(θ): the identity in value
    generator = -1j * (turn - turn.detach())  # H: zero in value, dK / i in derivative
    words, paulis = _pauli_matrices(len(wires))
    # (4**k,): h_P = tr(P H) / d, zero in value, the generator's components in derivative
    components = torch.einsum("pij,ji->p", paulis, generator).real / len(fixed)
    return [qml.QubitUnitary(fixed, wires=wires)] + [
        qml.PauliRot(-2 * components[p], word, wires=wires)
        for p, word in enumerate(words) if word.strip("I")]


class LightningExecutor(ExecutorBase):
    """Runs the circuit on ``lightning.qubit``, one tape per row in one execution, with
    Lightning's adjoint method on expectation values of constant observables (see
    :class:`Readout`); PennyLane's failures, forward or backward, are one-line UserErrors."""

    capabilities = Capabilities(measurements=frozenset(MEASUREMENT_KINDS))
    diff_method = "adjoint"

    def __init__(self, qfunc: Callable, n_qubits: int, backend: Backend):
        self.qfunc, self.n_qubits, self.backend = qfunc, n_qubits, backend
        self.stats = ExecutionStats()
        self.dtype = torch.float32 if backend.dtype == "float32" else torch.float64
        self.device = None  # made on the first call

    def _tape(self, row: torch.Tensor, weights: dict[str, torch.Tensor]):
        """(tape of expectation values, its Readout) for one row."""
        import pennylane as qml

        tape = qml.tape.make_qscript(self.qfunc)(row, **weights)
        readout = Readout(self.n_qubits, native={"expval"}, mid_circuit=False)
        for mp in tape.measurements:
            readout.add(mp)
        operations = tape.operations
        if any(_trainable(op) for op in operations):  # else no derivative is read
            operations = [gate for op in operations for gate in _lowered(op)]
        return qml.tape.QuantumScript(operations, readout.measurements), readout

    def _outputs(self, rows: torch.Tensor, names: list[str], *weights) -> torch.Tensor:
        """(N*K, n_outputs) for rows (N*K, F) and per-copy weights (K, ...)."""
        import pennylane as qml

        copies = weights[0].shape[0] if weights else 1
        tapes, readouts = [], []
        for r, row in enumerate(rows):
            tape, readout = self._tape(row, {m: w[r % copies] for m, w in zip(names, weights)})
            tapes.append(tape)
            readouts.append(readout)
        measured = [tape for tape in tapes if tape.measurements]
        with _float64_results():
            # the Jacobian computed with the values: faster than vector-Jacobian products here
            results = iter(qml.execute(measured, self.device, diff_method="adjoint")
                           if measured else ())
        outputs = []
        for tape, readout in zip(tapes, readouts):
            result = next(results) if tape.measurements else []
            outputs.append(readout.outputs(list(result) if isinstance(result, (list, tuple))
                                           else [result]))  # (n_outputs,)
        return torch.stack(outputs)  # (N*K, n_outputs)

    def __call__(self, inputs: torch.Tensor, weights: dict[str, torch.Tensor]) -> torch.Tensor:
        import pennylane as qml

        n, k, f = inputs.shape
        rows = inputs.reshape(n * k, f).to(self.dtype)  # (N*K, F)
        names = list(weights)
        leaves = [rows, *(weights[m].to(self.dtype) for m in names)]
        if self.device is None:
            self.device = qml.device("lightning.qubit", wires=self.n_qubits)
        try:
            out = _named_backward(lambda rows, *w: self._outputs(rows, names, *w),
                                  "lightning.qubit (adjoint)", leaves)
        except UserError:
            raise
        except Exception as err:  # noqa: BLE001 - PennyLane's own errors, named for the user
            raise UserError(f"lightning.qubit (adjoint) cannot run this circuit "
                            f"({_first_line(err)}); {INSTEAD}") from err
        self.stats.add(n * k)
        return out.reshape(n, k, -1).to(inputs.dtype)  # (N, K, n_outputs)


def _exact_values_only(backend: Backend) -> None:
    """Refuse shots, noise and mitigation: these PennyLane devices compute exact, noiseless
    values."""
    noise = [f"backend.{key}={getattr(backend, key)!r}" for key in
             ("noise", "depolarizing_1q", "depolarizing_2q", "readout_error") if getattr(backend, key)]
    if noise:
        raise UserError(f"{noise[0]}: {backend.name} simulates without noise; use "
                        f"backend.name='aer' or 'exact' for noise")
    if backend.shots:
        how = {"default.qubit": "backprop", "lightning.qubit": "adjoint differentiation"}
        raise UserError(f"backend.shots={backend.shots}: {backend.name} ({how[backend.name]}) "
                        f"computes exact expectation values; use backend.name='aer' for shots")
    refuse_mitigation(backend, f"{backend.name} computes exact noiseless values, there is "
                               f"nothing to mitigate")


register_backend(BackendEntry(
    "default.qubit",
    build=lambda qfunc, n_qubits, backend, seed=0: PennyLaneExecutor(qfunc, n_qubits, backend),
    validate=_exact_values_only,
    summary="PennyLane's statevector simulator with torch backprop: the reference",
    capabilities=PennyLaneExecutor.capabilities,
))
register_backend(BackendEntry(
    "lightning.qubit",
    build=lambda qfunc, n_qubits, backend, seed=0: LightningExecutor(qfunc, n_qubits, backend),
    validate=_exact_values_only,
    summary="PennyLane Lightning's C++ statevector simulator with adjoint differentiation",
    capabilities=LightningExecutor.capabilities,
))

__all__ = ["LightningExecutor", "PennyLaneExecutor", "Readout", "measurement_kind", "pauli_terms"]
