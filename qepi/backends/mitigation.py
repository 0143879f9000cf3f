"""Error mitigation inside the parameter-shift engine: M3 readout correction and ZNE.

``backend.mitigation`` switches on, in the engine of :mod:`qepi.backends.aer` (``aer``, and
``exact`` with shots and noise), one or both of:

- ``"readout"``: the sampled counts of every measurement group are corrected by M3
  (``mthree.M3Mitigation``, full Hamming distance) into quasi-probabilities before any
  quantity is computed from them. M3 is calibrated as on a device, not from the noise
  model's numbers: the engine runs M3's two "marginal" calibration circuits (every measured
  qubit in |0⟩; every measured qubit flipped to |1⟩ by an X gate) through the same
  simulator, gate noise and readout error as every other circuit, draws
  ``backend.readout_cal_shots`` shots of each, and gives M3 the per-qubit 2×2 matrices read
  from those counts. Qubits are calibrated once, when first measured (and again after
  ``reseed``); each qubit's draws are keyed by the seed and the qubit alone, so a resumed
  run recalibrates identically.
- ``"zne"``: every template also runs globally folded, U (U†U)^k, at each of
  ``backend.zne_scale_factors`` (:func:`fold`, mitiq's ``fold_global`` rule: a factor that
  is not an odd integer folds the last gates once more), each with its own shot draws; the
  quantities at the S factors are extrapolated to zero noise with mitiq's
  ``RichardsonFactory`` or ``LinearFactory`` (``backend.zne_extrapolation``). Both
  factories are linear in the values, so their weights are read from mitiq once
  (:func:`extrapolation_weights`) and applied to every unshifted and ±π/2-shifted estimate:
  gradients are parameter shift of mitigated values.

Mitigated estimates are corrections, not probabilities: a ``probs`` output is
M3's and Richardson's quasi-probabilities (they sum to 1, entries may fall slightly below 0
or above 1), an ``expval`` may leave [-1, 1], a ``var`` (⟨H²⟩ - ⟨H⟩² of mitigated values)
may come out slightly negative.

Folding is done here on the Qiskit templates rather than by mitiq's ``fold_global``:
mitiq folds a Qiskit circuit by converting it through OpenQASM 2 to Cirq, which cannot carry
the templates' unbound Parameters (each bound row would be folded and converted on its own,
thousands per step) and needs ``ply``, which mitiq does not install. :func:`fold` follows
mitiq's rule gate for gate (the tests compare the gate counts with mitiq's).

The seam. An engine that turns sampled frequencies into estimates applies a
:class:`Mitigation` in three places, and declares ``Capabilities(mitigation=True)`` and
calls :func:`check_mitigation` when validating its settings:

1. templates: one per measurement group and scale factor in ``scale_factors``, each folded
   by :meth:`Mitigation.fold` before any transpiling (a device transpiles the folded circuit);
2. frequencies (C, 2**m) sampled from a template measuring physical ``qubits``:
   :meth:`Mitigation.correct_readout` (``calibrate(qubits)`` is the engine's callback that
   runs the calibration circuits; :meth:`Mitigation.forget_calibration` after a reseed);
3. estimates (S, C, L) at the S scale factors: :meth:`Mitigation.extrapolate` -> (C, L).

Example:
    >>> from qepi.config import Backend
    >>> plain = Mitigation.from_backend(Backend(name="aer"))
    >>> plain.scale_factors, plain.readout
    ((1.0,), False)
    >>> import numpy as np
    >>> plain.extrapolate(np.ones((1, 2, 3))).shape  # (S, C, L) -> (C, L)
    (2, 3)
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from qepi.config import Backend
from qepi.errors import UserError

MITIGATIONS = ("readout", "zne")
PACKAGES = {"readout": "mthree", "zne": "mitiq"}  # the optional package each one needs
INSTALL = "pip install 'qepi[mitigation]'"
CALIBRATION_CALL = (1 << 63) - 1  # the sampler call number of calibration draws (no step reaches it)
_DEPENDENT_KEYS = {"zne_scale_factors": "zne", "zne_extrapolation": "zne",
                   "readout_cal_shots": "readout"}


def _import(module: str, kind: str):
    """``module`` imported, or the one-line UserError saying how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise UserError(f"backend.mitigation={kind!r} needs {module}, which is not installed: "
                        f"{INSTALL}") from None


