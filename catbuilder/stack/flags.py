"""Per-object quality flags of an image stack, and their bits in ``flags``."""

from __future__ import annotations

__all__ = ["FLAG_BITS", "describe_flags"]

#: bit of each flag in the ``flags`` (uint8) variable of a stack
FLAG_BITS: dict[str, int] = {
    "off_footprint": 1,  # in no tile of the reference band (or no valid position)
    "edge": 2,  # the cutout crosses a tile edge; pixels beyond it are NaN
    "nan": 4,  # in some band, more than cutouts.nan-fraction-max of the pixels are NaN
    "missing_band": 8,  # at least one band has no image (or it could not be read)
    "saturated": 16,  # some pixel reaches the image's SATURATE level
}


def describe_flags(value: int) -> list[str]:
    """Names of the flags set in a ``flags`` value."""
    return [name for name, bit in FLAG_BITS.items() if value & bit]
