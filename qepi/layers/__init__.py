"""Torch layers: the general QuantumLayer, quantum embedding and attention, and their twins."""

from qepi.layers.attention import ClassicalAttention, QuantumAttention
from qepi.layers.embedding import ClassicalEmbedding, QuantumEmbedding
from qepi.layers.epigenetic import (
    ClassicalEpigeneticMap,
    EpigeneticMap,
    RegulatedAttention,
    RegulatedEmbedding,
)
from qepi.layers.experts import ClassicalExpertsMap, ExpertsMap
from qepi.layers.feature_maps import CircuitMap, ClassicalMap
from qepi.layers.quantum_layer import QuantumLayer

__all__ = [
    "CircuitMap",
    "ClassicalAttention",
    "ClassicalEmbedding",
    "ClassicalEpigeneticMap",
    "ClassicalExpertsMap",
    "ClassicalMap",
    "EpigeneticMap",
    "ExpertsMap",
    "QuantumAttention",
    "QuantumEmbedding",
    "QuantumLayer",
    "RegulatedAttention",
    "RegulatedEmbedding",
]
