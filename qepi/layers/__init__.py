"""Torch layers: the general QuantumLayer, quantum embedding and attention, their twins, their
regulated forms, and the :class:`ForwardRecord` a forward fills with losses and reports."""

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
from qepi.layers.record import ForwardRecord

__all__ = [
    "CircuitMap",
    "ClassicalAttention",
    "ClassicalEmbedding",
    "ClassicalEpigeneticMap",
    "ClassicalExpertsMap",
    "ClassicalMap",
    "EpigeneticMap",
    "ExpertsMap",
    "ForwardRecord",
    "QuantumAttention",
    "QuantumEmbedding",
    "QuantumLayer",
    "RegulatedAttention",
    "RegulatedEmbedding",
]
