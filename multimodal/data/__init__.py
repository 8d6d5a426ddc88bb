"""Data: readers for Recipes5k, manifests and folders; robust images; recipe texts."""

from multimodal.data.images import DEFAULT_MAX_PIXELS, ImageLoadError, load_image, to_rgb
from multimodal.data.loading import ImageBatch, Reject, iter_image_batches
from multimodal.data.readers import dataset_splits, read_image_folder, read_manifest, read_records
from multimodal.data.recipes5k import is_recipes5k, read_recipes5k, recipes5k_splits
from multimodal.data.records import Record
from multimodal.data.text import RecipeTextBuilder, recipe_text, token_counter

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "ImageBatch",
    "ImageLoadError",
    "RecipeTextBuilder",
    "Record",
    "Reject",
    "dataset_splits",
    "is_recipes5k",
    "iter_image_batches",
    "load_image",
    "read_image_folder",
    "read_manifest",
    "read_recipes5k",
    "read_records",
    "recipe_text",
    "recipes5k_splits",
    "to_rgb",
    "token_counter",
]
