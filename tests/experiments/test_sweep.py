"""Sweeps on Ray: the grid, CPU reservations, a local 2x2 grid x 2 seeds, a killed worker's
trial retried, restarts that repeat no finished trial, and Tune (ASHA, PBT) smoke tests.

The Ray tests share one local Ray instance (2 CPUs) for the module and skip with the install
hint when Ray is missing. Every trial is tiny: 2 qubits, one or two steps.
"""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path

import pytest

from qepi import cli
from qepi.config import Config, load, to_toml, update
from qepi.errors import UserError
from qepi.experiments import sweep as sw
from qepi.experiments.cluster import import_ray, trial_cpus
from qepi.experiments.grid import parse_grid, plan_trials, trial_name
from qepi.training import Callback, read_metrics

TINY = update(
    Config(),
    circuit={"n_qubits": 2, "n_layers": 1},
    model={"embedding": "quantum", "attention": "classical", "d_model": 4, "n_heads": 1, "d_ff": 8},
    data={"task": "parity", "seq_len": 4, "n_train": 8, "n_dev": 4, "n_test": 8},
    train={"epochs": 1, "batch_size": 8},
)
GRID = ["model.embedding=quantum,classical", "train.lr=0.05,0.1"]


# ---------------------------------------------------------------------- no Ray needed
class TestGrid:
    def test_values_are_typed_and_keys_sorted(self):
        grid = parse_grid(["train.lr=0.1, 1e-2", "data.classes=[0,1],[3, 8]",
                              "circuit.entangling=true,false"], Config())
        assert grid == {"circuit.entangling": [True, False], "data.classes": [[0, 1], [3, 8]],
                        "train.lr": [0.1, 0.01]}

    @pytest.mark.parametrize("spec, message", [
        ("train.lr=fast", "train.lr: expected a number"),
        ("train.speed=1,2", "train.speed: unknown key"),
        ("run.seed=1,2", "--grid run.seed: cannot be a grid key (vary seeds with --seeds)"),
        ("train.lr=0.1,0.10", "--grid train.lr: value '0.10' listed twice"),
        ("train.lr=0.1,", "--grid train.lr: empty value"),
        ("train.lr", "expected section.key=value1,value2"),
    ])
    def test_bad_specs_name_the_key(self, spec, message):
        with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")):
            parse_grid([spec], Config())

    def test_a_key_given_twice_is_refused(self):
        with pytest.raises(UserError, match="given twice"):
            parse_grid(["train.lr=0.1", "train.lr=0.2"], Config())

    def test_trial_names_are_unique_and_stable(self):
        trials = plan_trials(TINY, parse_grid(GRID, TINY), seeds=2)
        names = [t.name for t in trials]
        assert len(set(names)) == 8
        again = plan_trials(TINY, parse_grid(list(reversed(GRID)), TINY), seeds=2)
        assert [t.name for t in again] == names  # the order of --grid flags does not matter
        t = trials[-1]
        assert t.cfg.run.seed == t.seed == 1 and t.cfg.run.name == t.name
        assert (t.cfg.model.embedding, t.cfg.train.lr) == (t.point["model.embedding"], t.point["train.lr"])

    def test_values_with_other_characters_get_distinct_names(self):
        a = trial_name({"data.classes": [0, 1]}, 0)
        b = trial_name({"data.classes": [0, 1, 2]}, 0)
        c = trial_name({"data.classes": ["0_1"]}, 0)
        assert len({a, b, c}) == 3 and all("/" not in n and " " not in n for n in (a, b, c))


class TestCpuReservation:
    @pytest.mark.parametrize("sections, default, node, expected", [
        ({"backend": {"name": "aer", "threads": 2}}, 1, 4, 2),
        ({"backend": {"name": "aer", "threads": 0}}, 1, 4, 4),  # 0 = all cores: a whole node
        ({"backend": {"name": "aer", "threads": 2}, "train": {"threads": 3}}, 1, 4, 3),
        ({"backend": {"name": "default.qubit", "threads": 3}}, 1, 4, 1),  # Aer threads only
        ({"train": {"threads": 2}}, 1, 4, 2),
        ({"train": {"threads": 0}}, 2, 4, 2),  # torch's default: the CPUs reserved
        ({"backend": {"name": "lightning.qubit"}}, 3, 4, 3),
    ])
    def test_rule(self, sections, default, node, expected):
        assert trial_cpus(update(Config(), **sections), node, default) == expected

    def test_more_than_a_node_is_refused(self):
        with pytest.raises(UserError, match="backend.threads = 8: .* largest Ray node has \\(4\\)"):
            trial_cpus(update(Config(), backend={"name": "aer", "threads": 8}), 4)
        with pytest.raises(UserError, match="train.threads = 6"):
            trial_cpus(update(Config(), train={"threads": 6}), 4)
        with pytest.raises(UserError, match="--cpus-per-trial"):
            trial_cpus(Config(), 4, default=5)


