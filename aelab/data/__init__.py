"""Data: sources that give ImageSets, and the batched preprocessing."""

from aelab.data.imageset import ImageSet
from aelab.data.sources import load_images
from aelab.data.transforms import Preprocess

__all__ = ["ImageSet", "Preprocess", "load_images"]
