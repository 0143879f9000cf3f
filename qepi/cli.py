"""The ``qepi`` command line: parses arguments and calls a handler of :mod:`qepi.commands`.

Each sub-command names its handler; the handler gets the parsed options as keyword
arguments, exactly as the parser defines them. A user error (bad config, missing file,
impossible option: :class:`qepi.errors.UserError` or an operating-system error such as a
missing file) prints one line naming the problem and exits with code 2; ``--debug`` shows
the traceback instead. Any other exception is a bug in qepi and keeps its traceback
(exit code 1).

Parsing is cheap: the handler modules import the library (torch, PennyLane, Ray) inside
their handlers, so ``qepi --help`` and ``qepi config show`` start without it.
"""

from __future__ import annotations

import argparse
import sys
import typing

from qepi.commands import bench, config, diagnose, experiments, sweep
from qepi.config import AnsatzName, Train
from qepi.errors import UserError

EXIT_USER_ERROR = 2
ROUTING = ("command", "config_command", "bench", "diagnose", "circuits", "debug", "handler")


def _add_overrides(p: argparse.ArgumentParser) -> None:
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set train.lr=0.01 (repeatable)")


def _add_experiment_commands(sub) -> None:
    p = sub.add_parser(
        "train", help="train one model from a TOML config",
        description="Train one model; writes runs/<name>/ (config, metrics, checkpoints, "
                    "summary, report). Continue an interrupted run with --resume RUN_DIR.")
    p.add_argument("config", nargs="?", help="TOML config file (omit with --resume)")
    _add_overrides(p)
    p.add_argument("--out", help="run directory (default: <run.out_dir>/<run.name>)")
    p.add_argument("--from", dest="warm_start", metavar="RUN_DIR",
                   help="start from the final weights of an earlier run (staged training)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run from its last checkpoint")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier run in the run directory")
    p.add_argument("--quiet", action="store_true", help="no progress output (a bar on a terminal, one line per epoch otherwise)")
    p.set_defaults(handler=experiments.train)

    p = sub.add_parser(
        "evaluate", help="trained weights on a split, on the run's backend or another",
        description="Evaluate the trained weights of runs on a split (test by default), on "
                    "the run's backend or with backend.* overrides, e.g. a final check on Aer "
                    "with shots and a fake device's noise. Writes nothing.")
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run directories")
    _add_overrides(p)
    p.add_argument("--split", default="test", choices=["train", "dev", "test"])
    p.add_argument("--json", dest="as_json", action="store_true", help="one JSON object per run")
    p.set_defaults(handler=experiments.evaluate)

    p = sub.add_parser(
        "compare", help="quantum vs classical twin vs no-entanglement control over seeds",
        description="Train the configured quantum model, its classical twin and the "
                    "no-entanglement control on the same data, seeds and budget; print the "
                    "comparison and write report.md with plots.")
    p.add_argument("config", help="TOML config file")
    _add_overrides(p)
    p.add_argument("--seeds", type=int, default=None,
                   help="number of seeds (default: 10 below 200 training examples, 5 below 2000, else 3)")
    p.add_argument("--no-references", dest="references", action="store_false",
                   help="skip the classical references (logistic regression, standard transformer)")
    p.add_argument("--out", help="comparison directory (default: <run.out_dir>/compare-<name>)")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier comparison in --out")
    p.add_argument("--json", dest="as_json", action="store_true", help="print the comparison as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress output (a bar on a terminal, one line per epoch otherwise)")
    p.set_defaults(handler=experiments.compare)

    p = sub.add_parser("marks", help="task marks: freeze the genome trained on task A, learn a "
                                     "mark set for task B; vs full fine-tuning and from scratch")
    p.add_argument("config", help="TOML config file of task A (with an epigenetic regulation)")
    _add_overrides(p)
    p.add_argument("--task-b", action="append", default=[], metavar="DATA.KEY=VALUE",
                   help="how task B's data differs, e.g. --task-b data.pwm_entropy=0.1 (repeatable; "
                        "task B's data is always generated with seed run.seed + 1)")
    p.add_argument("--out", help="output directory (default: <run.out_dir>/marks-<name>)")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier marks experiment in --out")
    p.add_argument("--json", dest="as_json", action="store_true", help="print the figures as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress output (a bar on a terminal, one line per epoch otherwise)")
    p.set_defaults(handler=experiments.marks)

    p = sub.add_parser("report", help="render the report of a run, comparison or sweep directory again")
    p.add_argument("run_dir", help="a directory written by `qepi train`, `qepi compare` or `qepi sweep`")
    p.set_defaults(handler=experiments.report)


