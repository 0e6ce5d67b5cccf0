"""The ``inspect-ad`` command line: parses options, calls the library, prints results."""
from __future__ import annotations

import json
import logging
import os
import sys
import tempfile
from pathlib import Path

import click
from tqdm.auto import tqdm
import numpy as np

from inspect_ad import __version__
from inspect_ad.cli.common import (Group, InputSize, TileSize, batch_size_option, bundle_option, default,
                                   device_option, epochs_option, field_option, lr_option, map_options, min_area_option,
                                   model_options, option_errors, overwrite_option, quiet_option, remember_bundle,
                                   runtime_options, seed_option, target_frr_option)
from inspect_ad.cli.config_file import SECTION, config_option, resolved_options
from inspect_ad.deploy.export import FORMATS
from inspect_ad.errors import InspectError, printable
from inspect_ad.detectors.image import Detector
from inspect_ad.detectors.presets import IMAGE_BACKBONE, IMAGE_MODEL, image_map_config
from inspect_ad.models.backbones import WHEELS
from inspect_ad.models import BACKBONE_MODELS, IMAGE_MODELS
from inspect_ad.training.device import reuse_freed_memory
from inspect_ad.training.loop import TrainConfig


@click.group(cls=Group)
@click.version_option(__version__, prog_name="inspect-ad")
@click.option("-v", "--verbose", is_flag=True, help="Log progress details.")
def main(verbose: bool) -> None:
    """Industrial visual inspection: train on defect-free images, find defects pixel by pixel."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    reuse_freed_memory()   # page faults took 40% of a fit's CPU time (see its docstring)


DATA_ENV = "INSPECT_AD_DATA"   # the default --data-root


def data_source_options(f):
    f = click.option("--train-dir", type=click.Path(), help="A plain folder of defect-free images.")(f)
    f = click.option("--manifest", type=click.Path(), help="Dataset manifest JSON (train list, labelled test list).")(f)
    f = click.option("--category", help=f"MVTec AD category (in --data-root, or ${DATA_ENV}).")(f)
    f = click.option("--data-root", type=click.Path(),
                     help=f"Folder holding MVTec AD-layout categories (default with --category: ${DATA_ENV}).")(f)
    return f


def default_data_root(data_root, category, manifest, train_dir):
    """``--category`` alone reads the categories' folder from $INSPECT_AD_DATA; without it, one line
    says what to give."""
    if data_root is not None or category is None or manifest is not None or train_dir is not None:
        return data_root
    if os.environ.get(DATA_ENV):
        return os.environ[DATA_ENV]
    raise InspectError(f"--category {category} needs the folder that holds the MVTec AD-layout categories: pass "
                       f"--data-root DIR or set {DATA_ENV}=DIR")


SOURCE_FOLDERS = {"good", "train", "ok", "images"}   # names that say nothing about the product


def default_out(category, manifest, train_dir) -> Path:
    """``models/<name>``: the category, the manifest's name, or the training folder's, skipping
    folder names such as good and train (``data/bottle/train/good`` gives ``models/bottle``)."""
    if category:
        return Path("models", category)
    path = Path(os.path.abspath(manifest or train_dir))
    names = [path.stem] if manifest else [p.name for p in (path, *path.parents)]
    return Path("models", next((n for n in names if n and n.lower() not in SOURCE_FOLDERS), "model"))


def plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def backbone_options(model: str, backbone: str, options: dict) -> dict:
    """``--backbone`` as the model option it is; 'none' is the pixel model (no option at all)."""
    if backbone.lower() != "none":
        return {"backbone": backbone, **options}
    if model in BACKBONE_MODELS:
        raise InspectError(f"--model {model} works on pretrained features; choose a --backbone "
                           f"(e.g. {IMAGE_BACKBONE}) instead of 'none'")
    return options


# --- data ------------------------------------------------------------------------------------

@main.group(cls=Group)
def data() -> None:
    """Datasets: write the built-in synthetic set."""


@data.command("synth")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Folder to write the MVTec-layout dataset into.")
@click.option("--categories", default=None, help="Comma-separated categories (default: all).")
@click.option("--size", default=128, show_default=True, type=click.IntRange(16, 4096), help="Image size in pixels.")
@click.option("--n-train", default=60, show_default=True, type=click.IntRange(1), help="Good training images per category.")
@click.option("--n-test-good", default=20, show_default=True, type=click.IntRange(0), help="Good test images per category.")
@click.option("--n-test-per-defect", default=4, show_default=True, type=click.IntRange(0),
              help="Test images per defect kind and category.")
@seed_option
def data_synth(out, categories, size, n_train, n_test_good, n_test_per_defect, seed):
    """Write the built-in dataset (real scikit-image textures + synthetic defects with exact masks)."""
    from inspect_ad.data.synthetic import CATEGORIES, write_mvtec
    cats = categories.split(",") if categories else list(CATEGORIES)
    written = write_mvtec(out, cats, n_train=n_train, n_test_good=n_test_good,
                          n_test_per_defect=n_test_per_defect, size=size, seed=seed)
    click.echo(f"wrote {len(written)} files for {len(cats)} categories to {out}: {', '.join(cats)}")


# --- fit -------------------------------------------------------------------------------------

# not recorded: a retrain from the record must not replace anything, and trains the same on any
# number of processes (the training section says how many ran)
FIT_RUN_ONLY = ("out", "overwrite", "resume", "nproc")


@main.command(sections={
    "Data": ("data_root", "category", "manifest", "train_dir"),
    "Model": ("model_name", "backbone", "backbone_weights", "options", "image_size", "resize_mode", "tile",
              "tile_overlap", "normalization"),
    "Training": ("epochs", "batch_size", "lr", "seed", "augment", "ssim_weight", "gms_weight", "synthetic_defects"),
    "Maps and scoring": ("sigma", "pooling", "map_scales", "map_metric", "standardize", "reference_split"),
    "Calibration": ("calibration_split", "target_frr", "min_area"),
    "Output and run": ("config", "out", "overwrite", "resume", "checkpoint_every", "device", "nproc", "quiet")})
@data_source_options
@click.option("--out", type=click.Path(file_okay=False),
              help="Folder for the model bundle (default: models/<category, or the training folder's name>).")
@click.option("--model", "model_name", default=IMAGE_MODEL, show_default=True,
              help=f"One of: {', '.join(IMAGE_MODELS)} (mmae, memae, ae: on --backbone features, or pixels with 'none'; "
                   "mmae_patchcore: the feature MMAE's residual + patchcore's distance, each standardised).")
@click.option("--backbone", default=IMAGE_BACKBONE, show_default=True,
              help=f"Pretrained feature extractor ({', '.join(WHEELS)}, or any timm model with --backbone-weights); "
                   "'none' trains the pixel model from scratch (mmae, memae, ae only).")
@click.option("--backbone-weights", type=click.Path(dir_okay=False),
              help="Weights of --backbone from a file (safetensors or a state dict); default: the installed ImageNet wheel.")
@epochs_option(default(TrainConfig, "epochs"), help="Training epochs (trained models; patchcore is filled in one pass).")
@batch_size_option(default(TrainConfig, "batch_size"), help="Images per training step (and per feature pass).")
@click.option("--image-size", default=default(Detector, "image_size"), show_default=True, type=InputSize(),
              help="Model input: one side (square), or height,width; 'auto': the short side 256, the long side "
                   "following the training images' median aspect ratio (docs/inputs.md).")
@click.option("--tile", default=default(Detector, "tile"), show_default=True, type=TileSize(),
              help="Cut photos into tiles of this many pixels at their own resolution, fit and score every tile "
                   "and stitch the maps; 'auto': 256 px tiles when the training photos' median short side is "
                   "above 512; 'off'.")
@field_option("--tile-overlap", Detector, "tile_overlap",
              help="Share of a tile that the next one overlaps (maps averaged there).")
@lr_option(default(TrainConfig, "lr"))
@device_option
@seed_option
@field_option("--augment", Detector, "augment",
              help="Training augmentation of the pixel models: flips, or flips with light brightness/contrast jitter.")
@field_option("--normalization", Detector, "normalization",
              help="Pixel scaling; 'stretch' also maps each image's 1st-99th percentile to 0-1 (uneven exposure).")
@field_option("--resize", Detector, "resize_mode", param="resize_mode",
              help="Images of another shape than the input: 'squash' to it, or 'pad' (keep the aspect ratio, "
                   "reflect).")
@map_options()
@field_option("--ssim-weight", TrainConfig, "ssim_weight",
              help="Weight of an SSIM term added to the loss.")
@field_option("--gms-weight", TrainConfig, "gms_weight",
              help="Weight of a multi-scale gradient-similarity term added to the loss.")
@field_option("--synthetic-defects", TrainConfig, "synthetic_defects",
              help="Fraction of training inputs given pasted blob defects to repair (0 = plain reconstruction).")
@click.option("--reference-split", default=default(Detector.fit, "reference_split"), show_default=True, type=click.FloatRange(0),
              help="With --standardize: hold out this fraction of the training images for the reference maps.")
@model_options
@field_option("--checkpoint-every", TrainConfig, "checkpoint_every",
              help="Epochs between checkpoints.")
@click.option("--nproc", default=1, show_default=True, type=click.IntRange(1),
              help="Train on this many processes of this machine with DistributedDataParallel (one per GPU, or "
                   "CPU processes); they share each --batch-size batch. Across machines: torchrun (docs/scale-out.md).")
@click.option("--resume", is_flag=True, help="Continue an interrupted fit from its last checkpoint.")
@overwrite_option()
@click.option("--calibration-split", default=default(Detector.fit, "calibration_split"), show_default=True, type=click.FloatRange(0),
              help="Hold out this fraction of the training images (chosen by --seed) and calibrate on them.")
@target_frr_option("With --calibration-split: target false-reject rate.")
@min_area_option
@quiet_option()
@config_option
def fit(data_root, category, manifest, train_dir, out, model_name, backbone, backbone_weights, epochs, batch_size, image_size,
        tile, tile_overlap, lr, device, seed, augment, normalization, resize_mode, sigma, pooling, map_scales, map_metric, ssim_weight, gms_weight,
        synthetic_defects, standardize, reference_split, options, checkpoint_every, nproc, resume, overwrite,
        calibration_split, target_frr, min_area, quiet):
    """Train a model on defect-free images and save it as a bundle. Any option can come from a YAML
    or JSON file (--config); the bundle records them all, so --config BUNDLE/config.json trains it again."""
    from inspect_ad.detectors.bundle import check_model_options, update_bundle_sections
    from inspect_ad.data.datasets import load_image_set
    from inspect_ad.detectors.image import Detector, checkpoint_path
    from inspect_ad.training.device import resolve_device
    from inspect_ad.training.distributed import is_main, process_group

    data_root = default_data_root(data_root, category, manifest, train_dir)
    out = Path(out) if out is not None else default_out(category, manifest, train_dir)
    if (out / "config.json").exists() and not (resume or overwrite):
        raise InspectError(f"{out} already holds a model bundle; pass --overwrite to replace it, "
                           f"--resume to continue it, or choose another --out")
    if checkpoint_path(out).exists() and not (resume or overwrite):
        raise InspectError(f"{checkpoint_path(out)} holds the checkpoint of an earlier fit into {out}; pass "
                           f"--resume to continue it, --overwrite to start over, or choose another --out")
    model_options = backbone_options(model_name, backbone, options)
    check_model_options(model_name, model_options)
    images = load_image_set(data_root, category, manifest, train_dir)
    with option_errors():  # fit is where the options become the model's config and the model
        train_config = TrainConfig(epochs, batch_size, lr, seed=seed, device=device, checkpoint_every=checkpoint_every,
                                   ssim_weight=ssim_weight, gms_weight=gms_weight, synthetic_defects=synthetic_defects)
        det = Detector(model_name, image_size, train_config=train_config,
                       map_config=image_map_config(model_name, model_options, sigma, pooling=pooling, metric=map_metric,
                                                   standardize=standardize, scales=map_scales), augment=augment,
                       model_options=model_options, normalization=normalization, resize_mode=resize_mode,
                       backbone_weights=backbone_weights, tile=tile, tile_overlap=tile_overlap)
    if nproc > 1:
        return fit_on_processes(nproc, len(images.train), batch_size, device)
    with process_group(resolve_device(device)):   # under torchrun: one of its processes
        with option_errors():
            det.fit(images.train, out=out, resume=resume, progress=not quiet, dataset=images.name,
                    calibration_split=calibration_split, target_frr=target_frr, min_area=min_area,
                    reference_split=reference_split)
        if is_main():
            update_bundle_sections(out, **{SECTION: resolved_options(click.get_current_context(), FIT_RUN_ONLY)})
            info = det.training_info_
            remember_bundle(out)
            what = (f"filled a memory bank of {det.model_.memory.num_slots} patches" if info["final_loss"] is None
                    else f"trained for {plural(epochs, 'epoch')} (final loss {info['final_loss']:.5f})")
            source = f"from {train_dir}" if train_dir else f"of {images.name}"
            click.echo(f"{det.describe()} on {plural(info['n_train'], 'image')} {source} "
                       f"({det.preprocessing_.describe()}): {what} in {info['seconds']:.0f}s; bundle: {out}")
            if det.calibration_:
                click.echo(format_calibration(det.calibration_))


def fit_on_processes(nproc: int, n_images: int, batch_size: int, device: str) -> None:
    """``fit`` with the same options (passed as a --config file) in ``nproc`` processes of this
    machine, which train as one (inspect_ad.training.distributed); this process waits for them."""
    from inspect_ad.training.device import resolve_device
    from inspect_ad.training.distributed import check_shares, launch, launched

    if launched():
        raise InspectError("--nproc starts processes of its own; under torchrun drop it (torchrun's "
                           "--nproc_per_node sets the number)")
    check_shares(n_images, batch_size, nproc)
    ctx = click.get_current_context()
    with tempfile.TemporaryDirectory() as tmp:
        options = Path(tmp) / "fit.json"
        options.write_text(json.dumps(resolved_options(ctx, ("nproc",))))
        verbose = ["-v"] if ctx.find_root().params.get("verbose") else []
        code = launch(nproc, ["-u", "-m", "inspect_ad", *verbose, "fit", "--config", str(options)],
                      resolve_device(device))
    if code == InspectError.exit_code:
        ctx.exit(code)   # the process that failed printed its one-line error
    if code:
        raise InspectError(f"a training process ended with exit code {code}; its messages are above")


# --- calibrate -------------------------------------------------------------------------------

def format_calibration(cal: dict) -> str:
    from inspect_ad.scoring.calibration import min_area_text
    return (f"calibrated on {cal['n']} good images at target false-reject rate {cal['target_frr']:g}: "
            f"image threshold {cal['image_threshold']:.6g} (normalised score 1: a part FAILs above it), pixel "
            f"threshold {cal['pixel_threshold']:.6g} (region outlines), min defect area {min_area_text(cal)}\n"
            f"guarantee: {cal['guarantee']}")


@main.command(sections={"Model and data": ("bundle", "good"), "Calibration": ("target_frr", "min_area", "force"),
                        "Run": ("batch_size", "device", "quiet")})
@bundle_option(last=True)
@click.option("--good", required=True, multiple=True, type=click.Path(),
              help="Defect-free images (folders or files) NOT used for training; repeatable.")
@target_frr_option()
@min_area_option
@click.option("--force", is_flag=True,
              help="Calibrate on images that do not look like the training images (other channels, grey levels "
                   "or size), which are refused otherwise.")
@batch_size_option(16, help="Images scored per batch.")
@device_option
@quiet_option()
def calibrate(bundle, good, target_frr, min_area, force, batch_size, device, quiet):
    """Set PASS/FAIL thresholds from good images with a stated false-reject guarantee. Each image
    counts once (repeats, links to one file and copies are dropped), and each must look like the
    training images (channels, grey levels, size) unless --force."""
    from inspect_ad.data.datasets import expand_inputs
    from inspect_ad.detectors.image import Detector

    det = Detector.load(bundle, device)
    cal = det.calibrate(expand_inputs(good), target_frr, min_area, source=", ".join(good), batch_size=batch_size,
                        progress=not quiet, force=force)   # saved into the bundle it was loaded from
    click.echo(format_calibration(cal))
    click.echo(f"saved in {Path(bundle) / 'config.json'} (weights untouched)")


# --- segment ---------------------------------------------------------------------------------

SEGMENT_OUTPUTS = ("_map.npy", "_overlay.png", "_mask.png", "_contour.png")


@main.command(sections={"Model": ("bundle",), "Output": ("out", "overwrite", "quiet"),
                        "Run": ("batch_size", "device", "runtime", "precision", "compile_graph")})
@click.argument("inputs", nargs=-1, required=True)
@bundle_option(last=True)
@click.option("--out", default="segmented", show_default=True, type=click.Path(file_okay=False),
              help="Folder for overlays and maps.")
@batch_size_option(8, help="Images scored per batch.")
@device_option
@runtime_options
@overwrite_option("Replace files left in --out by an earlier segment.")
@quiet_option("Print only the summary and errors (no progress bar, no line per image).")
def segment(inputs, bundle, out, batch_size, device, runtime, precision, compile_graph, overwrite, quiet):
    """Write a heatmap overlay and the raw map for each image; print its score. With a calibrated
    model also write the defect mask and a contour overlay, and print PASS/FAIL. Outputs keep the
    inputs' folders: ``test/crack/000.png`` (folder ``test`` given) gives ``OUT/test/crack/000_overlay.png``."""
    from inspect_ad.atomic import atomic_path
    from inspect_ad.reports.batch import contour_overlay, write_mask, write_rgb
    from inspect_ad.data.datasets import named_inputs
    from inspect_ad.detectors.image import Detector
    from inspect_ad.reports.visualize import colour_scale, save_overlay, verdict

    det = Detector.load(bundle, device, runtime, precision, compile_graph)
    named = named_inputs(inputs)
    if not named:
        raise InspectError(f"no images found in {', '.join(inputs)}; pass image files or folders of them")
    paths, stems = [path for path, _ in named], [output_stem(name) for _, name in named]
    out = Path(out)
    if not overwrite:
        taken = next((out / f"{st}{kind}" for st in stems for kind in SEGMENT_OUTPUTS
                      if (out / f"{st}{kind}").exists()), None)
        if taken is not None:
            raise InspectError(f"{taken} already exists; pass --overwrite to replace it, or choose another --out")
    prepare_outputs(out, stems)
    scale, n_bad, first_error = colour_scale(det), 0, None
    say = (lambda line: None) if quiet else (lambda line: click.echo(printable(line)))
    predictions = tqdm(det.predict_iter(paths, batch_size, keep_image=True), total=len(paths), desc="segment",
                       unit="image", disable=True if quiet else None, leave=False)   # None: on a terminal only
    for stem, p in zip(stems, predictions):
        if p.error:
            n_bad += 1
            first_error = first_error or p.error
            click.echo(printable(f"{p.source}\terror: {p.error}"))
            continue
        with atomic_path(out / f"{stem}_map.npy") as tmp, open(tmp, "wb") as f:
            np.save(f, p.map)
        if not det.calibration_:
            save_overlay(out / f"{stem}_overlay.png", p.image, p.map, scale, f"score {p.score:.5g} (not calibrated)")
            say(f"{p.source}\tscore={p.score:.6g}" + (f"\tINVALID input: {p.invalid}" if p.invalid else ""))
            continue
        j = det.judge(p)
        title = (f"{j.decision}: {j.reason}" if j.reason else
                 f"{verdict(j.decision, j.normalized)} (score {p.score:.5g})" + ("; white: regions" if j.boxes else ""))
        save_overlay(out / f"{stem}_overlay.png", p.image, p.map, scale, title, mask=j.mask)
        write_mask(out / f"{stem}_mask.png", j.mask)
        write_rgb(out / f"{stem}_contour.png", contour_overlay(p.image, j.mask))
        say(f"{p.source}\tscore={p.score:.6g}\tnormalised={j.normalized:.4f}\t{j.decision}"
                   + (f"\t{j.reason}" if j.reason else ""))
    click.echo(printable(f"{len(paths) - n_bad} images segmented, {n_bad} unreadable; results in {out}"))
    if n_bad == len(paths):
        raise InspectError(f"none of the {len(paths)} inputs could be read (e.g. {first_error}); pass existing image "
                           f"files or folders")
    if not det.calibration_:
        click.echo("no PASS/FAIL: the model is not calibrated; run 'inspect-ad calibrate' to get decisions and masks")


