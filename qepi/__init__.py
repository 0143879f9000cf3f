"""qepi: hybrid quantum-classical machine learning with PennyLane circuits inside torch models.

The public names below are imported on first use, so ``import qepi.circuits`` stays free
of torch and ``import qepi`` never imports qiskit.

Example:
    >>> import qepi
    >>> layer = qepi.QuantumEmbedding(d_model=4, circuit=qepi.config.Circuit(n_qubits=2), n_features=3)
    >>> type(layer).__name__
    'QuantumEmbedding'
"""

import importlib

__version__ = "0.1.0"

_LAZY = {
    "Config": "qepi.config",
    "load": "qepi.config",
    "QuantumLayer": "qepi.layers",
    "QuantumEmbedding": "qepi.layers",
    "QuantumAttention": "qepi.layers",
    "ClassicalEmbedding": "qepi.layers",
    "ClassicalAttention": "qepi.layers",
    "HybridTransformer": "qepi.models",
    "InputSpec": "qepi.models",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'qepi' has no attribute {name!r}")
