"""Shot-frugal optimisers for circuit weights: SPSA and Rosalin.

Both train the weights of a model's :class:`~qepi.layers.QuantumLayer` s; the classical
weights keep Adam on their backprop gradients (the :class:`~qepi.training.Trainer` holds
one optimiser of each kind). A step is a *gradient pass* (forward and backward on the batch,
inside :meth:`QuantumOptimizer.measuring`) and then ``step(closure)``, ``closure()``
returning the batch loss at the current weights without gradients.

- :class:`SPSA` (Spall 1992): the weights' gradient is estimated from two loss evaluations
  at θ ± c_k Δ with a random ±1 vector Δ: ĝ = (L(θ + c_k Δ) - L(θ - c_k Δ)) / (2 c_k) · Δ,
  then θ ← θ - a_k ĝ, with gains a_k = a / (k + 1 + A)^α and c_k = c / (k + 1)^γ
  (α = 0.602, γ = 0.101). During the gradient pass the layers' weights are detached
  (:meth:`QuantumLayer.set_weight_gradients`): parameter shift runs no weight-shifted
  circuit, only those of the inputs (for the classical weights before the circuits).
- :class:`Rosalin` (Arrasmith et al. 2020, the iCANS rule with PennyLane's
  ``ShotAdaptiveOptimizer`` bounds): plain gradient descent θ ← θ - α ĝ where each weight
  element i's parameter-shift circuits get their own shot count s_i, re-allocated after
  every step from running means (decay μ, bias-corrected) of the gradient χ_i and of its
  single-shot variance ξ_i:
  s_i = ⌈2 L α ξ_i / ((2 - L α)(χ_i² + b μ^k))⌉, clipped to [max(2, min_shots), s_j] where j
  maximises the expected gain per shot γ_i = ((α - L α²/2) χ_i² - ξ_i L α²/(2 s_i)) / s_i.
  The variance comes from the executor (:meth:`QuantumLayer.spending`): the sample
  variance of each shifted circuit's outcome values under the backward pass's gradient.

Shots are counted by the executors (``execution_stats``), so the training log and summary
hold what each optimiser really spent.

Example:
    >>> import torch
    >>> w = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
    >>> opt = SPSA([w], lr=0.2, perturbation=0.1, seed=0)
    >>> for _ in range(200):
    ...     _ = opt.step(lambda: (w ** 2).sum())
    >>> bool(w.abs().max() < 0.05)
    True
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch

from qepi.errors import UserError


class QuantumOptimizer(torch.optim.Optimizer):
    """An optimiser of circuit weights that needs a say in the gradient pass."""

    @contextlib.contextmanager
    def measuring(self) -> Iterator[None]:
        """Run the step's forward and backward pass inside this block."""
        yield

    def step_metrics(self) -> dict[str, float]:
        """Numbers to log with the step (gains, shot allocation)."""
        return {}