def output_stem(name: str) -> str:
    """``name`` (``folder/stem``) with the stem shortened, a hash of it kept, where an output's file
    name would be longer than a file system allows (255 bytes)."""
    from inspect_ad.atomic import fitting_name
    folder, _, stem = name.rpartition("/")
    stem = fitting_name(stem, max(len(kind) for kind in SEGMENT_OUTPUTS))
    return f"{folder}/{stem}" if folder else stem


def prepare_outputs(out: Path, stems: list[str]) -> None:
    """The output folders, made without writing through a symbolic link (a planted one would put
    the outputs elsewhere) and cleared of what a killed segment left (its temporary files)."""
    from inspect_ad.atomic import refuse_symlinks, remove_leftovers
    refuse_symlinks(out)
    names: dict[Path, list[str]] = {}
    for stem in stems:
        names.setdefault((out / stem).parent, []).extend(f"{Path(stem).name}{kind}" for kind in SEGMENT_OUTPUTS)
    for folder, outputs in names.items():
        refuse_symlinks(folder, below=out)
        folder.mkdir(parents=True, exist_ok=True)
        remove_leftovers(folder, outputs)


# --- inspect (batch QA) ----------------------------------------------------------------------

@main.command("inspect", sections={
    "Model": ("bundle",), "Report": ("out", "resume", "overwrite", "fail_exit_code", "quiet"),
    "Sorting": ("sort_into", "copy"), "Pictures": ("copy_photos",),
    "Run": ("engine", "address", "workers", "batch_size", "device", "runtime", "precision", "compile_graph")})
