"""Quantum experts: E circuit experts per copy and a router that sends each token to its top-k.

A router (one Linear layer) reads the token's context and gives probabilities over the E
experts; the token runs through its k most probable experts only, and the outputs are
summed weighted by those probabilities (as in the Switch Transformer, so the router learns
from the task). A load-balancing loss E·Σ_e f_e·P_e (f_e: fraction of routed slots that
go to expert e, P_e: mean router probability of e) keeps the experts in use; it is 1 when
the load is even.

Every routed (token, expert) pair becomes one circuit row whose inputs carry the token's
angles followed by that expert's weights: only the chosen circuits run, as ONE batched
execution of N·k·K rows, on any backend. The active circuit parameters per token are
k·K·P of the genome's E·K·P.

The routing of a forward and its loss go into a :class:`~qepi.layers.record.ForwardRecord`
passed to it.

Example:
    >>> import torch
    >>> from qepi.config import Circuit, Regulation
    >>> from qepi.layers.record import ForwardRecord
    >>> experts = ExpertsMap(Circuit(n_qubits=2, n_layers=1), regulation=Regulation(n_experts=4, top_k=2))
    >>> record = ForwardRecord()
    >>> experts(torch.rand(5, 1, 2), record=record).shape  # angles (N, K, n_qubits) -> (N, K, n_qubits)
    torch.Size([5, 1, 2])
    >>> report = experts.report(record)
    >>> report["active_params_per_token"], report["params_per_token"]
    (12, 24)
"""

from __future__ import annotations

import math

import torch
from torch import nn

from qepi.circuits import build_circuit
from qepi.config import Backend, Circuit, Regulation
from qepi.errors import UserError
from qepi.layers.feature_maps import ClassicalMap
from qepi.layers.quantum_layer import QuantumLayer
from qepi.layers.record import ForwardRecord


def experts_qfunc(qfunc, n_qubits: int, shape: tuple[int, ...]):
    """Wrap ``qfunc(angles, weights)`` into ``circuit(inputs)`` whose inputs per row are
    [angles (n_qubits), the expert's weights (prod(shape))]."""

    def circuit(inputs):
        weights = inputs[..., n_qubits:].reshape(*inputs.shape[:-1], *shape)  # (R, *shape)
        return qfunc(inputs[..., :n_qubits], weights)

    circuit.__name__ = f"experts_{getattr(qfunc, '__name__', 'circuit')}"
    return circuit


class Routed(nn.Module):
    """Router, top-k choice, load-balancing loss and the report shared by both kinds."""

    def __init__(self, regulation: Regulation, d_context: int, copies: int, params_per_expert: int):
        super().__init__()
        e, k = regulation.n_experts, regulation.top_k
        if k > e:
            raise UserError(f"regulation.top_k: need top_k <= n_experts, got top_k={k}, n_experts={e}")
        self.regulation, self.n_experts, self.top_k = regulation, e, k
        self.copies, self.params_per_expert = copies, params_per_expert
        self.router = nn.Linear(d_context, e)

    def route(self, angles: torch.Tensor, context: torch.Tensor | None, record: ForwardRecord | None):
        """(top-k probabilities (N, k), expert indices (N, k)) for the N tokens of ``angles``;
        ``record`` receives the load-balancing loss and the choice."""
        context = angles.flatten(-2) if context is None else context  # (..., d_context)
        logits = self.router(context.to(self.router.weight.dtype))  # (..., E)
        probs = torch.softmax(logits, dim=-1).reshape(-1, self.n_experts)  # (N, E)
        top, index = probs.topk(self.top_k, dim=-1)  # (N, k) each
        load = torch.zeros(self.n_experts, dtype=probs.dtype, device=probs.device)
        load = load.index_add(0, index.flatten(), torch.ones_like(index.flatten(), dtype=probs.dtype))
        fraction = load / index.numel()  # (E,) share of routed slots, no gradient
        if record is not None:
            balance = self.n_experts * (fraction * probs.mean(0)).sum()
            record.losses[self] = self.regulation.balance * balance
            record.routed[self] = index.reshape(*angles.shape[:-2], self.top_k).detach()
        return top, index

    def _choice(self, record: ForwardRecord) -> torch.Tensor:
        if self not in record.routed:
            raise UserError(f"{type(self).__name__}: the record holds no forward of this layer")
        return record.routed[self]

    def expert_load(self, record: ForwardRecord) -> torch.Tensor:
        """Fraction of the recorded tokens' routed slots that went to each expert: (E,)."""
        choice = self._choice(record)  # (..., k)
        return torch.bincount(choice.flatten(), minlength=self.n_experts) / choice.numel()

    def report(self, record: ForwardRecord) -> dict[str, float]:
        """Active (routed) and total genome parameters per token, over all copies, of a layer
        that ran in the recorded forward."""
        self._choice(record)
        total = self.n_experts * self.copies * self.params_per_expert
        return {"expression_ratio": self.top_k / self.n_experts, "params_per_token": total,
                "active_params_per_token": self.top_k * self.copies * self.params_per_expert}

    @staticmethod
    def combine(values: torch.Tensor, top: torch.Tensor, lead: torch.Size) -> torch.Tensor:
        """values (N, k, K, out) weighted by top (N, k) and summed -> (*lead, K, out)."""
        out = (values * top[:, :, None, None].to(values.dtype)).sum(1)  # (N, K, out)
        return out.reshape(*lead, *out.shape[1:])


