"""Handlers of ``qepi diagnose ...`` and ``qepi circuits ...``."""

from __future__ import annotations

import json
import math
from pathlib import Path

from qepi.commands.common import check_backend_settings
from qepi.config import Backend, Config
from qepi.errors import UserError

SIDE_BY_SIDE = ("quantum", "classical")  # the runs of a comparison shown side by side


def _run_dirs(paths: list[str]) -> list[Path]:
    """Run directories named on the command line; a comparison directory stands for its
    first seed's quantum and classical runs."""
    from qepi.experiments.rundir import COMPARE_MANIFEST

    out = []
    for raw in paths:
        path = Path(raw)
        manifest = path / COMPARE_MANIFEST
        if manifest.is_file():
            runs = json.loads(manifest.read_text())["runs"]
            out.extend(path / runs[v][0] for v in SIDE_BY_SIDE if runs.get(v))
        elif path.is_dir():
            out.append(path)
        else:
            raise UserError(f"{path}: not a run or comparison directory")
    return out


def _load_runs(run_dirs: list[str], backend: str | None):
    """{label: (model, cfg, run_dir)} for the runs in ``run_dirs``, on ``backend`` when given."""
    from qepi.training import load_model

    on = None if backend is None else Backend(name=backend)
    if on is not None:
        check_backend_settings(on)
    runs = {}
    for run_dir in _run_dirs(run_dirs):
        model, cfg = load_model(run_dir, backend=on)
        runs[run_dir.name] = (model, cfg, run_dir)
    return runs


def _examples(cfg: Config, split: str, n: int):
    """The first ``n`` examples of ``split`` of the run's dataset (a qepi.data.Split)."""
    import torch

    from qepi.data import load_dataset

    dataset = load_dataset(cfg.data, cfg.run.seed)
    data = getattr(dataset, split, None)
    if data is None or len(data) == 0:
        raise UserError(f"--split {split}: the run's dataset has no {split} examples")
    if n < 1:
        raise UserError(f"--examples must be >= 1, got {n}")
    return data.take(torch.arange(min(n, len(data)))), dataset


def _out_dir(out: str | None, default: Path) -> Path:
    out = Path(out) if out else default
    out.mkdir(parents=True, exist_ok=True)
    return out


def _fmt(value: float) -> str:
    return "inf" if math.isinf(value) else "nan" if math.isnan(value) else f"{value:.3g}"


def plateau(*, ansatz: str, qubits: str, layers: str, samples: int, cost: str, seed: int,
            out: str | None, as_json: bool) -> int:
    """qepi diagnose plateau: gradient variance against qubits and depth, fit and plot."""
    from qepi.diagnostics.plateau import parse_range, plateau_curve, plot_plateau
    

    if samples < 2:
        raise UserError(f"--samples must be >= 2, got {samples}")
    result = plateau_curve(ansatz, parse_range(qubits), parse_range(layers), samples, cost, seed)
    out = _out_dir(out, Path("runs") / f"plateau-{ansatz}-{cost}")
    (out / "plateau.json").write_text(result.to_json() + "\n")
    plot = plot_plateau(result, out / "plateau.png")
    if as_json:
        print(result.to_json())
        return 0
    print(f"Var[dC/dθ] of {ansatz} ({cost} cost, {samples} random initialisations)")
    print("layers \\ qubits " + " ".join(f"{q:>9d}" for q in result.qubits) + "   decay rate (r²)")
    for d, row in zip(result.layers, result.variances):
        fit = result.fits.get(str(d))
        tail = f"   {fit.rate:.3f} ({fit.r2:.2f})" if fit else ""
        print(f"{d:>15d} " + " ".join(f"{v:9.2e}" for v in row) + tail)
    print("decay rate: Var ∝ exp(-rate · qubits); a 2-design gives ln 2 ≈ 0.693")
    print(f"wrote {plot} and {out / 'plateau.json'}")
    return 0


def landscape(*, run_dirs: list[str], split: str, examples: int, backend: str | None, steps: int,
              span: float, seed: int, out: str | None) -> int:
    """qepi diagnose landscape: loss contours around the trained weights, side by side."""
    from qepi.diagnostics.landscape import loss_landscape, plot_landscapes, save_landscapes
    

    runs = _load_runs(run_dirs, backend)
    lands = {}
    for label, (model, cfg, _) in runs.items():
        batch, _ = _examples(cfg, split, examples)
        lands[label] = loss_landscape(model, batch, steps=steps, span=span, seed=seed)
    out = _out_dir(out, Path(run_dirs[0]))
    plot = plot_landscapes(lands, out / "landscape.png")
    save_landscapes(lands, out / "landscape.json")
    for label, land in lands.items():
        print(f"{label}: loss {land.center_loss:.4f} at the trained weights, "
              f"{land.losses.min():.4f}..{land.losses.max():.4f} around it, "
              f"roughness {land.roughness():.4f}")
    print(f"wrote {plot} and {out / 'landscape.json'}")
    return 0


