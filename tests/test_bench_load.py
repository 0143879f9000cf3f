"""`qepi bench`: torch threads as training uses them, the machine's load stated, a warning when busy."""

import json

import pytest
import torch

from qepi.bench import BUSY_RULE, machine_load
from qepi.cli import main

TINY_EXACT = ["bench", "exact", "--qubits", "2", "--batch", "2", "--tokens", "2", "--repeats", "1",
              "--loop-batch", "0"]


@pytest.fixture
def restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_busy_means_fewer_idle_cores_than_the_benchmark_needs():
    assert machine_load(1, cpus=2, load_average=0.4)["busy"] is False
    assert machine_load(1, cpus=2, load_average=1.0)["busy"] is True  # one other busy process
    assert machine_load(2, cpus=2, load_average=0.4)["busy"] is False
    assert machine_load(4, cpus=8, load_average=3.0)["busy"] is False
    assert machine_load(4, cpus=8, load_average=4.0)["busy"] is True


def test_bench_exact_trains_on_one_thread_and_warns_on_a_busy_machine(monkeypatch, capsys, restore_threads):
    torch.set_num_threads(2)
    monkeypatch.setattr("os.getloadavg", lambda: (3.5, 3.0, 2.5))
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    assert main([*TINY_EXACT, "--json"]) == 0
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert (report["threads"], report["cpus"], report["load_average"], report["busy"]) == (1, 2, 3.5, True)
    assert torch.get_num_threads() == 1  # the default is train.threads, not torch's default
    assert captured.err.count("\n") == 1 and captured.err.startswith("qepi: warning: load average 3.50")
    assert BUSY_RULE in captured.err


def test_an_idle_machine_gets_no_warning_and_the_header_states_the_load(monkeypatch, capsys, restore_threads):
    monkeypatch.setattr("os.getloadavg", lambda: (0.2, 0.2, 0.2))
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    assert main([*TINY_EXACT, "--threads", "2"]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    assert "torch threads 2, 2 cores, load average 0.20 at the start" in captured.out.splitlines()[0]


def test_bench_noisy_reports_every_step_its_circuits_and_the_shared_sampling_cost(capsys, restore_threads):
    assert main(["bench", "noisy", "--qubits", "2", "--layers", "1", "--tokens", "2",
                 "--shots", "10", "--repeats", "1", "--json"]) == 0
    (row,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert row["circuits"] == 2 * (1 + 2 * 6)  # 2 rows; 6 weight angles shifted both ways
    for key in ("aer_s", "exact_s", "aer_noisy_s", "exact_noisy_s", "sampling_s"):
        assert row[key] > 0
    assert row["exact_speedup"] == row["aer_s"] / row["exact_s"]


def test_bench_shots_prints_the_optimisers_and_the_mitigation_section(capsys, restore_threads):
    tiny = ["bench", "shots", "--train", "8", "--epochs", "1", "--batch", "4", "--shots", "20",
            "--set", "data.n_dev=8", "--set", "data.n_test=4", "--json"]
    assert main([*tiny, "--optimizers", "adam", "spsa", "--mitigation-shots", "200"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["optimizer"] for r in lines[:2]] == ["adam", "spsa"]
    assert lines[1]["train_shots"] < lines[0]["train_shots"]  # no weight-shifted circuits
    mitigation = lines[2]
    assert mitigation["shots"] == 200
    assert [r["mitigation"] for r in mitigation["results"]] == ["none", "readout", "zne", "readout+zne"]
    assert main(["bench", "shots", "--mitigation-shots", "-1"]) == 2
