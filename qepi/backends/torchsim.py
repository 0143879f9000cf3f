"""Batched torch simulation of measurement templates: statevector, or density matrix with noise.

:class:`TorchTemplateRunner` evaluates the same templates as
:class:`qepi.compat.aer.TemplateRunner` (a ``QuantumCircuit`` whose angles are affine
functions a·θ_j + b of the Parameters ``params[j]``, ending with
``save_probabilities(qubits)``) and returns the same exact outcome probabilities, but all C
angle rows of a call are simulated at once in torch: the state is (C, 2**n) (or the density
matrix, as a vector over 2n index bits, (C, 4**n)), and every gate is one batched matmul with
per-row matrices. Only the qubits the template touches are simulated (a template
transpiled to a 5-qubit device that uses 3 of them is a 3-qubit simulation).

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


def _superop(kraus: Sequence[np.ndarray]) -> np.ndarray:
    """(d², d²) superoperator Σ conj(K) ⊗ K acting on ρ vectorised as index a + d·b."""
    return sum(np.kron(np.conj(k), k) for k in kraus)


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
class _Op:
    """One step of a program: a matrix on ``axes`` (little-endian over the matrix index)."""

    axes: tuple[int, ...]
    constant: torch.Tensor | None  # (d, d) or (d², d²): the whole step, when it has no angle
    generator: str = ""  # "pauli" | "phase" for an angle gate
    matrix: torch.Tensor | None = None  # G of exp(-iθG/2), or diag(0, 1) for phases
    angle: tuple[int, float, float] = (0, 0.0, 0.0)  # (j, a, b): θ = a·values[:, j] + b
    after: torch.Tensor | None = None  # (d², d²) noise after an angle gate (density matrix)


class _Program:
    """One template as batched torch steps on its used qubits."""

    def __init__(self, qc, params: Sequence, channels: tuple[dict, dict] | None):
        from qiskit.circuit import ParameterExpression

        index = {p: j for j, p in enumerate(params)}
        used = sorted({qc.find_bit(q).index for inst in qc.data for q in inst.qubits})
        local = {q: i for i, q in enumerate(used)}
        self.n = n = len(used)
        self.density = channels is not None
        self.measured: list[int] = []
        self.steps: list[_Op] = []
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
            axes = qubits + tuple(q + n for q in qubits) if self.density else qubits
            angle = op.params[0] if len(op.params) == 1 else None
            if isinstance(angle, ParameterExpression) and angle.parameters:
                if op.name in _PAULI_ROTATIONS:
                    generator, g = "pauli", 1j * type(op)(np.pi).to_matrix()
                elif op.name in _PHASES:
                    generator, g = "phase", np.diag([0.0, 1.0])
                else:
                    raise UserError(f"gate {op.name} with an angle cannot be simulated by the "
                                    f"exact backend; use backend.name='aer'")
                self.steps.append(_Op(axes, None, generator, torch.as_tensor(g, dtype=torch.complex128),
                                      _affine(angle, index),
                                      None if noise is None else torch.tensor(noise)))
                continue
            try:
                unitary = op.to_matrix()
            except Exception:  # qiskit raises its own error types for gates without a matrix
                unitary = None
            if unitary is None:
                raise UserError(f"instruction {op.name} cannot be simulated by the exact "
                                f"backend; use backend.name='aer'")
            step = _superop([unitary]) if self.density else unitary
            if noise is not None:
                step = noise @ step
            self._append_constant(axes, torch.tensor(step, dtype=torch.complex128))

    def _append_constant(self, axes: tuple[int, ...], step: torch.Tensor) -> None:
        """Fuse with the previous step when both are constant on the same axes."""
        last = self.steps[-1] if self.steps else None
        if last is not None and last.constant is not None and last.axes == axes:
            last.constant = step @ last.constant
        else:
            self.steps.append(_Op(axes, step))

    def probabilities(self, values: torch.Tensor) -> torch.Tensor:
        """Outcome probabilities (C, 2**m) of the measured qubits (bit i = measured[i])."""
        c, n = values.shape[0], self.n
        bits = 2 * n if self.density else n
        state = torch.zeros(c, 2**bits, dtype=torch.complex128)  # (C, 2**bits)
        state[:, 0] = 1.0
        for step in self.steps:
            state = _apply(state, self._matrix(step, values), step.axes, bits)
        if self.density:
            dim = 2**n
            probs = state.reshape(c, dim, dim).diagonal(dim1=1, dim2=2).real  # (C, 2**n)
        else:
            probs = state.real.square() + state.imag.square()  # (C, 2**n)
        tensor = probs.reshape(c, *[2] * n)  # axis 1 + (n - 1 - q) is qubit q
        kept = [1 + n - 1 - q for q in reversed(self.measured)]  # most significant first
        dropped = [a for a in range(1, n + 1) if a not in kept]
        if dropped:
            tensor = tensor.sum(dim=dropped, keepdim=True)
        order = [0] + kept + dropped
        return tensor.permute(order).reshape(c, 2 ** len(self.measured))

    def _matrix(self, step: _Op, values: torch.Tensor) -> torch.Tensor:
        """(1 or C, d, d) matrix of ``step`` for angle rows ``values`` (C, P)."""
        if step.constant is not None:
            return step.constant[None]
        j, a, b = step.angle
        theta = (a * values[:, j] + b)[:, None, None]  # (C, 1, 1)
        eye = torch.eye(step.matrix.shape[0], dtype=torch.complex128)
        if step.generator == "pauli":
            unitary = torch.cos(theta / 2) * eye - 1j * torch.sin(theta / 2) * step.matrix
        else:
            unitary = eye + (torch.exp(1j * theta) - 1) * step.matrix  # (C, d, d)
        if not self.density:
            return unitary
        d = unitary.shape[-1]
        superop = torch.einsum("xbe,xac->xbaec", unitary.conj(), unitary).reshape(-1, d * d, d * d)
        return superop if step.after is None else step.after @ superop


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


def _apply(state: torch.Tensor, matrix: torch.Tensor, axes: tuple[int, ...],
           bits: int) -> torch.Tensor:
    """``matrix`` (1 or C, d, d) on index bits ``axes`` (axes[0] least significant of the
    matrix index) of ``state`` (C, 2**bits), whose flat index is little-endian in its bits."""
    c, k = state.shape[0], len(axes)
    tensor = state.reshape(c, *[2] * bits)  # axis 1 + (bits - 1 - q) is bit q
    targets = [1 + bits - 1 - q for q in reversed(axes)]  # most significant first
    rest = [a for a in range(1, bits + 1) if a not in targets]
    moved = tensor.permute([0] + rest + targets).reshape(c, -1, 2**k)  # (C, rest, d)
    moved = moved @ matrix.transpose(-1, -2)
    inverse = np.argsort([0] + rest + targets).tolist()
    return moved.reshape(c, *[2] * bits).permute(inverse).reshape(c, -1)


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


__all__ = ["TorchTemplateRunner", "noise_channels"]