def _add_config_commands(sub) -> None:
    commands = sub.add_parser("config", help="inspect configurations").add_subparsers(
        dest="config_command", required=True, metavar="{show,reference}")
    p = commands.add_parser("show", help="print the resolved config (every key, overrides applied)")
    p.add_argument("config", help="TOML config file")
    _add_overrides(p)
    p.set_defaults(handler=config.show)
    p = commands.add_parser("reference", help="print every config key with its default and meaning")
    p.set_defaults(handler=config.reference)


def _add_threads(p: argparse.ArgumentParser) -> None:
    p.add_argument("--threads", type=int, default=Train().threads,
                   help=f"torch threads (default {Train().threads}, as train.threads; "
                        f"0 = torch's default, one per core)")


def _add_bench_commands(sub) -> None:
    benches = sub.add_parser("bench", help="side-by-side performance measurements").add_subparsers(
        dest="bench", required=True, metavar="{exact,aer,noisy,shots}")

    p = benches.add_parser("exact", help="training-step time on exact simulators vs the classical twin")
    p.add_argument("--qubits", type=int, nargs="+", default=[4], help="qubit counts to measure")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--tokens", type=int, default=16)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--layers", type=int, default=2, help="ansatz layers of every circuit")
    p.add_argument("--loop-batch", type=int, default=1,
                   help="sequences for the per-token loop, scaled to --batch (0 = skip it)")
    p.add_argument("--strategies", action="store_true",
                   help="also time the exact backend forced to fold and to gate-by-gate")
    _add_threads(p)
    p.add_argument("--cpu-time", action="store_true",
                   help="report process CPU time instead of wall-clock (steadier on a busy machine)")
    p.add_argument("--json", dest="as_json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(handler=bench.exact)

    p = benches.add_parser("aer", help="parameter-shift step on Aer vs raw Aer and PennyLane")
    p.add_argument("--qubits", type=int, default=6)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--tokens", type=int, default=32, help="circuit inputs (rows) per step")
    p.add_argument("--shots", type=int, default=0)
    p.add_argument("--repeats", type=int, default=3, help="timed repeats (the best counts)")
    p.add_argument("--pennylane-tokens", type=int, default=1,
                   help="tokens for the PennyLane baseline (scaled per circuit)")
    p.add_argument("--expression", type=float, nargs="+", metavar="RATIO",
                   help="also time an epigenetic layer with hard marks at these expression "
                        "ratios, e.g. --expression 1.0 0.2 (silenced gates are not shifted)")
    _add_threads(p)
    p.add_argument("--json", dest="as_json", action="store_true", help="print one JSON object")
    p.set_defaults(handler=bench.aer)

    p = benches.add_parser("noisy", help="parameter-shift step with shots (and noise) on aer vs exact")
    p.add_argument("--qubits", type=int, nargs="+", default=[4, 6])
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--tokens", type=int, default=16, help="circuit inputs (rows) per step")
    p.add_argument("--shots", type=int, default=1000)
    p.add_argument("--repeats", type=int, default=2, help="timed repeats (the best counts)")
    p.add_argument("--threads", type=int, default=1, help="Aer threads (torch uses 1)")
    p.add_argument("--json", dest="as_json", action="store_true", help="print one JSON object per row")
    p.set_defaults(handler=bench.noisy)

    p = benches.add_parser("shots", help="training shots Adam, SPSA and Rosalin spend to reach a dev accuracy",
                           description="Train one config (default configs/motif.toml) on the exact "
                                       "backend with shots, once per optimizer, and print the "
                                       "training shots each spent to reach the Adam run's best dev "
                                       "accuracy. The long version: --train 512 --epochs 30.")
    p.add_argument("--config", default="configs/motif.toml", help="TOML config (default configs/motif.toml)")
    _add_overrides(p)
    p.add_argument("--shots", type=int, default=1000, help="backend.shots of every circuit (default 1000)")
    p.add_argument("--epochs", type=int, default=6, help="epochs per optimizer (default 6)")
    p.add_argument("--train", type=int, default=256, help="training examples (default 256)")
    p.add_argument("--batch", type=int, default=8, help="training batch size (default 8)")
    p.add_argument("--mitigation-shots", type=int, default=100000,
                   help="shots of the mitigated-vs-unmitigated error section (default 100000; 0 skips it)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--optimizers", nargs="+", default=["adam", "spsa", "rosalin"],
                   help="optimizers to train with (default adam spsa rosalin)")
    _add_threads(p)
    p.add_argument("--json", dest="as_json", action="store_true", help="print one JSON object per optimizer")
    p.set_defaults(handler=bench.shots)


def _add_sweep_commands(sub) -> None:
    p = sub.add_parser(
        "sweep", help="a grid of config values x seeds, in parallel on Ray (local or a cluster)",
        description="Train every (grid point, seed) as a Ray task, each in its own run directory, "
                    "then write sweep.json and report.md (mean ± 95% CI over seeds; quantum vs "
                    "classical where the grid varies a layer kind). Starting it again in the same "
                    "--out skips finished trials. With --tune, search the grid's values with Ray "
                    "Tune instead (ASHA early stopping or population-based training). "
                    "Needs Ray: pip install 'qepi[distributed]'.")
    p.add_argument("config", help="base TOML config file")
    _add_overrides(p)
    p.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2",
                   help="values of one config key, e.g. --grid model.embedding=quantum,classical "
                        "(repeatable; lists in brackets: --grid data.classes=[0,1],[3,8])")
    p.add_argument("--seeds", type=int, default=1, help="seeds per grid point (default 1)")
    p.add_argument("--address", help="a running Ray cluster, e.g. auto or HEAD_IP:6379 "
                                     "(default: a local Ray instance with this machine's cores)")
    p.add_argument("--out", help="sweep directory (default: <run.out_dir>/sweep-<name>); on a "
                                 "cluster it must be on a filesystem every node shares")
    p.add_argument("--cpus-per-trial", type=int, default=1,
                   help="CPUs each non-Aer trial reserves (Aer trials reserve backend.threads; "
                        "0 threads reserve a whole node) (default 1)")
    p.add_argument("--retries", type=int, default=3,
                   help="times a trial is run again after its worker or node died (default 3)")
    p.add_argument("--tune", choices=("asha", "pbt"),
                   help="search with Ray Tune: asha (early stopping) or pbt (population-based training)")
    p.add_argument("--samples", type=int, default=4,
                   help="--tune: configurations sampled from the grid (PBT: the population size) (default 4)")
    p.add_argument("--json", dest="as_json", action="store_true", help="print the aggregate as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.set_defaults(handler=sweep.sweep)


def _add_diagnostic_commands(sub) -> None:
    diagnoses = sub.add_parser("diagnose", help="will it train, and what is the quantum part doing").add_subparsers(
        dest="diagnose", required=True, metavar="{plateau,gradients,entropy,calibration,attention,landscape}")

    p = diagnoses.add_parser("plateau", help="gradient variance over random inits vs qubits and depth")
    p.add_argument("--ansatz", default="strongly_entangling", choices=typing.get_args(AnsatzName),
                   help="ansatz name (default strongly_entangling)")
    p.add_argument("--qubits", default="2-8:2", help="qubit counts, e.g. 2-12, 2-12:2 or 2,4,6 (default 2-8:2)")
    p.add_argument("--layers", default="1,4,8", help="depths, same syntax (default 1,4,8)")
    p.add_argument("--samples", type=int, default=100, help="random initialisations per point")
    p.add_argument("--cost", default="local", choices=["local", "global"],
                   help="local = <Z_0>, global = <Z...Z> (default local)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="output directory (default runs/plateau-<ansatz>-<cost>)")
    p.add_argument("--json", dest="as_json", action="store_true", help="print the result as JSON")
    p.set_defaults(handler=diagnose.plateau)

    def runs(p, examples: int, split: str = "test") -> None:
        p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR",
                       help="run directories, or a comparison directory (its quantum and classical runs)")
        p.add_argument("--split", default=split, choices=["train", "dev", "test"])
        p.add_argument("--examples", type=int, default=examples, help="examples of the split to use")
        p.add_argument("--backend", help="evaluate on this backend instead of the run's")

    p = diagnoses.add_parser("gradients", help="per-layer gradient norm, variance and SNR of a trained run")
    runs(p, 64, "train")
    p.add_argument("--groups", type=int, default=8, help="batch slices for the variance")
    p.add_argument("--repeats", type=int, default=1, help="> 1: also the shot-noise SNR")
    p.set_defaults(handler=diagnose.gradients)

    p = diagnoses.add_parser("entropy", help="predictive, attention-head and entanglement entropies")
    runs(p, 64)
    p.add_argument("--json", dest="as_json", action="store_true")
    p.set_defaults(handler=diagnose.entropy)

    p = diagnoses.add_parser("calibration", help="temperature scaling: test ECE before and after")
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    p.add_argument("--backend", help="evaluate on this backend instead of the run's")
    p.add_argument("--bins", type=int, default=15, help="confidence bins of the ECE")
    p.add_argument("--json", dest="as_json", action="store_true")
    p.set_defaults(handler=diagnose.calibration)

    p = diagnoses.add_parser("attention", help="attention maps of chosen inputs, side by side")
    runs(p, 4)
    p.add_argument("--out", help="output directory (default: the first RUN_DIR)")
    p.set_defaults(handler=diagnose.attention)

    p = diagnoses.add_parser("landscape", help="loss contours along two filter-normalised directions")
    runs(p, 32)
    p.add_argument("--steps", type=int, default=9, help="grid points per direction")
    p.add_argument("--span", type=float, default=1.0, help="grid half-width")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="output directory (default: the first RUN_DIR)")
    p.set_defaults(handler=diagnose.landscape)

    circuits = sub.add_parser("circuits", help="the circuit catalog and OpenQASM 3 export").add_subparsers(
        dest="circuits", required=True, metavar="{export,model}")
    p = circuits.add_parser("export", help="write the catalog of every encoding and ansatz")
    p.add_argument("catalog_dir", metavar="DIR", help="catalog directory, e.g. circuits/")
    p.add_argument("--check", action="store_true", help="only report whether DIR is up to date (exit 1 if not)")
    p.add_argument("--qubits", type=int, default=4, help="circuit width (default 4)")
    p.add_argument("--layers", type=int, default=2, help="ansatz layers (default 2)")
    p.add_argument("--pairs", type=int, default=5000, help="state pairs for expressibility (default 5000)")
    p.add_argument("--samples", type=int, default=2000, help="states for entangling capability (default 2000)")
    p.set_defaults(handler=diagnose.circuits_export)
    p = circuits.add_parser("model", help="a trained run's circuits as OpenQASM 3 with its weights bound")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--out", help="output directory (default RUN_DIR/qasm)")
    p.set_defaults(handler=diagnose.circuits_model)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="qepi", description="Hybrid quantum-classical transformers on simulators.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_experiment_commands(sub)
    _add_config_commands(sub)
    _add_bench_commands(sub)
    _add_diagnostic_commands(sub)
    _add_sweep_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run ``qepi`` with ``argv``; returns the exit code."""
    args = build_parser().parse_args(argv)
    options = {key: value for key, value in vars(args).items() if key not in ROUTING}
    try:
        return int(args.handler(**options) or 0)
    except (UserError, OSError) as err:
        if args.debug:
            raise
        print(f"qepi: error: {err}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("qepi: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
