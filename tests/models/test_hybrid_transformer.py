"""HybridTransformer: shapes, gradients, learning, state_dict round trips, twins."""

import io

import pytest
import torch

from qepi.config import Config, ConfigError, update
from qepi.layers import ClassicalAttention, ClassicalEmbedding, QuantumAttention, QuantumEmbedding
from qepi.models import HybridTransformer, InputSpec, count_parameters

SMALL = update(
    Config(),
    circuit={"n_qubits": 2, "n_layers": 1},
    model={"d_model": 4, "n_heads": 1, "d_ff": 8},
)
KINDS = [("quantum", "quantum"), ("quantum", "classical"), ("classical", "quantum"),
         ("classical", "classical")]


def model_for(embedding, attention, spec=InputSpec(seq_len=5, n_classes=3, vocab_size=4), **extra):
    cfg = update(SMALL, model={"embedding": embedding, "attention": attention, **extra})
    return HybridTransformer(cfg, spec)


class TestModel:
    @pytest.mark.parametrize("embedding, attention", KINDS)
    def test_token_and_feature_inputs(self, embedding, attention):
        torch.manual_seed(0)
        tokens = model_for(embedding, attention)
        assert tokens(torch.randint(0, 4, (6, 5))).shape == (6, 3)
        features = model_for(embedding, attention, InputSpec(seq_len=5, n_classes=2, n_features=3))
        assert features(torch.rand(6, 5, 3)).shape == (6, 2)

    def test_kinds_pick_the_layer_classes(self):
        model = model_for("quantum", "classical")
        assert isinstance(model.embedding, QuantumEmbedding)
        assert isinstance(model.blocks[0].attention, ClassicalAttention)
        model = model_for("classical", "quantum")
        assert isinstance(model.embedding, ClassicalEmbedding)
        assert isinstance(model.blocks[0].attention, QuantumAttention)

    @pytest.mark.parametrize("embedding, attention", KINDS)
    def test_gradients_reach_every_parameter(self, embedding, attention):
        torch.manual_seed(0)
        model = model_for(embedding, attention)
        loss = model(torch.randint(0, 4, (8, 5))).logsumexp(-1).sum()
        loss.backward()
        for name, p in model.named_parameters():
            assert p.grad is not None and p.grad.abs().sum() > 0, name

    @pytest.mark.parametrize("embedding, attention", [("quantum", "quantum"), ("classical", "classical")])
    def test_a_few_steps_lower_the_loss(self, embedding, attention):
        torch.manual_seed(0)
        model = model_for(embedding, attention)
        x = torch.randint(0, 4, (16, 5))
        y = (x == 1).any(1).long()  # a learnable rule: does token 1 appear?
        opt = torch.optim.Adam(model.parameters(), lr=0.05)
        losses = []
        for _ in range(15):
            loss = torch.nn.functional.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        assert losses[-1] < 0.8 * losses[0]

    @pytest.mark.parametrize("embedding, attention", [("quantum", "quantum"), ("classical", "classical")])
    def test_state_dict_round_trip(self, embedding, attention):
        torch.manual_seed(0)
        model = model_for(embedding, attention)
        buffer = io.BytesIO()
        torch.save(model.state_dict(), buffer)
        buffer.seek(0)
        torch.manual_seed(123)  # a different initialisation, then overwritten
        rebuilt = model_for(embedding, attention)
        rebuilt.load_state_dict(torch.load(buffer, weights_only=True))
        x = torch.randint(0, 4, (4, 5))
        torch.testing.assert_close(rebuilt(x), model(x), atol=0, rtol=0)

    def test_padding_mask_hides_padded_tokens(self):
        torch.manual_seed(0)
        model = model_for("quantum", "quantum")
        x = torch.randint(0, 4, (2, 5))
        mask = torch.tensor([[True] * 3 + [False] * 2] * 2)
        other = x.clone()
        other[:, 3:] = (x[:, 3:] + 1) % 4
        torch.testing.assert_close(model(x, mask), model(other, mask))

    def test_twin_differs_by_one_config_value_and_reports_parameters(self):
        quantum = model_for("quantum", "quantum")
        classical = model_for("classical", "classical")
        assert count_parameters(quantum) > 0 and count_parameters(classical) > 0
        assert len(quantum.quantum_layers()) == 2 and not classical.quantum_layers()

    def test_unknown_kind_names_the_key(self):
        with pytest.raises(ConfigError, match="model.attention: unknown value 'qantum'"):
            model_for("quantum", "qantum")
