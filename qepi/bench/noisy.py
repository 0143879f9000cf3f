"""`qepi bench noisy`: one parameter-shift step with shots (and noise) on aer vs exact.

On one layer (angle encoding + strongly entangling ansatz, ⟨Z⟩ on every wire, weights
trainable) and ``--tokens`` input rows, for each ``--qubits`` it times, side by side in one
run (best of ``--repeats``, forward + backward, after one warm-up step that builds the
templates):

- ``aer`` / ``exact``: ``backend.shots = --shots``, ideal gates;
- ``aer_noisy`` / ``exact_noisy``: the same with ``noise="depolarizing"``
  (``depolarizing_1q=0.01``, ``depolarizing_2q=0.05``, ``readout_error=0.02``),

and prints ``exact_speedup = aer / exact`` and ``noisy_speedup = aer_noisy / exact_noisy``,
the circuits of one step and ``sampling_s``: the time to draw that many circuits' shots alone
(:class:`~qepi.backends.sampling.ShotSampler` on as many random outcome distributions), a
cost both backends pay, since they draw with the same sampler.
Torch runs on one thread (``torch.set_num_threads(1)``), Aer with ``backend.threads``
(``--threads``, default 1) so both use the same cores.
"""

from __future__ import annotations

import json
import time

import numpy as np
import torch

from qepi.backends import make_executor
from qepi.backends.sampling import ShotSampler
from qepi.bench import describe_load, machine_load, warn_if_busy
from qepi.circuits import build_circuit
from qepi.config import Backend, Circuit
from qepi.errors import UserError

NOISE = {"noise": "depolarizing", "depolarizing_1q": 0.01, "depolarizing_2q": 0.05,
         "readout_error": 0.02}


def step_seconds(n_qubits: int, layers: int, tokens: int, backend: Backend,
                 repeats: int) -> tuple[float, int]:
    """Best wall time of one forward + backward step of ``backend`` (after a warm-up), and
    the circuits one step evaluates."""
    torch.manual_seed(0)
    spec = build_circuit(Circuit(n_qubits=n_qubits, n_layers=layers))
    x = torch.rand(tokens, 1, n_qubits, dtype=torch.float64)  # (N, K=1, F)
    w = torch.rand(1, *spec.weight_shapes["weights"], dtype=torch.float64, requires_grad=True)
    executor = make_executor(spec.qfunc, n_qubits, backend)
    times = []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        w.grad = None
        executor(x, {"weights": w}).sum().backward()
        times.append(time.perf_counter() - start)
    return min(times[1:]), executor.stats.circuits // (repeats + 1)


def sampling_seconds(circuits: int, n_qubits: int, shots: int, repeats: int) -> float:
    """Best wall time of drawing ``shots`` shots of ``circuits`` circuits over all
    2**n_qubits outcomes with the backends' :class:`ShotSampler`."""
    probs = np.random.default_rng(0).dirichlet(np.ones(2**n_qubits), circuits)  # (C, 2**n)
    sampler = ShotSampler(shots, seed=0)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        sampler.frequencies(probs, sampler.next_call())
        times.append(time.perf_counter() - start)
    return min(times)


def main(args) -> int:
    """Measure and print (a table, or one JSON object per qubit count with ``--json``)."""
    if min(min(args.qubits), args.layers, args.tokens, args.shots, args.repeats) < 1:
        raise UserError("bench noisy: --qubits, --layers, --tokens, --shots and --repeats "
                        "must be >= 1")
    torch.set_num_threads(1)
    machine = machine_load(1)
    if not args.json:
        print(f"bench noisy: {args.shots} shots, torch and Aer on one thread each; "
              f"{describe_load(machine)}")
    warn_if_busy(machine)
    rows = []
    for n in args.qubits:
        row = {"qubits": n, "layers": args.layers, "tokens": args.tokens, "shots": args.shots}
        for label, name, noise in [("aer", "aer", {}), ("exact", "exact", {}),
                                   ("aer_noisy", "aer", NOISE), ("exact_noisy", "exact", NOISE)]:
            backend = Backend(name=name, shots=args.shots, threads=args.threads, **noise)
            row[f"{label}_s"], row["circuits"] = step_seconds(n, args.layers, args.tokens,
                                                             backend, args.repeats)
        row["sampling_s"] = sampling_seconds(row["circuits"], n, args.shots, args.repeats)
        row["exact_speedup"] = row["aer_s"] / row["exact_s"]
        row["noisy_speedup"] = row["aer_noisy_s"] / row["exact_noisy_s"]
        rows.append(row)
        if args.json:
            print(json.dumps(row))
        else:
            print("  ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                            for k, v in row.items()))
    return 0