class SPSA(QuantumOptimizer):
    """Simultaneous perturbation stochastic approximation over ``params``.

    Args:
        params: the circuit weights (tensors or parameter groups).
        lr: gain a; perturbation: c; alpha, gamma: the gain exponents; stability: A.
        samples: perturbations Δ averaged per step (2 loss evaluations each).
        seed: Δ of step k, sample m is drawn from a generator seeded by (seed, k, m), so a
            resumed run draws the same Δ.
        layers: quantum layers whose weight gradients are switched off in :meth:`measuring`.
    """

    def __init__(self, params, lr: float = 0.2, perturbation: float = 0.15, alpha: float = 0.602,
                 gamma: float = 0.101, stability: float = 0.0, samples: int = 1, seed: int = 0,
                 layers: Sequence[Any] = ()):
        if lr <= 0 or perturbation <= 0:
            raise UserError(f"SPSA: lr and perturbation must be > 0, got {lr} and {perturbation}")
        if samples < 1:
            raise UserError(f"SPSA: samples must be >= 1, got {samples}")
        super().__init__(params, dict(lr=lr, perturbation=perturbation, alpha=alpha, gamma=gamma,
                                      stability=stability))
        self.samples, self.seed, self.layers = samples, seed, list(layers)
        self.state["step"] = 0
        self._last: dict[str, float] = {}

    @contextlib.contextmanager
    def measuring(self) -> Iterator[None]:
        """The gradient pass computes no gradient of the circuit weights."""
        for layer in self.layers:
            layer.set_weight_gradients(False)
        try:
            yield
        finally:
            for layer in self.layers:
                layer.set_weight_gradients(True)

    def gains(self, group: dict[str, Any], k: int) -> tuple[float, float]:
        """(a_k, c_k) of ``group`` at step ``k`` (0-based).

        >>> opt = SPSA([torch.zeros(1)], lr=1.0, perturbation=1.0, stability=1.0)
        >>> [round(g, 4) for g in opt.gains(opt.param_groups[0], 2)]
        [0.4341, 0.895]
        """
        a = group["lr"] / (k + 1 + group["stability"]) ** group["alpha"]
        c = group["perturbation"] / (k + 1) ** group["gamma"]
        return a, c

    def _directions(self, k: int, sample: int) -> list[list[torch.Tensor]]:
        """±1 perturbation Δ of every parameter, per group."""
        generator = torch.Generator().manual_seed((self.seed * 1_000_003 + k) * 101 + sample)
        return [[(torch.randint(0, 2, p.shape, generator=generator) * 2 - 1).to(p)
                 for p in group["params"]] for group in self.param_groups]

    def _shift(self, directions, scale: float) -> None:
        for group, deltas in zip(self.param_groups, directions):
            _, c = self.gains(group, self.state["step"])
            for p, delta in zip(group["params"], deltas):
                p.add_(delta, alpha=scale * c)

    @torch.no_grad()
    def step(self, closure: Callable[[], torch.Tensor]) -> torch.Tensor:  # type: ignore[override]
        """One SPSA step; ``closure()`` evaluates the loss at the current weights. Returns the
        mean of the perturbed losses."""
        if closure is None:
            raise UserError("SPSA.step needs a closure that evaluates the loss")
        k = self.state["step"]
        estimates = [[torch.zeros_like(p) for p in group["params"]] for group in self.param_groups]
        total = 0.0
        for sample in range(self.samples):
            directions = self._directions(k, sample)
            self._shift(directions, 1.0)
            plus = float(closure())
            self._shift(directions, -2.0)
            minus = float(closure())
            self._shift(directions, 1.0)
            total += plus + minus
            for group, deltas, sums in zip(self.param_groups, directions, estimates):
                _, c = self.gains(group, k)
                for delta, estimate in zip(deltas, sums):
                    estimate.add_(delta, alpha=(plus - minus) / (2 * c * self.samples))
        for group, sums in zip(self.param_groups, estimates):
            a, c = self.gains(group, k)
            for p, estimate in zip(group["params"], sums):
                p.sub_(estimate, alpha=a)
            self._last = {"spsa_a": a, "spsa_c": c}
        self.state["step"] = k + 1
        return torch.tensor(total / (2 * self.samples))

    def gradient_estimate(self, closure: Callable[[], torch.Tensor], k: int,
                          sample: int = 0) -> list[torch.Tensor]:
        """The SPSA gradient estimate of step ``k`` with perturbation ``sample``, weights
        left unchanged (for tests and diagnostics)."""
        with torch.no_grad():
            directions = self._directions(k, sample)
            saved, self.state["step"] = self.state["step"], k
            self._shift(directions, 1.0)
            plus = float(closure())
            self._shift(directions, -2.0)
            minus = float(closure())
            self._shift(directions, 1.0)
            self.state["step"] = saved
            out = []
            for group, deltas in zip(self.param_groups, directions):
                _, c = self.gains(group, k)
                out.extend(delta * (plus - minus) / (2 * c) for delta in deltas)
        return out

    def step_metrics(self) -> dict[str, float]:
        return dict(self._last)


def allocate_shots(chi: torch.Tensor, xi: torch.Tensor, lr: float, lipschitz: float,
                   mu: float, b: float, k: int, min_shots: int) -> torch.Tensor:
    """Rosalin's shot counts for the next step from the running gradient mean ``chi`` and
    single-shot variance ``xi`` (both already bias-corrected) of one weight tensor, after
    ``k`` + 1 steps.

    >>> chi, xi = torch.tensor([0.1, 0.3, 0.5]), torch.tensor([1.0, 1.0, 4.0])
    >>> allocate_shots(chi, xi, lr=0.1, lipschitz=2.0, mu=0.99, b=0.0, k=0, min_shots=2)
    tensor([4, 3, 4])
    """
    s = torch.ceil(2 * lipschitz * lr * xi / ((2 - lipschitz * lr) * (chi**2 + b * mu**k)))
    gamma = ((lr - lipschitz * lr**2 / 2) * chi**2 - xi * lipschitz * lr**2 / (2 * s)) / s
    s_max = max(float(s.flatten()[torch.argmax(gamma)]), 2.0)
    return torch.clamp(s, max(2, min_shots), s_max).to(torch.int64)


