"""ForwardRecord: what one forward pass computed besides its output, collected explicitly.

Pass a record into a forward (``model(x, mask, record=record)``, or a layer's
``forward(..., record=record)``); each layer adds what it computed on the way: regulated
cores their regularization loss and the gates (or experts) every token used, attention
layers their weights. Nothing is kept on the modules, so another forward (a dev
evaluation, a diagnostic) never changes what an earlier record holds.

Example:
    >>> import torch
    >>> from qepi.config import Circuit
    >>> from qepi.layers import ClassicalAttention
    >>> attention = ClassicalAttention(d_model=4, n_heads=2, circuit=Circuit(n_qubits=2))
    >>> record = ForwardRecord()
    >>> out = attention(torch.rand(3, 5, 4), record=record)
    >>> record.attention[attention].shape  # (B, H, T, T)
    torch.Size([3, 2, 5, 5])
    >>> record.regularization_loss()  # no regulated layer ran
    tensor(0.)
"""

from __future__ import annotations

import torch
from torch import nn


class ForwardRecord:
    """Per module of one forward: regularization losses, expressed gates, routed experts and
    attention weights (all keyed by the module that produced them)."""

    def __init__(self) -> None:
        self.losses: dict[nn.Module, torch.Tensor] = {}  # regulated core -> scalar loss
        self.expressed: dict[nn.Module, torch.Tensor] = {}  # epigenetic core -> (..., K, P) bool
        self.routed: dict[nn.Module, torch.Tensor] = {}  # experts core -> (..., k) expert indices
        self.attention: dict[nn.Module, torch.Tensor] = {}  # attention layer -> (B, H, T, T)

    def regularization_loss(self) -> torch.Tensor:
        """Sum of the recorded regulation losses (expression penalty, load balancing); 0 when
        no regulated layer ran. Training adds it to the task loss."""
        losses = list(self.losses.values())
        return torch.stack(losses).sum() if losses else torch.zeros(())

    @staticmethod
    def by_name(model: nn.Module, entries: dict[nn.Module, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``entries`` (one of the record's dicts) keyed by module name inside ``model``."""
        return {name: entries[m] for name, m in model.named_modules() if m in entries}


__all__ = ["ForwardRecord"]
