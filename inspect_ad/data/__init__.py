"""Data sources: image folders (MVTec AD layout, manifests, plain folders), the built-in
synthetic set, and the tabular/video/one-class loaders of the recipes."""
from inspect_ad.data.datasets import (GOOD, ImageSet, Sample, expand_inputs, from_folder, from_manifest, from_mvtec,
                       load_image_set, mvtec_categories)
from inspect_ad.data.io import list_images, read_image, read_mask, write_image
from inspect_ad.data.preprocess import Preprocessing

__all__ = ["GOOD", "ImageSet", "Sample", "expand_inputs", "from_folder", "from_manifest", "from_mvtec",
           "load_image_set", "mvtec_categories", "list_images", "read_image", "read_mask", "write_image",
           "Preprocessing"]
