import re
import typing

import pytest

from qepi.config import (
    Backend,
    Circuit,
    Config,
    ConfigError,
    Data,
    Model,
    Train,
    apply_overrides,
    from_toml,
    load,
    to_toml,
    update,
)


class TestToml:
    def test_round_trip_of_defaults_and_changed_values(self):
        cfg = update(Config(), train={"lr": 0.5, "epochs": 3}, data={"classes": [3, 5, 8]})
        assert from_toml(to_toml(cfg)) == cfg

    def test_partial_file_fills_defaults(self, tmp_path):
        path = tmp_path / "c.toml"
        path.write_text('[circuit]\nn_qubits = 3\n[backend]\nname = "lightning.qubit"\n')
        cfg = load(path)
        assert cfg.circuit.n_qubits == 3 and cfg.backend.name == "lightning.qubit"
        assert cfg.train == Config().train

    @pytest.mark.parametrize(
        "text, fragment",
        [
            ("[train]\nlrr = 0.1\n", "train.lrr: unknown key"),
            ("[trian]\nlr = 0.1\n", "trian: unknown key"),
            ('[train]\nlr = "fast"\n', "train.lr: expected a number"),
            ("[train]\nepochs = 1.5\n", "train.epochs: expected an integer"),
            ("[circuit]\nreupload = 1\n", "circuit.reupload: expected true or false"),
            ('[data]\nclasses = ["a"]\n', "data.classes[0]: expected an integer"),
            ("[train]\nlr = \n", "malformed TOML"),
            ("train = 3\n", "train: expected a table"),
        ],
    )
    def test_errors_name_the_key(self, tmp_path, text, fragment):
        path = tmp_path / "bad.toml"
        path.write_text(text)
        with pytest.raises(ConfigError, match=fragment.replace("[", r"\[").replace("]", r"\]")) as info:
            load(path)
        assert str(path) in str(info.value)
        assert "\n" not in str(info.value)

    def test_missing_file(self, tmp_path):
        with pytest.raises(ConfigError, match="config file not found"):
            load(tmp_path / "nope.toml")

    def test_integer_is_accepted_for_a_float(self):
        assert from_toml("[train]\nlr = 1\n").train.lr == 1.0


class TestOverrides:
    def test_values_are_parsed_as_toml_or_bare_strings(self):
        cfg = apply_overrides(
            Config(),
            ["train.lr=0.001", "backend.name=aer", "circuit.reupload=true", "data.classes=[1, 7]"],
        )
        assert cfg.train.lr == 0.001
        assert cfg.backend.name == "aer"
        assert cfg.circuit.reupload is True
        assert cfg.data.classes == [1, 7]

    @pytest.mark.parametrize(
        "override, fragment",
        [
            ("train.nope=1", "train.nope: unknown key (known: batch_size, checkpoint_every,"),
            ("nope.lr=1", "nope: unknown section (known: backend, circuit, data, model,"),
            ("train.epochs=two", "train.epochs: expected an integer"),
            ("train.lr", "expected section.key=value"),
        ],
    )
    def test_bad_overrides(self, override, fragment):
        with pytest.raises(ConfigError, match=re.escape(fragment)):
            apply_overrides(Config(), [override])

    def test_config_is_frozen(self):
        with pytest.raises(AttributeError):
            Config().train.lr = 1.0  # type: ignore[misc]


def choices(section: type, key: str) -> set[str]:
    return set(typing.get_args(typing.get_type_hints(section)[key]))


class TestChoices:
    def test_named_choices_are_what_the_package_implements(self):
        from qepi.backends.exact import STRATEGIES
        from qepi.circuits import ANSATZE, ENCODINGS
        from qepi.data import TASKS
        from qepi.data.digits import TOKENIZATIONS
        from qepi.layers.attention import SCORES
        from qepi.models.hybrid_transformer import POOLING
        from qepi.training.trainer import OPTIMIZERS, SCHEDULES

        assert choices(Circuit, "ansatz") == set(ANSATZE)
        assert choices(Circuit, "encoding") == set(ENCODINGS)
        assert choices(Data, "task") == set(TASKS)
        assert choices(Data, "tokens") == set(TOKENIZATIONS)
        assert choices(Model, "attention_style") == set(SCORES)
        assert choices(Model, "pooling") == set(POOLING)
        assert choices(Train, "optimizer") == set(OPTIMIZERS)
        assert choices(Train, "schedule") == set(SCHEDULES)
        assert choices(Backend, "strategy") == set(STRATEGIES)

    @pytest.mark.parametrize("build", [
        lambda: Circuit(ansatz="spiral"),
        lambda: update(Config(), circuit={"ansatz": "spiral"}),
        lambda: apply_overrides(Config(), ["circuit.ansatz=spiral"]),
        lambda: from_toml('[circuit]\nansatz = "spiral"\n'),
    ], ids=["direct", "update", "override", "toml"])
    def test_every_way_of_building_refuses_the_same_way(self, build):
        with pytest.raises(ConfigError) as info:
            build()
        assert str(info.value) == ("circuit.ansatz: unknown value 'spiral' (known: 'strongly_entangling', "
                                   "'hardware_efficient', 'basic_entangler', 'sim14')")

    @pytest.mark.parametrize("override, message", [
        ("model.embedding=qauntum", "model.embedding: unknown value 'qauntum'"),
        ("regulation.embedding=methylated", "regulation.embedding: unknown value 'methylated' (known: '', "),
        ("backend.dtype=float16", "backend.dtype: unknown value 'float16'"),
        ("circuit.n_qubits=0", "circuit.n_qubits: must be >= 1, got 0"),
        ("circuit.n_layers=-2", "circuit.n_layers: must be >= 1, got -2"),
        ("regulation.threshold=1.0", "regulation.threshold: must lie in (0.0, 1.0), got 1.0"),
        ("regulation.target=1.5", "regulation.target: must lie in [0.0, 1.0], got 1.5"),
        ("regulation.top_k=0", "regulation.top_k: must be >= 1, got 0"),
    ])
    def test_choices_and_ranges_name_the_key(self, override, message):
        with pytest.raises(ConfigError) as info:
            apply_overrides(Config(), [override])
        assert str(info.value).startswith(message)

    def test_backend_name_is_left_to_the_backend_registry(self):
        assert Backend(name="qpu").name == "qpu"  # checked by the commands and the layers
