"""What each backend supports, found by running probe circuits against ``default.qubit``.

Every row of the support matrix is a small probe circuit exercising one feature
(a measurement kind, an observable kind, a gate family, classical pre-processing of the
angles). :func:`probe` runs it on a backend and on ``default.qubit`` and compares values
and gradients (inputs, weights) to 1e-8:

- ``yes``: the backend computes what default.qubit computes;
- ``refused``: the backend raises a :class:`~qepi.errors.UserError` naming the operation;
- ``WRONG``: values or gradients differ, and ``CRASH``: an error other than a UserError —
  bugs, never expected.

The README's support matrix is :func:`support_markdown` (a test keeps them in step), so
the matrix states what the code does today, not what it was meant to do.

Example:
    >>> probe("exact", probes()["Pauli-word expval"])
    'yes'
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from qepi.backends.base import backend_entry, backend_names
from qepi.config import Backend
from qepi.errors import UserError

TOLERANCE = 1e-8


@dataclass(frozen=True)
class Probe:
    """A probe circuit ``qfunc(inputs, weights)`` on ``n_qubits`` wires with ``n_weights``
    weights; ``group`` is the support-matrix section."""

    group: str
    qfunc: Callable
    n_qubits: int = 2
    n_weights: int = 2


@functools.cache
def probes() -> dict[str, Probe]:
    """Every probe of the support matrix, by row label."""
    import pennylane as qml

    def encode(x, w):
        qml.RY(x[..., 0], wires=0)
        qml.RX(x[..., 1], wires=1)
        qml.CNOT(wires=[0, 1])
        qml.RZ(w[0], wires=0)
        qml.RY(w[1], wires=1)

    def measured(*measure: Callable) -> Callable:
        def circuit(inputs, weights):
            encode(inputs, weights)
            results = [m(weights) for m in measure]
            return results[0] if len(results) == 1 else results
        return circuit

    def gates(body: Callable, n_qubits: int = 2) -> Callable:
        def circuit(inputs, weights):
            encode(inputs, weights)
            body(inputs, weights)
            return [qml.expval(qml.PauliZ(i)) for i in range(n_qubits)]
        return circuit

    hermitian = np.array([[1.0, 0.5 - 0.5j], [0.5 + 0.5j, -0.3]])
    iswap_unitary = qml.matrix(qml.ISWAP(wires=[0, 1]))
    return {
        "Pauli-word expval": Probe("measurement", measured(
            lambda w: qml.expval(qml.PauliX(0) @ qml.PauliZ(1)))),
        "Hamiltonian, constant coefficients": Probe("measurement", measured(
            lambda w: qml.expval(0.4 * qml.PauliZ(0) - 1.5 * qml.PauliY(0) @ qml.PauliX(1)))),
        "Hamiltonian, trainable coefficients": Probe("measurement", measured(
            lambda w: qml.expval(w[0] * qml.PauliZ(0) + w[1] * qml.PauliX(1)))),
        "Hermitian matrix": Probe("measurement", measured(
            lambda w: qml.expval(qml.Hermitian(hermitian, wires=1)))),
        "var": Probe("measurement", measured(lambda w: qml.var(qml.PauliZ(0) @ qml.PauliX(1)))),
        "probs, all wires": Probe("measurement", measured(lambda w: qml.probs())),
        "probs, some wires": Probe("measurement", measured(lambda w: qml.probs(wires=[1]))),
        "mixed list (expval, var, probs)": Probe("measurement", measured(
            lambda w: qml.expval(qml.PauliZ(0)), lambda w: qml.var(qml.PauliX(1)),
            lambda w: qml.probs(wires=[1, 0]))),
        "Pauli rotations, Rot, PhaseShift": Probe("gates", gates(lambda x, w: (
            qml.Rot(w[0], x[..., 1], w[1], wires=1), qml.PhaseShift(w[1], wires=0)))),
        "controlled rotations (CRX, CRot)": Probe("gates", gates(lambda x, w: (
            qml.CRX(w[0], wires=[0, 1]), qml.CRot(w[1], x[..., 0], w[0], wires=[1, 0])))),
        "Ising gates (IsingXX, IsingZZ)": Probe("gates", gates(lambda x, w: (
            qml.IsingXX(w[0], wires=[0, 1]), qml.IsingZZ(x[..., 1], wires=[0, 1])))),
        "ISWAP, SISWAP": Probe("gates", gates(lambda x, w: (
            qml.ISWAP(wires=[0, 1]), qml.SISWAP(wires=[1, 0])))),
        "Toffoli, CSWAP (3 wires)": Probe("gates", gates(lambda x, w: (
            qml.Hadamard(wires=2), qml.Toffoli(wires=[0, 2, 1]), qml.CSWAP(wires=[1, 0, 2])), 3),
            n_qubits=3),
        "QubitUnitary, constant matrix": Probe("gates", gates(
            lambda x, w: qml.QubitUnitary(iswap_unitary, wires=[1, 0]))),
        "qml.ctrl and qml.adjoint forms": Probe("gates", gates(lambda x, w: (
            qml.ctrl(qml.RY, control=0)(w[1], wires=1), qml.adjoint(qml.S)(wires=1),
            qml.adjoint(qml.RX)(w[0], wires=0)))),
        "nonlinear angles (relu, abs, x*w)": Probe("pre-processing", gates(lambda x, w: (
            qml.RX(torch.relu(x[..., 0] - 0.5), wires=0), qml.RY(torch.abs(w[0]), wires=1),
            qml.RZ(x[..., 1] * w[1], wires=1)))),
        "value-dependent structure": Probe("pre-processing", gates(
            lambda x, w: qml.Hadamard(wires=0) if w[0] > 0 else qml.PauliX(wires=1))),
    }


def per_row_reference(qfunc: Callable, n_wires: int, inputs: torch.Tensor,
                      weights: dict[str, torch.Tensor]) -> torch.Tensor:
    """The executor contract computed by PennyLane's own ``default.qubit`` QNode (backprop),
    one row and one copy at a time: inputs (N, K, F), weights {name: (K, ...)} -> (N, K,
    n_outputs), differentiable. Row by row, with PennyLane's eigendecomposition cache
    cleared before each, this is the independent yardstick of every backend test.

    >>> import pennylane as qml
    >>> def circuit(inputs, weights):
    ...     qml.RY(inputs[..., 0] + weights[0], wires=0)
    ...     return qml.expval(qml.PauliZ(0))
    >>> out = per_row_reference(circuit, 1, torch.zeros(2, 1, 1), {"weights": torch.zeros(1, 1)})
    >>> out.shape, out.flatten().tolist()
    (torch.Size([2, 1, 1]), [1.0, 1.0])
    """
    import pennylane as qml

    from qepi.compat.pennylane import forget_eigendecompositions

    node = qml.QNode(qfunc, qml.device("default.qubit", wires=n_wires), interface="torch",
                     diff_method="backprop")
    rows = []
    for i in range(inputs.shape[0]):
        copies = []
        for k in range(inputs.shape[1]):
            forget_eigendecompositions()
            out = node(inputs[i, k], **{m: w[k] for m, w in weights.items()})
            out = out if isinstance(out, (list, tuple)) else [out]
            copies.append(torch.cat([torch.as_tensor(o).reshape(-1) for o in out]))
        rows.append(torch.stack(copies))
    return torch.stack(rows)  # (N, K, n_outputs)


def _values_and_grads(name: str | None, p: Probe, inputs: torch.Tensor, weights: torch.Tensor):
    """Outputs and gradients of a fixed weighted sum of them; ``name=None`` is the reference."""
    x = inputs.clone().requires_grad_()
    w = weights.clone().requires_grad_()
    if name is None:
        out = per_row_reference(p.qfunc, p.n_qubits, x, {"weights": w})
    else:
        executor = backend_entry(name).build(p.qfunc, p.n_qubits, Backend(name=name), 0)
        out = executor(x, {"weights": w})  # (N, 1, n_outputs)
    out.mul(torch.linspace(0.5, 1.5, out.numel(), dtype=out.dtype).view_as(out)).sum().backward()
    return out.detach(), x.grad, w.grad


def probe(name: str, p: Probe) -> str:
    """``yes``, ``refused`` or ``WRONG`` for probe ``p`` on backend ``name`` (see module doc)."""
    generator = torch.Generator().manual_seed(7)
    inputs = torch.rand(3, 1, 2, generator=generator, dtype=torch.float64) * math.pi  # (N, K, F)
    results = {}
    for sign in (1.0, -1.0):  # both signs of the weights, for value-dependent structure
        weights = sign * (0.3 + torch.rand(1, p.n_weights, generator=generator, dtype=torch.float64))
        expected = _values_and_grads(None, p, inputs, weights)
        try:
            got = _values_and_grads(name, p, inputs, weights)
        except UserError:
            return "refused"
        except Exception:  # noqa: BLE001  a raw third-party error is a bug the matrix must show
            return "CRASH"
        results[sign] = all(
            g is not None and g.shape == e.shape and torch.allclose(g, e, atol=TOLERANCE, rtol=0)
            for g, e in zip(got, expected))
    return "yes" if all(results.values()) else "WRONG"


def probed_names() -> tuple[str, ...]:
    """The registered backends the support matrix probes (``BackendEntry.probed``): not
    ``runtime``, which only samples a device, so its estimates cannot agree to 1e-8."""
    return tuple(name for name in backend_names() if backend_entry(name).probed)


def support_matrix(names: tuple[str, ...] | None = None) -> dict[str, dict[str, str]]:
    """{probe name: {backend: yes | refused | WRONG}} for every probed backend
    (:func:`probed_names`)."""
    names = names or probed_names()
    return {label: {name: probe(name, p) for name in names} for label, p in probes().items()}


def support_markdown(matrix: dict[str, dict[str, str]] | None = None) -> str:
    """The support matrix (measured now unless ``matrix`` is given) as a Markdown table,
    plus shots, noise and mitigation from each backend's declared capabilities."""
    matrix = matrix if matrix is not None else support_matrix()
    names = tuple(next(iter(matrix.values())))
    rows = [f"| feature | {' | '.join(f'`{n}`' for n in names)} |",
            f"| --- |{' --- |' * len(names)}"]
    group = None
    for label, results in matrix.items():
        if probes()[label].group != group:
            group = probes()[label].group
            rows.append(f"| *{group}* |{' |' * len(names)}")
        rows.append(f"| {label} | {' | '.join(results[n] for n in names)} |")
    rows.append(f"| *sampling* |{' |' * len(names)}")
    for feature in ("shots", "noise", "mitigation"):
        marks = ["yes" if getattr(backend_entry(n).capabilities, feature) else "refused"
                 for n in names]
        rows.append(f"| {feature} | {' | '.join(marks)} |")
    return "\n".join(rows) + "\n"


__all__ = ["Probe", "probed_names", "probes", "probe", "support_markdown", "support_matrix"]
