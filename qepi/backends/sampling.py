"""Shot sampling as on hardware: every executed circuit gets its own independent draw.

:class:`ShotSampler` turns exact outcome probabilities (C, 2**m) into the frequencies of
``shots`` measurements. Draws are counter-based: the circuits of call ``k`` measured in
stream ``s`` read one Philox stream keyed by ``(seed, k)`` at counter ``s``, in ascending
order of their circuit ids (one vectorised multinomial draw per batch). So

- identical circuits (equal rows, or one circuit in two calls) draw independently;
- a seed gives the same sequence of draws, whatever the batch is split into, as long as the
  pieces of a call come in ascending id order (the aer engine's row blocks do);
- between calls the sampler's whole state is ``(seed, calls)``: :meth:`state_dict` /
  :meth:`load_state_dict` let a resumed run continue bit-identically.

A caller starts one *call* per logical execution (:meth:`next_call`), names each circuit of
that call with a distinct non-negative integer id (e.g. row, shift slot and sign), and each
measurement setting of a circuit with a distinct ``stream``.

Example:
    >>> import numpy as np
    >>> sampler = ShotSampler(shots=100, seed=7)
    >>> probs = np.full((3, 2), 0.5)  # three identical circuits, one qubit
    >>> call = sampler.next_call()
    >>> freqs = sampler.frequencies(probs, call)  # (3, 2), each row sums to 1
    >>> freqs.shape, bool(np.allclose(freqs.sum(axis=1), 1.0)), len({tuple(f) for f in freqs}) > 1
    ((3, 2), True, True)
    >>> again = ShotSampler(shots=100, seed=7)
    >>> call = again.next_call()
    >>> pieces = [again.frequencies(probs[:1], call, [0]), again.frequencies(probs[1:], call, [1, 2])]
    >>> bool(np.array_equal(np.concatenate(pieces), freqs))  # split in id order: the same draws
    True
    >>> sampler.state_dict()
    {'seed': 7, 'calls': 1}
"""

from __future__ import annotations

from typing import Any

import numpy as np

_MASK64 = (1 << 64) - 1


class ShotSampler:
    """Multinomial shot draws over exact outcome probabilities, one Philox stream per call
    and measurement stream."""

    def __init__(self, shots: int, seed: int = 0):
        if shots < 1:
            raise ValueError(f"shots must be >= 1, got {shots}")
        self.shots = shots
        self.seed = seed
        self.calls = 0  # calls started so far; the next call gets this number
        self._streams: dict[tuple[int, int], np.random.Generator] = {}  # of the open call

    def reseed(self, seed: int) -> None:
        """Restart the sequence of draws at ``seed``."""
        self.seed, self.calls, self._streams = seed, 0, {}

    def next_call(self) -> int:
        """Start a call: returns its number and advances the counter."""
        call = self.calls
        self.calls += 1
        self._streams = {}
        return call

    def frequencies(self, probs: np.ndarray, call: int, circuit_ids: np.ndarray | None = None,
                    stream: int = 0, shots: np.ndarray | None = None) -> np.ndarray:
        """Sampled outcome frequencies (C, K) of ``shots`` measurements of each circuit.

        ``probs`` (C, K) are exact outcome probabilities (small negative rounding is clipped,
        rows that do not sum to 1 within 1e-12 are renormalised); ``circuit_ids`` (C,)
        default to ``0..C-1``; ``shots`` (C,) gives each circuit its own shot count
        (default: the sampler's ``shots`` for all).
        Successive batches of one call and stream continue the same stream.
        """
        probs = np.asarray(probs, dtype=np.float64)
        if probs.min(initial=0.0) < 0:
            probs = np.maximum(probs, 0.0)
        total = probs @ np.ones(probs.shape[1])  # (C,)
        if np.abs(total - 1).max(initial=0.0) > 1e-12:
            probs = probs / total[:, None]
        if circuit_ids is None:
            circuit_ids = np.arange(len(probs))
        if shots is None:
            shots = np.full(len(probs), self.shots, dtype=np.int64)
        generator = self._streams.get((call, stream))
        if generator is None:
            bits = np.random.Philox(key=[self.seed & _MASK64, call & _MASK64],
                                    counter=[0, 0, 0, stream & _MASK64])
            generator = self._streams[(call, stream)] = np.random.Generator(bits)
        order = np.argsort(np.asarray(circuit_ids), kind="stable")  # (C,) draw in id order
        shots = np.asarray(shots, dtype=np.int64)
        frequencies = np.empty(probs.shape)  # (C, K)
        frequencies[order] = generator.multinomial(shots[order], probs[order]) / shots[order, None]
        return frequencies

    def state_dict(self) -> dict[str, Any]:
        """``{"seed", "calls"}``: all a resumed run needs to continue the same draws."""
        return {"seed": self.seed, "calls": self.calls}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        self.seed, self.calls = int(state["seed"]), int(state["calls"])
        self._streams = {}


__all__ = ["ShotSampler"]
