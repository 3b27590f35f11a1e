"""Cutouts into chunked Zarr image stacks, and preprocessing for models."""

from catbuilder.stack.append import append_to_stack
from catbuilder.stack.build import build_stack
from catbuilder.stack.flags import FLAG_BITS
from catbuilder.stack.store import Batch, ImageStack, open_stack

__all__ = ["FLAG_BITS", "Batch", "ImageStack", "append_to_stack", "build_stack", "open_stack"]