def test_without_ray_the_hint_is_one_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now raises ImportError
    with pytest.raises(UserError, match=r"pip install 'qepi\[distributed\]'"):
        import_ray()


def test_cli_bad_grid_exits_2(tmp_path, capsys):
    config = tmp_path / "c.toml"
    config.write_text(to_toml(TINY))
    assert cli.main(["sweep", str(config), "--grid", "train.lr=fast", "--out", str(tmp_path / "s")]) == 2
    assert "train.lr: expected a number" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()  # nothing written before the grid is valid


def test_adopt_state_keeps_weights_and_applies_the_members_lr():
    """PBT: a member copies a stronger member's state but trains with its own lr."""
    import torch

    from qepi.data import load_dataset
    from qepi.experiments.tune import adopt_state
    from qepi.models import HybridTransformer
    from qepi.training import Trainer

    cfg = update(TINY, model={"embedding": "classical"}, train={"epochs": 4, "lr": 0.01, "weight_decay": 0.0})
    data = load_dataset(cfg.data, 0)
    donor = Trainer(HybridTransformer(cfg, data.spec), cfg, data, progress=False)
    for _ in range(2):
        donor.train_step(data.train)
    mutated = update(cfg, train={"lr": 0.3, "weight_decay": 0.01})
    member = Trainer(HybridTransformer(mutated, data.spec), mutated, data, progress=False)
    adopt_state(member, donor.state())
    for a, b in zip(member.model.state_dict().values(), donor.model.state_dict().values()):
        assert torch.equal(a, b)
    cosine = 0.5 * (1 + math.cos(math.pi * 2 / 4))  # by hand: step 2 of 4 (1 step per epoch)
    group = member.optimizer.param_groups[0]
    assert group["lr"] == pytest.approx(0.3 * cosine) and group["weight_decay"] == 0.01
    assert member.scheduler.get_last_lr()[0] == pytest.approx(0.3 * cosine)
    member.train_step(data.train)
    assert member.scheduler.get_last_lr()[0] == pytest.approx(0.3 * 0.5 * (1 + math.cos(math.pi * 3 / 4)))


# ---------------------------------------------------------------------- on a local Ray instance
@pytest.fixture(scope="module")
def ray_local():
    ray = pytest.importorskip("ray", reason="Ray is not installed: pip install 'qepi[distributed]' "
                                            "(make test installs it)")
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
             logging_level="ERROR")
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # KillOnce for the workers
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def grid_sweep(ray_local, tmp_path_factory):
    """``qepi sweep`` of a 2x2 grid x 2 seeds through the CLI."""
    root = tmp_path_factory.mktemp("sweep")
    (root / "tiny.toml").write_text(to_toml(TINY))
    args = ["sweep", str(root / "tiny.toml"), "--seeds", "2", "--out", str(root / "out"), "--quiet"]
    for spec in GRID:
        args += ["--grid", spec]
    assert cli.main(args) == 0
    return root / "out"


def _summaries(out: Path) -> dict[str, dict]:
    return {d.name: json.loads((d / "summary.json").read_text()) for d in (out / "runs").iterdir()}


