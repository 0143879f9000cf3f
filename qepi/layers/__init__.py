"""Torch layers: the general QuantumLayer, quantum embedding and attention, and their twins."""

from qepi.layers.attention import ClassicalAttention, QuantumAttention
from qepi.layers.embedding import ClassicalEmbedding, QuantumEmbedding
from qepi.layers.feature_maps import CircuitMap, ClassicalMap
from qepi.layers.quantum_layer import QuantumLayer

__all__ = [
    "CircuitMap",
    "ClassicalAttention",
    "ClassicalEmbedding",
    "ClassicalMap",
    "QuantumAttention",
    "QuantumEmbedding",
    "QuantumLayer",
]
