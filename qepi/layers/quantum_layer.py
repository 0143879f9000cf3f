"""QuantumLayer: ``qml.qnn.TorchLayer``'s drop-in, on any qepi backend.

Without ``backend=``, a QNode runs where its own settings are honoured:

* on its device (``default.qubit`` or ``lightning.qubit``), or on the backend named by the
  environment variable ``QEPI_BACKEND`` (the switch that puts unmodified TorchLayer code on
  another backend), when that backend honours the QNode's settings;
* a QNode with shots (``qml.set_shots``) or a ``diff_method`` the backend does not use runs on
  its own device through PennyLane, as TorchLayer would run it (with a warning when
  ``QEPI_BACKEND`` was not applied); ``QEPI_BACKEND=aer`` samples shots on Aer.

With ``backend=``, a QNode setting the backend cannot honour raises a UserError. A
device that is not ``default.qubit``/``lightning.qubit`` (e.g. ``default.mixed``) is refused.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import inspect
import math
import os
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import torch
from torch import nn

from qepi.backends import (ExecutionStats, Executor, backend_entry, check_backend, make_executor,
                           rows_that_fit)
from qepi.backends.pennylane import PennyLaneExecutor, measurement_kind
from qepi.config import Backend
from qepi.errors import UserError

ENV_BACKEND = "QEPI_BACKEND"
_PENNYLANE_DEVICES = ("default.qubit", "lightning.qubit")
# diff_method values each backend honours (None and "best" are every backend's own)
_OWN_DIFF = {"default.qubit": {"backprop"}, "lightning.qubit": {"adjoint"}, "exact": {"backprop"},
             "aer": {"parameter-shift"}, "runtime": {"parameter-shift"}}
_SEED_STRIDE = 7919  # seed of shot-vector entry i: seed + i * stride


class SignatureError(UserError, TypeError):
    """The circuit's signature cannot be called as ``circuit(inputs=..., **weights)``."""


def _weight_shape(size) -> tuple[int, ...]:
    """TorchLayer's rule: an iterable is the shape, 1 is a scalar, another int n is (n,).

    >>> _weight_shape(1), _weight_shape(3), _weight_shape([2, 3])
    ((), (3,), (2, 3))
    """
    if isinstance(size, Iterable):
        return tuple(int(s) for s in size)
    return () if size == 1 else (int(size),)


@dataclass(frozen=True)
class Route:
    """Where a layer's circuit runs: a qepi backend, or the user's QNode through PennyLane."""

    backend: Backend
    shots: tuple[int, ...] = ()  # a shot vector: one executor per entry; () = analytic
    own_qnode: bool = False  # call the user's QNode itself (its device, diff_method, shots)
    follow_inputs: bool = False  # compute in the inputs' dtype (no backend was passed)
    note: str = ""  # why QEPI_BACKEND was not applied


def _as_backend(backend: Backend | str) -> Backend:
    return Backend(name=backend) if isinstance(backend, str) else backend


def _honour(backend: Backend, shots: tuple[int, ...], diff_method, device: str | None) -> Route:
    """The route that runs a QNode with ``shots`` and ``diff_method`` on ``backend``, or a
    UserError saying which setting ``backend`` cannot honour and what to pass instead."""
    entry = backend_entry(backend.name)
    own_diff = diff_method in (None, "best") or diff_method in _OWN_DIFF.get(backend.name, ())
    if shots and backend.shots:
        raise UserError(f"QNode shots={list(shots)} and backend.shots={backend.shots} disagree; "
                        f"keep one of them")
    if shots and entry.capabilities.shots and own_diff:
        return Route(backend, shots)
    if backend.name in _PENNYLANE_DEVICES and backend.name == device and (shots or not own_diff):
        return Route(backend, shots, own_qnode=True)
    if shots:
        raise UserError(f"QNode shots={list(shots)}: {backend.name} computes exact values; pass "
                        f"backend=Backend(name='aer') to sample, or drop qml.set_shots")
    if not own_diff:
        raise UserError(f"QNode diff_method={diff_method!r}: {backend.name} differentiates with "
                        f"{sorted(_OWN_DIFF.get(backend.name, {'its own method'}))[0]}; drop "
                        f"diff_method, or run the QNode on its PennyLane device")
    return Route(backend)


