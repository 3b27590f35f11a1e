"""The catalog's columns as data: dtype, unit, UCD and description of each.

One table (``schema.yaml``) describes every column a catalog can
have; the writers of :mod:`catbuilder.catalog` take units, UCDs and
descriptions from it for every format, and provenance is flattened into
readable ``key = value`` pairs (FITS header cards and a PROVENANCE table,
VOTable ``INFO`` elements, ``hats.properties`` entries).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "Column",
    "describe",
    "field_metadata",
    "flatten",
    "reference_markdown",
    "schema_columns",
    "to_astropy",
    "unflatten",
]


@dataclass(frozen=True)
class Column:
    """One catalog column.

    Attributes
    ----------
    name
        Column name (``p_{class}`` patterns expanded).
    dtype
        Stored type (``float32``, ``int64``, ``str``, ...).
    unit
        Astropy/VOUnit string; ``""`` dimensionless, None for no unit (ids, text, flags).
    ucd
        IVOA UCD1+ word(s).
    description
        One line; says what a null means where a value can be absent.
    """

    name: str
    dtype: str
    unit: str | None
    ucd: str | None
    description: str


@cache
def schema_columns() -> tuple[dict[str, Any], ...]:
    """The packaged column table (patterns not expanded)."""
    import yaml

    text = resources.files("catbuilder.catalog").joinpath("schema.yaml").read_text()
    return tuple(yaml.safe_load(text)["columns"])


def describe(name: str, dtype: Any = None) -> Column:
    """The schema entry of column ``name`` (a generic one for unknown columns)."""
    for entry in schema_columns():
        pattern = entry["name"]
        fields = {}
        if "{" in pattern:
            head, tail = pattern.split("{", 1)
            key, rest = tail.split("}", 1)
            if not (name.startswith(head) and name.endswith(rest)):
                continue
            value = name[len(head) : len(name) - len(rest) if rest else None]
            if not value:
                continue
            fields[key] = value
        elif pattern != name:
            continue
        desc = entry["description"].format(**fields)
        if entry.get("absent"):
            desc += f"; null: {entry['absent']}"
        return Column(name, entry["dtype"], entry.get("unit"), entry.get("ucd"), desc)
    return Column(name, str(dtype) if dtype is not None else "", None, None, "")


def field_metadata(name: str) -> dict[str, str]:
    """``description``, ``unit`` and ``ucd`` of a known column, for a Parquet field
    ({} for a column the schema does not describe)."""
    col = describe(name)
    if not col.description:
        return {}
    md = {"description": col.description, "unit": col.unit, "ucd": col.ucd}
    return {k: v for k, v in md.items() if v is not None}


def _masked(values: pd.Series):
    """A numpy (masked) array for ``values``, nulls masked rather than replaced."""
    if isinstance(values.dtype, pd.api.extensions.ExtensionDtype) and values.dtype.kind in "iub":
        mask = values.isna().to_numpy()
        data = values.to_numpy(dtype=values.dtype.numpy_dtype, na_value=0)
        return np.ma.MaskedArray(data, mask=mask) if mask.any() else data
    if isinstance(values.dtype, pd.DatetimeTZDtype) or values.dtype.kind == "M":
        # FITS and VOTable have no datetime column: ISO 8601 text in UTC (Parquet
        # and HATS keep the datetime itself)
        mask = values.isna().to_numpy()
        utc = (
            values.dt.tz_convert("UTC") if isinstance(values.dtype, pd.DatetimeTZDtype) else values
        )
        text = np.array(["" if m else t.isoformat() for t, m in zip(utc, mask)], dtype=str)
        return np.ma.MaskedArray(text, mask=mask) if mask.any() else text
    if values.dtype == object or isinstance(values.dtype, pd.StringDtype):
        mask = values.isna().to_numpy()
        data = np.asarray(values.where(~values.isna(), "").astype(str).to_numpy(), dtype=str)
        return np.ma.MaskedArray(data, mask=mask) if mask.any() else data
    return values.to_numpy()


def to_astropy(catalog: pd.DataFrame):
    """The catalog as an :class:`astropy.table.Table` with units, UCDs and descriptions.

    Null strings and integers become masked values (NaN stays NaN in floats).
    The UCD is in each column's ``meta["ucd"]``, which astropy's VOTable writer
    uses.
    """
    from astropy import units as u
    from astropy.table import Table

    t = Table()
    for name in catalog.columns:
        col = describe(str(name), catalog[name].dtype)
        t[str(name)] = _masked(catalog[name])
        if col.unit is not None:
            t[str(name)].unit = u.Unit(col.unit) if col.unit else u.dimensionless_unscaled
        t[str(name)].description = col.description or None
        if col.ucd:
            t[str(name)].meta["ucd"] = col.ucd
    return t


def flatten(meta: dict[str, Any], prefix: str = "catbuilder") -> dict[str, str]:
    """Provenance as readable ``dotted.key -> value`` strings (JSON for non-strings)."""
    out: dict[str, str] = {}

    def walk(value: Any, key: str) -> None:
        if isinstance(value, dict) and value:
            for k, v in value.items():
                walk(v, f"{key}.{k}")
        else:
            out[key] = (
                value if isinstance(value, str) and not _looks_json(value) else (json.dumps(value))
            )

    walk(meta, prefix)
    return out


def _looks_json(text: str) -> bool:
    """Whether a string would read back as something else (it is then quoted)."""
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def unflatten(items: dict[str, str], prefix: str = "catbuilder") -> dict[str, Any]:
    """Invert :func:`flatten` (keys outside ``prefix`` are ignored)."""
    out: dict[str, Any] = {}
    for key, raw in items.items():
        if not key.startswith(prefix + "."):
            continue
        try:
            value = json.loads(raw)
        except (TypeError, ValueError):
            value = raw
        node = out
        parts = key[len(prefix) + 1 :].split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = value
    return out


def reference_markdown() -> str:
    """The column table as Markdown (``docs/catalog-columns.md``)."""
    lines = [
        "# Catalog columns",
        "",
        "Generated from `catbuilder/catalog/schema.yaml` by",
        "`python -c 'from catbuilder.catalog.schema import reference_markdown as r; "
        'print(r(), end="")\' > docs/catalog-columns.md`; a test fails when it is out of date.',
        'Unit "" is dimensionless (FITS: an empty `TUNITn`); `{class}` is each class of the model.',
        "",
        "| column | type | unit | UCD | description |",
        "|---|---|---|---|---|",
    ]
    for e in schema_columns():
        unit = "" if e.get("unit") is None else f'"{e["unit"]}"' if e["unit"] == "" else e["unit"]
        desc = e["description"] + (f"; null: {e['absent']}" if e.get("absent") else "")
        lines.append(f"| `{e['name']}` | {e['dtype']} | {unit} | `{e.get('ucd') or ''}` | {desc} |")
    return "\n".join(lines) + "\n"
