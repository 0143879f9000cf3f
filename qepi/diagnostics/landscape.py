"""Loss landscape around trained parameters along two random filter-normalised directions.

Following Li et al. 2018 ("Visualizing the Loss Landscape of Neural Nets"): each
direction d has the shape of the parameters, drawn from N(0, 1) and rescaled *per filter*
(per slice along the first dimension of every tensor with two or more dimensions) to the
norm of the matching slice of the trained parameters; one-dimensional tensors (biases,
norms) get no direction. The loss L(θ + α d₁ + β d₂) on a grid of (α, β) is the landscape;
:func:`plot_landscapes` draws several models' landscapes side by side as contour plots.

Example:
    >>> import torch
    >>> model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2))
    >>> x, y = torch.randn(16, 3), torch.randint(0, 2, (16,))
    >>> land = loss_landscape(model, (x, y), steps=5)
    >>> land.losses.shape, bool(abs(land.losses[2, 2] - land.center_loss) < 1e-6)
    ((5, 5), True)
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from qepi.diagnostics.gradients import split_batch
from qepi.errors import UserError


def filter_normalized_direction(params: list[torch.Tensor], generator: torch.Generator) -> list[torch.Tensor]:
    """One random direction per tensor, each filter rescaled to its parameters' filter norm."""
    direction = []
    for p in params:
        d = torch.randn(p.shape, generator=generator, dtype=torch.float64).to(p.dtype)
        if p.dim() <= 1:
            d.zero_()
        else:
            d_norm = d.reshape(d.shape[0], -1).norm(dim=1)  # (filters,)
            p_norm = p.detach().reshape(p.shape[0], -1).norm(dim=1)
            d *= (p_norm / d_norm.clamp_min(1e-12)).reshape(-1, *([1] * (p.dim() - 1)))
        direction.append(d)
    return direction


@dataclass
class Landscape:
    """Losses on a grid: ``losses[i, j]`` at θ + alphas[i] d₁ + betas[j] d₂."""

    alphas: np.ndarray
    betas: np.ndarray
    losses: np.ndarray  # (len(alphas), len(betas))
    center_loss: float

    def to_dict(self) -> dict:
        return {"alphas": self.alphas.tolist(), "betas": self.betas.tolist(),
                "losses": self.losses.tolist(), "center_loss": self.center_loss}

    def roughness(self) -> float:
        """Mean absolute discrete Laplacian of the loss grid: 0 for a plane, larger when rugged."""
        z = self.losses
        lap = z[2:, 1:-1] + z[:-2, 1:-1] + z[1:-1, 2:] + z[1:-1, :-2] - 4 * z[1:-1, 1:-1]
        return float(np.mean(np.abs(lap))) if lap.size else 0.0


@torch.no_grad()
def loss_landscape(model: nn.Module, batch, loss_fn: Callable = nn.functional.cross_entropy,
                   steps: int = 11, span: float = 1.0, seed: int = 0) -> Landscape:
    """The loss of ``model`` on ``batch`` ((x, y), (x, y, mask) or a Split) over a
    ``steps`` × ``steps`` grid of α, β in [-span, span]. The parameters are restored after."""
    if steps < 2:
        raise UserError(f"landscape steps must be >= 2, got {steps}")
    x, y, mask = split_batch(batch)
    params = [p for p in model.parameters() if p.requires_grad]
    origin = [p.detach().clone() for p in params]
    generator = torch.Generator().manual_seed(seed)
    d1 = filter_normalized_direction(params, generator)
    d2 = filter_normalized_direction(params, generator)
    grid = np.linspace(-span, span, steps)
    losses = np.zeros((steps, steps))
    was_training = model.training
    model.eval()

    def loss_at(a: float, b: float) -> float:
        for p, p0, u, v in zip(params, origin, d1, d2):
            p.copy_(p0 + a * u + b * v)
        logits = model(x) if mask is None else model(x, mask)
        return float(loss_fn(logits, y))

    try:
        center = loss_at(0.0, 0.0)
        for i, a in enumerate(grid):
            for j, b in enumerate(grid):
                losses[i, j] = loss_at(a, b)
    finally:
        for p, p0 in zip(params, origin):
            p.copy_(p0)
        model.train(was_training)
    return Landscape(grid, grid.copy(), losses, center)


def plot_landscapes(landscapes: dict[str, Landscape], path: str | Path, levels: int = 20) -> Path:
    """Contour plots of several landscapes side by side (e.g. quantum beside classical)."""
    from qepi.plotting import subplots

    fig, axes = subplots(1, len(landscapes), figsize=(4.5 * len(landscapes), 4), squeeze=False)
    for ax, (name, land) in zip(axes[0], landscapes.items()):
        contour = ax.contourf(land.betas, land.alphas, land.losses, levels=levels, cmap="viridis")
        ax.contour(land.betas, land.alphas, land.losses, levels=levels, colors="k", linewidths=0.3)
        ax.plot(0, 0, "r*", markersize=10)
        ax.set(xlabel="β (direction 2)", ylabel="α (direction 1)",
               title=f"{name}: loss {land.center_loss:.3f}, roughness {land.roughness():.3f}")
        fig.colorbar(contour, ax=ax)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    return path


def save_landscapes(landscapes: dict[str, Landscape], path: str | Path) -> Path:
    """Write the landscapes' grids as JSON."""
    path = Path(path)
    path.write_text(json.dumps({k: v.to_dict() for k, v in landscapes.items()}, indent=1) + "\n")
    return path


__all__ = ["Landscape", "filter_normalized_direction", "loss_landscape", "plot_landscapes",
           "save_landscapes"]
