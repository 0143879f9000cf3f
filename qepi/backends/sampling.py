"""Shot sampling as on hardware: every executed circuit gets its own independent draw.

:class:`ShotSampler` turns exact outcome probabilities (C, 2**m) into the frequencies of
``shots`` measurements. Draws are counter-based: circuit ``c`` of call ``k`` in stream ``s``
reads a Philox stream keyed by ``(seed, k)`` at counter ``(circuit_id[c], s)``. So

- identical circuits (equal rows, or one circuit in two calls) draw independently;
- a seed gives the same sequence of draws, whatever the batch is split into (a circuit's
  draw depends on its id, not on where it sits in an array);
- the sampler's whole state is ``(seed, calls)``: :meth:`state_dict` /
  :meth:`load_state_dict` let a resumed run continue bit-identically.

A caller starts one *call* per logical execution (:meth:`next_call`) and names each circuit
of that call with a distinct non-negative integer id (e.g. row, shift slot and sign), and
each measurement setting of a circuit with a distinct ``stream``.

Example:
    >>> import numpy as np
    >>> sampler = ShotSampler(shots=100, seed=7)
    >>> probs = np.full((3, 2), 0.5)  # three identical circuits, one qubit
    >>> call = sampler.next_call()
    >>> freqs = sampler.frequencies(probs, call)  # (3, 2), each row sums to 1
    >>> freqs.shape, bool(np.allclose(freqs.sum(axis=1), 1.0)), len({tuple(f) for f in freqs}) > 1
    ((3, 2), True, True)
    >>> again = ShotSampler(shots=100, seed=7)
    >>> bool(np.array_equal(again.frequencies(probs, again.next_call()), freqs))
    True
    >>> sampler.state_dict()
    {'seed': 7, 'calls': 1}
"""

from __future__ import annotations

from typing import Any

import numpy as np

_MASK64 = (1 << 64) - 1


class ShotSampler:
    """Multinomial shot draws over exact outcome probabilities, one Philox stream per circuit."""

    def __init__(self, shots: int, seed: int = 0):
        if shots < 1:
            raise ValueError(f"shots must be >= 1, got {shots}")
        self.shots = shots
        self.seed = seed
        self.calls = 0  # calls started so far; the next call gets this number

    def reseed(self, seed: int) -> None:
        """Restart the sequence of draws at ``seed``."""
        self.seed, self.calls = seed, 0

    def next_call(self) -> int:
        """Start a call: returns its number and advances the counter."""
        call = self.calls
        self.calls += 1
        return call

    def frequencies(self, probs: np.ndarray, call: int, circuit_ids: np.ndarray | None = None,
                    stream: int = 0, shots: np.ndarray | None = None) -> np.ndarray:
        """Sampled outcome frequencies (C, K) of ``shots`` measurements of each circuit.

        ``probs`` (C, K) are exact outcome probabilities (small negative rounding is clipped,
        rows are renormalised); ``circuit_ids`` (C,) default to ``0..C-1``; ``shots`` (C,)
        gives each circuit its own shot count (default: the sampler's ``shots`` for all).
        A circuit's draw depends on its id and shot count only.
        """
        probs = np.clip(np.asarray(probs, dtype=np.float64), 0.0, None)
        probs /= probs.sum(axis=1, keepdims=True)
        if circuit_ids is None:
            circuit_ids = np.arange(len(probs))
        key = [self.seed & _MASK64, call & _MASK64]
        if shots is None:
            shots = np.full(len(probs), self.shots, dtype=np.int64)
        counts = np.empty(probs.shape, dtype=np.int64)  # (C, K)
        for c, circuit in enumerate(np.asarray(circuit_ids).tolist()):
            bits = np.random.Philox(key=key, counter=[0, 0, circuit & _MASK64, stream & _MASK64])
            counts[c] = np.random.Generator(bits).multinomial(int(shots[c]), probs[c])
        return counts / np.asarray(shots, dtype=np.float64)[:, None]

    def state_dict(self) -> dict[str, Any]:
        """``{"seed", "calls"}``: all a resumed run needs to continue the same draws."""
        return {"seed": self.seed, "calls": self.calls}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        self.seed, self.calls = int(state["seed"]), int(state["calls"])


__all__ = ["ShotSampler"]
