"""``qepi bench exact``: one training step of the hybrid transformer, side by side.

Measures, in one run and on the same model and data, the time of a full training step
(forward, backward, optimizer step) of:

- the classical twin (the same model with classical embedding and attention),
- the quantum model on qepi's ``exact`` backend (and, with ``--strategies``, forced to
  ``fold`` and to ``gates`` to locate the crossover),
- the quantum model on PennyLane ``default.qubit`` (torch backprop, one broadcast
  execution per layer),
- the quantum model the way published hybrid-transformer code runs it: a PennyLane QNode
  called once per token and circuit copy, as a ``qml.qnn.TorchLayer`` does. It is timed on
  ``--loop-batch`` sequences and scaled linearly to ``--batch`` (the output says so).

The model: quantum embedding plus one attention head whose Q, K and V are circuits, so
every token runs 4 circuits; ``d_model`` equals the qubit count.
"""

from __future__ import annotations

import json
import statistics
import time

import torch

from qepi.backends import ExecutionStats
from qepi.bench import describe_load, machine_load, set_threads, warn_if_busy
from qepi.config import Config, update
from qepi.errors import UserError
from qepi.models import HybridTransformer, InputSpec


class PerTokenExecutor:
    """A QNode on default.qubit called once per token and copy (the published pattern)."""

    def __init__(self, qfunc, n_qubits: int):
        import pennylane as qml

        self.qnode = qml.QNode(qfunc, qml.device("default.qubit", wires=n_qubits),
                               interface="torch", diff_method="backprop")
        self.stats = ExecutionStats()

    def __call__(self, inputs: torch.Tensor, weights: dict[str, torch.Tensor]) -> torch.Tensor:
        n, k, _ = inputs.shape
        rows = []
        for i in range(n):
            copies = []
            for j in range(k):
                out = self.qnode(inputs[i, j].double(),
                                 **{m: w[j].double() for m, w in weights.items()})
                is_list = isinstance(out, (list, tuple))
                copies.append(torch.stack(list(out)) if is_list else out.reshape(1))
            rows.append(torch.stack(copies))
        self.stats.add(n * k)
        return torch.stack(rows).to(inputs.dtype)  # (N, K, n_outputs)


def bench_config(n_qubits: int, backend: str, layers: int, quantum: bool = True,
                 strategy: str = "auto") -> Config:
    """The benchmarked configuration: quantum embedding + 1-head quantum Q/K/V attention."""
    kind = "quantum" if quantum else "classical"
    return update(
        Config(),
        backend={"name": backend, "strategy": strategy},
        circuit={"n_qubits": n_qubits, "n_layers": layers, "encoding": "angle",
                 "ansatz": "strongly_entangling"},
        model={"embedding": kind, "attention": kind, "attention_style": "qkv",
               "n_heads": 1, "d_model": n_qubits, "n_blocks": 1, "d_ff": 4 * n_qubits},
    )


def time_steps(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, repeats: int,
               warmup: int = 1, clock=time.perf_counter) -> tuple[float, int]:
    """Median seconds of a training step, and circuits evaluated (forward) per step."""
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    layers = model.quantum_layers()
    times, circuits = [], 0
    for step in range(warmup + repeats):
        before = sum(layer.executor.stats.circuits for layer in layers)
        start = clock()
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
        elapsed = clock() - start
        circuits = sum(layer.executor.stats.circuits for layer in layers) - before
        if step >= warmup:
            times.append(elapsed)
    return statistics.median(times), circuits


