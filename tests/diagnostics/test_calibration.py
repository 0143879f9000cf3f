"""ECE against a hand calculation; temperature scaling recovers a known temperature."""

import pytest
import torch

from qepi.diagnostics.calibration import expected_calibration_error, fit_temperature, temperature_scale


def test_ece_by_hand():
    # confidences 0.9, 0.9 (one right) and 0.6 (right): bins (0.8, 0.87]... keep it simple
    probs = torch.tensor([[0.9, 0.1], [0.9, 0.1], [0.4, 0.6]])
    labels = torch.tensor([0, 1, 1])
    # bin of 0.9: accuracy 0.5, confidence 0.9 -> |gap| 0.4, weight 2/3
    # bin of 0.6: accuracy 1.0, confidence 0.6 -> |gap| 0.4, weight 1/3
    assert expected_calibration_error(probs.log(), labels, n_bins=10) == pytest.approx(0.4)


def test_perfect_calibration_is_zero():
    logits = torch.tensor([[0.0, 0.0]] * 4)  # 50% confident, 50% right (ties pick class 0)
    labels = torch.tensor([0, 1, 0, 1])
    assert expected_calibration_error(logits, labels) == pytest.approx(0.0)


def test_temperature_scaling_recovers_overconfidence():
    g = torch.Generator().manual_seed(0)
    z = 1.5 * torch.randn(2000, 3, generator=g, dtype=torch.float64)  # calibrated logits
    labels = torch.multinomial(torch.softmax(z, -1), 1, generator=g).squeeze(-1)
    result = temperature_scale(3.0 * z, labels)  # three times overconfident
    assert result.temperature == pytest.approx(3.0, rel=0.1)
    assert fit_temperature(z, labels) == pytest.approx(1.0, rel=0.1)
    assert result.ece_after < result.ece_before / 3
    assert result.nll_after < result.nll_before


def test_shapes_are_checked():
    with pytest.raises(ValueError, match="logits"):
        temperature_scale(torch.zeros(3), torch.zeros(3, dtype=torch.long))
