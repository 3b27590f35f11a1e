"""The stack's per-object variables, written once, as data.

What a cutout task computes and stores for each object besides its
coordinates: the pixels, the quality flags, the zeropoints. The template
(``build``), the chunk writer, the reader (``store``) and an append all read
this table; ``describe`` gives each its CF attributes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["CUTOUT_VARIABLES", "DATA_VARS", "FLAG_VARS", "PER_BAND_FLAGS", "Variable"]


@dataclass(frozen=True)
class Variable:
    """One stored per-object variable."""

    name: str
    #: its dimensions after ``object``: () one value, ("band",) one per band,
    #: ("band", "y", "x") the pixels
    dims: tuple[str, ...]
    dtype: Any
    #: what an object not yet cut holds
    fill: Any
    #: a quality flag: a coordinate of the opened stack, a column of its table
    flag: bool = True


CUTOUT_VARIABLES: tuple[Variable, ...] = (
    Variable("images", ("band", "y", "x"), np.float32, np.nan, flag=False),
    Variable("edge", (), bool, False),
    Variable("nan_fraction", (), np.float32, np.nan),
    Variable("nan", ("band",), bool, False),
    Variable("missing_band", ("band",), bool, False),
    Variable("saturated", (), bool, False),
    Variable("flags", (), np.uint8, 0),
    Variable("magzero", ("band",), np.float32, np.nan),
)

#: every variable a cutout task writes
DATA_VARS = tuple(v.name for v in CUTOUT_VARIABLES)
#: the quality variables (coordinates when a stack is opened)
FLAG_VARS = tuple(v.name for v in CUTOUT_VARIABLES if v.flag)
#: of those, the ones with a value per band (``nan_g``, ``nan_r`` ... in the table)
PER_BAND_FLAGS = tuple(v.name for v in CUTOUT_VARIABLES if v.flag and v.dims == ("band",))
