"""`qepi bench aer`: one parameter-shift training step on Aer, side by side.

On one layer (angle encoding + strongly entangling ansatz, ⟨Z⟩ on every wire, weights
trainable, inputs not) and ``--tokens`` input rows, it measures in one run:

- ``qepi_step_s``: qepi's aer backend, forward + backward (best of ``--repeats``), on Aer's
  private fast path where the installed qiskit-aer is a tested release (``aer_path``);
- ``qepi_public_step_s``: the same step on Aer's public ``AerSimulator.run`` path, the
  fallback outside the tested releases (:mod:`qepi.compat.aer`), and ``public_vs_private``;
- ``raw_aer_best_s``: the fastest hand-written ``AerSimulator.run`` over exactly the same
  parameter rows (one template with plain Parameters and saved expectation values,
  ``parameter_binds``), trying Aer's default options, ``max_parallel_experiments=0`` and
  ``runtime_parameter_bind_enable=True``; ``aer_execute_s`` is the smallest
  ``time_taken_execute`` (Aer's own simulation time) among those runs;
- ``pennylane_step_s``: PennyLane's ``qiskit.aer`` device with ``diff_method="parameter-shift"``
  on ``--pennylane-tokens`` tokens, one QNode call per token (it cannot differentiate
  broadcast inputs), scaled per circuit to the same circuit count. It needs the
  ``pennylane-qiskit`` plugin, whose releases pin older Qiskit versions; install it with
  ``pip install --no-deps pennylane-qiskit==0.45.0``. Without it the figures are ``null``.
"""

from __future__ import annotations

import json
import time

import numpy as np
import torch

from qepi.backends.aer import AerExecutor, shifted_rows
from qepi.bench import describe_load, machine_load, set_threads, warn_if_busy
from qepi.backends.translate import to_qiskit
from qepi.circuits import build_circuit
from qepi.config import Backend, Circuit
from qepi.errors import UserError

RAW_OPTIONS = {
    "default": {},
    "max_parallel_experiments=0": {"max_parallel_experiments": 0},
    "runtime_parameter_bind_enable=True": {"runtime_parameter_bind_enable": True},
}


