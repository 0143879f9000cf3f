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

from qepi.config import Config, LayerKind, RegulationKind
from qepi.layers import (
    ClassicalAttention,
    ClassicalEmbedding,
    ClassicalEpigeneticMap,
    ClassicalExpertsMap,
    EpigeneticMap,
    ExpertsMap,
    ForwardRecord,
    QuantumAttention,
    QuantumEmbedding,
    QuantumLayer,
    RegulatedAttention,
    RegulatedEmbedding,
)
from qepi.layers.attention import AttentionLayer
from qepi.layers.embedding import EmbeddingLayer
from qepi.layers.epigenetic import Regulated
from qepi.layers.experts import Routed


@dataclass(frozen=True)
class InputSpec:
    """What the data looks like; stored in checkpoints so a model can be rebuilt."""

    seq_len: int  # tokens per example
    n_classes: int
    vocab_size: int = 0  # > 0 for token ids (B, T)
    n_features: int = 0  # > 0 for feature vectors (B, T, F)


def regulated_core(cfg: Config, kind: LayerKind, regulation: RegulationKind, copies: int,
                   seed: int) -> Regulated | Routed:
    """The regulated core of a ``kind`` layer: ``epigenetic`` marks or routed ``experts``, on
    the circuit or on its classical twin, so a quantum layer and its twin get the same
    regulation."""
    c, r, match = cfg.circuit, cfg.regulation, cfg.model.match_params
    if regulation == "epigenetic":
        if kind == "quantum":
            return EpigeneticMap(c, cfg.backend, copies, r, seed=seed)
        return ClassicalEpigeneticMap(c, copies, r, match_params=match)
    if kind == "quantum":
        return ExpertsMap(c, cfg.backend, copies, r, seed=seed)
    return ClassicalExpertsMap(c, copies, r, match_params=match)


def make_embedding(cfg: Config, inputs: InputSpec) -> EmbeddingLayer:
    """The embedding ``model.embedding`` and ``regulation.embedding`` describe."""
    m, seed = cfg.model, cfg.run.seed
    vocab_size, n_features = inputs.vocab_size or None, inputs.n_features or None
    if cfg.regulation.embedding:
        core = regulated_core(cfg, m.embedding, cfg.regulation.embedding, copies=1, seed=seed)
        return RegulatedEmbedding(m.d_model, core, vocab_size, n_features)
    if m.embedding == "quantum":
        return QuantumEmbedding(m.d_model, cfg.circuit, cfg.backend, vocab_size, n_features, seed=seed)
    return ClassicalEmbedding(m.d_model, cfg.circuit, vocab_size, n_features, match_params=m.match_params)


def make_attention(cfg: Config, seed: int) -> AttentionLayer:
    """The attention ``model.attention`` and ``regulation.attention`` describe (Q, K, V of
    every head: 3 · n_heads circuit copies)."""
    m = cfg.model
    if cfg.regulation.attention:
        core = regulated_core(cfg, m.attention, cfg.regulation.attention, copies=3 * m.n_heads, seed=seed)
        return RegulatedAttention(m.d_model, m.n_heads, core, m.attention_style, m.causal)
    if m.attention == "quantum":
        return QuantumAttention(m.d_model, m.n_heads, cfg.circuit, cfg.backend, m.attention_style,
                                m.causal, seed=seed)
    return ClassicalAttention(m.d_model, m.n_heads, cfg.circuit, m.attention_style, m.causal,
                              match_params=m.match_params)


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(LN(x)), then x + FF(LN(x))."""

    def __init__(self, cfg: Config, seed: int):
        super().__init__()
        m = cfg.model
        self.norm1 = nn.LayerNorm(m.d_model)
        self.attention = make_attention(cfg, seed)
        self.norm2 = nn.LayerNorm(m.d_model)
        self.ff = nn.Sequential(
            nn.Linear(m.d_model, m.d_ff), nn.GELU(), nn.Linear(m.d_ff, m.d_model),
            nn.Dropout(m.dropout),
        )

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None,
                record: ForwardRecord | None = None) -> torch.Tensor:
        x = x + self.attention(self.norm1(x), mask, record)  # (B, T, d_model)
        return x + self.ff(self.norm2(x))  # (B, T, d_model)


def pool_mean(h: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean over the real tokens: (B, T, d_model), (B, T) -> (B, d_model)."""
    if mask is None:
        return h.mean(dim=1)
    weights = mask.to(h.dtype).unsqueeze(-1)  # (B, T, 1)
    return (h * weights).sum(1) / weights.sum(1).clamp(min=1)


def pool_first(h: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """The first token: (B, T, d_model) -> (B, d_model)."""
    return h[:, 0]


def pool_last(h: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """The last position: (B, T, d_model) -> (B, d_model)."""
    return h[:, -1]


POOLING = {"mean": pool_mean, "first": pool_first, "last": pool_last}  # one per config.Pooling


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
        self.cfg, self.inputs = cfg, inputs
        self.pool = POOLING[m.pooling]
        self.embedding = make_embedding(cfg, inputs)
        self.position = nn.Parameter(torch.zeros(inputs.seq_len, m.d_model))
        self.dropout = nn.Dropout(m.dropout)
        self.blocks = nn.ModuleList(Block(cfg, seed=cfg.run.seed + 1 + i) for i in range(m.n_blocks))
        self.norm = nn.LayerNorm(m.d_model)
        self.head = nn.Linear(m.d_model, inputs.n_classes)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None,
                record: ForwardRecord | None = None) -> torch.Tensor:
        """x: token ids (B, T) or features (B, T, F); mask: (B, T) True for real tokens.

        ``record`` receives what the layers computed on the way (regulation losses, expressed
        gates, attention weights); the Trainer passes one to add the regulation losses.
        """
        if record is None:  # nobody asked for the auxiliary results
            record = ForwardRecord()
        t = x.shape[1]
        h = self.dropout(self.embedding(x, record) + self.position[:t])  # (B, T, d_model)
        for block in self.blocks:
            h = block(h, mask, record)
        return self.head(self.pool(self.norm(h), mask))  # (B, n_classes)

    def quantum_layers(self) -> list[QuantumLayer]:
        """Every QuantumLayer inside the model."""
        return [m for m in self.modules() if isinstance(m, QuantumLayer)]

    def set_backend(self, backend) -> None:
        """Run every quantum layer on another backend (staged training: exact -> aer)."""
        for layer in self.quantum_layers():
            layer.set_backend(backend)


def count_parameters(module: nn.Module, trainable_only: bool = True) -> int:
    """Number of (trainable) scalar parameters in ``module``."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)
