"""Entropies of a hybrid model: entanglement of token states, predictions, attention heads.

- :func:`entanglement_entropy`: von Neumann entropy (nats) of a statevector across a
  bipartition of its wires, from the Schmidt coefficients.
- :func:`token_entanglement_entropy`: that entropy for the circuit state of every token
  (and every copy: Q, K, V of each head) of every quantum layer in a model. The state is
  recomputed exactly on ``default.qubit`` from the inputs the layer saw, whatever backend
  the layer trains on.
- :func:`shannon_entropy`, :func:`predictive_entropy`, :func:`attention_entropy`: Shannon
  entropies (nats) of the predictive distribution and of each attention head's weights.
- :class:`EntropyMonitor`: all of these on a fixed probe batch once per epoch, as a
  training callback.

Example:
    >>> import numpy as np
    >>> bell = np.array([1, 0, 0, 1]) / np.sqrt(2)
    >>> bool(np.isclose(entanglement_entropy(bell, [0]), np.log(2)))  # a Bell pair: ln 2
    True
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from qepi.backends import broadcast_weights
from qepi.diagnostics.states import circuit_states
from qepi.layers import ForwardRecord, QuantumLayer


def entanglement_entropy(states: np.ndarray, wires_a: Sequence[int]) -> np.ndarray:
    """Von Neumann entropy (nats) of subsystem ``wires_a`` for each statevector in (..., 2**n).

    Returns an array with the leading shape of ``states``. Wire 0 is the most significant bit.
    """
    states = np.asarray(states)
    lead, dim = states.shape[:-1], states.shape[-1]
    n = int(round(np.log2(dim)))
    wires_a = sorted(set(int(w) for w in wires_a))
    if not wires_a or 2**n != dim or any(w < 0 or w >= n for w in wires_a):
        raise ValueError(f"wires_a={wires_a} is not a proper subset of the {n} wires")
    wires_b = [w for w in range(n) if w not in wires_a]
    psi = states.reshape(-1, *([2] * n))  # (S, 2, ..., 2)
    psi = psi.transpose(0, *[1 + w for w in wires_a + wires_b])
    psi = psi.reshape(psi.shape[0], 2 ** len(wires_a), 2 ** len(wires_b))  # (S, dim_a, dim_b)
    schmidt = np.linalg.svd(psi, compute_uv=False)  # (S, min(dim_a, dim_b))
    p = schmidt**2
    terms = np.where(p > 1e-15, -p * np.log(np.where(p > 1e-15, p, 1.0)), 0.0)
    return terms.sum(-1).reshape(lead)


def shannon_entropy(probs: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Shannon entropy (nats) of distributions along ``dim`` (0 log 0 = 0).

    >>> shannon_entropy(torch.tensor([[0.5, 0.5], [1.0, 0.0]]))
    tensor([0.6931, 0.0000])
    """
    logs = torch.where(probs > 0, probs.clamp_min(1e-300).log(), torch.zeros_like(probs))
    return -(probs * logs).sum(dim) + 0.0  # + 0.0 turns -0.0 into 0.0


def predictive_entropy(logits: torch.Tensor) -> torch.Tensor:
    """Mean Shannon entropy (nats) of the softmax predictive distributions of (B, C) logits."""
    return shannon_entropy(torch.softmax(logits.detach().double(), -1)).mean()


