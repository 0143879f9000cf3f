"""Attention maps: the weights each head puts on every token, quantum beside classical.

Example:
    >>> import torch
    >>> from qepi.config import Config, update
    >>> from qepi.models import HybridTransformer, InputSpec
    >>> cfg = update(Config(), circuit={"n_qubits": 2, "n_layers": 1})
    >>> model = HybridTransformer(cfg, InputSpec(seq_len=5, n_classes=2, vocab_size=3))
    >>> maps = attention_maps(model, torch.randint(0, 3, (4, 5)))
    >>> {name: m.shape for name, m in maps.items()}  # (B, H, T, T)
    {'blocks.0.attention': (4, 2, 5, 5)}
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from qepi.errors import UserError
from qepi.layers import ForwardRecord


@torch.no_grad()
def attention_maps(model: nn.Module, x: torch.Tensor,
                   mask: torch.Tensor | None = None) -> dict[str, np.ndarray]:
    """Run ``model`` on ``x`` (eval mode) and return every attention layer's weights (B, H, T, T)."""
    was_training = model.training
    model.eval()
    record = ForwardRecord()
    try:
        model(x, mask, record=record)
    finally:
        model.train(was_training)
    return {name: w.double().numpy() for name, w in record.by_name(model, record.attention).items()}


def plot_attention(models: dict[str, nn.Module], x: torch.Tensor, path: str | Path,
                   mask: torch.Tensor | None = None, tokens: Sequence[Sequence[str]] | None = None,
                   titles: Sequence[str] | None = None) -> Path:
    """One row per input in ``x``, one column per (model, attention layer, head), side by side.

    Each row shares one colour scale (0 to the row's largest weight): rows are queries,
    columns keys.

    ``tokens[i]`` labels the axes of input ``i``; ``titles[i]`` names the row (e.g. its label).
    """
    from qepi.plotting import subplots

    columns = []  # (model label, layer name, head, maps)
    for label, model in models.items():
        for name, maps in attention_maps(model, x, mask).items():
            columns.extend((label, name, h, maps) for h in range(maps.shape[1]))
    if not columns:
        raise UserError("none of the models has an attention layer")
    n_rows, n_cols = x.shape[0], len(columns)
    fig, axes = subplots(n_rows, n_cols, figsize=(2.6 * n_cols + 0.8, 2.6 * n_rows), squeeze=False,
                             layout="constrained")
    for i in range(n_rows):
        t = int(mask[i].sum()) if mask is not None else x.shape[1]
        vmax = max(float(maps[i, h, :t, :t].max()) for _, _, h, maps in columns)  # one scale per row
        for j, (label, name, h, maps) in enumerate(columns):
            ax = axes[i, j]
            image = ax.imshow(maps[i, h, :t, :t], vmin=0.0, vmax=vmax, cmap="magma")
            if i == 0:
                block = name.split(".")[1] if name.startswith("blocks.") else name
                ax.set_title(f"{label}\nblock {block} head {h}", fontsize=8)
            if tokens is not None:
                ax.set_xticks(range(t), list(tokens[i])[:t], rotation=90, fontsize=6)
                ax.set_yticks(range(t), list(tokens[i])[:t], fontsize=6)
            else:
                ax.set_xticks([])
                ax.set_yticks([])
            if j == 0 and titles is not None:
                ax.set_ylabel(f"{titles[i]}\nquery", fontsize=8)
            if i == n_rows - 1:
                ax.set_xlabel("key", fontsize=8)
        fig.colorbar(image, ax=list(axes[i]), fraction=0.02)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path


__all__ = ["attention_maps", "plot_attention"]
