"""Token / feature embeddings: inputs -> angles -> circuit (or its twin) -> d_model vectors."""

from __future__ import annotations

import torch
from torch import nn

from qepi.config import Backend, Circuit
from qepi.layers.feature_maps import CircuitMap, ClassicalMap
from qepi.layers.record import ForwardRecord


class EmbeddingLayer(nn.Module):
    """Inputs -> angles (n_qubits) -> ``core`` -> d_model vectors; subclasses choose the core."""

    def __init__(self, core: nn.Module, d_model: int, n_qubits: int,
                 vocab_size: int | None, n_features: int | None):
        super().__init__()
        if (vocab_size is None) == (n_features is None):
            raise ValueError("give exactly one of vocab_size (token ids) or n_features (vectors)")
        self.to_angles = (
            nn.Embedding(vocab_size, n_qubits) if vocab_size is not None
            else nn.Linear(n_features, n_qubits)
        )
        self.core = core
        self.to_model = nn.Identity() if d_model == n_qubits else nn.Linear(n_qubits, d_model)

    def forward(self, inputs: torch.Tensor, record: ForwardRecord | None = None) -> torch.Tensor:
        angles = self.to_angles(inputs)  # (..., n_qubits)
        values = self.run_core(angles.unsqueeze(-2), record).squeeze(-2)  # (..., n_qubits) in [-1, 1]
        return self.to_model(values)  # (..., d_model)

    def run_core(self, angles: torch.Tensor, record: ForwardRecord | None) -> torch.Tensor:
        """angles (..., 1, n_qubits) -> (..., 1, n_qubits); a plain core records nothing."""
        return self.core(angles)


class QuantumEmbedding(EmbeddingLayer):
    """Token ids (B, T) or features (B, T, F) -> (B, T, d_model) through a variational circuit.

    Example:
        >>> import torch
        >>> emb = QuantumEmbedding(d_model=8, circuit=Circuit(n_qubits=4), vocab_size=4)
        >>> emb(torch.randint(0, 4, (2, 5))).shape
        torch.Size([2, 5, 8])
    """

    def __init__(self, d_model: int, circuit: Circuit = Circuit(), backend: Backend = Backend(),
                 vocab_size: int | None = None, n_features: int | None = None, seed: int = 0):
        super().__init__(CircuitMap(circuit, backend, copies=1, seed=seed),
                         d_model, circuit.n_qubits, vocab_size, n_features)


class ClassicalEmbedding(EmbeddingLayer):
    """The classical twin of :class:`QuantumEmbedding`: the same shapes and range, with
    ``match_params`` widened to about the circuit's parameter count.

    Example:
        >>> import torch
        >>> emb = ClassicalEmbedding(d_model=8, circuit=Circuit(n_qubits=4), n_features=3)
        >>> emb(torch.rand(2, 5, 3)).shape
        torch.Size([2, 5, 8])
    """

    def __init__(self, d_model: int, circuit: Circuit = Circuit(), vocab_size: int | None = None,
                 n_features: int | None = None, match_params: bool = False):
        super().__init__(ClassicalMap(circuit, copies=1, match_params=match_params),
                         d_model, circuit.n_qubits, vocab_size, n_features)