def check_mitigation(backend: Backend, device_noise: bool = False) -> None:
    """Raise a UserError naming the first mitigation setting the engine cannot honour.

    The settings of a mitigation not chosen (``zne_*`` without ``"zne"``,
    ``readout_cal_shots`` without ``"readout"``) are refused when changed; mitigation needs
    sampled estimates (``backend.shots > 0``) and the noise it corrects (``backend.noise``,
    unless ``device_noise``: a device brings its own).

    >>> check_mitigation(Backend(name="aer", shots=100, noise="depolarizing",
    ...                          depolarizing_2q=0.05, mitigation=["zne"]))
    >>> check_mitigation(Backend(name="aer", shots=100, noise="depolarizing",
    ...                          depolarizing_2q=0.05, mitigation=["readout"]))
    Traceback (most recent call last):
    ...
    qepi.errors.UserError: backend.mitigation=['readout']: there is no readout error to correct (backend.readout_error=0.0); set backend.readout_error or drop 'readout'
    """
    chosen = list(backend.mitigation)
    default = Backend()
    for key, kind in _DEPENDENT_KEYS.items():
        if kind not in chosen and getattr(backend, key) != getattr(default, key):
            raise UserError(f"backend.{key}={getattr(backend, key)!r} needs {kind!r} in "
                            f"backend.mitigation")
    if not chosen:
        return
    if len(set(chosen)) != len(chosen):
        raise UserError(f"backend.mitigation={chosen}: each mitigation may be named once")
    if backend.shots < 1:
        raise UserError(f"backend.mitigation={chosen}: mitigation corrects sampled estimates; "
                        f"set backend.shots > 0")
    depolarizing = backend.noise == "depolarizing"
    if not backend.noise and not device_noise:
        raise UserError(f"backend.mitigation={chosen}: backend.noise is '' (noiseless), there "
                        f"is nothing to mitigate; set backend.noise or drop backend.mitigation")
    if "readout" in chosen and depolarizing and not backend.readout_error:
        raise UserError(f"backend.mitigation={chosen}: there is no readout error to correct "
                        f"(backend.readout_error=0.0); set backend.readout_error or drop 'readout'")
    if "zne" in chosen:
        if depolarizing and not (backend.depolarizing_1q or backend.depolarizing_2q):
            raise UserError(f"backend.mitigation={chosen}: there is no gate noise to "
                            f"extrapolate away (backend.depolarizing_1q = depolarizing_2q = 0); "
                            f"set one or drop 'zne'")
        factors = backend.zne_scale_factors
        if len(factors) < 2 or len(set(factors)) != len(factors) or min(factors) < 1:
            raise UserError(f"backend.zne_scale_factors={factors}: give at least two distinct "
                            f"factors, each >= 1")
    for kind in chosen:
        if importlib.util.find_spec(PACKAGES[kind]) is None:
            raise UserError(f"backend.mitigation={kind!r} needs {PACKAGES[kind]}, which is not "
                            f"installed: {INSTALL}")


def refuse_mitigation(backend: Backend, why: str) -> None:
    """For a backend without mitigation: a UserError when ``backend.mitigation`` (or a key of
    it) is set, saying ``why`` there is nothing to mitigate."""
    if backend.mitigation:
        raise UserError(f"backend.mitigation={list(backend.mitigation)}: {why}; use "
                        f"backend.name='aer' or 'exact' with backend.shots and backend.noise")
    check_mitigation(backend)


def fold(circuit, scale: float):
    """``circuit`` (a Qiskit ``QuantumCircuit`` of gates, angles may be Parameters) globally
    folded to ``scale`` >= 1 by mitiq's ``fold_global`` rule: U (U†U)^k for the integer
    part of (scale - 1) / 2, then the last round(fraction · gates / 2) gates G folded as G G† G.

    >>> from qiskit import QuantumCircuit
    >>> qc = QuantumCircuit(2)
    >>> _ = qc.sx(0)
    >>> _ = qc.cx(0, 1)
    >>> [inst.operation.name for inst in fold(qc, 3).data]
    ['sx', 'cx', 'cx', 'sxdg', 'sx', 'cx']
    >>> [inst.operation.name for inst in fold(qc, 2).data]  # the last gate folded once
    ['sx', 'cx', 'cx', 'cx']
    """
    folded = circuit.copy()
    folds, fraction = divmod(scale - 1, 2)
    for _ in range(int(folds)):
        folded.compose(circuit.inverse(), inplace=True)
        folded.compose(circuit, inplace=True)
    count = int(round(fraction * len(circuit.data) / 2))
    if count:
        tail = circuit.copy_empty_like()
        for instruction in circuit.data[-count:]:
            tail.append(instruction)
        folded.compose(tail.inverse(), inplace=True)
        folded.compose(tail, inplace=True)
    return folded


