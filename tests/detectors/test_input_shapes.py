"""Non-square inputs and tiles through the Detector, its bundle, export and the CLI (issue: hold up on real
parts of other shapes and sizes)."""
import numpy as np
import pytest
import torch

from conftest import one_line_error, run_cli, write_png

from inspect_ad import Detector
from inspect_ad.detectors.image import _batches
from inspect_ad.training.loop import TrainConfig
from inspect_ad.errors import InspectError
from inspect_ad.scoring.anomaly_map import MapConfig

TINY = dict(stages=(1, 2))   # lite0's stride-4 and -8 stages: a fast forward pass


def _parts(root, n, shape, seed=0):
    rng = np.random.default_rng(seed)
    return [write_png(root / f"{seed}_{i}.png", rng.integers(90, 110, shape, dtype=np.uint8)) for i in range(n)]


def _patchcore(**kwargs) -> Detector:
    return Detector("patchcore", train_config=TrainConfig(batch_size=4), model_options=TINY,
                    map_config=MapConfig(sigma=1.0), **kwargs)


def test_auto_gives_wide_parts_a_wide_input_and_square_ones_the_square(tmp_path):
    assert _patchcore().input_size(_parts(tmp_path / "wide", 3, (40, 100))) == ((256, 640), None)
    assert _patchcore().input_size(_parts(tmp_path / "square", 3, (60, 60))) == (256, None)
    assert _patchcore(image_size=64).input_size(_parts(tmp_path / "big", 3, (200, 200))) == (64, 64)


@pytest.fixture(scope="module")
def wide(tmp_path_factory):
    root = tmp_path_factory.mktemp("wide")
    det = _patchcore(image_size=(32, 80)).fit(_parts(root / "train", 4, (40, 100)), out=root / "m", progress=False)
    return root, det, _parts(root / "test", 2, (40, 100), seed=1)


def test_a_non_square_model_maps_each_part_at_its_own_size_after_loading(wide):
    root, det, test = wide
    loaded = Detector.load(root / "m", device="cpu")
    assert loaded.preprocessing_.shape == (32, 80)
    assert [m.shape for m in loaded.anomaly_maps(test)] == [(40, 100)] * 2
    np.testing.assert_allclose(loaded.score_samples(test), det.score_samples(test), rtol=1e-6)


def test_an_exported_non_square_model_gives_the_torch_scores(wide):
    pytest.importorskip("onnxruntime")
    root, det, test = wide
    det.export(root / "x", "onnx")
    exported = Detector.load(root / "x", runtime="onnx")
    np.testing.assert_allclose(exported.score_samples(test), det.score_samples(test), rtol=1e-4)


def test_tiles_are_fitted_scored_and_stitched_at_the_photo_resolution(tmp_path, monkeypatch):
    train = _parts(tmp_path / "train", 3, (64, 48))
    det = _patchcore(image_size=32, tile=32).fit(train, progress=False)
    assert det.preprocessing_.tile == 32
    batches = []
    score_batch = det.score_batch
    monkeypatch.setattr(det, "score_batch", lambda x: batches.append(len(x)) or score_batch(x))
    photo = np.random.default_rng(5).integers(90, 110, (64, 48, 1), dtype=np.uint8)
    photo[36:42, 20:26] = 250
    pred = next(det.predict_iter([photo], batch_size=3))
    assert pred.map.shape == (64, 48)
    assert pred.score == pytest.approx(float(pred.map.max()))
    peak = np.unravel_index(pred.map.argmax(), pred.map.shape)
    assert 32 <= peak[0] <= 46 and 16 <= peak[1] <= 30       # the bright square, found in its tile
    assert sum(batches) == 4 and max(batches) <= 3           # 4 tiles, never more than a batch at once


def test_tiled_photos_score_the_same_whatever_the_batches_across_them(tmp_path):
    # 3 photos of 4 tiles in batches of 3 and 5 (cut across photos) against each photo's tiles in
    # one batch, stitched the same way; and the batches are the concatenation's slices
    det = _patchcore(image_size=32, tile=32).fit(_parts(tmp_path / "train", 3, (64, 48)), progress=False)
    rng = np.random.default_rng(6)
    photos = [rng.integers(90, 110, (64, 48, 1), dtype=np.uint8) for _ in range(3)]
    photos[1][36:42, 20:26] = 250
    expected = []
    for photo in photos:
        maps, scores = det.score_batch(det.preprocessing_.inputs(photo))
        expected.append(det._image_map(maps, scores[0], photo.shape[:2]))
    for batch in (3, 5):
        preds = list(det.predict_iter(photos, batch_size=batch))
        for p, (amap, score) in zip(preds, expected):
            np.testing.assert_allclose(p.map, amap, rtol=1e-6, atol=1e-7)
            assert p.score == pytest.approx(score, rel=1e-6)
    inputs = [torch.arange(n).float().view(n, 1, 1, 1) for n in (4, 1, 6)]
    got = [b.flatten().tolist() for b in _batches(inputs, 3)]
    assert got == [[0, 1, 2], [3, 0, 0], [1, 2, 3], [4, 5]]


def test_tiles_with_standardized_maps_are_refused():
    with pytest.raises(InspectError, match="--standardize"):
        Detector("patchcore", tile=256, map_config=MapConfig(standardize="map"))


@pytest.mark.parametrize("flag,value,needle", [("--image-size", "abc", "height,width"),
                                               ("--image-size", "64,5000", "height,width"),
                                               ("--tile", "big", "tile side")])
def test_a_bad_size_or_tile_is_one_line(tmp_path, flag, value, needle):
    _parts(tmp_path / "train", 2, (40, 100))
    r = run_cli("fit", "--train-dir", tmp_path / "train", "--out", tmp_path / "m", flag, value)
    one_line_error(r, needle)


def test_fit_records_the_size_it_chose_and_a_retrain_from_the_record_chooses_it_again(tmp_path):
    _parts(tmp_path / "train", 2, (40, 100))
    r = run_cli("fit", "--train-dir", tmp_path / "train", "--out", tmp_path / "m", "--image-size", "32x64",
                "-o", "stages=[1,2]", "--quiet", catch_exceptions=False)
    assert r.exit_code == 0 and "input 32×64" in r.output
    r = run_cli("fit", "--config", tmp_path / "m" / "config.json", "--out", tmp_path / "m2", "--quiet",
                catch_exceptions=False)
    assert r.exit_code == 0 and Detector.load(tmp_path / "m2").preprocessing_.shape == (32, 64)


def test_a_stitched_map_is_smoothed_like_a_whole_map():
    import torch
    from inspect_ad.scoring.anomaly_map import smooth, smooth_image_map
    m = np.random.default_rng(0).random((70, 90)).astype(np.float32)
    np.testing.assert_allclose(smooth_image_map(m, 4.0), smooth(torch.from_numpy(m)[None], 4.0)[0].numpy(), atol=1e-5)