@click.argument("inputs", nargs=-1, required=True)
@bundle_option("Calibrated model bundle folder.", last=True)
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Report folder (results.csv/.jsonl, index.html).")
@batch_size_option(16, help="Images scored per batch (with --engine ray: per chunk a worker is given).")
@click.option("--engine", default="local", show_default=True, type=click.Choice(["local", "ray"]),
              help="local: this process; ray: Ray workers on this machine or on the cluster at --address "
                   "(pip install 'inspect-ad[ray]'), which also read URLs (s3://, gs://, file://), on the command "
                   "line or in list files.")
@click.option("--address", metavar="ADDR",
              help="With --engine ray: the Ray cluster (auto, HOST:6379 or ray://HOST:10001); without it Ray "
                   "starts on this machine.")
@click.option("--workers", type=click.IntRange(0),
              help="local engine: processes that read and preprocess images while the model runs (default 0: "
                   "the main process, the fastest on a 2-core CPU, where the model uses every core: "
                   "recipes/results/speed.md); ray engine: Ray workers, each of which loads the model once and "
                   "scores its share of the images (default 1).")
@device_option
@runtime_options
@click.option("--sort-into", type=click.Path(file_okay=False),
              help="Link each image into DIR/pass, DIR/fail, DIR/invalid or DIR/error.")
