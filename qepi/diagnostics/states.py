"""Exact statevectors of qepi circuits (PennyLane ``default.qubit``, broadcast over rows).

Diagnostics need the state a circuit prepares, not only its expectation values. These
helpers replay a circuit's operations (measurements dropped) on ``default.qubit`` and
return one statevector per row of a broadcast batch, whatever backend trains the model.

Example:
    >>> import numpy as np
    >>> def bell(x):
    ...     qml.Hadamard(0)
    ...     qml.CNOT([0, 1])
    ...     return qml.expval(qml.PauliZ(0))
    >>> np.abs(circuit_states(bell, 2, np.zeros(1))).round(3)  # magnitudes: no signed zeros
    array([[0.707, 0.   , 0.   , 0.707]])
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pennylane as qml


def circuit_states(qfunc: Callable, n_qubits: int, *args, **kwargs) -> np.ndarray:
    """Statevectors (N, 2**n_qubits) prepared by ``qfunc(*args, **kwargs)`` from |0...0>.

    Arguments may carry a leading batch dimension (PennyLane parameter broadcasting);
    without one the result still has a leading dimension of 1. Wire 0 is the most
    significant bit, as in PennyLane.
    """
    tape = qml.tape.make_qscript(qfunc)(*args, **kwargs)
    state_tape = qml.tape.QuantumScript(tape.operations, [qml.state()])
    device = qml.device("default.qubit", wires=n_qubits)
    (state,) = qml.execute([state_tape], device, diff_method=None)
    state = np.asarray(state)
    return state.reshape(-1, 2**n_qubits)  # (N, 2**n_qubits)