def _best(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def _raw_aer(traced, rows: np.ndarray, repeats: int) -> dict:
    """Hand-written AerSimulator.run over ``rows`` (C, P) with each option set."""
    from qiskit_aer import AerSimulator

    template, params = to_qiskit(traced)
    binds = [{p: rows[:, j].tolist() for j, p in enumerate(params)}]
    labels = [f"out{o}" for o in range(len(traced.measurements))]
    out = {}
    for label, options in RAW_OPTIONS.items():
        walls, executes = [], []
        for _ in range(repeats):
            sim = AerSimulator(method="statevector", **options)
            start = time.perf_counter()
            result = sim.run(template, parameter_binds=binds, shots=1).result()
            values = np.array([[getattr(r.data, label) for label in labels]
                               for r in result.results])  # (C, n_outputs)
            walls.append(time.perf_counter() - start)
            executes.append(result.metadata["time_taken_execute"])
        assert values.shape == (len(rows), len(traced.measurements))
        out[label] = {"wall_s": min(walls), "execute_s": min(executes)}
    return out


def _pennylane(spec, x, w, tokens: int, shots: int) -> dict:
    """PennyLane's qiskit.aer device with parameter shift: seconds per circuit."""
    try:
        import pennylane_qiskit  # noqa: F401
    except ImportError:
        return {"pennylane_note": "pennylane-qiskit is not installed (see `qepi bench aer` docs)"}
    import warnings

    import pennylane as qml

    warnings.filterwarnings("ignore", module="pennylane_qiskit")
    device = qml.device("qiskit.aer", wires=spec.n_qubits, shots=shots or None,
                        method="statevector")
    qnode = qml.QNode(spec.qfunc, device, interface="torch", diff_method="parameter-shift")
    weights = w.detach().clone().requires_grad_(True)
    start = time.perf_counter()
    for t in range(tokens):
        torch.stack(list(qnode(x[t], weights))).sum().backward()
    seconds = time.perf_counter() - start
    circuits = tokens * (1 + 2 * weights.numel())
    return {"pennylane_s_per_circuit": seconds / circuits, "pennylane_tokens": tokens,
            "pennylane_circuits": circuits,
            "pennylane_note": f"qiskit.aer device, diff_method='parameter-shift', measured on "
                              f"{tokens} token(s) and scaled per circuit"}


def main(args) -> int:
    """Measure and print (a table, or one JSON object with ``--json``)."""
    repeats, pl_tokens = args.repeats, args.pennylane_tokens
    if min(args.qubits, args.layers, args.tokens, repeats) < 1 or pl_tokens < 0:
        raise UserError("bench aer: --qubits, --layers, --tokens and --repeats must be >= 1")
    if args.threads < 0:
        raise UserError(f"--threads must be >= 0, got {args.threads}")
    load = machine_load(set_threads(args.threads))
    warn_if_busy(load)
    torch.manual_seed(0)
    spec = build_circuit(Circuit(n_qubits=args.qubits, n_layers=args.layers))
    x = torch.rand(args.tokens, 1, args.qubits, dtype=torch.float64)  # (N, K=1, F)
    w = torch.rand(1, *spec.weight_shapes["weights"], dtype=torch.float64, requires_grad=True)
    backend = Backend(name="aer", shots=args.shots)
    executor = AerExecutor(spec.qfunc, args.qubits, backend)
    public = AerExecutor(spec.qfunc, args.qubits, backend, path="public")

    def step(run=executor):
        w.grad = None
        run(x, {"weights": w}).sum().backward()

    step()  # builds and assembles the template once
    before = executor.stats.circuits
    qepi_s = _best(step, repeats)
    circuits = (executor.stats.circuits - before) // repeats
    step(public)
    public_s = _best(lambda: step(public), repeats)

    traced = executor.trace(x, {"weights": w})
    theta = traced.angle_matrix().detach().numpy()  # (R, P)
    rows, _, _ = shifted_rows(theta, executor.shift_matrix(traced, args.tokens, 1).numpy())
    assert len(rows) == circuits
    raw = _raw_aer(traced, rows, repeats)
    raw_best = min(r["wall_s"] for r in raw.values())
    execute = min(r["execute_s"] for r in raw.values())
    report = {
        **load, "aer_threads": "all cores (backend.threads = 0)",
        "qubits": args.qubits, "layers": args.layers, "tokens": args.tokens,
        "shots": args.shots, "angles": len(traced.angles), "circuits": circuits,
        "qepi_step_s": qepi_s, "aer_path": executor.path,
        "qepi_public_step_s": public_s, "public_vs_private": public_s / qepi_s,
        "raw_aer_best_s": raw_best, "vs_raw_best": qepi_s / raw_best,
        "aer_execute_s": execute, "overhead": qepi_s / execute, "raw_aer": raw,
        "raw_note": "raw runs evaluate exact expectation values of the same rows",
    }
    pl = {}
    if pl_tokens:
        pl = _pennylane(spec, x[:, 0], w[0], min(pl_tokens, args.tokens), args.shots)
    per_circuit = pl.pop("pennylane_s_per_circuit", None)
    report["pennylane_step_s"] = None if per_circuit is None else per_circuit * circuits
    report["speedup_vs_pennylane"] = (
        None if per_circuit is None else per_circuit * circuits / qepi_s)
    report.update(pl)
    if getattr(args, "expression", None):  # epigenetic hard marks: only expressed gates shifted
        from qepi.experiments.marks import expression_bench

        report["expression"] = expression_bench(args.qubits, args.layers, args.tokens,
                                                args.expression, repeats, args.shots)
    if args.json:
        print(json.dumps(report))
    else:
        print(f"qepi bench aer: {describe_load(load)}")
        for key, value in report.items():
            print(f"{key:>22}: {value}")
    return 0
