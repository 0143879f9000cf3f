"""Gradient flow during training: per-layer gradient norm, variance across the batch, SNR.

A *layer* is every module that owns parameters directly (``model.embedding.core.layer``,
``model.head``, ...). For one batch, :func:`gradient_flow` splits the examples into groups,
takes one gradient per group and reports for each layer:

- ``norm``: the norm of the batch gradient (the mean of the group gradients);
- ``variance``: the per-example variance of the gradient, averaged over the layer's
  components (group variance × group size; exact per-example variance when groups are
  single examples);
- ``snr``: ``norm / sqrt(sum of per-component variances / batch size)``, the batch gradient
  against its standard error. Below 1 the step is mostly noise: a larger batch or, under
  shots, more shots are needed;
- ``shot_snr`` (with ``repeats > 1``): the norm of the mean of ``repeats`` gradients of
  the same batch, each with the shot sampler re-seeded, against the spread of one of them,
  i.e. shot noise only (no spread on exact backends gives inf). It grows like
  sqrt(shots): below 1, use more shots.

:class:`GradientFlowMonitor` logs these as a training callback and warns when a layer's
gradient vanishes or drowns in noise.

Example:
    >>> import torch
    >>> model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2))
    >>> x, y = torch.randn(8, 3), torch.randint(0, 2, (8,))
    >>> stats = gradient_flow(model, (x, y))
    >>> sorted(stats), sorted(stats["0"])
    (['0', '2'], ['norm', 'snr', 'variance'])
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from contextlib import contextmanager

import torch
from torch import nn


class GradientWarning(UserWarning):
    """A layer's gradient vanished or is dominated by noise."""


def parameter_layers(model: nn.Module) -> dict[str, list[nn.Parameter]]:
    """Trainable parameters grouped by the module that owns them directly; parameters of
    the top module itself (e.g. a position table) each form a group named after them."""
    groups = {}
    for name, module in model.named_modules():
        if not name:
            groups.update({pname: [p] for pname, p in module.named_parameters(recurse=False)
                           if p.requires_grad})
            continue
        params = [p for p in module.parameters(recurse=False) if p.requires_grad]
        if params:
            groups[name] = params
    return groups


