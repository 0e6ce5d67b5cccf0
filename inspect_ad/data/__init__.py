"""Data sources: image folders (MVTec AD layout, manifests, plain folders), the built-in
synthetic set, and the tabular/video/one-class loaders of the recipes."""
from .datasets import (GOOD, ImageSet, Sample, expand_inputs, from_folder, from_manifest, from_mvtec,
                       load_image_set, mvtec_categories)
from .io import list_images, read_image, read_mask, write_image
from .preprocess import Preprocessing

__all__ = ["GOOD", "ImageSet", "Sample", "expand_inputs", "from_folder", "from_manifest", "from_mvtec",
           "load_image_set", "mvtec_categories", "list_images", "read_image", "read_mask", "write_image",
           "Preprocessing"]
