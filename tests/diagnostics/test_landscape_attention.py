"""Loss landscape (filter-normalised directions) and attention maps."""

import numpy as np
import pytest
import torch
from torch import nn

from qepi.config import Config, update
from qepi.diagnostics.attention import attention_maps, plot_attention
from qepi.diagnostics.landscape import filter_normalized_direction, loss_landscape, plot_landscapes
from qepi.errors import UserError
from qepi.models import HybridTransformer, InputSpec


def tiny(attention="quantum", embedding="quantum"):
    cfg = update(Config(), circuit={"n_qubits": 2, "n_layers": 1},
                 model={"d_model": 4, "n_heads": 2, "d_ff": 8, "attention": attention,
                        "embedding": embedding})
    torch.manual_seed(0)
    return HybridTransformer(cfg, InputSpec(seq_len=4, n_classes=2, vocab_size=3))


class TestLandscape:
    def test_directions_are_filter_normalised(self):
        params = [torch.randn(3, 2, 2), torch.randn(5)]
        d = filter_normalized_direction(params, torch.Generator().manual_seed(0))
        for row_d, row_p in zip(d[0], params[0]):
            assert float(row_d.norm()) == pytest.approx(float(row_p.norm()))
        assert torch.count_nonzero(d[1]) == 0  # 1-D tensors (biases, norms) stay put

    def test_quadratic_bowl(self):
        # loss = ||w||^2 for a 1x1 "filter" w = 2: along d = ±||w|| the loss is (2 + 2a)^2 + ...
        class Bowl(nn.Module):
            def __init__(self):
                super().__init__()
                self.w = nn.Parameter(torch.full((1, 1), 2.0))

            def forward(self, x):
                return self.w.sum().reshape(1, 1).expand(x.shape[0], 1)

        land = loss_landscape(Bowl(), (torch.zeros(2, 1), torch.zeros(2)),
                              loss_fn=lambda out, y: (out[:, 0] ** 2).mean(), steps=5, span=1.0)
        # both directions are ±2 (one filter of norm 2), so every loss is (2 ± 2a ± 2b)^2
        alphas = land.alphas[:, None]
        betas = land.betas[None, :]
        candidates = [(2 + s1 * 2 * alphas + s2 * 2 * betas) ** 2 for s1 in (1, -1) for s2 in (1, -1)]
        assert any(np.allclose(land.losses, c) for c in candidates)
        assert land.center_loss == pytest.approx(4.0)

    def test_model_parameters_are_restored(self, tmp_path):
        model = tiny()
        before = [p.detach().clone() for p in model.parameters()]
        x, y = torch.randint(0, 3, (6, 4)), torch.randint(0, 2, (6,))
        land = loss_landscape(model, (x, y), steps=3, span=0.5)
        assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
        assert land.losses[1, 1] == pytest.approx(land.center_loss)
        with torch.no_grad():
            assert land.center_loss == pytest.approx(float(nn.functional.cross_entropy(model(x), y)))
        classical = loss_landscape(tiny("classical", "classical"), (x, y), steps=3, span=0.5)
        path = plot_landscapes({"quantum": land, "classical": classical}, tmp_path / "l.png")
        assert path.stat().st_size > 1000


class TestAttention:
    def test_maps_are_row_stochastic_and_masked(self):
        x = torch.randint(0, 3, (2, 4))
        mask = torch.tensor([[True] * 4, [True, True, False, False]])
        (name, maps), = attention_maps(tiny(), x, mask).items()
        assert maps.shape == (2, 2, 4, 4)
        assert np.allclose(maps.sum(-1), 1.0)
        assert np.allclose(maps[1, :, :, 2:], 0.0)  # padded keys get no weight

    def test_plot_quantum_beside_classical(self, tmp_path):
        x = torch.randint(0, 3, (2, 4))
        path = plot_attention({"quantum": tiny(), "classical": tiny("classical")}, x, tmp_path / "a.png",
                              tokens=[list("abcd"), list("efgh")], titles=["one", "two"])
        assert path.stat().st_size > 1000

    def test_a_model_without_attention_is_an_error(self, tmp_path):
        cfg = update(Config(), circuit={"n_qubits": 2, "n_layers": 1}, model={"n_blocks": 0})
        no_blocks = HybridTransformer(cfg, InputSpec(seq_len=4, n_classes=2, vocab_size=3))
        with pytest.raises(UserError, match="attention"):
            plot_attention({"embedding only": no_blocks}, torch.zeros(1, 4, dtype=torch.long), tmp_path / "a.png")