def measure(n_qubits: int, batch: int, tokens: int, repeats: int, layers: int,
            loop_batch: int, strategies: bool, clock=time.perf_counter) -> dict:
    """All timings for one qubit count (seconds per training step)."""
    spec = InputSpec(seq_len=tokens, n_classes=2, n_features=n_qubits)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(batch, tokens, n_qubits, generator=gen)
    y = torch.randint(0, 2, (batch,), generator=gen)

    def model_for(cfg: Config) -> HybridTransformer:
        torch.manual_seed(0)
        return HybridTransformer(cfg, spec)

    row: dict = {"qubits": n_qubits, "batch": batch, "tokens": tokens, "layers": layers}
    row["classical_s"], _ = time_steps(
        model_for(bench_config(n_qubits, "exact", layers, quantum=False)), x, y, repeats,
        clock=clock)
    exact = model_for(bench_config(n_qubits, "exact", layers))
    row["exact_s"], row["circuits_per_step"] = time_steps(exact, x, y, repeats, clock=clock)
    # embedding (1 copy) / attention (3 copies)
    row["strategy"] = "/".join(layer.executor.strategy for layer in exact.quantum_layers())
    if strategies:
        for forced in ("fold", "gates"):
            model = model_for(bench_config(n_qubits, "exact", layers, strategy=forced))
            row[f"exact_{forced}_s"], _ = time_steps(model, x, y, repeats, clock=clock)
    row["default_qubit_s"], _ = time_steps(
        model_for(bench_config(n_qubits, "default.qubit", layers)), x, y, repeats, clock=clock)
    if loop_batch > 0:
        small = min(loop_batch, batch)
        model = model_for(bench_config(n_qubits, "default.qubit", layers))
        for layer in model.quantum_layers():
            layer.set_executor(PerTokenExecutor(layer.qfunc, layer.n_qubits))
        seconds, _ = time_steps(model, x[:small], y[:small], repeats=max(1, repeats // 2),
                                clock=clock)
        row["loop_measured_batch"] = small
        row["loop_s"] = seconds * batch / small
    return row


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:10.1f}" if seconds < 10 else f"{seconds:9.1f}s"


def main(args) -> int:
    """Entry point of ``qepi bench exact``."""
    for name in ("batch", "tokens", "repeats", "layers"):
        if getattr(args, name) < 1:
            raise UserError(f"--{name} must be >= 1, got {getattr(args, name)}")
    if any(q < 1 for q in args.qubits):
        raise UserError(f"--qubits must be >= 1, got {args.qubits}")
    if args.threads < 0:
        raise UserError(f"--threads must be >= 0, got {args.threads}")
    load = machine_load(set_threads(args.threads))
    warn_if_busy(load)
    clock = time.process_time if args.cpu_time else time.perf_counter
    torch.manual_seed(0)
    rows = [
        measure(q, args.batch, args.tokens, args.repeats, args.layers, args.loop_batch,
                args.strategies, clock)
        for q in args.qubits
    ]
    if args.json:
        print(json.dumps({**load, "clock": clock.__name__, "rows": rows}, indent=2))
        return 0
    first = rows[0]
    print(f"qepi bench exact: training step (forward + backward + Adam) of HybridTransformer, "
          f"batch {args.batch} x {args.tokens} tokens, quantum embedding + 1-head Q/K/V "
          f"attention (4 circuits per token, {first['circuits_per_step']} circuit evaluations "
          f"forward per step), strongly entangling, {args.layers} layers; median of "
          f"{args.repeats} steps of {'process CPU' if args.cpu_time else 'wall-clock'} time; "
          f"{describe_load(load)}; times in ms")
    header = (f"{'qubits':>6} {'classical':>10} {'exact':>10} {'strategy':>11} "
              f"{'default.q':>10} {'loop':>10}  {'dq/exact':>8} {'loop/exact':>10} "
              f"{'exact/cl':>8}")
    if args.strategies:
        header += f" {'fold':>10} {'gates':>10}"
    print(header)
    for r in rows:
        loop = r.get("loop_s")
        loop_ratio = f"{loop / r['exact_s']:.0f}x" if loop else "-"
        line = (f"{r['qubits']:>6} {_ms(r['classical_s'])} {_ms(r['exact_s'])} {r['strategy']:>11} "
                f"{_ms(r['default_qubit_s'])} {_ms(loop) if loop else '         -'}  "
                f"{r['default_qubit_s'] / r['exact_s']:>7.1f}x "
                f"{loop_ratio:>10} "
                f"{r['exact_s'] / r['classical_s']:>7.1f}x")
        if args.strategies:
            line += f" {_ms(r['exact_fold_s'])} {_ms(r['exact_gates_s'])}"
        print(line)
    if args.loop_batch > 0:
        print(f"loop: a default.qubit QNode called once per token and circuit copy, timed on "
              f"{rows[0]['loop_measured_batch']} sequence(s) of {args.tokens} tokens and "
              f"scaled linearly to a batch of {args.batch}")
    return 0