@click.option("--copy", is_flag=True, help="With --sort-into: copy the images instead of symlinking them.")
@click.option("--copy-photos", is_flag=True,
              help="Copy every photo into the report (OUT/photos/) and link the copies, so the report folder "
                   "can be moved or sent on its own.")
@click.option("--resume", is_flag=True, help="Continue a report: skip images already in it.")
@overwrite_option("Replace an existing report in --out.")
@click.option("--fail-exit-code", is_flag=True,
              help="Exit 1 if any image FAILs, else 3 if a file could not be read or was an invalid input, "
                   "else 0 (errors: 2).")
@quiet_option()
@click.pass_context
def inspect_cmd(ctx, inputs, bundle, out, batch_size, engine, address, workers, device, runtime, precision,
                compile_graph, sort_into, copy, copy_photos, resume, overwrite, fail_exit_code, quiet):
    """Batch QA: PASS/FAIL every image under INPUTS (files, folders searched recursively, list files:
    .txt, one path a line) into a CSV/JSONL/HTML report."""
    from functools import partial

    from inspect_ad.detectors.image import Detector

    load = partial(Detector.load, bundle, device, runtime, precision, compile_graph)
    run = dict(batch_size=batch_size, resume=resume, overwrite=overwrite, sort_into=sort_into, copy=copy,
               copy_photos=copy_photos, progress=not quiet, **({} if workers is None else {"workers": workers}))   # else each engine's default
    if engine == "ray":
        from inspect_ad.pipelines.ray_qa import inspect_images_ray
        s = inspect_images_ray(load, inputs, out, address=address, **run)
    elif address is not None:
        raise InspectError("--address is the Ray cluster of --engine ray; add --engine ray or leave out --address")
    else:
        from inspect_ad.reports.batch import inspect_images
        s = inspect_images(load(), inputs, out, **run)
    skipped = f", {s.skipped} other files skipped (summary.json lists them)" if s.skipped else ""
    click.echo(printable(f"{s.total} images ({s.new} new): {s.passed} PASS, {s.failed} FAIL, {s.invalid} INVALID input, "
                         f"{s.errors} unreadable{skipped} in {s.seconds:.1f}s; report: {Path(out) / 'index.html'}"))
    if fail_exit_code:
        ctx.exit(s.exit_code())