def attention_entropy(model: nn.Module, record: ForwardRecord,
                      mask: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Mean entropy (nats) of each head's attention weights in the forward of ``model`` that
    ``record`` holds (``mask``: that forward's (B, T) mask).

    Returns {module name: (H,) tensor}, averaged over the batch and the (real) query tokens.
    """
    out = {}
    for name, weights in record.by_name(model, record.attention).items():  # (B, H, T, T) each
        ent = shannon_entropy(weights.double())  # (B, H, T)
        if mask is None:
            out[name] = ent.mean(dim=(0, 2))
        else:
            keep = mask[:, None, :].to(ent.dtype)  # (B, 1, T)
            out[name] = (ent * keep).sum(dim=(0, 2)) / keep.sum(dim=(0, 2)).clamp_min(1)
    return out


def _quantum_layers(model: nn.Module) -> dict[str, nn.Module]:
    return {name: m for name, m in model.named_modules() if isinstance(m, QuantumLayer)}


def layer_states(layer: nn.Module, inputs: torch.Tensor) -> np.ndarray:
    """Exact statevectors of a QuantumLayer's circuit for ``inputs``: (..., [K,] 2**n).

    ``inputs`` has the shape the layer is called with: (..., F), or (..., K, F) with copies.
    """
    k = layer.copies
    lead = inputs.shape[:-2] if k > 1 else inputs.shape[:-1]
    rows = inputs.detach().double().reshape(-1, k, inputs.shape[-1])  # (N, K, F)
    weights = {name: w.detach().double() for name, w in layer.per_copy_weights().items()}
    row_weights = broadcast_weights(weights, rows.shape[0])
    flat = rows.reshape(-1, rows.shape[-1]).numpy()  # (N*K, F)
    states = circuit_states(layer.qfunc, layer.n_qubits, flat,
                            **{name: w.numpy() for name, w in row_weights.items()})
    states = np.broadcast_to(states, (flat.shape[0], states.shape[-1]))
    return states.reshape(*lead, *([k] if k > 1 else []), states.shape[-1])


def _forward_capturing(model: nn.Module, x: torch.Tensor, mask: torch.Tensor | None,
                       record: ForwardRecord | None = None):
    """One forward of ``model`` (with ``record``); returns its output and the input of every
    QuantumLayer."""
    layers = _quantum_layers(model)
    seen: dict[str, torch.Tensor] = {}
    hooks = [m.register_forward_hook(lambda mod, args, out, name=name: seen.__setitem__(name, args[0]))
             for name, m in layers.items()]
    try:
        out = model(x, mask, record=record)
    finally:
        for hook in hooks:
            hook.remove()
    return out, {name: (layers[name], inputs) for name, inputs in seen.items()}


def _entropies(captured: dict, wires_a: Sequence[int] | None) -> dict[str, np.ndarray]:
    out = {}
    for name, (layer, inputs) in captured.items():
        if layer.n_qubits < 2:
            continue
        part = list(wires_a) if wires_a is not None else list(range(max(1, layer.n_qubits // 2)))
        out[name] = entanglement_entropy(layer_states(layer, inputs), part)
    return out


@torch.no_grad()
def token_entanglement_entropy(model: nn.Module, x: torch.Tensor, mask: torch.Tensor | None = None,
                               wires_a: Sequence[int] | None = None) -> dict[str, np.ndarray]:
    """Entanglement entropy of every token's circuit state in every quantum layer of ``model``.

    Runs one forward on ``x`` and returns {layer name: entropies} with the leading shape of
    that layer's inputs, e.g. (B, T) for an embedding and (B, T, 3H) for attention.
    ``wires_a`` defaults to the first half of the wires (rounded down, at least one).
    """
    _, captured = _forward_capturing(model, x, mask)
    return _entropies(captured, wires_a)


class EntropyMonitor:
    """Training callback: entropies of the model on a fixed probe batch after every epoch.

    Records predictive entropy, each attention head's weight entropy and (with
    ``entanglement=True``) the mean token entanglement entropy of each quantum layer in
    ``history`` (one flat dict per epoch), adds them to the epoch's metrics dict and, in a
    run directory, writes them to ``metrics.jsonl`` as records of kind ``entropy``.

    Example:
        >>> from qepi.config import Config, update
        >>> from qepi.models import HybridTransformer, InputSpec
        >>> cfg = update(Config(), circuit={"n_qubits": 2, "n_layers": 1})
        >>> model = HybridTransformer(cfg, InputSpec(seq_len=4, n_classes=2, vocab_size=3))
        >>> monitor = EntropyMonitor(torch.randint(0, 3, (5, 4)))
        >>> row = monitor.measure(model)
        >>> for key in sorted(row):
        ...     print(key)
        attention_entropy/blocks.0.attention/head0
        attention_entropy/blocks.0.attention/head1
        entanglement/blocks.0.attention.core.layer
        entanglement/embedding.core.layer
        predictive_entropy
    """

    def __init__(self, x: torch.Tensor, mask: torch.Tensor | None = None, entanglement: bool = True):
        self.x, self.mask, self.entanglement = x, mask, entanglement
        self.history: list[dict[str, float]] = []

    @torch.no_grad()
    def measure(self, model: nn.Module) -> dict[str, float]:
        """One flat dict of entropies (nats) of ``model`` on the probe batch."""
        was_training = model.training
        model.eval()
        try:
            record = ForwardRecord()
            logits, captured = _forward_capturing(model, self.x, self.mask, record)
            row = {"predictive_entropy": float(predictive_entropy(logits))}
            for name, heads in attention_entropy(model, record, self.mask).items():
                for h, value in enumerate(heads.tolist()):
                    row[f"attention_entropy/{name}/head{h}"] = value
            if self.entanglement:
                for name, ent in _entropies(captured, None).items():  # (B, T[, K])
                    real = ent if self.mask is None else ent[self.mask.numpy()]  # padding left out
                    row[f"entanglement/{name}"] = float(np.mean(real))
        finally:
            model.train(was_training)
        return row

    def on_epoch_end(self, trainer, epoch: int, metrics: dict | None = None) -> None:
        row = self.measure(trainer.model)
        self.history.append({"epoch": epoch, **row})
        if isinstance(metrics, dict):
            metrics.update(row)
        log = getattr(trainer, "log", None)  # the run's metrics.jsonl, when there is one
        if log is not None:
            log.write({"kind": "entropy", "step": trainer.step, "epoch": epoch, **row})


__all__ = [
    "EntropyMonitor",
    "attention_entropy",
    "entanglement_entropy",
    "layer_states",
    "predictive_entropy",
    "shannon_entropy",
    "token_entanglement_entropy",
]