class TestLocalGrid:
    def test_eight_run_directories_and_the_aggregate(self, grid_sweep):
        runs = sorted((grid_sweep / "runs").iterdir())
        assert len(runs) == 8
        for run_dir in runs:
            assert (run_dir / "summary.json").is_file()
            assert load(run_dir / "config.toml").run.name == run_dir.name
        for name in ("sweep.json", "report.md", "accuracy.png", "learning_curves.png", "sweep-plan.json"):
            assert (grid_sweep / name).is_file()
        assert "## Quantum vs classical" in (grid_sweep / "report.md").read_text()

    def test_report_renders_a_sweep_again(self, grid_sweep):
        report = grid_sweep / "report.md"
        before = report.read_text()
        report.unlink()
        assert cli.main(["report", str(grid_sweep)]) == 0
        assert report.read_text() == before

    def test_confidence_intervals_by_hand(self, grid_sweep):
        from scipy import stats

        agg = json.loads((grid_sweep / "sweep.json").read_text())
        summaries = _summaries(grid_sweep)
        assert len(agg["points"]) == 4 and agg["missing"] == []
        for p in agg["points"]:
            rows = [summaries[name] for name in p["runs"]]
            assert sorted(r["seed"] for r in rows) == [0, 1]
            losses = [r["test_loss"] for r in rows]
            low, high = stats.t.interval(0.95, 1, loc=sum(losses) / 2, scale=stats.sem(losses))
            assert p["test_loss"]["mean"] == pytest.approx((low + high) / 2)
            assert p["test_loss"]["ci"] == pytest.approx((high - low) / 2)
            assert p["params"] == rows[0]["params"] and p["kind"] == rows[0]["kind"]

    def test_quantum_vs_classical_is_paired_by_seed(self, grid_sweep):
        agg = json.loads((grid_sweep / "sweep.json").read_text())
        summaries = _summaries(grid_sweep)
        rows = agg["quantum_vs_classical"]
        assert sorted(r["setting"] for r in rows) == ["train.lr=0.05", "train.lr=0.1"]
        for r in rows:
            assert (r["quantum"], r["classical"]) == ("model.embedding=quantum", "model.embedding=classical")
            lr = r["setting"].split("=")[1]
            diffs = [summaries[f"model.embedding=quantum,train.lr={lr},seed={s}"]["test_loss"]
                     - summaries[f"model.embedding=classical,train.lr={lr},seed={s}"]["test_loss"]
                     for s in (0, 1)]
            assert r["loss"]["diff"] == pytest.approx(sum(diffs) / 2) and r["loss"]["n"] == 2


class TestRestart:
    def test_a_finished_sweep_repeats_nothing(self, grid_sweep):
        before = {d.name: (d / "summary.json").stat().st_mtime_ns for d in (grid_sweep / "runs").iterdir()}
        result = sw.sweep(TINY, parse_grid(GRID, TINY), seeds=2, out=grid_sweep, progress=False)
        assert result.ran == [] and len(result.skipped) == 8
        after = {d.name: (d / "summary.json").stat().st_mtime_ns for d in (grid_sweep / "runs").iterdir()}
        assert after == before

    def test_an_interrupted_trial_resumes_and_only_it_runs(self, grid_sweep):
        victim = grid_sweep / "runs" / "model.embedding=quantum,train.lr=0.1,seed=1"
        (victim / "summary.json").unlink()  # as if killed after its last checkpoint
        (victim / "model.pt").unlink()
        others = {d.name: (d / "summary.json").stat().st_mtime_ns
                  for d in (grid_sweep / "runs").iterdir() if d != victim}
        result = sw.sweep(TINY, parse_grid(GRID, TINY), seeds=2, out=grid_sweep, progress=False)
        assert result.ran == [victim.name] and len(result.skipped) == 7
        assert json.loads((victim / "summary.json").read_text())["resumed_at_step"] == 1
        steps = [r["step"] for r in read_metrics(victim / "metrics.jsonl") if r["kind"] == "train"]
        assert steps == [1]
        assert {n: (grid_sweep / "runs" / n / "summary.json").stat().st_mtime_ns for n in others} == others

    def test_a_different_base_config_is_refused(self, grid_sweep):
        with pytest.raises(UserError, match="different base config"):
            sw.sweep(update(TINY, data={"n_train": 16}), {}, out=grid_sweep, progress=False)