# --- export ----------------------------------------------------------------------------------

@main.command()
@bundle_option()
@click.option("--format", "fmt", default="onnx", show_default=True, type=click.Choice(list(FORMATS)),
              help="onnx (onnxruntime; OpenVINO reads it too), openvino (IR, float32 weights) or torchscript.")
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="New folder for the exported graph and a copy of the bundle's config.json.")
@overwrite_option("Replace an earlier export in --out.")
def export(bundle, fmt, out, overwrite):
    """Export the model with its map post-processing (smoothing, standardisation, pooling) as one
    graph: preprocessed images in, maps and scores out. Run it with --runtime in segment and inspect."""
    from inspect_ad.detectors.image import Detector

    out_path = Path(out)
    if out_path.exists() and any(out_path.iterdir()) and not overwrite:
        raise InspectError(f"{out} is not empty; pass --overwrite to replace an earlier export, or choose another --out")
    path = Detector.load(bundle, "cpu").export(out_path, fmt)
    click.echo(f"exported {bundle} as {fmt} to {path}; run it with: inspect-ad inspect IMAGES --bundle {path} "
               f"--runtime {fmt} --out REPORT")


# --- evaluate --------------------------------------------------------------------------------

@main.command(sections={
    "Model and data": ("bundle", "data_root", "category", "manifest", "train_dir"),
    "Map overrides": ("sigma", "map_metric", "map_scales", "pooling", "standardize"),
    "Output and run": ("out", "device", "quiet")})
