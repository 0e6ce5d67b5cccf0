"""One validation vocabulary (inspect_ad/checks.py): each config's constraint table is what its
``__post_init__``, bundle loading and the command line's option types check."""
import dataclasses

import click
import pytest

from inspect_ad.checks import Int, Number, Options
from inspect_ad.cli.common import option_type
from inspect_ad.cli.image import main
from inspect_ad.data.preprocess import Preprocessing
from inspect_ad.detectors.bundle import _model_rules
from inspect_ad.errors import ConfigError
from inspect_ad.memory.config import MemoryConfig
from inspect_ad.models import get_spec, list_models, model_config_class
from inspect_ad.scoring.anomaly_map import MapConfig
from inspect_ad.training.loop import TrainConfig

CONFIGS = [TrainConfig, MapConfig, Preprocessing, MemoryConfig,
           *{model_config_class(name, {}) for name in list_models()}]


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: c.__name__)
def test_a_table_names_only_the_config_s_fields(config):
    assert set(config._constraints) <= {f.name for f in dataclasses.fields(config)}


def test_a_model_option_is_checked_at_fit_and_at_load_by_the_config_s_own_constraint():
    patchcore = model_config_class("patchcore", {})
    rules, _ = _model_rules("patchcore", {})
    assert rules["coreset_ratio"] is patchcore._constraints["coreset_ratio"]
    with pytest.raises(ConfigError, match="coreset_ratio=0: must be a finite number in \\(0, 1\\]"):
        get_spec("patchcore").build_config(coreset_ratio=0)


def test_option_types_come_from_the_constraints():
    assert option_type(Int(1)).min == 1 and option_type(Number(0, 1, open_low=True)).min_open
    assert option_type(Options("max", "mean")).choices == ("max", "mean")
    fit = {p.name: p for p in main.commands["fit"].params}
    assert isinstance(fit["epochs"].type, click.IntRange) and fit["epochs"].type.min == 1
    assert fit["pooling"].type.choices == MapConfig._constraints["pooling"].choices
    assert fit["sigma"].type.max == MapConfig._constraints["sigma"].high
