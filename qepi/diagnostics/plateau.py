"""Barren plateaus: variance of a gradient component over random initialisations.

For an ansatz on n qubits with L layers, starting from |0...0>, :func:`gradient_variance`
draws ``n_samples`` weight sets uniformly on [0, 2π) and takes the variance of one
component of the gradient of a cost: ``local`` = <Z_0>, ``global`` = <Z_0 Z_1 ... Z_{n-1}>.
:func:`plateau_curve` does this over a grid of qubit counts and depths and fits
Var ≈ exp(a - rate · n) at every depth (:func:`fit_decay`): a positive rate is
exponential decay, a barren plateau (a 2-design gives rate ≈ ln 2 ≈ 0.69).

All samples of one grid point run as one broadcast execution on ``default.qubit`` with
torch backprop.

Example:
    >>> fit = fit_decay([2, 3, 4], [0.25, 0.125, 0.0625])
    >>> round(fit.rate, 4), round(fit.r2, 4)
    (0.6931, 1.0)
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from qepi.circuits import Ansatz, get_ansatz
from qepi.errors import UserError

COSTS = ("local", "global")
ZERO_VARIANCE = 1e-20  # below this a variance is rounding noise of an identically zero gradient


def gradient_variance(ansatz: str | Ansatz, n_qubits: int, n_layers: int, n_samples: int = 200,
                      cost: str = "local", param: tuple[int, int, int] | None = None,
                      seed: int = 0) -> float:
    """Variance over random weights of d cost / d weights[param] (layer, wire, index).

    With ``param=None`` (default) it is the first weight of the first layer (the layer
    farthest from the measurement) whose gradient is not identically zero: some are, e.g.
    the first angle of a ``Rot`` acting on |0>, or a rotation that commutes with the cost.
    """
    import pennylane as qml

    ansatz = get_ansatz(ansatz) if isinstance(ansatz, str) else ansatz
    if cost not in COSTS:
        raise UserError(f"unknown cost {cost!r} (known: {', '.join(COSTS)})")
    shape = ansatz.shape(n_layers, n_qubits)
    wires = list(range(n_qubits))
    observable = qml.PauliZ(0) if cost == "local" else qml.prod(*[qml.PauliZ(w) for w in wires])

    def circuit(weights):
        ansatz(weights, wires)
        return qml.expval(observable)

    qnode = qml.QNode(circuit, qml.device("default.qubit", wires=n_qubits), interface="torch",
                      diff_method="backprop")
    generator = torch.Generator().manual_seed(seed)
    weights = (2 * torch.pi * torch.rand((n_samples, *shape), generator=generator,
                                         dtype=torch.float64)).requires_grad_()
    qnode(weights).sum().backward()  # samples are independent: one backward gives every gradient
    if param is not None:
        return float(weights.grad[(slice(None), *param)].var(unbiased=True))
    first_layer = weights.grad[:, 0].reshape(n_samples, -1)  # (n_samples, n_qubits * p)
    variances = first_layer.var(dim=0, unbiased=True)  # (n_qubits * p,)
    nonzero = torch.nonzero(variances > ZERO_VARIANCE)
    return float(variances[nonzero[0, 0]]) if len(nonzero) else 0.0


@dataclass(frozen=True)
class DecayFit:
    """Least-squares fit of log Var = intercept - rate · n."""

    rate: float  # decay per qubit (natural log); Var shrinks by exp(rate) per added qubit
    intercept: float
    r2: float


def fit_decay(qubits, variances) -> DecayFit:
    """Fit exponential decay of ``variances`` against ``qubits`` (needs two or more points)."""
    n = np.asarray(qubits, dtype=float)
    v = np.asarray(variances, dtype=float)
    keep = v > ZERO_VARIANCE
    if keep.sum() < 2:
        raise UserError("fitting a decay needs at least two qubit counts with nonzero variance")
    n, logv = n[keep], np.log(v[keep])
    slope, intercept = np.polyfit(n, logv, 1)
    residual = logv - (intercept + slope * n)
    total = np.sum((logv - logv.mean()) ** 2)
    r2 = 1.0 - float(np.sum(residual**2) / total) if total > 0 else 1.0
    return DecayFit(rate=float(-slope), intercept=float(intercept), r2=r2)


@dataclass
class PlateauResult:
    """Gradient variances on a grid: ``variances[i][j]`` is depth ``layers[i]``, ``qubits[j]``."""

    ansatz: str
    cost: str
    qubits: list[int]
    layers: list[int]
    n_samples: int
    variances: list[list[float]]
    fits: dict[str, DecayFit] = field(default_factory=dict)  # by depth, as str(L)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)


def plateau_curve(ansatz: str | Ansatz, qubits, layers, n_samples: int = 200,
                  cost: str = "local", seed: int = 0) -> PlateauResult:
    """:func:`gradient_variance` over every (depth, qubit count) and a decay fit per depth.

    >>> result = plateau_curve("hardware_efficient", [2, 3], [1], n_samples=50)
    >>> len(result.variances), len(result.variances[0]), sorted(result.fits)
    (1, 2, ['1'])
    """
    name = ansatz if isinstance(ansatz, str) else ansatz.name
    qubits, layers = [int(q) for q in qubits], [int(d) for d in layers]
    if not qubits or not layers or min(qubits) < 1 or min(layers) < 1:
        raise UserError("plateau: qubits and layers must be non-empty lists of positive integers")
    variances = [[gradient_variance(ansatz, q, d, n_samples, cost, seed=seed + 1000 * d + q)
                  for q in qubits] for d in layers]
    fits = {}
    if len(qubits) >= 2:
        for d, row in zip(layers, variances):
            if sum(v > ZERO_VARIANCE for v in row) >= 2:
                fits[str(d)] = fit_decay(qubits, row)
    return PlateauResult(name, cost, qubits, layers, n_samples, variances, fits)


def plot_plateau(result: PlateauResult, path: str | Path) -> Path:
    """Save the barren-plateau curve: Var against qubits (one line per depth, fitted dashed)."""
    from qepi.plotting import subplots

    fig, axes = subplots(1, 2, figsize=(10, 4))
    n = np.asarray(result.qubits)
    for d, row in zip(result.layers, result.variances):
        (line,) = axes[0].semilogy(n, row, "o-", label=f"L={d}")
        fit = result.fits.get(str(d))
        if fit is not None:
            axes[0].semilogy(n, np.exp(fit.intercept - fit.rate * n), "--", color=line.get_color(),
                             label=f"fit L={d}: rate {fit.rate:.2f}")
    axes[0].set(xlabel="qubits", ylabel="Var[∂C/∂θ]", title=f"{result.ansatz}, {result.cost} cost")
    axes[0].legend(fontsize=7)
    grid = np.asarray(result.variances)  # (depths, qubits)
    for j, q in enumerate(result.qubits):
        axes[1].semilogy(result.layers, grid[:, j], "o-", label=f"n={q}")
    axes[1].set(xlabel="layers", ylabel="Var[∂C/∂θ]", title="against depth")
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    return path


def parse_range(text: str) -> list[int]:
    """'2-12' -> 2..12, '2-12:2' -> 2, 4, ..., 12, '1,4,8' -> [1, 4, 8].

    >>> parse_range("2-8:2"), parse_range("1,3"), parse_range("5")
    ([2, 4, 6, 8], [1, 3], [5])
    """
    values = []
    try:
        for part in text.split(","):
            part = part.strip()
            if "-" in part:
                span, _, step = part.partition(":")
                lo, hi = (int(v) for v in span.split("-"))
                values.extend(range(lo, hi + 1, int(step) if step else 1))
            else:
                values.append(int(part))
    except ValueError:
        raise UserError(f"cannot read the range {text!r} (use e.g. 2-12, 2-12:2 or 1,4,8)") from None
    if not values or min(values) < 1:
        raise UserError(f"range {text!r} must hold positive integers")
    return values


__all__ = [
    "COSTS",
    "DecayFit",
    "PlateauResult",
    "fit_decay",
    "gradient_variance",
    "parse_range",
    "plateau_curve",
    "plot_plateau",
]
