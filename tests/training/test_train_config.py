"""TrainConfig: TOML recipes, unknown keys, flag overrides, range checks, and the shipped recipes."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from aigc_studio.data.images import FASHION_MNIST_CLASSES
from aigc_studio.errors import AigcError
from aigc_studio.training.config import TrainConfig
from aigc_studio.training.image_tasks import IMAGE_MODELS, build_image_model_config
from aigc_studio.training.language_model import build_model_config

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

RECIPES = Path(__file__).resolve().parents[2] / "recipes"


def write_recipe(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "recipe.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_toml_recipe_sets_every_section(tmp_path: Path) -> None:
    path = write_recipe(tmp_path, """
seed = 7
[data]
batch_size = 4
[model]
arch = "lstm"
hidden_size = 64
[optimiser]
lr = 3e-4
[schedule]
max_steps = 50
min_lr = 0
[eval]
patience = 3
[logging]
log_interval = 2
""")
    config = TrainConfig.from_toml(path)
    assert config.seed == 7
    assert config.data.batch_size == 4
    assert config.model.arch == "lstm" and config.model.params == {"hidden_size": 64}
    assert config.optimiser.lr == 3e-4
    assert config.schedule.max_steps == 50
    assert config.schedule.min_lr == 0.0 and isinstance(config.schedule.min_lr, float)  # an int is fine for a float
    assert config.eval.patience == 3
    assert config.logging.log_interval == 2
    assert config.data.block_size == TrainConfig().data.block_size  # untouched keys keep their defaults


def test_unknown_key_in_a_table_is_an_error_listing_the_valid_keys(tmp_path: Path) -> None:
    path = write_recipe(tmp_path, "[optimiser]\nlearning_rate = 1e-3\n")
    with pytest.raises(AigcError, match=r"unknown key 'learning_rate'.*valid keys are: lr, weight_decay") as error:
        TrainConfig.from_toml(path)
    assert error.value.param == "learning_rate"


def test_unknown_top_level_key_or_table_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(AigcError, match=r"unknown key 'optimizer'.*\[optimiser\]"):
        TrainConfig.from_toml(write_recipe(tmp_path, "[optimizer]\nlr = 1e-3\n"))


def test_wrong_value_type_is_an_error_naming_the_key(tmp_path: Path) -> None:
    with pytest.raises(AigcError, match="batch_size must be int"):
        TrainConfig.from_toml(write_recipe(tmp_path, '[data]\nbatch_size = "12"\n'))


def test_missing_or_malformed_recipe_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(AigcError, match="recipe file not found"):
        TrainConfig.from_toml(tmp_path / "absent.toml")
    with pytest.raises(AigcError, match="not valid TOML"):
        TrainConfig.from_toml(write_recipe(tmp_path, "[data\n"))


def test_flags_override_the_recipe_and_absent_flags_keep_it(tmp_path: Path) -> None:
    recipe = TrainConfig.from_toml(write_recipe(tmp_path, "[optimiser]\nlr = 3e-4\n[model]\nn_layer = 4\n[data]\nbatch_size = 4\n"))
    config = recipe.with_overrides({"optimiser.lr": 1e-2, "model.n_layer": 2, "data.batch_size": None})
    assert config.optimiser.lr == 1e-2
    assert config.model.params["n_layer"] == 2
    assert config.data.batch_size == 4
    assert recipe.optimiser.lr == 3e-4  # the original is not modified


def test_to_toml_reads_back_as_the_same_config() -> None:
    config = TrainConfig().with_overrides({"data.directory": "some/dir", "model.n_embd": 64, "schedule.min_lr": 1e-5})
    assert TrainConfig.from_dict(tomllib.loads(config.to_toml())) == config


@pytest.mark.parametrize(
    ("override", "param"),
    [({"data.batch_size": 0}, "batch_size"), ({"schedule.max_steps": -1}, "max_steps"),
     ({"eval.interval": 0}, "eval_interval"), ({"optimiser.lr": 0.0}, "lr"), ({"eval.patience": -2}, "patience")],
)
def test_non_positive_sizes_are_errors_naming_the_flag(override: dict[str, object], param: str) -> None:
    config = TrainConfig().with_overrides({"data.directory": "d", **override})
    with pytest.raises(AigcError, match=f"--{param.replace('_', '-')}") as error:
        config.validate()
    assert error.value.param == param


def test_warmup_longer_than_the_run_is_an_error() -> None:
    config = TrainConfig().with_overrides({"data.directory": "d", "schedule.max_steps": 50})
    with pytest.raises(AigcError, match="warmup_steps"):
        config.validate()


def test_model_table_is_checked_against_the_architecture_config() -> None:
    with pytest.raises(AigcError, match=r"unknown key 'n_head' for arch lstm; valid keys are: n_embd, hidden_size"):
        build_model_config("lstm", {"n_head": 4}, vocab_size=80, block_size=32)
    with pytest.raises(AigcError, match=r"block_size.*\[data\] block_size"):
        build_model_config("gpt", {"block_size": 64}, vocab_size=80, block_size=32)
    with pytest.raises(AigcError, match="unknown arch 'rnn'; choose one of: gpt, lstm"):
        build_model_config("rnn", {}, vocab_size=80, block_size=32)
    config = build_model_config("gpt", {"n_layer": 1, "n_head": 2, "n_embd": 16}, vocab_size=80, block_size=32)
    assert (config.vocab_size, config.block_size, config.n_layer) == (80, 32, 1)


# Recipes read by other commands than `aigc train`; each has its own test (tests/support/test_intents.py).
NOT_TRAINER_RECIPES = ("banking-intents.toml",)


@pytest.mark.parametrize("recipe", sorted(path for path in RECIPES.glob("*.toml") if path.name not in NOT_TRAINER_RECIPES),
                         ids=lambda path: path.name)
def test_every_shipped_trainer_recipe_is_valid(recipe: Path) -> None:
    config = TrainConfig.from_toml(recipe).with_overrides({"data.directory": "d"})
    config.validate()
    if config.model.arch in IMAGE_MODELS:  # image recipes: the shape and classes come from the image data set
        build_image_model_config(config.model.arch, config.model.params,
                                 {"image_size": 28, "channels": 1, "class_names": list(FASHION_MNIST_CLASSES)})
    else:
        build_model_config(config.model.arch, config.model.params, vocab_size=2048, block_size=config.data.block_size)


def test_tinyshakespeare_recipe_is_nanogpts_cpu_example() -> None:
    config = TrainConfig.from_toml(RECIPES / "tinyshakespeare-char.toml")
    assert config.model.arch == "gpt"
    assert config.model.params == {"n_layer": 4, "n_head": 4, "n_embd": 128, "dropout": 0.0}
    assert (config.data.block_size, config.data.batch_size) == (64, 12)
    assert (config.schedule.max_steps, config.schedule.decay_steps, config.schedule.warmup_steps) == (2000, 2000, 100)
    assert (config.optimiser.lr, config.schedule.min_lr, config.optimiser.beta2) == (1e-3, 1e-4, 0.99)
    assert (config.optimiser.weight_decay, config.optimiser.grad_clip) == (0.1, 1.0)
    assert (config.eval.interval, config.eval.steps) == (250, 20)
