"""``fit --config FILE`` (inspect_ad/cli/config_file.py): options from YAML or JSON, flags over the
file, one-line errors, and the options recorded in the bundle for a retrain."""
import json

import yaml
from conftest import TINY_IMAGE_SIZE, TINY_MODEL_OPTIONS, fast_fit_args, one_line_error, run_cli

from inspect_ad.cli.config_file import read_config

# fast_fit_args() as a config file
TINY = {"category": "widget", "epochs": 1, "batch_size": 4, "image-size": TINY_IMAGE_SIZE, "quiet": True,
        "device": "cpu", "model": "mmae", "backbone": "none", "model-options": TINY_MODEL_OPTIONS}


def fit(*args):
    r = run_cli("fit", *args, catch_exceptions=False)
    assert r.exit_code == 0, r.output
    return r


def recorded(bundle):
    return json.loads((bundle / "config.json").read_text())["fit_options"]


def test_json_and_yaml_configs_record_the_same_options_as_the_flags(tiny_mvtec, tmp_path):
    fit("--data-root", tiny_mvtec, "--category", "widget", "--out", tmp_path / "flags", *fast_fit_args())
    config = {"data-root": str(tiny_mvtec), **TINY}
    (tmp_path / "c.json").write_text(json.dumps(config))
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    fit("--config", tmp_path / "c.json", "--out", tmp_path / "json")
    fit("--config", tmp_path / "c.yaml", "--out", tmp_path / "yaml")
    flags = recorded(tmp_path / "flags")
    assert flags == recorded(tmp_path / "json") == recorded(tmp_path / "yaml")
    assert flags["model-options"] == TINY_MODEL_OPTIONS and flags["data-root"] == str(tiny_mvtec)
    assert "out" not in flags and "overwrite" not in flags   # a retrain from the record replaces nothing


def test_a_flag_given_overrides_the_file(tiny_mvtec, tmp_path):
    (tmp_path / "c.yaml").write_text(yaml.safe_dump({"data-root": str(tiny_mvtec), **TINY, "epochs": 3, "seed": 5}))
    r = fit("--config", tmp_path / "c.yaml", "--out", tmp_path / "m", "--epochs", "1")
    assert "trained for 1 epoch (" in r.output
    assert recorded(tmp_path / "m")["epochs"] == 1 and recorded(tmp_path / "m")["seed"] == 5


def test_an_unknown_key_is_one_line_listing_the_valid_keys(tmp_path):
    (tmp_path / "c.yaml").write_text("epochs: 1\nepoch: 2\n")
    one_line_error(run_cli("fit", "--config", tmp_path / "c.yaml"),
                   "c.yaml: unknown key epoch;", "valid keys:", "model-options", "map-scales")


def test_a_bad_value_in_the_file_names_the_file(tmp_path):
    (tmp_path / "c.yaml").write_text("epochs: ten\nout: m\n")
    one_line_error(run_cli("fit", "--config", tmp_path / "c.yaml"), "--epochs", "'ten'", "c.yaml")


def test_yaml_off_and_yes_stay_words(tmp_path):
    """YAML 1.1 reads off as false: 'standardize: off' must reach the option as 'off'."""
    (tmp_path / "c.yml").write_text("standardize: off\nquiet: yes\nmap_scales: [1, 2]\n")
    assert read_config(tmp_path / "c.yml") == {"standardize": "off", "quiet": "yes", "map_scales": [1, 2]}


def test_fit_config_of_a_bundle_trains_it_again_and_replaces_it_only_with_overwrite(tiny_mvtec, tmp_path):
    fit("--data-root", tiny_mvtec, "--category", "widget", "--out", tmp_path / "a", *fast_fit_args(),
        "--map-scales", "1,2", "--sigma", "2")
    fit("--config", tmp_path / "a" / "config.json", "--out", tmp_path / "b")
    a, b = (json.loads((tmp_path / x / "config.json").read_text()) for x in "ab")
    assert a["fit_options"] == b["fit_options"] and a["fit_options"]["map-scales"] == [1, 2]
    assert a["model"] == b["model"] and a["anomaly_map"] == b["anomaly_map"]
    before = (tmp_path / "a" / "config.json").read_text()
    one_line_error(run_cli("fit", "--config", tmp_path / "a" / "config.json"), str(tmp_path / "a"), "--overwrite")
    assert (tmp_path / "a" / "config.json").read_text() == before


def test_a_bundle_config_without_fit_options_says_so(mvtec_bundle):
    one_line_error(run_cli("fit", "--config", mvtec_bundle[2] / "config.json"),
                   "config.json is a model bundle's config without the fit options")
