"""Circuit descriptors of Sim et al. 2019: expressibility and entangling capability.

- Expressibility: the KL divergence between the distribution of fidelities
  F = |<psi(a)|psi(b)>|^2 of pairs of states made with uniformly random parameters and
  the Haar distribution P(F) = (N - 1)(1 - F)^(N - 2), N = 2**n, over a histogram of
  75 bins. Small is expressive; a circuit that ignores its parameters scores high.
- Entangling capability: the mean Meyer–Wallach measure Q = 2 (1 - mean_k Tr rho_k^2)
  over random parameters; 0 for product states, 1 for GHZ states.

Parameters are sampled uniformly on [0, 2π) with a fixed seed, so results reproduce.

Example:
    >>> import numpy as np
    >>> ghz = np.zeros(8); ghz[[0, 7]] = 2 ** -0.5
    >>> round(float(meyer_wallach(ghz)[0]), 6)
    1.0
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from qepi.diagnostics.states import circuit_states

N_BINS = 75  # histogram bins of Sim et al. 2019


def _as_states(states: np.ndarray) -> tuple[np.ndarray, int]:
    states = np.asarray(states)
    states = states.reshape(-1, states.shape[-1])  # (S, 2**n)
    n_qubits = int(round(np.log2(states.shape[-1])))
    if 2**n_qubits != states.shape[-1]:
        raise ValueError(f"a statevector needs a power-of-two length, got {states.shape[-1]}")
    return states, n_qubits


def meyer_wallach(states: np.ndarray) -> np.ndarray:
    """Meyer–Wallach entanglement Q of each statevector in (..., 2**n): an array (S,)."""
    states, n = _as_states(states)
    purity = np.zeros(states.shape[0])
    for k in range(n):
        psi = states.reshape(-1, 2**k, 2, 2 ** (n - k - 1))  # (S, left, qubit k, right)
        rho = np.einsum("slar,slbr->sab", psi, psi.conj())  # (S, 2, 2) reduced state of qubit k
        purity += np.sum(np.abs(rho) ** 2, axis=(1, 2)).real
    return 2.0 * (1.0 - purity / n)


def haar_fidelity_bins(n_qubits: int, n_bins: int = N_BINS) -> np.ndarray:
    """Probability of each of ``n_bins`` equal fidelity bins on [0, 1] under Haar-random pairs.

    >>> haar_fidelity_bins(1, 2).round(3)  # one qubit: F is uniform
    array([0.5, 0.5])
    """
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    cdf_tail = (1.0 - edges) ** (2**n_qubits - 1)  # P(F >= edge)
    return cdf_tail[:-1] - cdf_tail[1:]


def fidelity_kl(fidelities: np.ndarray, n_qubits: int, n_bins: int = N_BINS) -> float:
    """KL divergence (nats) of the fidelity histogram from the Haar one."""
    counts, _ = np.histogram(np.clip(fidelities, 0.0, 1.0), bins=n_bins, range=(0.0, 1.0))
    p = counts / counts.sum()
    q = haar_fidelity_bins(n_qubits, n_bins)
    used = p > 0
    return float(np.sum(p[used] * np.log(p[used] / np.maximum(q[used], 1e-300))))


def _sample_states(qfunc: Callable, n_qubits: int, param_shape: Sequence[int], n: int,
                   rng: np.random.Generator) -> np.ndarray:
    params = rng.uniform(0.0, 2 * np.pi, size=(n, *param_shape))
    states = circuit_states(qfunc, n_qubits, params)
    return np.broadcast_to(states, (n, 2**n_qubits))  # a circuit ignoring params gives one row


def expressibility(qfunc: Callable, n_qubits: int, param_shape: Sequence[int],
                   n_pairs: int = 2000, n_bins: int = N_BINS, seed: int = 0) -> float:
    """Expressibility (KL from Haar, nats; lower is more expressive) of ``qfunc(params)``.

    ``qfunc`` takes one argument of shape ``param_shape`` (or with a leading batch dimension).

    >>> import pennylane as qml
    >>> def ry(theta):
    ...     qml.RY(theta[..., 0], wires=0)
    >>> round(expressibility(ry, 1, (1,), n_pairs=500, seed=1), 1)  # real states only
    0.3
    """
    rng = np.random.default_rng(seed)
    states = _sample_states(qfunc, n_qubits, param_shape, 2 * n_pairs, rng)
    a, b = states[:n_pairs], states[n_pairs:]
    fidelities = np.abs(np.sum(a.conj() * b, axis=-1)) ** 2  # (n_pairs,)
    return fidelity_kl(fidelities, n_qubits, n_bins)


def entangling_capability(qfunc: Callable, n_qubits: int, param_shape: Sequence[int],
                          n_samples: int = 1000, seed: int = 0) -> float:
    """Mean Meyer–Wallach measure of the states ``qfunc(params)`` makes from random params."""
    if n_qubits < 2:
        return 0.0
    rng = np.random.default_rng(seed)
    return float(np.mean(meyer_wallach(_sample_states(qfunc, n_qubits, param_shape, n_samples, rng))))


def circuit_structure(qfunc: Callable, *args, **kwargs) -> dict[str, int]:
    """Gate counts and depth of the circuit ``qfunc(*args, **kwargs)`` queues, as written.

    Depth counts layers of PennyLane operations (a ``Rot`` is one gate).

    >>> import pennylane as qml
    >>> def f():
    ...     qml.Hadamard(0); qml.CNOT([0, 1]); qml.RZ(0.1, 1); qml.RX(0.2, 2)
    >>> circuit_structure(f)
    {'gates': 4, 'two_qubit_gates': 1, 'depth': 3}
    """
    import pennylane as qml

    tape = qml.tape.make_qscript(qfunc)(*args, **kwargs)
    level: dict = {}
    depth = two_qubit = 0
    for op in tape.operations:
        wires = list(op.wires)
        layer = 1 + max((level.get(w, 0) for w in wires), default=0)
        for w in wires:
            level[w] = layer
        depth = max(depth, layer)
        two_qubit += len(wires) == 2
    return {"gates": len(tape.operations), "two_qubit_gates": two_qubit, "depth": depth}


__all__ = [
    "N_BINS",
    "circuit_structure",
    "entangling_capability",
    "expressibility",
    "fidelity_kl",
    "haar_fidelity_bins",
    "meyer_wallach",
]
