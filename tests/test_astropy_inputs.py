"""astropy as it comes: Tables, QTables and SkyCoords as source tables, angles
as Quantities or strings, catalogs out as QTables with units."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.table import QTable, Table
from test_bad_input import BIG_ID, SIZE, _sources, ws  # noqa: F401  (the tiles fixture)

from catbuilder import build_stack, crossmatch, open_stack
from catbuilder.sky.tables import read_sources


def test_read_sources_takes_tables_qtables_and_skycoords():
    df = _sources()
    t = Table.from_pandas(df)
    q = QTable({"objid": df["objid"].to_numpy(), "ra": df["ra"].to_numpy() * u.deg,
                "dec": (df["dec"].to_numpy() * u.deg).to(u.arcmin)})  # fmt: skip
    coord = SkyCoord(df["ra"].to_numpy(), df["dec"].to_numpy(), unit="deg")
    mixed = QTable({"objid": df["objid"].to_numpy(), "coord": coord})
    for table in (t, q, mixed):
        got = read_sources(table)
        assert got["objid"].tolist() == df["objid"].tolist()  # 64-bit ids exact
        np.testing.assert_allclose(got["ra"], df["ra"], atol=1e-9)
        np.testing.assert_allclose(got["dec"], df["dec"], atol=1e-9)
    galactic = SkyCoord(df["ra"].to_numpy(), df["dec"].to_numpy(), unit="deg").galactic
    with pytest.warns(UserWarning, match="no id column"):
        got = read_sources(galactic)
    np.testing.assert_allclose(got["ra"], df["ra"], atol=1e-8)  # back in ICRS degrees
    assert got["objid"].tolist() == list(range(len(df)))


def test_crossmatch_radius_as_quantity_string_or_arcsec():
    a = pd.DataFrame({"objid": [1, 2], "ra": [150.0, 150.1], "dec": [2.0, 2.1]})
    b = pd.DataFrame({"objid": [10, 20], "ra": [150.0 + 0.5 / 3600, 151.0], "dec": [2.0, 2.1]})
    for radius in (1 * u.arcsec, "1 arcsec", 1.0, 1 / 3600 * u.deg):
        assert crossmatch(a, b, radius=radius).join()["objid_2"].tolist() == [10]
    assert crossmatch(a, b, radius=0.1 * u.arcsec).join().empty
    for bad in (1 * u.m, "far", -1 * u.arcsec):
        with pytest.raises(ValueError, match="radius must be"):
            crossmatch(a, b, radius=bad)
    match = crossmatch(
        Table.from_pandas(a), SkyCoord([150.0], [2.0], unit="deg"), radius=1 * u.arcsec
    )
    assert match.join()["objid"].tolist() == [1]


def test_build_stack_takes_an_astropy_table(ws, tmp_path):  # noqa: F811
    t = Table.from_pandas(_sources())
    stack = build_stack(t, ws / "tiles", tmp_path / "t.zarr", size=SIZE, cluster="sync",
                        progress=False)  # fmt: skip
    assert len(stack) == len(t)
    assert sorted(open_stack(tmp_path / "t.zarr").objects()["objid"]) == sorted(
        BIG_ID + i for i in range(len(t))
    )