class KillOnce(Callback):
    """Kills its worker process at the first step of the second epoch, once (a marker file)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def on_step(self, trainer, step, metrics):
        if trainer.epoch == 1:
            try:
                os.close(os.open(self.marker, os.O_CREAT | os.O_EXCL))  # one trial wins, once
            except FileExistsError:
                return
            os._exit(1)


class TestFaults:
    def test_a_killed_worker_is_retried_and_the_trial_completes(self, ray_local, tmp_path):
        cfg = update(TINY, train={"epochs": 2})
        marker = tmp_path / "killed"
        result = sw.sweep(cfg, {}, seeds=1, out=tmp_path / "s", retries=2,
                          callbacks=[KillOnce(marker)], progress=False)
        assert marker.exists() and result.failed == {} and result.ran == ["base,seed=0"]
        run_dir = tmp_path / "s" / "runs" / "base,seed=0"
        summary = json.loads((run_dir / "summary.json").read_text())
        assert summary["resumed_at_step"] == 1 and summary["steps"] == 2  # from epoch 1's checkpoint
        steps = [r["step"] for r in read_metrics(run_dir / "metrics.jsonl") if r["kind"] == "train"]
        assert steps == [1, 2]

    def test_without_retries_the_trial_fails_and_the_rest_is_kept(self, ray_local, tmp_path):
        cfg = update(TINY, train={"epochs": 2})
        result = sw.sweep(cfg, parse_grid(["train.lr=0.05,0.1"], cfg), seeds=1, out=tmp_path / "s",
                          retries=0, callbacks=[KillOnce(tmp_path / "killed")], progress=False)
        assert len(result.failed) == 1 and len(result.ran) == 1
        (failed,) = result.failed
        assert "died" in result.failed[failed].lower() or "crash" in result.failed[failed].lower()
        assert result.aggregate["missing"] == [failed]

    def test_aer_trials_reserve_their_threads(self, ray_local, tmp_path):
        cfg = update(TINY, backend={"name": "aer", "threads": 2})
        result = sw.sweep(cfg, {}, seeds=1, out=tmp_path / "s", progress=False)
        assert result.cpus == {"base,seed=0": 2}
        result = sw.sweep(update(cfg, backend={"threads": 0}), {}, seeds=1, out=tmp_path / "s0",
                          progress=False)
        assert result.cpus == {"base,seed=0": 2}  # 0 = all cores: the whole 2-CPU node


class TestTuneSmoke:
    """Ray Tune on a tiny budget: that each scheduler runs, reports and writes its outputs."""

    def test_asha(self, ray_local, tmp_path):
        from qepi.experiments.tune import resolve, search

        cfg = update(TINY, train={"epochs": 2})
        grid = parse_grid(["train.lr=0.01,0.1", "model.embedding=quantum,classical"], cfg)
        found = search(cfg, grid, "asha", samples=2, out=tmp_path / "t", progress=False)
        assert len(found["trials"]) == 2 and found["best"] == found["trials"][0]
        assert found["best"]["dev_acc"] == max(t["dev_acc"] for t in found["trials"])
        assert {t["status"] for t in found["trials"]} <= {"finished", "stopped early"}
        assert load(tmp_path / "t" / "best.toml") == resolve(cfg, found["best"]["values"])
        lines = (tmp_path / "t" / "history.jsonl").read_text()
        history = [json.loads(line) for line in lines.splitlines()]
        assert {r["epoch"] for r in history} <= {1, 2} and all("dev_acc" in r for r in history)
        again = search(cfg, grid, "asha", samples=2, out=tmp_path / "t", progress=False)
        assert again["trials"] == found["trials"]  # the search was restored: no trial ran again
        assert (tmp_path / "t" / "history.jsonl").read_text() == lines

    def test_pbt_members_copy_and_mutate(self, ray_local, tmp_path):
        from qepi.experiments.tune import search

        cfg = update(TINY, model={"embedding": "classical"}, train={"epochs": 2})
        grid = parse_grid(["train.lr=0.01,0.03,0.1,0.3"], cfg)
        found = search(cfg, grid, "pbt", samples=2, out=tmp_path / "t", progress=False)
        assert len(found["trials"]) == 2 and found["exploits"]
        ids = {t["trial"] for t in found["trials"]}
        for e in found["exploits"]:
            assert e["member"] != e["copied_from"] and {e["member"], e["copied_from"]} <= ids
            assert e["values"]["train.lr"] in grid["train.lr"]

    def test_a_search_needs_a_dev_split_and_one_seed(self, tmp_path, capsys):
        from qepi.experiments.tune import search

        no_dev = update(TINY, data={"n_dev": 0, "dev_fraction": 0.0})
        with pytest.raises(UserError, match="data.n_dev: a Tune search selects on dev accuracy"):
            search(no_dev, parse_grid(["train.lr=0.1,0.2"], no_dev), "asha", samples=2, out=tmp_path)
        (tmp_path / "c.toml").write_text(to_toml(TINY))
        args = ["sweep", str(tmp_path / "c.toml"), "--grid", "train.lr=0.1,0.2", "--tune", "asha", "--seeds", "2"]
        assert cli.main(args) == 2 and "--seeds: a Tune search" in capsys.readouterr().err

    def test_pbt_mutates_train_keys_only(self, tmp_path):
        from qepi.experiments.tune import search

        with pytest.raises(UserError, match="PBT mutates train.\\* keys only"):
            search(TINY, parse_grid(["circuit.n_layers=1,2"], TINY), "pbt", samples=2, out=tmp_path)
