"""Sky inputs: FITS tile index, source tables, Galaxy Zoo selection, crossmatch."""

from catbuilder.sky.crossmatch import MatchResult, crossmatch
from catbuilder.sky.selection import assign_splits, label_sources, select_galaxy_zoo
from catbuilder.sky.tables import read_sources
from catbuilder.sky.tiles import TileIndex

__all__ = [
    "MatchResult",
    "TileIndex",
    "assign_splits",
    "crossmatch",
    "label_sources",
    "read_sources",
    "select_galaxy_zoo",
]
