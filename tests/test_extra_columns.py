"""Every extra source column keeps its type and value through stack and catalog:
a property test over dtypes and values (Hypothesis), and the catalog a model
makes from such a stack."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_bad_input import POSITIONS, SIZE, _sources, ws  # noqa: F401  (the tiles fixture)

from catbuilder import build_stack, open_stack, read_catalog, write_catalog

N = len(POSITIONS)
INT64 = st.integers(-(2**63), 2**63 - 1)
TEXT = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=12
)
DATES = st.integers(-(2**62), 2**62).map(lambda ns: pd.Timestamp(ns, unit="ns"))


def _column(kind: str, values: list) -> pd.Series:
    return {
        "Int64": lambda: pd.Series(pd.array(values, dtype="Int64")),
        "int64": lambda: pd.Series(np.array(values, dtype=np.int64)),
        "uint64": lambda: pd.Series(np.array(values, dtype=np.uint64)),
        "float64": lambda: pd.Series(np.array(values, dtype=np.float64)),
        "boolean": lambda: pd.Series(pd.array(values, dtype="boolean")),
        "bool": lambda: pd.Series(np.array(values, dtype=bool)),
        "text": lambda: pd.Series(values, dtype=object),
        "datetime": lambda: pd.Series(pd.to_datetime(values)),
        "datetime-utc": lambda: pd.Series(pd.to_datetime(values)).dt.tz_localize("UTC"),
    }[kind]()


def _nullable(values):
    return st.lists(st.one_of(st.none(), values), min_size=N, max_size=N)


COLUMNS = st.one_of(
    _nullable(INT64).map(lambda v: _column("Int64", v)),
    st.lists(INT64, min_size=N, max_size=N).map(lambda v: _column("int64", v)),
    st.lists(st.integers(0, 2**64 - 1), min_size=N, max_size=N).map(lambda v: _column("uint64", v)),
    st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=N, max_size=N).map(
        lambda v: _column("float64", v)
    ),
    _nullable(st.booleans()).map(lambda v: _column("boolean", v)),
    st.lists(st.booleans(), min_size=N, max_size=N).map(lambda v: _column("bool", v)),
    _nullable(TEXT).map(lambda v: _column("text", v)),
    _nullable(DATES).map(lambda v: _column("datetime", v)),
    _nullable(DATES).map(lambda v: _column("datetime-utc", v)),
)


def _same(got: pd.Series, want: pd.Series) -> None:
    got, want = got.reset_index(drop=True), want.reset_index(drop=True)
    assert str(got.dtype) == str(want.dtype), (got.dtype, want.dtype)
    pd.testing.assert_series_equal(got, want, check_names=False, check_exact=True)


@pytest.mark.slow
@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(column=COLUMNS)
def test_an_extra_column_round_trips_through_stack_and_catalog_exactly(ws, column):  # noqa: F811
    src = _sources()
    src["extra"] = column.to_numpy() if column.dtype.kind in "iubfM" and not hasattr(
        column.dtype, "na_value") else column.array  # fmt: skip
    out = Path(tempfile.mkdtemp())
    try:
        build_stack(src, ws / "tiles", out / "s.zarr", size=SIZE, cluster="sync",
                    progress=False, extra_columns=["extra"])  # fmt: skip
        objects = open_stack(out / "s.zarr").objects().set_index("objid").loc[src["objid"]]
        _same(objects["extra"], column)
        # a catalog carries it (as build_catalog does) and Parquet keeps it
        catalog = objects.reset_index()[["objid", "ra", "dec", "extra"]]
        back = read_catalog(write_catalog(catalog, out / "c.parquet"))
        _same(back["extra"], column)
    finally:
        shutil.rmtree(out)


def test_a_column_of_mixed_types_is_refused_in_one_line(ws, tmp_path):  # noqa: F811
    src = _sources()
    src["mixed"] = pd.Series(["a", 1, 2.5, None, "b"][:N], dtype=object)
    with pytest.raises(ValueError, match="column 'mixed' mixes float, int, str values"):
        build_stack(src, ws / "tiles", tmp_path / "s.zarr", size=SIZE, cluster="sync",
                    progress=False, extra_columns=["mixed"])  # fmt: skip
    assert not (tmp_path / "s.zarr").exists()
