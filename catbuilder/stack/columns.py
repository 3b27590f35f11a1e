"""Extra source columns carried through a stack exactly: type, value and null.

A source table's extra columns (``build_stack(..., extra_columns=[...])``)
are stored as per-object coordinates in a fixed numpy type, with a boolean
companion ``<name>__null`` where the column can hold nulls, and their pandas
type recorded in the stack's metadata; reading the stack decodes them back.
So 64-bit ids (nullable or unsigned) keep every digit, booleans keep their
NA, text keeps its unicode and datetimes their nanoseconds and zone.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

__all__ = ["NULL_SUFFIX", "decode", "encode"]

#: the companion coordinate that marks a column's nulls
NULL_SUFFIX = "__null"


def encode(name: str, values: pd.Series, source: str = "source table") -> tuple[dict, dict]:
    """``(columns to store, spec)`` for one extra column.

    Raises
    ------
    ValueError
        For a column whose values have no one type (text mixed with numbers,
        say): convert it first, nothing is guessed.
    """
    s = pd.Series(values).reset_index(drop=True)
    dtype = s.dtype
    null = s.isna().to_numpy(dtype=bool)
    spec: dict[str, Any] = {"dtype": str(dtype)}
    if isinstance(dtype, pd.DatetimeTZDtype) or dtype.kind == "M":
        if isinstance(dtype, pd.DatetimeTZDtype):
            spec["tz"] = str(dtype.tz)
            s = s.dt.tz_convert("UTC").dt.tz_localize(None)
        stored = s.to_numpy(dtype="datetime64[ns]").view(np.int64).copy()
        stored[null] = 0
        spec["dtype"] = "datetime64[ns]"
    elif isinstance(dtype, pd.BooleanDtype) or dtype.kind == "b":
        stored = s.to_numpy(dtype=bool, na_value=False)
    elif dtype.kind in "iu":  # numpy integers and pandas' nullable ones (Int64, UInt64 ...)
        np_dtype = np.dtype(dtype.numpy_dtype if hasattr(dtype, "numpy_dtype") else dtype)
        stored = s.to_numpy(dtype=np_dtype, na_value=0)
    elif dtype.kind == "f":
        np_dtype = np.dtype(dtype.numpy_dtype if hasattr(dtype, "numpy_dtype") else dtype)
        stored = s.to_numpy(dtype=np_dtype, na_value=np.nan)
        if not isinstance(dtype, pd.api.extensions.ExtensionDtype):
            null = np.zeros(len(s), dtype=bool)  # NaN is a value of a float column
    elif isinstance(dtype, pd.CategoricalDtype):
        return encode(name, s.astype(object), source)[0], {**spec, "dtype": "category"}
    else:  # text
        present = s[~null]
        if not all(isinstance(v, str) for v in present):
            kinds = sorted({type(v).__name__ for v in present})
            raise ValueError(
                f"{source}: column {name!r} mixes {', '.join(kinds)} values; convert it to one "
                "type before carrying it into a stack"
            )
        stored = np.array(["" if n else v for v, n in zip(s, null)], dtype=object)
    out = {name: stored}
    if null.any() or isinstance(dtype, pd.api.extensions.ExtensionDtype) or dtype.kind in "OMU":
        out[name + NULL_SUFFIX] = null
        spec["nulls"] = True
    return out, spec


def decode(values: np.ndarray, null: np.ndarray | None, spec: dict) -> pd.Series:
    """The column as it was given to :func:`encode`."""
    dtype = spec["dtype"]
    vals = np.asarray(values)
    if dtype == "datetime64[ns]":
        out = pd.Series(vals.astype(np.int64).view("datetime64[ns]"))
        if null is not None:
            out[np.asarray(null, dtype=bool)] = pd.NaT
        if spec.get("tz"):
            out = out.dt.tz_localize("UTC").dt.tz_convert(spec["tz"])
        return out
    if dtype in ("object", "string", "str", "category") or dtype.startswith("string"):
        text = pd.Series([str(v) for v in vals.tolist()], dtype=object)
        if null is not None:
            text[np.asarray(null, dtype=bool)] = None
        if dtype == "category":
            return text.astype("category")
        return text.astype(dtype) if dtype.startswith("string") else text
    out = pd.Series(vals)
    if (null is not None and np.asarray(null).any()) or dtype != str(out.dtype):
        out = out.astype(dtype)
        if null is not None:
            out[np.asarray(null, dtype=bool)] = pd.NA
    return out
