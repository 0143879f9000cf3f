"""HybridTransformer: a small transformer whose embedding and attention are quantum or classical.

A quantum model and its classical twin differ by one config value (``model.embedding`` /
``model.attention``); everything else (positions, norms, feed-forward, head) is shared.
``regulation.embedding`` / ``regulation.attention`` regulate a layer of either kind the same
way (epigenetic marks or routed experts, see :mod:`qepi.layers.epigenetic`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from qepi.config import Config
from qepi.layers import (
    ClassicalAttention,
    ClassicalEmbedding,
    QuantumAttention,
    QuantumEmbedding,
    RegulatedAttention,
    RegulatedEmbedding,
)
from qepi.layers.epigenetic import regularization_loss

KINDS = ("quantum", "classical")


@dataclass(frozen=True)
class InputSpec:
    """What the data looks like; stored in checkpoints so a model can be rebuilt."""

    seq_len: int  # tokens per example
    n_classes: int
    vocab_size: int = 0  # > 0 for token ids (B, T)
    n_features: int = 0  # > 0 for feature vectors (B, T, F)


def _layer_class(key: str, kind: str, regulation, regulation_kind: str,
                 quantum_cls: type, classical_cls: type, regulated_cls: type) -> tuple[type, dict]:
    """The class of a ``kind`` (quantum | classical) layer and its extra arguments. A regulated
    layer wraps either kind, so a quantum layer and its twin get the same regulation."""
    if kind not in KINDS:
        raise ValueError(f"{key}: unknown layer kind {kind!r} (known: {', '.join(KINDS)})")
    if regulation_kind:
        return regulated_cls, dict(regulation=regulation, kind=regulation_kind,
                                   quantum=kind == "quantum")
    return (quantum_cls if kind == "quantum" else classical_cls), {}


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(LN(x)), then x + FF(LN(x))."""

    def __init__(self, cfg: Config, seed: int):
        super().__init__()
        m = cfg.model
        attention_cls, regulated = _layer_class(
            "model.attention", m.attention, cfg.regulation, cfg.regulation.attention,
            QuantumAttention, ClassicalAttention, RegulatedAttention)
        self.norm1 = nn.LayerNorm(m.d_model)
        self.attention = attention_cls(
            m.d_model, m.n_heads, cfg.circuit, cfg.backend, style=m.attention_style,
            causal=m.causal, match_params=m.match_params, seed=seed, **regulated,
        )
        self.norm2 = nn.LayerNorm(m.d_model)
        self.ff = nn.Sequential(
            nn.Linear(m.d_model, m.d_ff), nn.GELU(), nn.Linear(m.d_ff, m.d_model),
            nn.Dropout(m.dropout),
        )

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        x = x + self.attention(self.norm1(x), mask)  # (B, T, d_model)
        return x + self.ff(self.norm2(x))  # (B, T, d_model)


class HybridTransformer(nn.Module):
    """Embedding -> positions -> N blocks -> norm -> pooling -> classifier.

    Example:
        >>> import torch
        >>> from qepi.config import Config, update
        >>> cfg = update(Config(), circuit={"n_qubits": 2, "n_layers": 1})
        >>> model = HybridTransformer(cfg, InputSpec(seq_len=6, n_classes=3, vocab_size=4))
        >>> model(torch.randint(0, 4, (2, 6))).shape  # (B, T) token ids -> (B, n_classes)
        torch.Size([2, 3])
    """

    def __init__(self, cfg: Config, inputs: InputSpec):
        super().__init__()
        m = cfg.model
        if m.pooling not in ("mean", "first", "last"):
            raise ValueError(f"model.pooling: unknown pooling {m.pooling!r} (mean, first, last)")
        self.cfg, self.inputs = cfg, inputs
        embedding_cls, regulated = _layer_class(
            "model.embedding", m.embedding, cfg.regulation, cfg.regulation.embedding,
            QuantumEmbedding, ClassicalEmbedding, RegulatedEmbedding)
        self.embedding = embedding_cls(
            m.d_model, cfg.circuit, cfg.backend,
            vocab_size=inputs.vocab_size or None, n_features=inputs.n_features or None,
            match_params=m.match_params, seed=cfg.run.seed, **regulated,
        )
        self.position = nn.Parameter(torch.zeros(inputs.seq_len, m.d_model))
        self.dropout = nn.Dropout(m.dropout)
        self.blocks = nn.ModuleList(Block(cfg, seed=cfg.run.seed + 1 + i) for i in range(m.n_blocks))
        self.norm = nn.LayerNorm(m.d_model)
        self.head = nn.Linear(m.d_model, inputs.n_classes)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """x: token ids (B, T) or features (B, T, F); mask: (B, T) True for real tokens."""
        t = x.shape[1]
        h = self.dropout(self.embedding(x) + self.position[:t])  # (B, T, d_model)
        for block in self.blocks:
            h = block(h, mask)
        h = self.norm(h)
        if self.cfg.model.pooling == "first":
            pooled = h[:, 0]
        elif self.cfg.model.pooling == "last":
            pooled = h[:, -1]
        elif mask is None:
            pooled = h.mean(dim=1)
        else:
            weights = mask.to(h.dtype).unsqueeze(-1)  # (B, T, 1)
            pooled = (h * weights).sum(1) / weights.sum(1).clamp(min=1)
        return self.head(pooled)  # (B, n_classes)

    def quantum_layers(self):
        """Every QuantumLayer inside the model."""
        from qepi.layers import QuantumLayer

        return [m for m in self.modules() if isinstance(m, QuantumLayer)]

    def regularization_loss(self) -> torch.Tensor:
        """Regulation losses of the latest forward (expression penalty, load balancing); 0 without
        ``cfg.regulation``. Training adds it to the task loss."""
        return regularization_loss(self)

    def set_backend(self, backend) -> None:
        """Run every quantum layer on another backend (staged training: exact -> aer)."""
        for layer in self.quantum_layers():
            layer.set_backend(backend)


def count_parameters(module: nn.Module, trainable_only: bool = True) -> int:
    """Number of (trainable) scalar parameters in ``module``."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)