class ExpertsMap(Routed):
    """K copies of a layer of E circuit experts (a drop-in for CircuitMap); one routing per
    token chooses the experts of all K copies.

    ``forward(angles, context=None, record=None)``: angles (..., K, n_qubits) -> (..., K,
    n_qubits); the router reads ``context`` (..., d_context), by default the token's angles
    of every copy.
    """

    def __init__(self, circuit: Circuit, backend: Backend = Backend(), copies: int = 1,
                 regulation: Regulation = Regulation(), d_context: int | None = None, seed: int = 0):
        spec = build_circuit(circuit)
        self.shape = spec.weight_shapes["weights"]
        n = spec.n_qubits
        super().__init__(regulation, d_context or copies * n, copies, math.prod(self.shape))
        self.n_inputs = self.n_outputs = spec.n_outputs
        e = regulation.n_experts
        self.weights = nn.Parameter(torch.empty(copies, e, *self.shape).uniform_(0.0, 2 * math.pi))
        self.layer = QuantumLayer(experts_qfunc(spec.qfunc, n, self.shape), {}, n_qubits=n,
                                  backend=backend, seed=seed)

    def forward(self, angles: torch.Tensor, context: torch.Tensor | None = None,
                record: ForwardRecord | None = None) -> torch.Tensor:
        lead = angles.shape[:-2]
        top, index = self.route(angles, context, record)  # (N, k)
        rows = angles.reshape(-1, 1, self.copies, angles.shape[-1])  # (N, 1, K, n_qubits)
        n, k = index.shape
        flat = self.weights.flatten(2)  # (K, E, P)
        chosen = flat[torch.arange(self.copies)[None, None, :], index[:, :, None]]  # (N, k, K, P)
        inputs = torch.cat([rows.expand(n, k, -1, -1), chosen.to(angles.dtype)], dim=-1)
        values = self.layer(inputs)  # (N, k, K, n_outputs): one batched execution
        return self.combine(values, top, lead)


class ClassicalExpertsMap(Routed):
    """The classical twin of :class:`ExpertsMap`: E twin maps (``tanh(Linear)``, or with
    ``match_params`` a hidden layer) per copy behind the same router and loss.

    Example:
        >>> import torch
        >>> twin = ClassicalExpertsMap(Circuit(n_qubits=2), copies=3, regulation=Regulation(n_experts=2))
        >>> twin(torch.rand(4, 5, 3, 2)).shape
        torch.Size([4, 5, 3, 2])
    """

    def __init__(self, circuit: Circuit, copies: int = 1, regulation: Regulation = Regulation(),
                 d_context: int | None = None, match_params: bool = False):
        e = regulation.n_experts
        twin = ClassicalMap(circuit, copies=copies * e, match_params=match_params)
        per_expert = sum(w[0].numel() + b[0].numel() for w, b in zip(twin.weights, twin.biases))
        super().__init__(regulation, d_context or copies * circuit.n_qubits, copies, per_expert)
        self.n_inputs = self.n_outputs = circuit.n_qubits
        self.twin = twin  # copy c, expert j is twin copy c·E + j

    def forward(self, angles: torch.Tensor, context: torch.Tensor | None = None,
                record: ForwardRecord | None = None) -> torch.Tensor:
        lead = angles.shape[:-2]
        top, index = self.route(angles, context, record)  # (N, k)
        x = angles.reshape(-1, 1, self.copies, angles.shape[-1])  # (N, 1, K, n_qubits)
        x = x.expand(-1, self.top_k, -1, -1)  # (N, k, K, n_qubits)
        which = torch.arange(self.copies)[None, None, :] * self.n_experts + index[:, :, None]  # (N, k, K)
        for w, b in zip(self.twin.weights, self.twin.biases):
            x = torch.tanh(torch.einsum("nkci,nkcio->nkco", x, w[which]) + b[which])  # (N, k, K, out)
        return self.combine(x, top, lead)


__all__ = ["ClassicalExpertsMap", "ExpertsMap", "Routed", "experts_qfunc"]
