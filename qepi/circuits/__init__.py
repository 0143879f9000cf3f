"""Pure PennyLane circuits: encodings, ansätze, a name registry, and the standard layer circuit.

Nothing here imports torch or creates a device. :func:`build_circuit` turns a
``config.Circuit`` into a ``qfunc(inputs, weights)`` with the calling convention of
``qml.qnn.TorchLayer`` (inputs first, weights by name) and its ``weight_shapes``.

Example:
    >>> from qepi.config import Circuit
    >>> spec = build_circuit(Circuit(n_qubits=2, ansatz="basic_entangler", n_layers=3))
    >>> spec.weight_shapes, spec.n_outputs
    ({'weights': (3, 2, 1)}, 2)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pennylane as qml

from qepi.circuits.ansatze import ANSATZE, Ansatz
from qepi.circuits.encodings import angle_encoding, iqp_encoding
from qepi.config import Circuit

ENCODINGS: dict[str, Callable[..., None]] = {"angle": angle_encoding, "iqp": iqp_encoding}


def get_ansatz(name: str) -> Ansatz:
    """The registered ansatz called ``name``; an unknown name is an error listing the known ones."""
    try:
        return ANSATZE[name]
    except KeyError:
        raise ValueError(f"unknown ansatz {name!r} (known: {', '.join(ANSATZE)})") from None


def get_encoding(name: str) -> Callable[..., None]:
    """The registered encoding called ``name``."""
    try:
        return ENCODINGS[name]
    except KeyError:
        raise ValueError(f"unknown encoding {name!r} (known: {', '.join(ENCODINGS)})") from None


@dataclass(frozen=True)
class CircuitSpec:
    """A circuit ready for a quantum layer: ``qfunc(inputs, weights)`` returns one
    ``qml.expval`` per output; ``weight_shapes`` maps each weight name to its shape."""

    qfunc: Callable
    weight_shapes: dict[str, tuple[int, ...]]
    n_qubits: int
    n_outputs: int


def build_circuit(cfg: Circuit) -> CircuitSpec:
    """Encoding (optionally re-uploaded before every layer) + ansatz, measured ⟨Z_i⟩ on every wire."""
    try:
        encode = get_encoding(cfg.encoding)
    except ValueError as err:
        raise ValueError(f"circuit.encoding: {err}") from None
    try:
        ansatz = get_ansatz(cfg.ansatz)
    except ValueError as err:
        raise ValueError(f"circuit.ansatz: {err}") from None
    if cfg.n_qubits < 1:
        raise ValueError(f"circuit.n_qubits must be >= 1, got {cfg.n_qubits}")
    shape = ansatz.shape(cfg.n_layers, cfg.n_qubits)
    wires = list(range(cfg.n_qubits))
    entangling, reupload = cfg.entangling, cfg.reupload

    def qfunc(inputs, weights):
        ansatz.validate(weights, len(wires))
        if reupload:
            for index in range(weights.shape[-3]):
                encode(inputs, wires, entangling)
                ansatz.apply_layer(weights, index, wires, entangling)
        else:
            encode(inputs, wires, entangling)
            ansatz(weights, wires, entangling)
        return [qml.expval(qml.PauliZ(w)) for w in wires]

    qfunc.__name__ = f"{cfg.encoding}_{cfg.ansatz}"
    return CircuitSpec(qfunc, {"weights": shape}, cfg.n_qubits, cfg.n_qubits)


__all__ = [
    "ANSATZE",
    "ENCODINGS",
    "Ansatz",
    "CircuitSpec",
    "build_circuit",
    "get_ansatz",
    "get_encoding",
]
