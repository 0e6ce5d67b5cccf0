"""Exported graphs (inspect_ad/deploy, Detector.export / load(runtime=...)): the same maps and
decisions as the torch path, the bundle's config kept, clear errors."""
import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from inspect_ad import Detector
from inspect_ad.deploy.export import require
from inspect_ad.training.loop import TrainConfig
from inspect_ad.errors import InspectError
from inspect_ad.scoring.anomaly_map import MapConfig
from conftest import noise, one_line_error, run_cli, tiny_model_options, write_png

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def _images(root: Path, n: int, seed: int, defect: bool = False) -> list[Path]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        img = noise(rng)
        if defect:
            img[8:20, 10:24] = 250
        out.append(write_png(root / f"{'d' if defect else 'g'}{seed}_{i}.png", img))
    return out


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    root = tmp_path_factory.mktemp("deploy")
    return root, _images(root / "train", 6, 0), _images(root / "cal", 5, 1), \
        _images(root / "test", 3, 2) + _images(root / "test", 3, 3, defect=True)


def _fitted(name: str, parts, **kwargs) -> Detector:
    root, train, cal, _ = parts
    det = Detector(name, 32, train_config=TrainConfig(epochs=1, batch_size=4, device="cpu"),
                   model_options=tiny_model_options(name), **kwargs)
    det.fit(train, progress=False)
    det.calibrate(cal, target_frr=0.2, progress=False)
    return det


@pytest.fixture(scope="module")
def detectors(parts):
    """patchcore, the fused mmae_patchcore, the pixel MMAE with z-scored maps (reference maps in the graph), and a bundle
    saved before exports existed (inspect-ad 0.1), each calibrated."""
    old = Detector.load(FIXTURES / "bundle_0.1_pixel_mmae", "cpu")
    old.calibrate(parts[2], target_frr=0.2, progress=False, save=False)
    return {"patchcore": _fitted("patchcore", parts),
            "mmae_standardized": _fitted("mmae", parts, map_config=MapConfig(sigma=1.0, standardize="map")),
            "mmae_patchcore": _fitted("mmae_patchcore", parts),
            "bundle_0.1": old}


# (detector, export format, runtime, largest map difference allowed, of the map's range). A
# reconstruction error (x − x̂)² turns float32 rounding in x̂ into larger map differences, and z-scores
# magnify them where good parts barely vary: OpenVINO's kernels round differently from torch's,
# 1.2e-4 on the pixel MMAE's raw map; the decisions stay the same.
CASES = [("patchcore", "onnx", "onnx", 1e-4), ("patchcore", "onnx", "openvino", 1e-4),
         ("patchcore", "openvino", "openvino", 1e-4), ("patchcore", "torchscript", "torchscript", 1e-4),
         ("mmae_standardized", "onnx", "onnx", 1e-4), ("mmae_patchcore", "onnx", "onnx", 1e-4), ("bundle_0.1", "onnx", "onnx", 1e-4),
         ("bundle_0.1", "openvino", "openvino", 3e-4)]


@pytest.fixture(scope="module")
def exported(detectors, tmp_path_factory):
    """exported(name, fmt): the folder of that detector's export, made once (read-only)."""
    folders = {}

    def get(name: str, fmt: str) -> Path:
        if (name, fmt) not in folders:
            folders[name, fmt] = detectors[name].export(tmp_path_factory.mktemp("export") / "out", fmt)
        return folders[name, fmt]
    return get


@pytest.mark.parametrize("name,fmt,runtime,tolerance", CASES)
def test_exported_graph_gives_the_torch_maps_and_decisions(detectors, exported, parts, name, fmt, runtime,
                                                           tolerance):
    det, test = detectors[name], parts[3]
    expected = list(det.predict_iter(test))
    got = list(Detector.load(exported(name, fmt), "cpu", runtime=runtime).predict_iter(test))
    for e, g in zip(expected, got):
        assert np.abs(e.map - g.map).max() <= tolerance * float(e.map.max() - e.map.min())
        assert det.judge(e).decision == det.judge(g).decision


def test_export_folder_keeps_the_bundle_config_and_names_the_graph(detectors, exported):
    det, folder = detectors["patchcore"], exported("patchcore", "onnx")
    meta = json.loads((folder / "config.json").read_text())
    assert meta["calibration"] == det.calibration_ and meta["preprocessing"] == det.preprocessing_.to_dict()
    assert meta["export"]["file"] == "model.onnx" and MapConfig(**meta["export"]["anomaly_map"]) == det.map_config
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.onnx"]


def test_exported_detector_refuses_other_map_settings(exported, parts):
    det = Detector.load(exported("patchcore", "onnx"), "cpu", runtime="onnx")
    det.map_config = replace(det.map_config, sigma=0.5)
    with pytest.raises(InspectError, match="export again with the new settings"):
        det.score_samples(parts[3][:1])


