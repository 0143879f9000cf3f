"""``default.qubit`` (torch backprop) and ``lightning.qubit`` (adjoint) through PennyLane.

:class:`PennyLaneExecutor` runs a circuit as one broadcast QNode call and returns the
flat ``(N, K, n_outputs)`` of the executor contract for any mix of ``expval``, ``var`` and
``probs``. :meth:`PennyLaneExecutor.from_qnode` runs a user's own QNode instead (its device,
shots, ``diff_method`` and every other QNode setting), which is how
:class:`qepi.layers.QuantumLayer` honours QNode settings that qepi's backends do not cover.

Example:
    >>> import pennylane as qml, torch
    >>> from qepi.config import Backend
    >>> def circuit(inputs, weights):
    ...     qml.RY(inputs[..., 0], wires=0)
    ...     qml.RX(weights, wires=1)
    ...     return qml.expval(qml.PauliZ(0)), qml.probs(wires=[0, 1])
    >>> run = PennyLaneExecutor(circuit, 2, Backend(name="lightning.qubit"))
    >>> out = run(torch.zeros(3, 1, 1), {"weights": torch.zeros(1)})  # (N, K, 1 + 4)
    >>> out.shape, run.diff_method  # adjoint cannot differentiate probs
    (torch.Size([3, 1, 5]), 'parameter-shift')
    >>> out[0, 0].tolist()
    [1.0, 1.0, 0.0, 0.0, 0.0]
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from qepi.backends.base import (MEASUREMENT_KINDS, BackendEntry, Capabilities, ExecutionStats,
                                ExecutorBase, broadcast_weights, register_backend)
from qepi.config import Backend
from qepi.errors import UserError

# each backend's own differentiation; None = chosen from the circuit's measurements
_DIFF_METHODS = {"default.qubit": "backprop", "lightning.qubit": None}


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


class PennyLaneExecutor(ExecutorBase):
    """Runs the circuit as one broadcast QNode call on a PennyLane device.

    ``diff_method=None`` is the backend's own: backprop on ``default.qubit``; on
    ``lightning.qubit`` adjoint when every measurement is an ``expval`` of a constant
    observable, parameter shift otherwise (adjoint cannot differentiate ``var``, ``probs``
    or observable coefficients).
    """

    capabilities = Capabilities(measurements=frozenset(MEASUREMENT_KINDS))

    def __init__(self, qfunc: Callable, n_qubits: int, backend: Backend,
                 diff_method: str | None = None):
        self.qfunc, self.n_qubits, self.backend = qfunc, n_qubits, backend
        self.diff_method = diff_method if diff_method is not None else _DIFF_METHODS[backend.name]
        self.stats = ExecutionStats()
        self.dtype = torch.float32 if backend.dtype == "float32" else torch.float64
        self.input_arg: str | None = None  # None: the circuit takes the inputs first
        self.qnode = None  # built on the first call, once the measurements are known
        self.kinds: list[str] | None = None  # measurement kinds, in order
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
        """Read the measurements from one trace; pick the diff method; make the QNode."""
        import pennylane as qml

        tape = qml.tape.make_qscript(self._call_qfunc)(self.qfunc, rows, weights)
        self.kinds = [measurement_kind(mp) for mp in tape.measurements]
        if self.qnode is not None:  # a user's QNode runs as it is
            return
        # adjoint differentiates neither var/probs nor observables computed from tensors
        # (e.g. trainable Hamiltonian coefficients: it returns zero for them)
        tensor_observables = any(isinstance(p, torch.Tensor) for mp in tape.measurements
                                 if mp.obs is not None for p in mp.obs.data)
        adjoint_ok = set(self.kinds) == {"expval"} and not tensor_observables
        if self.diff_method is None:
            self.diff_method = "adjoint" if adjoint_ok else "parameter-shift"
        elif self.diff_method == "adjoint" and not adjoint_ok:
            what = ("observables computed from tensors" if tensor_observables
                    else ", ".join(sorted(set(self.kinds))))
            raise UserError(f"diff_method='adjoint' differentiates expval of constant observables "
                            f"only, the circuit measures {what}; use diff_method='parameter-shift'")
        device = qml.device(self.backend.name, wires=self.n_qubits)
        self.qnode = self._unbroadcast(qml.QNode(self.qfunc, device, interface="torch",
                                                 diff_method=self.diff_method))

    def __call__(self, inputs: torch.Tensor, weights: dict[str, torch.Tensor]) -> torch.Tensor:
        n, k, f = inputs.shape
        rows = inputs.reshape(n * k, f).to(self.dtype)  # (N*K, F)
        row_weights = broadcast_weights({m: w.to(self.dtype) for m, w in weights.items()}, n)
        if self.kinds is None:
            self._build(rows, row_weights)
        single = rows[0] if n * k == 1 else rows  # one row runs unbatched, as in TorchLayer
        try:
            result = self._call_qfunc(self.qnode, single, row_weights)
        except UserError:
            raise
        except Exception as err:  # noqa: BLE001 - PennyLane's own errors, named for the user
            raise UserError(f"{self.backend.name} (diff_method={self.diff_method!r}): "
                            f"{type(err).__name__}: {str(err).splitlines()[0]}") from err
        results = list(result) if isinstance(result, (list, tuple)) else [result]
        columns = []
        for kind, value in zip(self.kinds, results):
            value = torch.as_tensor(value)
            if value.dim() == (kind == "probs"):  # a circuit that ignores the batch
                value = value.expand(n * k, *value.shape)
            columns.append(value.reshape(n * k, -1))  # (N*K, width)
        self.stats.add(n * k, self.shots)
        return torch.cat(columns, dim=-1).reshape(n, k, -1).to(inputs.dtype)  # (N, K, n_outputs)


def _exact_values_only(backend: Backend) -> None:
    """Refuse shots and noise: these PennyLane devices compute exact, noiseless values."""
    noise = [f"backend.{key}={getattr(backend, key)!r}" for key in
             ("noise", "depolarizing_1q", "depolarizing_2q", "readout_error") if getattr(backend, key)]
    if noise:
        raise UserError(f"{noise[0]}: {backend.name} simulates without noise; use "
                        f"backend.name='aer' or 'exact' for noise")
    if backend.shots:
        how = {"default.qubit": "backprop", "lightning.qubit": "adjoint differentiation"}
        raise UserError(f"backend.shots={backend.shots}: {backend.name} ({how[backend.name]}) "
                        f"computes exact expectation values; use backend.name='aer' for shots")


register_backend(BackendEntry(
    "default.qubit",
    build=lambda qfunc, n_qubits, backend, seed=0: PennyLaneExecutor(qfunc, n_qubits, backend),
    validate=_exact_values_only,
    summary="PennyLane's statevector simulator with torch backprop: the reference",
    capabilities=PennyLaneExecutor.capabilities,
))
register_backend(BackendEntry(
    "lightning.qubit",
    build=lambda qfunc, n_qubits, backend, seed=0: PennyLaneExecutor(qfunc, n_qubits, backend),
    validate=_exact_values_only,
    summary="PennyLane Lightning's C++ statevector simulator with adjoint differentiation",
    capabilities=PennyLaneExecutor.capabilities,
))

__all__ = ["PennyLaneExecutor", "measurement_kind"]