def extrapolation_weights(scale_factors, method: str) -> np.ndarray:
    """(S,) weights w with mitiq's zero-noise value = Σ w_s · value_s: the factory
    (``RichardsonFactory`` or ``LinearFactory``) is linear in the values, so extrapolating
    the unit vectors gives them.

    >>> extrapolation_weights([1.0, 3.0, 5.0], "richardson").round(6).tolist()
    [1.875, -1.25, 0.375]
    """
    inference = _import("mitiq.zne.inference", "zne")
    factory = {"richardson": inference.RichardsonFactory, "linear": inference.LinearFactory}[method]
    unit = np.eye(len(scale_factors))
    return np.array([factory.extrapolate(list(scale_factors), list(unit[s]))
                     for s in range(len(scale_factors))])


@dataclass
class Mitigation:
    """What the engine does to its estimates (see the module docs for where it is applied)."""

    readout: bool = False  # correct sampled counts with M3
    scale_factors: tuple[float, ...] = (1.0,)  # one template per factor; (1.0,) without zne
    weights: np.ndarray = field(default_factory=lambda: np.ones(1))  # (S,) extrapolation
    calibration: dict[int, np.ndarray] = field(default_factory=dict)  # qubit -> M3's 2x2 matrix

    @classmethod
    def from_backend(cls, backend: Backend) -> "Mitigation":
        """The mitigation ``backend.mitigation`` asks for (imports mitiq for ``"zne"``)."""
        if "zne" not in backend.mitigation:
            return cls(readout="readout" in backend.mitigation)
        factors = tuple(float(s) for s in backend.zne_scale_factors)
        return cls("readout" in backend.mitigation, factors,
                   extrapolation_weights(factors, backend.zne_extrapolation))

    def fold(self, circuit, scale: float):
        """A copy of ``circuit`` folded to ``scale`` (:func:`fold`)."""
        return circuit.copy() if scale == 1 else fold(circuit, scale)

    def extrapolate(self, estimates: np.ndarray) -> np.ndarray:
        """Estimates (S, C, L) at the scale factors -> zero-noise estimates (C, L)."""
        if len(self.scale_factors) == 1:
            return estimates[0]
        return np.tensordot(self.weights, estimates, axes=1)

    def forget_calibration(self) -> None:
        """Drop every readout calibration (the next correction recalibrates)."""
        self.calibration.clear()

    def correct_readout(self, frequencies: np.ndarray, qubits: list[int], shots: int,
                        calibrate: Callable[[list[int]], np.ndarray]) -> np.ndarray:
        """M3 quasi-probabilities (C, 2**m) from sampled ``frequencies`` (C, 2**m) of
        ``shots`` shots on physical ``qubits`` (bit i of an outcome = ``qubits[i]``).

        ``calibrate(missing)`` returns (2, Q, 2): for the calibration circuit preparing
        all |0⟩ (index 0) and all |1⟩ (index 1), the frequency each missing qubit read 0 and 1.
        """
        mthree = _import("mthree", "readout")
        missing = [q for q in qubits if q not in self.calibration]
        if missing:
            read = calibrate(missing)  # (2, Q, 2)
            for i, q in enumerate(missing):
                # M3: column = prepared state, row = read value
                self.calibration[q] = read[:, i, :].T.astype(np.float32)
        mitigator = mthree.M3Mitigation()
        mitigator.cals_from_matrices([self.calibration.get(q) for q in range(max(qubits) + 1)])
        m = len(qubits)
        counts = np.rint(frequencies * shots).astype(np.int64)  # (C, 2**m)
        labels = [format(k, f"0{m}b") for k in range(2**m)]  # rightmost bit = qubits[0]
        dicts = [{labels[k]: int(c) for k, c in enumerate(row) if c} for row in counts]
        quasi = mitigator.apply_correction(dicts, list(qubits), distance=-1)
        out = np.zeros(frequencies.shape)  # (C, 2**m)
        for row, distribution in zip(out, quasi):
            for label, value in distribution.items():
                row[int(label, 2)] = value
        return out


__all__ = ["CALIBRATION_CALL", "MITIGATIONS", "Mitigation", "check_mitigation",
           "extrapolation_weights", "fold", "refuse_mitigation"]
