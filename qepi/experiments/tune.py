"""Hyperparameter search with Ray Tune: ASHA early stopping or population-based training.

The grid's values are the search space (:func:`qepi.experiments.grid.parse_grid`). Every
Tune trial trains with :func:`qepi.experiments.runner.run` in ``runs/<trial id>/`` and
reports each epoch's dev accuracy and loss to Tune together with the checkpoint written at
that epoch's end (:class:`TuneReport`):

- ``asha``: ``samples`` configurations drawn at random from the grid; ASHA stops the
  weaker ones early (at 1, 2, 4, ... epochs it keeps the better half), so the budget goes
  to the promising ones.
- ``pbt``: a population of ``samples`` members trains in parallel. After every epoch (all
  members wait for each other: synchronous PBT) the weaker members copy the weights,
  optimizer state and settings of a stronger one (selection) and perturb the settings
  (mutation: a neighbouring grid value, or a fresh draw). PBT mutates ``train.*`` keys
  only, since copied weights must fit every member.

Every sample trains at ``run.seed``; selection is on dev accuracy, never on test. Train
the best configuration (``best.toml``) over seeds afterwards with ``qepi sweep``.

A search directory holds ``config.toml`` (the base config), ``tune-plan.json``, ``tune/``
(Tune's experiment state and checkpoints), ``runs/<trial id>/`` (a PBT member's run
directory holds its training since its last restore), ``history.jsonl`` (every trial's
metrics per epoch, with the member a PBT trial copied), then ``search.json``, ``best.toml``
and ``report.md``. Starting the same search again in the same directory continues it
(Tune's restore) instead of starting over.
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
from pathlib import Path
from typing import Any

from qepi.config import Config, apply_overrides, from_dict, to_dict, to_toml, update
from qepi.errors import UserError
from qepi.experiments.cluster import import_ray, largest_node_cpus, ray_session, trial_cpus, use_assigned_cpus
from qepi.experiments.grid import check_points, override, plan_trials
from qepi.experiments.rundir import (
    BEST,
    CHECKPOINT,
    CONFIG,
    HISTORY,
    REPORT,
    SEARCH,
    SEARCH_DIR,
    TRIALS,
    TUNE_PLAN,
    TUNE_STATE,
    continued_dir,
)
from qepi.experiments.runner import run
from qepi.experiments.tables import fmt, md_table, text_table, to_json, value_text
from qepi.training import Callback, atomic_write_text, load_checkpoint

SCHEDULERS = ("asha", "pbt")
METRIC = "dev_acc"


def resolve(base: Config, values: dict[str, Any]) -> Config:
    """``base`` with a Tune trial's sampled ``{key: value}`` applied.

    >>> from qepi.config import Config
    >>> resolve(Config(), {"train.lr": 0.1, "model.embedding": "classical"}).train.lr
    0.1
    """
    return apply_overrides(base, [override(k, v) for k, v in values.items()])


def adopt_state(trainer, state: dict[str, Any]) -> None:
    """Continue ``trainer`` from a checkpoint ``state`` (its own, or a stronger PBT member's)
    with the trainer's own ``train.lr`` and ``train.weight_decay``: the weights, optimizer
    moments and schedule position come from ``state``, the settings from the trainer's
    config (PBT's mutation takes effect)."""
    trainer.load_state(state)
    trainer.apply_train_settings()


class TuneReport(Callback):
    """Connects the Trainer to a Tune trial.

    At the start it restores the trial's Tune checkpoint, if any (after a restart, or the
    stronger member's state a PBT member copies) with :func:`adopt_state`. At each epoch's
    end it reports the epoch's metrics with that epoch's checkpoint, and appends them to
    ``history`` (one JSON line per trial and epoch, with ``copied_from`` after a PBT copy).
    """

    def __init__(self, trial_id: str, values: dict[str, Any], history: str | Path):
        self.trial_id, self.values, self.history = trial_id, values, Path(history)
        self.copied_from: str | None = None
        self.pending: dict[str, Any] | None = None

    def on_train_start(self, trainer) -> None:
        from ray import tune

        checkpoint = tune.get_checkpoint()
        if checkpoint is None:
            return
        with checkpoint.as_directory() as directory:
            state = load_checkpoint(Path(directory) / CHECKPOINT)
        adopt_state(trainer, state)
        owner = state["config"]["run"]["name"]
        self.copied_from = None if owner == self.trial_id else owner

    def on_epoch_end(self, trainer, epoch: int, metrics: dict[str, Any]) -> None:
        self.pending = {**metrics, "epoch": epoch + 1}

    def on_checkpoint(self, trainer, path: Path) -> None:
        if self.pending is None:  # a mid-epoch checkpoint (train.checkpoint_every)
            return
        from ray import tune

        metrics, self.pending = self.pending, None
        record = {"trial": self.trial_id, **metrics, "values": self.values}
        if self.copied_from is not None:
            record["copied_from"], self.copied_from = self.copied_from, None
        with self.history.open("a") as handle:  # one short line: an atomic append
            handle.write(json.dumps(record) + "\n")
        with tempfile.TemporaryDirectory(prefix="qepi-tune-") as directory:
            shutil.copy(path, directory)
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(directory))


def _trainable(values: dict[str, Any], base: dict[str, Any], out: str, callbacks) -> None:
    """One Tune trial (runs in a Ray actor); its run directory is ``out/runs/<trial id>``.
    ``base`` is the base config as plain data."""
    import ray
    from ray import tune

    use_assigned_cpus(ray)
    trial_id = tune.get_context().get_trial_id()
    cfg = update(resolve(from_dict(base), values), run={"name": trial_id})
    report = TuneReport(trial_id, values, Path(out) / HISTORY)
    run(cfg, Path(out) / TRIALS / trial_id, callbacks=[report, *callbacks], progress=False,
        report=False, overwrite=True)


def _trial_dirname(trial) -> str:
    """A trial's directory under ``tune/`` is its id, as in ``runs/`` and ``history.jsonl``."""
    return trial.trial_id


class _Resources:
    """Tune's per-trial resources: the CPUs :func:`trial_cpus` reserves for the sampled config."""

    def __init__(self, base: Config, node_cpus: int, cpus_per_trial: int):
        self.base, self.node_cpus, self.cpus_per_trial = base, node_cpus, cpus_per_trial

    def __call__(self, values: dict[str, Any]):
        from ray import tune

        cpus = trial_cpus(resolve(self.base, values), self.node_cpus, self.cpus_per_trial)
        return tune.PlacementGroupFactory([{"CPU": cpus}])


def _check(base: Config, grid: dict[str, list[Any]], scheduler: str, samples: int) -> None:
    if scheduler not in SCHEDULERS:
        raise UserError(f"--tune: unknown scheduler {scheduler!r} (known: {', '.join(SCHEDULERS)})")
    if not grid:
        raise UserError("--tune needs a search space: give --grid KEY=V1,V2 at least once")
    least = 2 if scheduler == "pbt" else 1
    if samples < least:
        raise UserError(f"--samples: {scheduler} needs at least {least}, got {samples}")
    if scheduler == "pbt":
        for key in grid:
            if not key.startswith("train."):
                raise UserError(f"--grid {key}: PBT mutates train.* keys only (members copy each "
                                f"other's weights, which must fit every member's model)")
    check_points(plan_trials(base, grid, 1), need_dev=True)


def _max_epochs(base: Config, grid: dict[str, list[Any]]) -> int:
    """The most epochs any grid point plans (``train.epochs = 0`` sizes it from the data)."""
    from qepi.data import load_dataset
    from qepi.experiments.sweep import plan_trials
    from qepi.training.trainer import planned_epochs

    return max(planned_epochs(t.cfg.train, len(load_dataset(t.cfg.data, t.seed).train))[0]
               for t in plan_trials(base, grid, 1))


def _scheduler(kind: str, grid: dict[str, list[Any]], samples: int, epochs: int):
    from ray.tune.schedulers import ASHAScheduler, PopulationBasedTraining

    if kind == "asha":
        return ASHAScheduler(time_attr="training_iteration", max_t=epochs, grace_period=1,
                             reduction_factor=2, stop_last_trials=False)
    return PopulationBasedTraining(
        time_attr="training_iteration", perturbation_interval=1, hyperparam_mutations=grid,
        quantile_fraction=min(0.5, max(0.25, 1 / samples)), resample_probability=0.25, synch=True)


def default_tune_dir(cfg: Config) -> Path:
    """``<run.out_dir>/tune-<run.name or task>``."""
    return Path(cfg.run.out_dir) / f"tune-{cfg.run.name or cfg.data.task}"


def search(cfg: Config, grid: dict[str, list[Any]], scheduler: str = "asha", samples: int = 4,
           out: str | Path | None = None, *, address: str | None = None, cpus_per_trial: int = 1,
           retries: int = 3, callbacks=(), progress: bool = True) -> dict[str, Any]:
    """Search ``grid`` with Ray Tune (``scheduler`` ``"asha"`` or ``"pbt"``), ``samples``
    trials (PBT: the population), on a local Ray instance or the cluster at ``address``.
    Writes the search directory and returns what ``search.json`` holds: every trial's
    values, epochs trained and last dev accuracy, the best trial, and PBT's exploitations.
    ``retries``: restarts from the last checkpoint of a trial whose actor or node died.
    """
    _check(cfg, grid, scheduler, samples)
    out = Path(out if out is not None else default_tune_dir(cfg)).resolve()
    plan = {"scheduler": scheduler, "samples": samples, "grid": grid}
    _prepare(out, cfg, plan)
    import_ray()
    from ray import tune

    epochs = _max_epochs(cfg, grid)
    with ray_session(address) as ray:
        trainable = tune.with_resources(
            tune.with_parameters(_trainable, base=to_dict(cfg), out=str(out), callbacks=list(callbacks)),
            _Resources(cfg, largest_node_cpus(ray), cpus_per_trial))
        if tune.Tuner.can_restore(str(out / TUNE_STATE)):
            if progress:
                print(f"continuing the Tune search in {out / TUNE_STATE}")
            tuner = tune.Tuner.restore(str(out / TUNE_STATE), trainable, resume_errored=True)
        else:
            tuner = tune.Tuner(
                trainable,
                param_space={k: tune.choice(v) for k, v in grid.items()},
                tune_config=tune.TuneConfig(metric=METRIC, mode="max", num_samples=samples,
                                            scheduler=_scheduler(scheduler, grid, samples, epochs),
                                            reuse_actors=True, trial_dirname_creator=_trial_dirname),
                run_config=tune.RunConfig(
                    name=TUNE_STATE, storage_path=str(out), verbose=1 if progress else 0,
                    failure_config=tune.FailureConfig(max_failures=retries)))
        results = tuner.fit()
        found = _summarize(results, cfg, plan, epochs, out)
    atomic_write_text(out / BEST, to_toml(resolve(cfg, found["best"]["values"])))
    _write_report(out, found)
    return found


def _prepare(out: Path, base: Config, plan: dict[str, Any]) -> None:
    continued_dir(out, SEARCH_DIR, {CONFIG: base, TUNE_PLAN: plan}, "config, --tune, --samples or --grid")
    atomic_write_text(out / CONFIG, to_toml(base))
    atomic_write_text(out / TUNE_PLAN, json.dumps(plan, indent=2) + "\n")


def _summarize(results, base: Config, plan: dict[str, Any], epochs: int, out: Path) -> dict[str, Any]:
    history: dict[str, list[dict[str, Any]]] = {}
    if (out / HISTORY).is_file():
        for line in (out / HISTORY).read_text().splitlines():
            record = json.loads(line)
            history.setdefault(record["trial"], []).append(record)
    trials = []
    for r in results:
        trial_id = Path(r.path).name  # see _trial_dirname
        last = history.get(trial_id, [{}])[-1]
        status = "stopped early" if last.get("epoch", 0) < epochs else "finished"
        trials.append({
            "trial": trial_id, "values": last.get("values", dict(r.config)),
            "epochs": last.get("epoch", 0), "dev_acc": last.get(METRIC, math.nan),
            "dev_loss": last.get("dev_loss", math.nan), "status": "failed" if r.error else status,
            "error": None if r.error is None else str(r.error).splitlines()[0],
        })
    if all(math.isnan(t["dev_acc"]) for t in trials):
        first = next((t["error"] for t in trials if t["error"]), "no trial reported")
        raise UserError(f"every Tune trial failed (first: {first}); see {out / TUNE_STATE}")
    trials.sort(key=lambda t: (-t["dev_acc"] if not math.isnan(t["dev_acc"]) else math.inf, t["trial"]))
    exploits = [{"member": r["trial"], "copied_from": r["copied_from"], "at_epoch": r["epoch"] - 1,
                 "values": r["values"]}
                for records in history.values() for r in records if "copied_from" in r]
    return {"task": base.data.task, **plan, "epochs": epochs, "metric": METRIC,
            "best": trials[0], "trials": trials, "exploits": exploits}


def format_search(found: dict[str, Any]) -> str:
    """The search as a plain-text table, best trial first (for stdout)."""
    keys = list(found["grid"])
    rows = [["trial", *keys, "epochs", "dev acc", "status"]]
    for t in found["trials"]:
        rows.append([t["trial"], *(value_text(t["values"].get(k, "")) for k in keys), str(t["epochs"]),
                     fmt(t["dev_acc"]), t["status"]])
    text = [f"{found['task']}: Ray Tune {found['scheduler']} over {len(found['trials'])} trial(s), "
            f"{found['epochs']} epoch(s) max, selected on dev accuracy",
            *text_table(rows, left=len(rows[0]))]
    if found["scheduler"] == "pbt":
        text.append(f"\n{len(found['exploits'])} exploitation(s): a weaker member copied a "
                    f"stronger one's weights and perturbed its settings")
    best = found["best"]
    text.append(f"\nbest: {best['trial']} (dev acc {best['dev_acc']:.3f}); its config is best.toml")
    return "\n".join(text)


def _write_report(out: Path, found: dict[str, Any]) -> None:
    table = format_search(found).splitlines()
    method = "ASHA early stopping" if found["scheduler"] == "asha" else "population-based training"
    lines = [f"# Tune search: {found['task']}", "",
             f"Ray Tune with {method}; "
             f"every trial at the base seed, selected on dev accuracy. Metrics per trial and epoch "
             f"are in `history.jsonl`, Tune's experiment in `tune/`. The best configuration is "
             f"`best.toml`: train it over seeds with `qepi sweep best.toml --seeds 5` before "
             f"drawing conclusions.", "",
             "```", *table, "```", ""]
    if found["exploits"]:
        rows = [["member", "copied from", "after epoch", "its values from then on"]]
        rows += [[e["member"], e["copied_from"], str(e["at_epoch"]),
                  ", ".join(f"{k}={value_text(v)}" for k, v in e["values"].items())] for e in found["exploits"]]
        lines += ["## Exploitations (PBT)", "", md_table(rows), ""]
    atomic_write_text(out / SEARCH, to_json(found) + "\n")
    atomic_write_text(out / REPORT, "\n".join(lines))
