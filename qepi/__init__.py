"""qepi: hybrid quantum-classical machine learning with PennyLane circuits inside torch models."""

from qepi.config import Config, load
from qepi.layers import (
    ClassicalAttention,
    ClassicalEmbedding,
    QuantumAttention,
    QuantumEmbedding,
    QuantumLayer,
)
from qepi.models import HybridTransformer, InputSpec

__version__ = "0.1.0"

__all__ = [
    "ClassicalAttention",
    "ClassicalEmbedding",
    "Config",
    "HybridTransformer",
    "InputSpec",
    "QuantumAttention",
    "QuantumEmbedding",
    "QuantumLayer",
    "__version__",
    "load",
]