def test_exported_detector_cannot_be_saved_as_a_bundle(exported, tmp_path):
    with pytest.raises(InspectError, match="exported graph, which cannot be saved"):
        Detector.load(exported("patchcore", "onnx"), "cpu", runtime="onnx").save(tmp_path / "bundle")


def test_calibrating_an_exported_detector_writes_its_config(exported, parts, tmp_path):
    shutil.copytree(exported("patchcore", "onnx"), tmp_path / "export")
    det = Detector.load(tmp_path / "export", "cpu", runtime="onnx")
    det.calibrate(parts[2][:5], target_frr=0.2, min_area=3, progress=False)
    assert json.loads((tmp_path / "export" / "config.json").read_text())["calibration"]["min_area"] == 3


def test_a_missing_runtime_package_names_the_extra():
    with pytest.raises(InspectError, match=r"pip install 'inspect-ad\[deploy\]'"):
        require("no_such_runtime_package", "--runtime onnx")


def test_torch_bf16_autocast_stays_near_fp32(detectors, parts, tmp_path):
    """The bf16 path (for GPUs; autocast runs on the CPU too): maps within 5% of their range."""
    det = detectors["patchcore"]
    det.save(tmp_path / "bundle")
    fast = Detector.load(tmp_path / "bundle", "cpu", precision="bf16")
    for e, g in zip(det.predict_iter(parts[3]), fast.predict_iter(parts[3])):
        assert np.abs(e.map - g.map).max() <= 0.05 * float(np.ptp(e.map))


# ---------------------------------------------------------------- the command line

@pytest.fixture(scope="module")
def cli_export(detectors, parts, tmp_path_factory):
    root = tmp_path_factory.mktemp("cli_export")
    detectors["patchcore"].save(root / "bundle")
    r = run_cli("export", "--bundle", root / "bundle", "--format", "onnx", "--out", root / "export",
                catch_exceptions=False)
    assert r.exit_code == 0, r.output
    return root


def _rows(report: Path) -> dict:
    return {Path(r["path"]).name: r for r in map(json.loads, (report / "results.jsonl").read_text().splitlines())}


def test_inspect_with_the_onnx_runtime_gives_the_same_rows(cli_export, parts):
    root, test = cli_export, parts[3]
    for bundle, runtime, out in ((root / "bundle", "torch", "torch"), (root / "export", "onnx", "onnx")):
        r = run_cli("inspect", *test, "--bundle", bundle, "--runtime", runtime, "--out", root / out, "--quiet")
        assert r.exit_code == 0, r.output
    torch_rows, onnx_rows = _rows(root / "torch"), _rows(root / "onnx")
    assert {k: r["decision"] for k, r in torch_rows.items()} == {k: r["decision"] for k, r in onnx_rows.items()}
    assert all(abs(torch_rows[k]["score"] - onnx_rows[k]["score"]) <= 1e-4 * abs(torch_rows[k]["score"])
               for k in torch_rows)


def test_runtime_onnx_on_a_bundle_says_to_export_first(cli_export, parts, tmp_path):
    r = run_cli("segment", parts[3][0], "--bundle", cli_export / "bundle", "--runtime", "onnx", "--out", tmp_path)
    one_line_error(r, "export it first")


def test_export_refuses_a_folder_that_is_not_empty(cli_export):
    r = run_cli("export", "--bundle", cli_export / "bundle", "--out", cli_export / "export")
    one_line_error(r, "--overwrite")


def test_sections_the_detector_does_not_use_survive_save_and_export(detectors, tmp_path):
    from inspect_ad.detectors.bundle import update_bundle_sections
    detectors["patchcore"].save(tmp_path / "bundle")
    update_bundle_sections(tmp_path / "bundle", fit_options={"model": "patchcore"})
    det = Detector.load(tmp_path / "bundle", "cpu")
    det.save(tmp_path / "again")
    det.export(tmp_path / "export", "torchscript")
    for folder in ("again", "export"):
        assert json.loads((tmp_path / folder / "config.json").read_text())["fit_options"] == {"model": "patchcore"}


@pytest.mark.slow
def test_torch_compile_gives_the_eager_maps(detectors, parts, tmp_path):
    """The compiled path (for GPUs; torch.compile builds C++ kernels on the CPU too, in about a minute)."""
    det = detectors["patchcore"]
    det.save(tmp_path / "bundle")
    compiled = Detector.load(tmp_path / "bundle", "cpu", compile=True)
    for e, g in zip(det.predict_iter(parts[3]), compiled.predict_iter(parts[3])):
        assert np.abs(e.map - g.map).max() <= 1e-4 * float(np.ptp(e.map))
