"""Memory over a long run: train a tiny hybrid model for many steps on each backend.

Prints the resident set size (RSS) after warm-up and at the end, and the growth per
1000 steps; a leak (e.g. graphs, results or simulator objects kept per step) shows up
as steady growth. Torch runs on ``--threads`` threads (1 by default, as ``train.threads``
does: intra-op threads cost more than they save on a model this small).

    .venv/bin/python benchmarks/long_run.py --steps 10000
"""

from __future__ import annotations

import argparse
import gc
import json
import time

import psutil
import torch

from qepi.config import Config, update
from qepi.models import HybridTransformer, InputSpec

BACKENDS = ["default.qubit", "lightning.qubit", "exact", "aer"]


def rss_mib() -> float:
    gc.collect()
    return psutil.Process().memory_info().rss / 2**20


def long_run(backend: str, steps: int, warmup: int = 200) -> dict:
    torch.manual_seed(0)
    cfg = update(Config(), backend={"name": backend}, circuit={"n_qubits": 2, "n_layers": 1},
                 model={"d_model": 4, "n_heads": 1, "d_ff": 8})
    model = HybridTransformer(cfg, InputSpec(seq_len=4, n_classes=2, vocab_size=4))
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    x = torch.randint(0, 4, (4, 4))  # (B, T) token ids
    y = (x == 1).any(1).long()  # (B,)
    start_rss = 0.0
    t0 = time.perf_counter()
    for step in range(steps + warmup):
        if step == warmup:
            start_rss, t0 = rss_mib(), time.perf_counter()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    end_rss = rss_mib()
    return {
        "backend": backend,
        "steps": steps,
        "rss_start_mib": round(start_rss, 1),
        "rss_end_mib": round(end_rss, 1),
        "growth_mib_per_1000_steps": round((end_rss - start_rss) / steps * 1000, 3),
        "ms_per_step": round((time.perf_counter() - t0) / steps * 1000, 2),
        "final_loss": round(loss.item(), 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10000)
    parser.add_argument("--backends", nargs="+", default=BACKENDS)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (0 = torch's default)")
    args = parser.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    print("| backend | steps | RSS start (MiB) | RSS end (MiB) | growth / 1000 steps | ms/step |")
    print("| --- | --- | --- | --- | --- | --- |")
    results = []
    for backend in args.backends:
        r = long_run(backend, args.steps)
        results.append(r)
        print(f"| {backend} | {r['steps']} | {r['rss_start_mib']} | {r['rss_end_mib']} | "
              f"{r['growth_mib_per_1000_steps']} MiB | {r['ms_per_step']} |", flush=True)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