@bundle_option("Model bundle folder (written by fit); repeat it to compare models on the same test set.",
               multiple=True)
@data_source_options
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="Folder for metrics.json and plots (several bundles: a subfolder each, named after the "
                   "bundle's folder, and the models' curves drawn together).")
@device_option
@map_options(overrides=True)
@quiet_option("No progress bar.")
def evaluate(bundle, data_root, category, manifest, train_dir, out, device, sigma, map_metric, map_scales,
             pooling, standardize, quiet):
    """Image/pixel AUROC, AUPRO@30%, F1-max and recall at 1% FRR on a labelled test set, with plots
    (without defect masks: the image metrics only); several --bundle: each model's report and their
    ROC and PRO curves in one figure each."""
    from dataclasses import replace
    from os.path import abspath

    if train_dir is not None:
        raise InspectError(f"--train-dir {train_dir} holds defect-free images only, and evaluate needs labelled test "
                           f"images: pass --data-root with --category (MVTec AD layout) or --manifest")

    from inspect_ad.data.datasets import load_image_set
    from inspect_ad.detectors.image import Detector
    from inspect_ad.reports.evaluation import evaluate as run_evaluation, save_comparison_plots

    names = [Path(abspath(b)).name for b in bundle]     # as given: a link's own name
    if len(set(names)) < len(names):
        raise InspectError(f"the bundles' folder names name their reports and must differ: {', '.join(bundle)}")
    reports = {name: Path(out) / name for name in names} if len(bundle) > 1 else {names[0]: Path(out)}
    data = load_image_set(default_data_root(data_root, category, manifest, train_dir), category, manifest, train_dir)
    overrides = {k: v for k, v in (("sigma", sigma), ("metric", map_metric), ("scales", map_scales),
                                   ("pooling", pooling), ("standardize", standardize)) if v is not None}
    for b, report in zip(bundle, reports.values()):
        det = Detector.load(b, device)
        with option_errors():
            det.map_config = replace(det.map_config, **overrides)
        if det.map_config.standardized and not det.reference_is_current():   # missing or stale reference maps
            det.fit_reference(data.require_train().train, progress=not quiet)
        result = run_evaluation(det, data, report, progress=not quiet)
        click.echo(format_metrics(result))
        if result.get("pixel_metrics_reason"):
            click.echo(result["pixel_metrics_reason"])
        click.echo(f"report: {report / 'metrics.json'}")
    if len(bundle) > 1:
        click.echo("models compared: " + ", ".join(str(f) for f in save_comparison_plots(reports, out)))


