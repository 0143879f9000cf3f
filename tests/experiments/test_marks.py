"""The task-marks experiment and the expression benchmark."""

import json

import pytest

from qepi.cli import main
from qepi.config import Config, to_toml, update
from qepi.errors import UserError
from qepi.experiments.marks import expression_bench, marks_experiment, task_b_config

TINY = update(
    Config(),
    circuit={"n_qubits": 2, "n_layers": 1},
    model={"embedding": "quantum", "attention": "classical", "d_model": 4, "n_heads": 1, "d_ff": 4},
    regulation={"embedding": "epigenetic", "offsets": True},
    data={"task": "motif", "seq_len": 4, "motif_len": 2, "n_train": 8, "n_dev": 0, "n_test": 8},
    train={"epochs": 1, "batch_size": 8},
)


class TestMarksExperiment:
    def test_reversible_and_counted_through_the_cli(self, tmp_path, capsys):
        config = tmp_path / "tiny.toml"
        config.write_text(to_toml(TINY))
        out = tmp_path / "marks"
        assert main(["marks", str(config), "--out", str(out), "--json",
                     "--task-b", "data.pwm_entropy=0.1"]) == 0
        result = json.loads(capsys.readouterr().out)
        assert json.loads((out / "marks.json").read_text()) == result
        assert result["checks"] == {"marks_off_equals_base": True, "erased_equals_base": True,
                                    "state_restored": True}
        base, marks_b, marks_c, tuned, scratch = result["methods"]
        assert marks_b["trainable_params"] == marks_c["trainable_params"] == 1 * 6 * 2  # 6 angles x (mark, offset)
        assert base["trainable_params"] == tuned["trainable_params"] == scratch["trainable_params"]
        assert marks_b["trainable_params"] < tuned["trainable_params"]
        assert all(0 <= row[f"acc_{t}"] <= 1 for row in result["methods"] for t in "abc")
        assert list(result["expression"]) == ["A (base)", "B (mark set B)", "C (mark set C)"]
        assert set(result["expression"]["A (base)"]) == {"embedding.core"}
        report = (out / "report.md").read_text()
        assert "| mark set B (genome frozen) | 12 |" in report and "| mark set C (genome frozen) | 12 |" in report
        (out / "report.md").unlink()
        assert main(["report", str(out)]) == 0  # rendered again from marks.json
        assert (out / "report.md").read_text() == report
        capsys.readouterr()
        assert main(["marks", str(config), "--out", str(out), "--quiet"]) == 2  # kept unless asked
        assert "holds a finished marks experiment; pass --overwrite" in capsys.readouterr().err
        assert json.loads((out / "marks.json").read_text()) == result

    @pytest.mark.parametrize("overrides, message", [
        (["train.lr=1"], "only data.\\* keys"),
        (["data.seq_len=5"], "same input shape"),
    ])
    def test_task_b_errors(self, overrides, message):
        with pytest.raises(UserError, match=message):
            marks_experiment(TINY, overrides, progress=False)

    def test_needs_an_epigenetic_layer(self):
        cfg = update(TINY, regulation={"embedding": ""})
        with pytest.raises(UserError, match="needs regulation"):
            marks_experiment(cfg, progress=False)

    def test_task_b_config_applies_data_overrides(self):
        assert task_b_config(TINY, ["data.pwm_entropy=0.7"]).data.pwm_entropy == 0.7


class TestExpressionBench:
    def test_circuits_fall_with_the_expression_ratio(self):
        rows = expression_bench(qubits=2, layers=2, tokens=3, expressions=(1.0, 0.25, 0.0), repeats=1)
        # 12 angles; inputs need no gradient: tokens x (1 + 2 x expressed angles)
        assert [r["circuits"] for r in rows] == [3 * 25, 3 * 7, 3]
        assert [r["measured_expression"] for r in rows] == [1.0, 0.25, 0.0]
        assert rows[1]["circuits_vs_first"] == pytest.approx(7 / 25)

    def test_bad_ratio_is_an_error(self):
        with pytest.raises(UserError, match="--expression"):
            expression_bench(qubits=2, layers=1, tokens=1, expressions=(1.5,), repeats=1)