def resolve_route(qnode, backend: Backend | str | None) -> Route:
    """Where ``qnode`` (a QNode or a plain quantum function) runs; see the module docstring.

    >>> import pennylane as qml
    >>> dev = qml.device("default.qubit", wires=1)
    >>> circuit = qml.set_shots(qml.QNode(lambda inputs: qml.expval(qml.Z(0)), dev), 20)
    >>> resolve_route(circuit, None).own_qnode, resolve_route(circuit, "aer").backend.shots
    (True, 0)
    >>> resolve_route(circuit, "exact").shots  # exact samples shots itself
    (20,)
    >>> resolve_route(circuit, "lightning.qubit")
    Traceback (most recent call last):
    ...
    qepi.errors.UserError: QNode shots=[20]: lightning.qubit computes exact values; pass backend=...
    """
    device = getattr(qnode, "device", None)
    device_name = device.name if device is not None else None
    shots = tuple(qnode.shots) if device is not None else ()
    diff_method = getattr(qnode, "diff_method", None)
    if backend is not None:
        return _honour(_as_backend(backend), shots, diff_method, device_name)
    return dataclasses.replace(_qnode_route(device_name, shots, diff_method), follow_inputs=True)


def _qnode_route(device_name: str | None, shots: tuple[int, ...], diff_method) -> Route:
    """No backend passed: QEPI_BACKEND if it honours the QNode's settings, else its device."""
    own = Backend(name=device_name or "default.qubit")
    env = os.environ.get(ENV_BACKEND)
    if env:
        try:
            return _honour(Backend(name=env), shots, diff_method, device_name)
        except UserError as why:
            if own.name not in _PENNYLANE_DEVICES:
                raise
            route = _honour(own, shots, diff_method, device_name)
            return dataclasses.replace(route, note=f"{ENV_BACKEND}={env} not applied: {why}")
    if own.name not in _PENNYLANE_DEVICES:
        raise UserError(f"device {own.name}: QuantumLayer runs default.qubit, lightning.qubit, "
                        f"exact or aer; pass backend=... (Backend(name='aer', noise=...) for "
                        f"noise) or use device default.qubit")
    return _honour(own, shots, diff_method, device_name)


@dataclass(frozen=True)
class Outputs:
    """What the circuit returns: one bare measurement or a sequence, and each one's width."""

    kinds: tuple[str, ...]  # expval | var | probs, in order
    widths: tuple[int, ...]  # columns of each in the flat (N, K, n_outputs)
    bare: bool  # a single measurement, not in a list or tuple

    @property
    def shape(self) -> tuple[int, ...]:
        """TorchLayer's output shape per sample: () for a bare expval/var, else one vector."""
        if self.bare and self.kinds[0] != "probs":
            return ()
        return (sum(self.widths),)


