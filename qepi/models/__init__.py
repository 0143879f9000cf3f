"""Models built from qepi layers."""

from qepi.models.hybrid_transformer import HybridTransformer, InputSpec, count_parameters

__all__ = ["HybridTransformer", "InputSpec", "count_parameters"]
