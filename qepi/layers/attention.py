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

from qepi.config import Backend, Circuit
from qepi.layers.feature_maps import CircuitMap, ClassicalMap

STYLES = ("qkv", "gaussian")


class _Attention(nn.Module):
    def __init__(self, core: nn.Module, d_model: int, n_heads: int, n_qubits: int,
                 style: str, causal: bool):
        super().__init__()
        if style not in STYLES:
            raise ValueError(f"unknown attention style {style!r} (known: {', '.join(STYLES)})")
        self.n_heads, self.n_qubits, self.style, self.causal = n_heads, n_qubits, style, causal
        self.to_angles = nn.Linear(d_model, 3 * n_heads * n_qubits)
        self.core = core  # 3 * n_heads copies: Q, K, V of every head
        self.out = nn.Linear(n_heads * n_qubits, d_model)
        self.last_weights: torch.Tensor | None = None  # (B, H, T, T) of the latest forward

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """x: (B, T, d_model); mask: (B, T), True where a token is real (not padding)."""
        b, t, _ = x.shape
        h, n = self.n_heads, self.n_qubits
        angles = self.to_angles(x).view(b, t, 3 * h, n)  # (B, T, 3H, n_qubits)
        values = self.core(angles)  # (B, T, 3H, n_qubits) in [-1, 1]
        q, k, v = values.view(b, t, 3, h, n).permute(2, 0, 3, 1, 4)  # each (B, H, T, n_qubits)
        if self.style == "qkv":
            scores = q @ k.transpose(-1, -2) / math.sqrt(n)  # (B, H, T, T)
        else:
            scores = -(q[..., 0:1] - k[..., 0].unsqueeze(-2)) ** 2  # (B, H, T, T)
        if mask is not None:
            scores = scores.masked_fill(~mask[:, None, None, :], torch.finfo(scores.dtype).min)
        if self.causal:
            future = torch.ones(t, t, dtype=torch.bool, device=x.device).triu(1)
            scores = scores.masked_fill(future, torch.finfo(scores.dtype).min)
        weights = torch.softmax(scores, dim=-1)  # (B, H, T, T)
        self.last_weights = weights.detach()
        heads = weights @ v  # (B, H, T, n_qubits)
        return self.out(heads.transpose(1, 2).reshape(b, t, h * n))  # (B, T, d_model)


class QuantumAttention(_Attention):
    """Multi-head attention with circuit-made Q, K, V (one batched execution per forward).

    Example:
        >>> import torch
        >>> attn = QuantumAttention(d_model=8, n_heads=2, circuit=Circuit(n_qubits=2, n_layers=1))
        >>> attn(torch.rand(3, 5, 8)).shape
        torch.Size([3, 5, 8])
    """

    def __init__(self, d_model: int, n_heads: int = 1, circuit: Circuit = Circuit(),
                 backend: Backend = Backend(), style: str = "qkv", causal: bool = False,
                 match_params: bool = False, seed: int = 0):
        core = CircuitMap(circuit, backend, copies=3 * n_heads, seed=seed)
        super().__init__(core, d_model, n_heads, circuit.n_qubits, style, causal)


class ClassicalAttention(_Attention):
    """The classical twin of :class:`QuantumAttention`: same arguments, shapes and range.

    Example:
        >>> import torch
        >>> attn = ClassicalAttention(d_model=8, n_heads=2, circuit=Circuit(n_qubits=2))
        >>> attn(torch.rand(3, 5, 8)).shape
        torch.Size([3, 5, 8])
    """

    def __init__(self, d_model: int, n_heads: int = 1, circuit: Circuit = Circuit(),
                 backend: Backend = Backend(), style: str = "qkv", causal: bool = False,
                 match_params: bool = False, seed: int = 0):
        core = ClassicalMap(circuit, copies=3 * n_heads, match_params=match_params)
        super().__init__(core, d_model, n_heads, circuit.n_qubits, style, causal)