class Rosalin(QuantumOptimizer):
    """Rosalin: gradient descent with shots allocated per weight element (see the module docs).

    Args:
        layers: the quantum layers whose weights it trains (on aer, or exact with shots).
        lr: step size α (needs α · lipschitz < 2); lipschitz: the loss gradient's Lipschitz
            bound L; mu: decay of the running means; b: regularising bias;
            min_shots: the fewest shots of a shifted circuit (and every count at step 0).
    """

    def __init__(self, layers: Sequence[Any], lr: float = 0.1, lipschitz: float = 1.0,
                 mu: float = 0.99, b: float = 1e-6, min_shots: int = 10):
        if lr <= 0 or lipschitz <= 0 or lr * lipschitz >= 2:
            raise UserError(f"Rosalin: needs lr > 0, lipschitz > 0 and lr * lipschitz < 2, got "
                            f"lr={lr}, lipschitz={lipschitz}")
        if not 0 <= mu < 1 or min_shots < 2:
            raise UserError(f"Rosalin: needs 0 <= mu < 1 and min_shots >= 2, got mu={mu}, "
                            f"min_shots={min_shots}")
        self.layers = list(layers)
        params = [w for layer in self.layers for w in layer.qnode_weights.values()]
        super().__init__(params, dict(lr=lr, lipschitz=lipschitz, mu=mu, b=b, min_shots=min_shots))
        self.state["step"] = 0
        for p in params:
            # running means in the weight's dtype, as torch's load_state_dict restores them
            self.state[p].update(shots=torch.full(p.shape, min_shots, dtype=torch.int64),
                                 chi=torch.zeros_like(p, memory_format=torch.preserve_format),
                                 xi=torch.zeros_like(p, memory_format=torch.preserve_format),
                                 variance=torch.zeros_like(p, memory_format=torch.preserve_format))
        self._last: dict[str, float] = {}

    @contextlib.contextmanager
    def measuring(self) -> Iterator[None]:
        """The gradient pass runs each weight element's shifted circuits with its allocated
        shots and keeps the single-shot variances of the gradient estimates."""
        with contextlib.ExitStack() as stack:
            spent = [(layer, stack.enter_context(layer.spending(
                {name: self.state[w]["shots"] for name, w in layer.qnode_weights.items()})))
                for layer in self.layers]
            yield
        for layer, variances in spent:
            for name, w in layer.qnode_weights.items():
                self.state[w]["variance"] = variances[name].to(w.dtype)

    @torch.no_grad()
    def step(self, closure: Callable[[], torch.Tensor] | None = None):  # type: ignore[override]
        """θ ← θ - α ĝ, then the next step's shots (``closure`` is not needed)."""
        k = self.state["step"]
        allocated = []
        for group in self.param_groups:
            lr, mu = group["lr"], group["mu"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                grad = p.grad
                p.sub_(grad, alpha=lr)
                state["chi"] = mu * state["chi"] + (1 - mu) * grad
                state["xi"] = mu * state["xi"] + (1 - mu) * state["variance"]
                correction = 1 - mu ** (k + 1)
                state["shots"] = allocate_shots(state["chi"] / correction, state["xi"] / correction,
                                                lr, group["lipschitz"], mu, group["b"], k,
                                                group["min_shots"])
                allocated.append(state["shots"].flatten())
        self.state["step"] = k + 1
        if allocated:
            shots = torch.cat(allocated).to(torch.float64)
            self._last = {"rosalin_shots_mean": shots.mean().item(),
                          "rosalin_shots_max": shots.max().item()}
        return None

    def step_metrics(self) -> dict[str, float]:
        return dict(self._last)


def make_quantum_optimizer(name: str, layers: Sequence[Any], train: Any,
                           seed: int = 0) -> QuantumOptimizer:
    """The ``train.optimizer`` ``name`` (``spsa`` or ``rosalin``) over the weights of
    ``layers``, with the ``train.spsa_*`` / ``train.rosalin_*`` settings; a UserError when
    the model or backend cannot use it."""
    if not layers:
        raise UserError(f"train.optimizer={name!r} trains circuit weights and the model has no "
                        f"quantum layer; use 'adam'")
    if name == "spsa":
        params = [w for layer in layers for w in layer.qnode_weights.values()]
        return SPSA(params, lr=train.spsa_lr, perturbation=train.spsa_perturbation,
                    alpha=train.spsa_alpha, gamma=train.spsa_gamma, stability=train.spsa_stability,
                    samples=train.spsa_samples, seed=seed, layers=layers)
    for layer in layers:
        capabilities = layer.executor.capabilities
        if not (capabilities.shift_shots and layer.backend.shots > 0):
            raise UserError(f"train.optimizer='rosalin' allocates shots to parameter-shift "
                            f"circuits: it needs backend.shots > 0 on aer or exact (got "
                            f"backend.name={layer.backend.name!r}, shots={layer.backend.shots}); "
                            f"use 'spsa' or 'adam'")
        if layer.backend.mitigation:
            raise UserError(f"train.optimizer='rosalin' allocates shots from the variance of "
                            f"unmitigated estimates; with backend.mitigation="
                            f"{list(layer.backend.mitigation)} use 'spsa' or 'adam'")
    return Rosalin(layers, lr=train.rosalin_lr, lipschitz=train.rosalin_lipschitz,
                   mu=train.rosalin_mu, b=train.rosalin_b, min_shots=train.rosalin_min_shots)


__all__ = ["QuantumOptimizer", "Rosalin", "SPSA", "allocate_shots", "make_quantum_optimizer"]
