"""Multi-head attention whose queries, keys and values come from circuits (or their twins).

Two styles:
- ``qkv``: Q, K and V of every head are each the ⟨Z⟩ vector of a variational circuit,
  then scaled dot-product softmax attention.
- ``gaussian`` (QSANN): q and k are the scalar ⟨Z_0⟩ of their circuits; the weights are
  exp(-(q_i - k_j)²) normalised over j; v is the circuit's ⟨Z⟩ vector.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from qepi.config import AttentionStyle, Backend, Circuit
from qepi.layers.feature_maps import CircuitMap, ClassicalMap
from qepi.layers.record import ForwardRecord


def dot_product_scores(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """``qkv``: q·k / sqrt(n) for q, k (B, H, T, n) -> (B, H, T, T)."""
    return q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])


def gaussian_scores(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """``gaussian`` (QSANN): -(q_i - k_j)² of the first components -> (B, H, T, T)."""
    return -(q[..., 0:1] - k[..., 0].unsqueeze(-2)) ** 2


SCORES = {"qkv": dot_product_scores, "gaussian": gaussian_scores}  # one per config.AttentionStyle


class AttentionLayer(nn.Module):
    """Angles of Q, K, V from the input, ``core`` evaluates them, softmax attention over the
    values; subclasses choose the core."""

    def __init__(self, core: nn.Module, d_model: int, n_heads: int, n_qubits: int,
                 style: AttentionStyle, causal: bool):
        super().__init__()
        self.n_heads, self.n_qubits, self.style, self.causal = n_heads, n_qubits, style, causal
        self.scores = SCORES[style]
        self.to_angles = nn.Linear(d_model, 3 * n_heads * n_qubits)
        self.core = core  # 3 * n_heads copies: Q, K, V of every head
        self.out = nn.Linear(n_heads * n_qubits, d_model)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None,
                record: ForwardRecord | None = None) -> torch.Tensor:
        """x: (B, T, d_model); mask: (B, T), True where a token is real (not padding);
        ``record`` receives the attention weights (B, H, T, T)."""
        b, t, _ = x.shape
        h, n = self.n_heads, self.n_qubits
        angles = self.to_angles(x).view(b, t, 3 * h, n)  # (B, T, 3H, n_qubits)
        values = self.run_core(angles, record)  # (B, T, 3H, n_qubits) in [-1, 1]
        q, k, v = values.view(b, t, 3, h, n).permute(2, 0, 3, 1, 4)  # each (B, H, T, n_qubits)
        scores = self.scores(q, k)  # (B, H, T, T)
        if mask is not None:
            scores = scores.masked_fill(~mask[:, None, None, :], torch.finfo(scores.dtype).min)
        if self.causal:
            future = torch.ones(t, t, dtype=torch.bool, device=x.device).triu(1)
            scores = scores.masked_fill(future, torch.finfo(scores.dtype).min)
        weights = torch.softmax(scores, dim=-1)  # (B, H, T, T)
        if record is not None:
            record.attention[self] = weights.detach()
        heads = weights @ v  # (B, H, T, n_qubits)
        return self.out(heads.transpose(1, 2).reshape(b, t, h * n))  # (B, T, d_model)

    def run_core(self, angles: torch.Tensor, record: ForwardRecord | None) -> torch.Tensor:
        """angles (B, T, 3H, n_qubits) -> values of the same shape; a plain core records nothing."""
        return self.core(angles)


class QuantumAttention(AttentionLayer):
    """Multi-head attention with circuit-made Q, K, V (one batched execution per forward).

    Example:
        >>> import torch
        >>> attn = QuantumAttention(d_model=8, n_heads=2, circuit=Circuit(n_qubits=2, n_layers=1))
        >>> attn(torch.rand(3, 5, 8)).shape
        torch.Size([3, 5, 8])
    """

    def __init__(self, d_model: int, n_heads: int = 1, circuit: Circuit = Circuit(),
                 backend: Backend = Backend(), style: AttentionStyle = "qkv", causal: bool = False,
                 seed: int = 0):
        core = CircuitMap(circuit, backend, copies=3 * n_heads, seed=seed)
        super().__init__(core, d_model, n_heads, circuit.n_qubits, style, causal)


class ClassicalAttention(AttentionLayer):
    """The classical twin of :class:`QuantumAttention`: the same shapes and range, with
    ``match_params`` widened to about the circuits' parameter count.

    Example:
        >>> import torch
        >>> attn = ClassicalAttention(d_model=8, n_heads=2, circuit=Circuit(n_qubits=2))
        >>> attn(torch.rand(3, 5, 8)).shape
        torch.Size([3, 5, 8])
    """

    def __init__(self, d_model: int, n_heads: int = 1, circuit: Circuit = Circuit(),
                 style: AttentionStyle = "qkv", causal: bool = False, match_params: bool = False):
        core = ClassicalMap(circuit, copies=3 * n_heads, match_params=match_params)
        super().__init__(core, d_model, n_heads, circuit.n_qubits, style, causal)