class QuantumLayer(nn.Module):
    """A QNode (or quantum function) as an ``nn.Module``, a drop-in for ``qml.qnn.TorchLayer``.

    ``QuantumLayer(qnode, weight_shapes, init_method)`` takes TorchLayer's arguments in
    TorchLayer's order and gives TorchLayer's outputs, shapes, weight shapes and state dict
    keys. Every weight named in ``weight_shapes`` becomes an ``nn.Parameter`` (in
    ``qnode_weights`` too). Inputs may have any leading batch dimensions; they run as ONE
    batched execution on ``backend``. Outputs: a single ``expval``/``var`` gives one value
    per sample, anything else one vector per sample (measurements concatenated in order).

    With ``copies=K`` the layer holds K independent weight sets of the same circuit and
    expects inputs of shape (..., K, F): row r of copy k runs with weights k.

    Args:
        qnode: QNode or quantum function ``f(inputs, **weights)``.
        weight_shapes: weight name -> shape (an int n means (n,), and 1 a scalar).
        init_method: a ``torch.nn.init`` function, or {name: callable or tensor}; default
            uniform on [0, 2π].
        n_qubits: wire count (default: the QNode's device wires, else the circuit's wires).
        backend: a backend name or ``qepi.config.Backend`` (default: see the module docs).
        copies: number of independent weight sets.
        seed: simulator seed (shot sampling on ``aer``).
        executor: run the circuit with this executor instead of building one.

    Example:
        >>> import pennylane as qml, torch
        >>> @qml.qnode(qml.device("default.qubit", wires=2))
        ... def circuit(inputs, weights):
        ...     qml.AngleEmbedding(inputs, wires=range(2))
        ...     qml.BasicEntanglerLayers(weights, wires=range(2))
        ...     return [qml.expval(qml.PauliZ(i)) for i in range(2)]
        >>> layer = QuantumLayer(circuit, {"weights": (3, 2)}, backend="exact")
        >>> layer(torch.rand(5, 7, 2)).shape  # (B, T, F) -> (B, T, n_outputs)
        torch.Size([5, 7, 2])
    """

    _input_arg = "inputs"  # set_input_argument changes it for layers built afterwards

    def __init__(
        self,
        qnode,
        weight_shapes: dict[str, int | Iterable[int]],
        init_method: Callable | dict[str, Callable | torch.Tensor] | None = None,
        *,
        n_qubits: int | None = None,
        backend: Backend | str | None = None,
        copies: int = 1,
        seed: int = 0,
        executor: Executor | None = None,
    ):
        super().__init__()
        if copies < 1:
            raise UserError(f"copies must be >= 1, got {copies}")
        is_qnode = hasattr(qnode, "func") and hasattr(qnode, "device")
        interface = qnode.interface if is_qnode else "torch"
        if interface not in ("auto", "torch"):
            raise UserError(f"Invalid interface {interface!r} for QuantumLayer: build the QNode "
                            f"with interface='torch' or 'auto'")
        func = qnode.func if is_qnode else qnode
        self._input_name = type(self)._input_arg
        self.weight_shapes = {name: _weight_shape(size) for name, size in weight_shapes.items()}
        self._check_signature(func)
        self.qfunc = self._inputs_first(func)
        self.copies, self.seed = copies, seed
        self._route = resolve_route(qnode, backend) if executor is None else None
        self.backend = self._route.backend if self._route else _as_backend(backend or Backend())
        if self._route and self._route.note:
            warnings.warn(self._route.note, stacklevel=2)
        self.n_qubits = n_qubits if n_qubits is not None else self._device_wires(qnode)
        if self.n_qubits is not None and not (self._route and self._route.own_qnode):
            check_backend(self.backend, self.n_qubits)  # fail when the model is built
        self.qnode = qnode if is_qnode else self._default_qnode(func)
        self.qnode_weights: dict[str, nn.Parameter] = {}
        for name, shape in self.weight_shapes.items():
            self.qnode_weights[name] = nn.Parameter(self._initial(name, shape, init_method))
            self.register_parameter(name, self.qnode_weights[name])
        self._injected = executor
        self._executors: dict[str | None, list[Executor]] = {}  # dtype key -> one per shot entry
        self._outputs: Outputs | None = None
        self.weight_gradients = True  # False: weights reach the executor detached (see set_weight_gradients)

    # ------------------------------------------------------------------ construction
    def _check_signature(self, func: Callable) -> None:
        """TorchLayer's checks on the circuit's signature, with TorchLayer's messages."""
        params = inspect.signature(func).parameters
        kinds = {p.kind for p in params.values()}
        if self._input_name not in params:
            raise SignatureError(f"QNode must include an argument with name {self._input_name} "
                                 f"for inputting data")
        if self._input_name in self.weight_shapes:
            raise UserError(f"{self._input_name} argument should not have its dimension "
                            f"specified in weight_shapes")
        if inspect.Parameter.VAR_POSITIONAL in kinds:
            raise SignatureError("Cannot have a variable number of positional arguments")
        if (inspect.Parameter.VAR_KEYWORD not in kinds
                and set(self.weight_shapes) | {self._input_name} != set(params)):
            missing = sorted(set(params) - set(self.weight_shapes) - {self._input_name})
            raise UserError(f"Must specify a shape for every non-input parameter in the QNode "
                            f"(missing: {', '.join(missing) or '-'}; unknown: "
                            f"{', '.join(sorted(set(self.weight_shapes) - set(params))) or '-'})")

    def _inputs_first(self, func: Callable) -> Callable:
        """``func`` as ``qfunc(inputs, **weights)``, the calling convention of every executor."""
        first = next(iter(inspect.signature(func).parameters))
        if first == self._input_name:
            return func
        name = self._input_name

        @functools.wraps(func)
        def qfunc(inputs, **weights):
            return func(**{name: inputs}, **weights)

        del qfunc.__wrapped__  # its signature is (inputs, **weights), not func's
        return qfunc

    @staticmethod
    def _device_wires(qnode) -> int | None:
        device = getattr(qnode, "device", None)
        if device is None or device.wires is None:
            return None  # taken from the circuit on the first call
        if list(device.wires) != list(range(len(device.wires))):
            raise UserError(f"device wires {list(device.wires)}: QuantumLayer needs wires "
                            f"0..n-1, e.g. qml.device(..., wires={len(device.wires)})")
        return len(device.wires)

    def _default_qnode(self, func: Callable):
        """The QNode a plain quantum function would be in TorchLayer: default.qubit, torch."""
        import pennylane as qml

        wires = self.n_qubits if self.n_qubits is not None else None
        return qml.QNode(func, qml.device("default.qubit", wires=wires), interface="torch")

    def _initial(self, name: str, shape: tuple[int, ...], init_method) -> torch.Tensor:
        """TorchLayer's initialisation of one weight, with a leading copies dimension if K > 1."""
        full = shape if self.copies == 1 else (self.copies, *shape)
        init = init_method
        if isinstance(init_method, dict):
            init = init_method[name]  # a KeyError names the missing weight, as in TorchLayer
            if isinstance(init, torch.Tensor):
                if tuple(init.shape) not in (full, shape):
                    raise UserError(f"The Tensor specified for weight '{name}' doesn't have the "
                                    f"appropriate shape: {tuple(init.shape)}, expected {full}")
                return init.detach().clone().expand(full).clone()
        if init is None:
            init = functools.partial(torch.nn.init.uniform_, b=2 * math.pi)
        return init(torch.Tensor(*full)) if full else init(torch.Tensor(1))[0]

    # ------------------------------------------------------------------ executors
    # Executors are keyed by the dtype they compute in: the Backend's (key None) when a
    # backend was passed, else the inputs' dtype, as TorchLayer computes (float32 stays float32).
    def _dtype_key(self, dtype: torch.dtype | None = None) -> str | None:
        if self._route is None or not self._route.follow_inputs:
            return None
        return "float32" if (dtype or torch.get_default_dtype()) == torch.float32 else "float64"

    @property
    def executor(self) -> Executor:
        """The backend executor (the first one with a shot vector), built on first use."""
        return self._built_executors(self._dtype_key())[0]

    def set_executor(self, executor: Executor) -> None:
        """Run the circuit with ``executor`` from now on (e.g. an instrumented or a benchmark
        executor); :meth:`set_backend` goes back to a built one."""
        self._injected, self._executors = executor, {}

    def set_backend(self, backend: Backend | str) -> None:
        """Move the layer to another backend; the weights stay as they are."""
        self._route = _honour(_as_backend(backend), (), None, None)
        self.backend = self._route.backend
        if self.n_qubits is not None:
            check_backend(self.backend, self.n_qubits)
        self._injected, self._executors = None, {}

    def _all_executors(self) -> list[Executor]:
        built = [e for executors in self._executors.values() for e in executors]
        return ([self._injected] if self._injected is not None else []) + built

    def execution_stats(self) -> ExecutionStats:
        """Circuits evaluated and shots spent by this layer so far (zeros before its first call).

        >>> import pennylane as qml, torch
        >>> def circuit(inputs):
        ...     qml.RY(inputs[..., 0], wires=0)
        ...     return qml.expval(qml.PauliZ(0))
        >>> layer = QuantumLayer(circuit, {}, n_qubits=1)
        >>> _ = layer(torch.zeros(4, 1))
        >>> layer.execution_stats()
        ExecutionStats(circuits=4, shots=0, mitigation_circuits=0, mitigation_shots=0)
        """
        total = ExecutionStats()
        for executor in self._all_executors():
            for count in dataclasses.fields(ExecutionStats):
                setattr(total, count.name,
                        getattr(total, count.name) + getattr(executor.stats, count.name))
        return total

    def set_weight_gradients(self, enabled: bool) -> None:
        """Whether the executor differentiates the circuit weights (default True). An optimiser
        that estimates their gradient another way (SPSA) turns it off: the weights then reach
        the executor detached, so parameter shift runs no weight-shifted circuit and backprop
        computes no weight gradient; inputs are still differentiated.

        >>> import pennylane as qml, torch
        >>> def circuit(inputs, weights):
        ...     qml.RY(inputs[..., 0], wires=0)
        ...     qml.RY(weights[0], wires=0)
        ...     return qml.expval(qml.PauliZ(0))
        >>> layer = QuantumLayer(circuit, {"weights": (1,)}, n_qubits=1, backend="aer")
        >>> layer.set_weight_gradients(False)
        >>> layer(torch.zeros(2, 1, requires_grad=True)).sum().backward()
        >>> layer.execution_stats().circuits, layer.weights.grad  # 2 rows x (1 + 2 input shifts)
        (6, None)
        """
        self.weight_gradients = enabled

    @contextlib.contextmanager
    def spending(self, shots: dict[str, torch.Tensor]) -> Iterator[dict[str, torch.Tensor]]:
        """Within the block, run the parameter-shift circuits of each weight element with its
        own shot count (``shots``: {name: int tensor shaped like the weight}); other circuits
        keep ``backend.shots``. Yields {name: variance shaped like the weight}: the single-shot
        variance of each element's gradient estimate, summed over the backward passes made
        in the block (read it after the block). Needs an executor with capability
        ``shift_shots`` (aer, or exact with ``backend.shots > 0``) and a circuit whose every
        weight-dependent angle is one weight element."""
        executors = self._built_executors(self._dtype_key())
        capabilities = getattr(executors[0], "capabilities", None)
        if len(executors) > 1 or capabilities is None or not capabilities.shift_shots:
            raise UserError(f"backend {self.backend.name}: shots per weight element need the "
                            f"parameter-shift engine with shots (aer, or exact with "
                            f"backend.shots > 0) and one shot setting")
        per_copy = {name: torch.as_tensor(value).reshape(self.copies, *self.weight_shapes[name])
                    for name, value in shots.items()}  # {name: (K, *shape)}
        variances: dict[str, torch.Tensor] = {}
        with executors[0].spending(per_copy) as spent:
            yield variances
        for name, weight in self.qnode_weights.items():
            found = spent.weight_variances.get(name)
            variances[name] = (torch.zeros(weight.shape, dtype=torch.float64) if found is None
                               else found.reshape(weight.shape))

    def execution_details(self) -> list[dict]:
        """What this layer's executors say about where its circuits ran (e.g. the device's
        qubit layout and transpiled depth on ``runtime``), one dict per executor that says
        something (executors without ``details()`` say nothing).

        >>> import pennylane as qml, torch
        >>> layer = QuantumLayer(lambda inputs: qml.expval(qml.PauliZ(0)), {}, n_qubits=1)
        >>> _ = layer(torch.zeros(1, 1))
        >>> layer.execution_details()
        []
        """
        found = []
        for executor in self._all_executors():
            details = getattr(executor, "details", dict)()
            if details:
                found.append(details)
        return found

    def reseed(self, seed: int) -> None:
        """Restart the random streams of the layer's executors at ``seed`` (shot sampling)."""
        self.seed = seed
        for executors in self._executors.values():
            for i, executor in enumerate(executors):
                executor.reseed(seed + i * _SEED_STRIDE)

    def _built_executors(self, key: str | None) -> list[Executor]:
        if self._injected is not None:
            return [self._injected]
        if key not in self._executors:
            if self.n_qubits is None and not self._route.own_qnode:
                raise UserError("QuantumLayer: the wire count is known after the first call "
                                "(the device has no wires); pass n_qubits=...")
            self._executors[key] = self._make_executors(key)
        return self._executors[key]

    def _make_executors(self, key: str | None) -> list[Executor]:
        route = self._route
        if route.own_qnode:
            return [PennyLaneExecutor.from_qnode(self.qnode, self._input_name, shots, key)
                    for shots in (route.shots or (None,))]
        # sampled estimates are computed in float64 and returned in the inputs' dtype
        follow = key is not None and not route.shots
        backend = dataclasses.replace(route.backend, dtype=key) if follow else route.backend
        if not route.shots:
            return [make_executor(self.qfunc, self.n_qubits, backend, self.seed)]
        return [make_executor(self.qfunc, self.n_qubits, dataclasses.replace(backend, shots=s),
                              self.seed + i * _SEED_STRIDE)
                for i, s in enumerate(route.shots)]

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_executors"] = {}  # rebuilt on first use (simulators are not pickled)
        return state

    # ------------------------------------------------------------------ running
    @property
    def input_arg(self) -> str:
        """Name of the circuit argument that receives the inputs (TorchLayer's ``input_arg``)."""
        return self._input_name

    @staticmethod
    def set_input_argument(input_name: str = "inputs") -> None:
        """Name of the input argument of circuits given to layers built from now on."""
        QuantumLayer._input_arg = input_name

    @property
    def func(self) -> Callable:
        """The circuit with the layer's weights bound: ``func(inputs)``, as PennyLane's
        drawing and inspection functions call it (``qml.draw(layer)(x)``)."""

        def bound(inputs, **kwargs):
            weights = {name: w.to(inputs) for name, w in self.qnode_weights.items()}
            return self.qfunc(inputs, **weights, **kwargs)

        bound.__name__ = getattr(self.qnode.func, "__name__", "circuit")
        return bound

    def __getattr__(self, name: str):
        """Parameters first (nn.Module), then the QNode's attributes, as TorchLayer does."""
        try:
            return super().__getattr__(name)
        except AttributeError:
            qnode = self.__dict__.get("qnode")
            if qnode is None or name.startswith("__"):
                raise
            return getattr(qnode, name)

    def per_copy_weights(self) -> dict[str, torch.Tensor]:
        """Every weight with a leading copies dimension: {name: (K, *shape)}."""
        return {name: w if self.copies > 1 else w.unsqueeze(0)
                for name, w in self.qnode_weights.items()}

    def _read_outputs(self, rows: torch.Tensor, weights: dict[str, torch.Tensor]) -> Outputs:
        """Trace the circuit once: its measurements, their widths, and the wire count."""
        import pennylane as qml
        from pennylane.measurements import MeasurementProcess

        with torch.no_grad(), qml.queuing.AnnotatedQueue() as queue:
            result = self.qfunc(rows[0, 0], **{m: w[0] for m, w in weights.items()})
        tape = qml.tape.QuantumScript.from_queue(queue)
        if self.n_qubits is None:
            if not all(isinstance(w, int) and w >= 0 for w in tape.wires):
                raise UserError(f"circuit wires {list(tape.wires)}: QuantumLayer needs wires "
                                f"0..n-1; pass n_qubits=...")
            self.n_qubits = max(tape.wires, default=0) + 1
            if self._injected is None and not self._route.own_qnode:
                check_backend(self.backend, self.n_qubits)
        if not tape.measurements:
            raise UserError("the circuit returns no measurement; return qml.expval(...), "
                            "qml.var(...) or qml.probs(...)")
        kinds = tuple(measurement_kind(mp) for mp in tape.measurements)
        widths = tuple(2 ** len(mp.wires or range(self.n_qubits)) if kind == "probs" else 1
                       for kind, mp in zip(kinds, tape.measurements))
        if self.copies > 1:
            self._check_copies_axis(rows, weights)
        return Outputs(kinds, widths, bare=isinstance(result, MeasurementProcess))

    def _check_copies_axis(self, rows: torch.Tensor, weights: dict[str, torch.Tensor]) -> None:
        """With K > 1 copies the circuit receives weights with a leading copies axis (K, ...),
        so ``weights[0]`` is copy 0's whole weight set, not its first entry. The circuit is
        queued once batched and once per copy; a gate whose angles in the batched call are
        not each copy's own angles has read across that axis, and is refused where it would
        silently run copy 0's weights in every copy."""
        import pennylane as qml

        def operations(inputs, **ws):
            with torch.no_grad(), qml.queuing.AnnotatedQueue() as queue:
                self.qfunc(inputs, **ws)
            return qml.tape.QuantumScript.from_queue(queue).operations

        batched = operations(rows[0], **weights)  # inputs (K, F), weights {name: (K, ...)}
        for c in range(self.copies):
            single = operations(rows[0, c], **{m: w[c] for m, w in weights.items()})
            if [op.name for op in single] != [op.name for op in batched]:
                continue  # the structure depends on the copy: the backends trace copy by copy
            for op, own in zip(batched, single):
                for value, expected in zip(op.data, own.data):
                    value, expected = torch.as_tensor(value), torch.as_tensor(expected)
                    if value.dim() == expected.dim() + 1 and len(value) == self.copies:
                        value = value[c]
                    if value.shape != expected.shape or not torch.allclose(
                            value.to(torch.complex128), expected.to(torch.complex128), atol=1e-12):
                        raise UserError(
                            f"copies={self.copies}: {op.name} on wires {list(op.wires)} does not "
                            f"get each copy's own weights; the weights have a leading copies "
                            f"axis, so index their last axes (weights[..., 0], not weights[0])")

    def _evaluate_qnode(self, inputs: torch.Tensor):
        """The layer's outputs for ``inputs`` (..., [K,] F): one tensor, or one per entry of a
        shot vector (TorchLayer's ``_evaluate_qnode``)."""
        feature_dims = 2 if self.copies > 1 else 1
        lead = inputs.shape[:-feature_dims]  # any leading batch dims, possibly none
        rows = inputs.reshape(-1, self.copies, inputs.shape[-1])  # (N, K, F)
        weights = self.per_copy_weights()
        if not self.weight_gradients:
            weights = {name: w.detach() for name, w in weights.items()}
        if self._outputs is None:
            self._outputs = self._read_outputs(rows, weights)
        executors = self._built_executors(self._dtype_key(inputs.dtype))
        if self._injected is None:
            measured = set(self._outputs.kinds) - executors[0].capabilities.measurements
            if measured:
                raise UserError(f"measurement {sorted(measured)[0]}: backend {self.backend.name} "
                                f"measures {', '.join(sorted(executors[0].capabilities.measurements))}; "
                                f"use backend='default.qubit' for it")
        copies = (self.copies,) if self.copies > 1 else ()
        results = []
        for executor in executors:
            values = self._execute(executor, rows, weights)  # (N, K, n_outputs)
            results.append(values.reshape((*lead, *copies, *self._outputs.shape)))
        return tuple(results) if len(results) > 1 else results[0]

    def _execute(self, executor: Executor, rows: torch.Tensor, weights: dict[str, torch.Tensor]) -> torch.Tensor:
        """``executor(rows, weights)`` (N, K, F) -> (N, K, n_outputs), in blocks of rows whose
        states fit in memory (:func:`qepi.backends.rows_that_fit`) unless the executor bounds
        its memory itself. With gradients, an exact backend's blocks are recomputed in the
        backward pass (``torch.utils.checkpoint``) so that one block's graph is held at a time;
        shot-sampled blocks keep their graphs (a recomputation would draw other shots)."""
        n, k = rows.shape[:2]
        capabilities = getattr(executor, "capabilities", None)  # an injected executor may not say
        if (capabilities is not None and capabilities.bounds_memory) or self.n_qubits is None:
            return executor(rows, weights)
        block = rows_that_fit(self.n_qubits, self.backend, n, copies=k)
        if block >= n:
            return executor(rows, weights)
        sampled = self.backend.shots > 0 or bool(self._route and self._route.shots)
        needs_grad = rows.requires_grad or any(w.requires_grad for w in weights.values())
        names = list(weights)

        def run(part: torch.Tensor, *values: torch.Tensor) -> torch.Tensor:
            return executor(part, dict(zip(names, values)))  # (n_block, K, n_outputs)

        out = []
        for start in range(0, n, block):
            part = rows[start:start + block]  # (n_block, K, F)
            if torch.is_grad_enabled() and needs_grad and not sampled:
                from torch.utils.checkpoint import checkpoint

                out.append(checkpoint(run, part, *weights.values(), use_reentrant=False))
            else:
                out.append(run(part, *weights.values()))
        return torch.cat(out)  # (N, K, n_outputs)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """(..., [K,] F) -> (..., [K,] *output shape); a shot vector adds a leading dimension."""
        result = self._evaluate_qnode(inputs)
        return torch.stack(result) if isinstance(result, tuple) else result

    def __repr__(self) -> str:
        """TorchLayer's text; ``layer.backend`` and ``layer.n_qubits`` say where it runs."""
        return f"<Quantum Torch Layer: func={getattr(self.qnode.func, '__name__', 'circuit')}>"

    __str__ = __repr__


__all__ = ["ENV_BACKEND", "Outputs", "QuantumLayer", "Route", "SignatureError", "resolve_route"]
