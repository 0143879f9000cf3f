"""Instruments for hybrid models: will it train, what is the quantum part doing, what are
the circuits.

- Training callbacks (:mod:`qepi.training` hooks): :class:`GradientFlowMonitor` (per-layer
  gradient norm, variance across the batch, SNR; warns on vanishing or noisy gradients) and
  :class:`EntropyMonitor` (predictive, attention-head and token entanglement entropies per
  epoch); :func:`training_monitors` makes both for a dataset.
- Barren plateaus: :func:`plateau_curve`, :func:`fit_decay`, :func:`plot_plateau`.
- Entropy and calibration: :func:`entanglement_entropy`, :func:`token_entanglement_entropy`,
  :func:`temperature_scale`, :func:`expected_calibration_error`.
- Circuit descriptors (Sim et al. 2019): :func:`expressibility`, :func:`entangling_capability`,
  :func:`meyer_wallach`.
- Pictures: :func:`plot_attention`, :func:`loss_landscape` + :func:`plot_landscapes`.
- OpenQASM 3: :func:`export_model_qasm` (a trained model, weights bound) and the catalog,
  :func:`export_catalog` / :func:`check_catalog` (``qepi circuits export circuits/``).

Example:
    >>> from qepi.config import Data
    >>> from qepi.data import load_dataset
    >>> ds = load_dataset(Data(task="parity", seq_len=4, n_train=16, n_dev=8, n_test=8))
    >>> [type(m).__name__ for m in training_monitors(ds, every=5)]
    ['GradientFlowMonitor', 'EntropyMonitor']
"""

from __future__ import annotations

import torch

from qepi.diagnostics.attention import attention_maps, plot_attention
from qepi.diagnostics.calibration import (
    Calibration,
    expected_calibration_error,
    fit_temperature,
    temperature_scale,
)
from qepi.diagnostics.catalog import check_catalog, export_catalog
from qepi.diagnostics.descriptors import entangling_capability, expressibility, meyer_wallach
from qepi.diagnostics.entropy import (
    EntropyMonitor,
    attention_entropy,
    entanglement_entropy,
    predictive_entropy,
    shannon_entropy,
    token_entanglement_entropy,
)
from qepi.diagnostics.gradients import GradientFlowMonitor, GradientWarning, gradient_flow
from qepi.diagnostics.landscape import Landscape, loss_landscape, plot_landscapes
from qepi.diagnostics.plateau import PlateauResult, fit_decay, gradient_variance, plateau_curve, plot_plateau
from qepi.diagnostics.qasm import export_model_qasm, layer_qasm


def training_monitors(dataset, probe_size: int = 32, every: int = 10, entanglement: bool = True):
    """A :class:`GradientFlowMonitor` on the first ``probe_size`` training examples (full
    statistics every ``every`` steps) and an :class:`EntropyMonitor` on as many dev (else
    test) examples, ready for ``Trainer(..., callbacks=...)`` or ``run(..., callbacks=...)``."""
    probe = dataset.train.take(torch.arange(min(probe_size, len(dataset.train))))
    held_out = dataset.dev if dataset.dev is not None and len(dataset.dev) else dataset.test
    held_out = held_out.take(torch.arange(min(probe_size, len(held_out))))
    return [GradientFlowMonitor(probe, every=every),
            EntropyMonitor(held_out.x, held_out.mask, entanglement=entanglement)]


__all__ = [
    "Calibration",
    "EntropyMonitor",
    "GradientFlowMonitor",
    "GradientWarning",
    "Landscape",
    "PlateauResult",
    "attention_entropy",
    "attention_maps",
    "check_catalog",
    "entangling_capability",
    "entanglement_entropy",
    "expected_calibration_error",
    "export_catalog",
    "export_model_qasm",
    "expressibility",
    "fit_decay",
    "fit_temperature",
    "gradient_flow",
    "gradient_variance",
    "layer_qasm",
    "loss_landscape",
    "meyer_wallach",
    "plateau_curve",
    "plot_attention",
    "plot_landscapes",
    "plot_plateau",
    "predictive_entropy",
    "shannon_entropy",
    "temperature_scale",
    "token_entanglement_entropy",
    "training_monitors",
]