def split_batch(batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """(x, y), (x, y, mask) or a ``qepi.data.Split`` -> (x, y, mask)."""
    if hasattr(batch, "x"):
        return batch.x, batch.y, batch.mask
    if len(batch) == 2:
        return batch[0], batch[1], None
    return batch[0], batch[1], batch[2]


def _group_gradients(model: nn.Module, layers: dict[str, list[nn.Parameter]], x, y, mask,
                     loss_fn: Callable) -> dict[str, torch.Tensor]:
    """Flattened gradient of the mean loss over (x, y) for each layer: {name: (P,)}."""
    params = [p for group in layers.values() for p in group]
    logits = model(x) if mask is None else model(x, mask)
    grads = torch.autograd.grad(loss_fn(logits, y), params, allow_unused=True)
    flat, i = {}, 0
    for name, group in layers.items():
        parts = [(g if g is not None else torch.zeros_like(p)).reshape(-1)
                 for p, g in zip(group, grads[i:i + len(group)])]
        flat[name] = torch.cat(parts).detach().double()
        i += len(group)
    return flat


@contextmanager
def _shot_seed_offset(model: nn.Module, offset: int):
    """Re-seed the shot sampler of every built quantum executor for one repetition.

    Shot draws are keyed by (seed, circuit), so the same batch with the same seed draws the
    same shots; a different seed per repetition gives independent shot noise.
    """
    from qepi.layers import QuantumLayer

    layers = [m for m in model.modules() if isinstance(m, QuantumLayer)]
    seeds = [layer.seed for layer in layers]
    try:
        for layer, seed in zip(layers, seeds):
            layer.reseed(seed + 7919 * offset)
        yield
    finally:
        for layer, seed in zip(layers, seeds):
            layer.reseed(seed)


def gradient_flow(model: nn.Module, batch, loss_fn: Callable = nn.functional.cross_entropy,
                  n_groups: int = 8, repeats: int = 1) -> dict[str, dict[str, float]]:
    """Per-layer gradient statistics of ``model`` on ``batch``: (x, y), (x, y, mask) or a Split.

    ``n_groups`` gradients of disjoint slices of the batch (at most one per example) give the
    norm, variance and SNR; ``repeats > 1`` adds ``shot_snr`` from repeated full-batch
    gradients. The parameters' ``.grad`` fields are left untouched.
    """
    x, y, mask = split_batch(batch)
    b = x.shape[0]
    g = max(1, min(n_groups, b))
    layers = parameter_layers(model)
    slices = torch.arange(b).tensor_split(g)
    per_group = [
        _group_gradients(model, layers, x[idx], y[idx], None if mask is None else mask[idx], loss_fn)
        for idx in slices
    ]
    sizes = torch.tensor([len(idx) for idx in slices], dtype=torch.float64)  # (G,)
    stats = {}
    for name in layers:
        grads = torch.stack([group[name] for group in per_group])  # (G, P)
        mean = (grads * sizes[:, None]).sum(0) / b  # (P,) the batch gradient
        norm = float(mean.norm())
        if g > 1:
            # per-example variance: group means of m examples vary with sigma^2 / m
            var_i = ((grads - mean) ** 2 * sizes[:, None]).sum(0) / (g - 1)  # (P,)
            noise = math.sqrt(float(var_i.sum()) / b)
            snr = norm / noise if noise > 0 else math.inf
            variance = float(var_i.mean())
        else:
            variance, snr = math.nan, math.nan
        stats[name] = {"norm": norm, "variance": variance, "snr": snr}
    if repeats > 1:
        runs = []
        for r in range(repeats):
            with _shot_seed_offset(model, r):
                runs.append(_group_gradients(model, layers, x, y, mask, loss_fn))
        for name in layers:
            grads = torch.stack([run[name] for run in runs])  # (R, P)
            signal = float(grads.mean(0).norm())
            noise = math.sqrt(float(grads.var(0, unbiased=True).sum()))  # of one estimate
            stats[name]["shot_snr"] = signal / noise if noise > 0 else math.inf
    return stats


class GradientFlowMonitor:
    """Training callback: per-layer gradient norms every step, full statistics every ``every``.

    ``on_step`` reads the per-layer norms of the gradients the trainer's own backward left in
    ``.grad`` (free; after clipping) and, every ``every`` steps, runs :func:`gradient_flow` on
    the fixed ``probe`` batch. A layer whose gradient norm falls below ``vanish_tol``, or
    whose SNR falls below ``min_snr``, raises a :class:`GradientWarning` naming the layer
    (once per layer and kind). Rows go to ``history`` and into the step's metrics.

    Example:
        >>> import torch
        >>> model = torch.nn.Linear(3, 2)
        >>> monitor = GradientFlowMonitor((torch.randn(4, 3), torch.tensor([0, 1, 0, 1])), min_snr=0)
        >>> row = monitor.measure(model, step=0)
        >>> sorted(row)
        ['bias/norm', 'bias/snr', 'bias/variance', 'step', 'weight/norm', 'weight/snr', 'weight/variance']
    """

    def __init__(self, probe=None, loss_fn: Callable = nn.functional.cross_entropy,
                 every: int = 10, n_groups: int = 8, repeats: int = 1,
                 vanish_tol: float = 1e-6, min_snr: float = 1.0):
        self.probe, self.loss_fn, self.every = probe, loss_fn, every
        self.n_groups, self.repeats = n_groups, repeats
        self.vanish_tol, self.min_snr = vanish_tol, min_snr
        self.history: list[dict[str, float]] = []  # one flat row per measured step
        self._warned: set[tuple[str, str]] = set()

    def _warn(self, layer: str, kind: str, message: str) -> None:
        if (layer, kind) not in self._warned:
            self._warned.add((layer, kind))
            warnings.warn(message, GradientWarning, stacklevel=3)

    def check(self, stats: dict[str, dict[str, float]], step: int) -> None:
        """Warn about vanishing or noise-dominated layers in ``stats``."""
        for name, s in stats.items():
            if s["norm"] < self.vanish_tol:
                self._warn(name, "vanish", f"step {step}: gradient of layer {name!r} vanishes "
                           f"(norm {s['norm']:.2e} < {self.vanish_tol:g})")
            elif s.get("shot_snr", math.inf) < self.min_snr:
                self._warn(name, "shots", f"step {step}: gradient of layer {name!r} is dominated "
                           f"by shot noise (SNR {s['shot_snr']:.2f}); use more shots")
            elif s["snr"] < self.min_snr:
                self._warn(name, "snr", f"step {step}: gradient of layer {name!r} is dominated "
                           f"by noise (SNR {s['snr']:.2f}); use a larger batch or more shots")

    def measure(self, model: nn.Module, batch=None, step: int = 0) -> dict[str, float]:
        """Run :func:`gradient_flow` on ``batch`` (default: the probe), record and check it."""
        batch = self.probe if batch is None else batch
        if batch is None:
            raise ValueError("GradientFlowMonitor.measure needs a batch or a probe batch")
        with torch.random.fork_rng():  # dropout in the extra passes must not shift training's RNG
            stats = gradient_flow(model, batch, self.loss_fn, self.n_groups, self.repeats)
        self.check(stats, step)
        row = {"step": step}
        for name, s in stats.items():
            row.update({f"{name}/{key}": value for key, value in s.items()})
        self.history.append(row)
        return row

    @staticmethod
    def step_norms(model: nn.Module) -> dict[str, float]:
        """Per-layer norms of the gradients currently in ``.grad``."""
        out = {}
        for name, params in parameter_layers(model).items():
            grads = [p.grad.detach().reshape(-1) for p in params if p.grad is not None]
            if grads:
                out[name] = float(torch.cat(grads).double().norm())
        return out

    def on_step(self, trainer, step: int, metrics: dict | None = None) -> None:
        norms = self.step_norms(trainer.model)
        for name, norm in norms.items():
            if norm < self.vanish_tol:
                self._warn(name, "vanish", f"step {step}: gradient of layer {name!r} vanishes "
                           f"(norm {norm:.2e} < {self.vanish_tol:g})")
        if isinstance(metrics, dict):
            metrics.update({f"grad_norm/{name}": norm for name, norm in norms.items()})
        if self.probe is not None and self.every and step % self.every == 0:
            row = self.measure(trainer.model, step=step)
            if isinstance(metrics, dict):
                metrics.update({f"grad/{k}": v for k, v in row.items() if k != "step"})


__all__ = ["GradientFlowMonitor", "GradientWarning", "gradient_flow", "parameter_layers"]