def attention(*, run_dirs: list[str], split: str, examples: int, backend: str | None,
              out: str | None) -> int:
    """qepi diagnose attention: attention maps of chosen inputs, quantum beside classical."""
    from qepi.diagnostics.attention import plot_attention
    

    runs = _load_runs(run_dirs, backend)
    first_cfg = next(iter(runs.values()))[1]
    batch, dataset = _examples(first_cfg, split, examples)
    tokens = None
    if dataset.vocab and batch.x.dim() == 2:
        tokens = [[dataset.vocab[i] for i in row] for row in batch.x.tolist()]
    titles = [f"example {i}, label {int(y)}" for i, y in enumerate(batch.y.tolist())]
    out = _out_dir(out, Path(run_dirs[0]))
    plot = plot_attention({label: m for label, (m, _, _) in runs.items()}, batch.x,
                          out / "attention.png", mask=batch.mask, tokens=tokens, titles=titles)
    print(f"wrote {plot}")
    return 0


def entropy(*, run_dirs: list[str], split: str, examples: int, backend: str | None,
            as_json: bool) -> int:
    """qepi diagnose entropy: predictive, attention-head and token entanglement entropies."""
    from qepi.diagnostics.entropy import EntropyMonitor
    

    rows = {}
    for label, (model, cfg, _) in _load_runs(run_dirs, backend).items():
        batch, _ = _examples(cfg, split, examples)
        rows[label] = EntropyMonitor(batch.x, batch.mask).measure(model)
    if as_json:
        print(json.dumps(rows, indent=2))
        return 0
    for label, row in rows.items():
        print(f"{label} (nats)")
        for key, value in row.items():
            print(f"  {key:<60s} {value:.4f}")
    return 0


def calibration(*, run_dirs: list[str], backend: str | None, bins: int, as_json: bool) -> int:
    """qepi diagnose calibration: temperature fitted on dev, ECE before and after on test."""
    from qepi.diagnostics.calibration import expected_calibration_error, fit_temperature
    from qepi.training import predict
    

    rows = {}
    for label, (model, cfg, _) in _load_runs(run_dirs, backend).items():
        test, dataset = _examples(cfg, "test", 10**9)
        has_dev = dataset.dev is not None and len(dataset.dev) > 0
        fit_split = dataset.dev if has_dev else test  # without dev the fit is optimistic
        t = fit_temperature(predict(model, fit_split), fit_split.y)
        logits = predict(model, test)
        rows[label] = {"temperature": t, "fitted_on": "dev" if has_dev else "test",
                       "ece_before": expected_calibration_error(logits, test.y, bins),
                       "ece_after": expected_calibration_error(logits, test.y, bins, temperature=t)}
    if as_json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'run':<28s} {'temperature':>11s} {'fitted on':>9s} {'test ECE before':>15s} {'after':>8s}")
    for label, r in rows.items():
        print(f"{label:<28s} {r['temperature']:11.3f} {r['fitted_on']:>9s} "
              f"{r['ece_before']:15.4f} {r['ece_after']:8.4f}")
    return 0


def gradients(*, run_dirs: list[str], split: str, examples: int, backend: str | None, groups: int,
              repeats: int) -> int:
    """qepi diagnose gradients: per-layer gradient norm, variance and SNR at the trained weights."""
    from qepi.diagnostics.gradients import gradient_flow
    

    for label, (model, cfg, _) in _load_runs(run_dirs, backend).items():
        batch, _ = _examples(cfg, split, examples)
        stats = gradient_flow(model, batch, n_groups=groups, repeats=repeats)
        print(f"{label}")
        keys = ["norm", "variance", "snr"] + (["shot_snr"] if repeats > 1 else [])
        print(f"  {'layer':<44s}" + "".join(f"{k:>11s}" for k in keys))
        for name, s in stats.items():
            print(f"  {name:<44s}" + "".join(f"{_fmt(s[k]):>11s}" for k in keys))
    return 0


def circuits_export(*, catalog_dir: str, check: bool, qubits: int, layers: int, pairs: int, samples: int) -> int:
    """qepi circuits export DIR: write (or, with --check, verify) the circuit catalog."""
    from qepi.diagnostics.catalog import check_catalog, export_catalog
    

    settings = {"n_qubits": qubits, "n_layers": layers, "n_pairs": pairs, "n_samples": samples}
    if min(settings.values()) < 1:
        raise UserError("circuits export: --qubits, --layers, --pairs and --samples must be >= 1")
    if check:
        stale = check_catalog(catalog_dir, **settings)
        if stale:
            print(f"{catalog_dir}: out of date: {', '.join(stale)}; run `qepi circuits export {catalog_dir}`")
            return 1
        print(f"{catalog_dir}: up to date")
        return 0
    paths = export_catalog(catalog_dir, **settings)
    print(f"wrote {len(paths)} files to {catalog_dir}")
    return 0


def circuits_model(*, run_dir: str, out: str | None) -> int:
    """qepi circuits model RUN_DIR: a trained model's circuits as OpenQASM 3, weights bound."""
    from qepi.diagnostics.qasm import export_model_qasm
    from qepi.training import load_model
    

    model, _ = load_model(run_dir)
    out = Path(out) if out else Path(run_dir) / "qasm"
    paths = export_model_qasm(model, out)
    print(f"wrote {len(paths)} circuits and manifest.json to {out}")
    return 0
