"""Quantum experts: top-k routing, one batched execution, load balancing, active parameters."""

import pennylane as qml
import pytest
import torch

from qepi.circuits import build_circuit
from qepi.config import Backend, Circuit, Regulation
from qepi.layers import ClassicalExpertsMap, ExpertsMap, ForwardRecord

CIRCUIT = Circuit(n_qubits=2, n_layers=1)


def routing(core, x):
    context = x.flatten(-2).reshape(-1, x.shape[-2] * x.shape[-1])
    probs = torch.softmax(core.router(context), -1)  # (N, E)
    return probs, probs.topk(core.top_k, -1)


class TestExpertsMap:
    @pytest.mark.parametrize("top_k", [1, 2])
    def test_matches_a_per_token_loop_over_pennylane(self, top_k):
        torch.manual_seed(0)
        core = ExpertsMap(CIRCUIT, copies=2, regulation=Regulation(n_experts=3, top_k=top_k))
        x = torch.rand(4, 2, 2, dtype=torch.float64)
        out = core(x)  # (N, K, n_qubits)
        qnode = qml.QNode(build_circuit(CIRCUIT).qfunc, qml.device("default.qubit", wires=2))
        _, (top, index) = routing(core, x.float())
        for t in range(4):
            for c in range(2):
                expected = sum(
                    top[t, s].double() * torch.stack(qnode(x[t, c], core.weights[c, index[t, s]].double()))
                    for s in range(top_k))
                torch.testing.assert_close(out[t, c].double(), expected.detach(), atol=1e-5, rtol=0)

    def test_only_the_routed_circuits_run_in_one_execution(self):
        core = ExpertsMap(CIRCUIT, copies=3, regulation=Regulation(n_experts=4, top_k=2))
        calls = []
        inner = core.layer.executor
        core.layer.set_executor(lambda inputs, weights: calls.append(inputs.shape) or inner(inputs, weights))
        core(torch.rand(2, 5, 3, 2)).sum().backward()
        assert calls == [torch.Size([2 * 5 * 2 * 3, 1, 2 + 6])]  # N·k·K rows, angles + weights
        assert inner.stats.circuits == 2 * 5 * 2 * 3

    def test_only_routed_experts_get_gradients(self):
        torch.manual_seed(1)
        core = ExpertsMap(CIRCUIT, regulation=Regulation(n_experts=4, top_k=1))
        x = torch.rand(1, 1, 2)
        record = ForwardRecord()
        core(x, record=record).sum().backward()
        chosen = record.routed[core].item()
        grads = core.weights.grad[0].flatten(1).abs().sum(1)  # (E,)
        assert grads[chosen] > 0 and torch.all(grads[torch.arange(4) != chosen] == 0)
        assert core.router.weight.grad.abs().sum() > 0  # top-1 still trains the router

    def test_load_balancing_loss_by_hand(self):
        torch.manual_seed(2)
        core = ExpertsMap(CIRCUIT, regulation=Regulation(n_experts=3, top_k=1, balance=0.5))
        x = torch.rand(6, 1, 2)
        record = ForwardRecord()
        core(x, record=record)
        probs, (_, index) = routing(core, x)
        f = torch.tensor([(index == e).float().mean().item() for e in range(3)])
        expected = 0.5 * 3 * (f * probs.mean(0)).sum()
        torch.testing.assert_close(record.regularization_loss(), expected)
        torch.testing.assert_close(core.expert_load(record), f)

    def test_report_counts_active_parameters(self):
        core = ExpertsMap(CIRCUIT, copies=3, regulation=Regulation(n_experts=4, top_k=1))
        record = ForwardRecord()
        core(torch.rand(2, 3, 2), record=record)
        report = core.report(record)
        assert report["params_per_token"] == 3 * 4 * 6
        assert report["active_params_per_token"] == 3 * 1 * 6
        assert report["expression_ratio"] == 0.25

    def test_aer_gradients_match_backprop(self):
        grads = []
        for backend in ("aer", "default.qubit"):
            torch.manual_seed(3)
            core = ExpertsMap(CIRCUIT, Backend(name=backend), regulation=Regulation(n_experts=3, top_k=2))
            x = torch.rand(3, 1, 2, requires_grad=True)
            core(x).pow(2).sum().backward()
            grads.append([x.grad] + [p.grad for p in core.parameters()])
        for a, b in zip(*grads):
            torch.testing.assert_close(a.double(), b.double(), atol=1e-5, rtol=0)

    def test_bad_top_k_is_an_error(self):
        with pytest.raises(ValueError, match="top_k"):
            ExpertsMap(CIRCUIT, regulation=Regulation(n_experts=2, top_k=3))


class TestClassicalExperts:
    def test_matches_a_per_token_loop(self):
        torch.manual_seed(0)
        core = ClassicalExpertsMap(CIRCUIT, copies=2, regulation=Regulation(n_experts=3, top_k=2))
        x = torch.rand(5, 2, 2)
        out = core(x)
        _, (top, index) = routing(core, x)
        w, b = core.twin.weights[0], core.twin.biases[0]
        for t in range(5):
            for c in range(2):
                expected = sum(top[t, s] * torch.tanh(x[t, c] @ w[c * 3 + index[t, s]] + b[c * 3 + index[t, s]])
                               for s in range(2))
                torch.testing.assert_close(out[t, c], expected)

    def test_active_parameters_include_biases(self):
        core = ClassicalExpertsMap(CIRCUIT, regulation=Regulation(n_experts=2, top_k=1))
        record = ForwardRecord()
        core(torch.rand(3, 1, 2), record=record)
        assert core.report(record)["active_params_per_token"] == 2 * 2 + 2