def format_metrics(m: dict) -> str:
    keys = ("image_auroc", "pixel_auroc", "aupro", "image_f1max", "pixel_f1max", "recall_at_1pct_frr")
    point = m.get("operating_point")
    calibrated = f", recall={point['tpr']:.4f} at the calibrated threshold (FPR {point['fpr']:.4f})" if point else ""
    return f"{m['model']} on {m['dataset']} ({m['n_images']} images): " + ", ".join(
        f"{k}={m[k]:.4f}" for k in keys if m.get(k) is not None) + calibrated


# --- demo ------------------------------------------------------------------------------------

@main.command()
@click.option("--out", default="demo", show_default=True, type=click.Path(file_okay=False),
              help="Folder for the data, models, reports, heatmaps and metrics.json.")
@click.option("--categories", default="brick", show_default=True, help="Built-in categories, comma-separated.")
@click.option("--models", default="patchcore,mmae", show_default=True,
              help="Models to fit and compare; the first is calibrated and inspects the test images.")
@click.option("--backbone", default=IMAGE_BACKBONE, show_default=True,
              help="Pretrained features for every model; 'none' trains the pixel models from scratch (e.g. --models mmae,ae).")
@epochs_option(help="Training epochs (default: the demo preset).")
@seed_option
@device_option
@quiet_option("No progress bars.")
def demo(out, categories, models, backbone, epochs, seed, device, quiet):
    """Built-in data -> train -> evaluate -> heatmaps -> calibrate -> inspect report, in a few minutes on a laptop CPU."""
    from inspect_ad.pipelines.demo import qa_lines, run_demo
    names = models.split(",")
    for name in names:
        backbone_options(name, backbone, {})  # refuses patchcore without a backbone, in one line
    result = run_demo(Path(out), categories.split(","), names, epochs=epochs, seed=seed, progress=not quiet,
                      echo=click.echo, backbone=None if backbone.lower() == "none" else backbone, device=device)
    click.echo(f"heatmaps (one per defect kind): {Path(out) / 'heatmaps'}")
    for line in qa_lines(result):
        click.echo(line)
    click.echo(f"metrics: {Path(out) / 'metrics.json'} (wall time {result['seconds']:.0f}s)")


from inspect_ad.cli.video import video  # noqa: E402  (the video recipes' command group)

main.add_command(video)

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
