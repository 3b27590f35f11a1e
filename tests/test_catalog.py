"""The output catalog: one row per object, four formats, crossmatch."""

import numpy as np
import pandas as pd
import pytest

from catbuilder import config
from catbuilder.catalog import build_catalog, crossmatch_catalog, read_catalog, write_catalog
from catbuilder.infer import predict
from catbuilder.sky.hats_catalogs import crossmatch_method
from catbuilder.stack import build_stack


@pytest.fixture(scope="module")
def catalog(mock_survey, small_model, dask_client, tmp_path_factory):
    """The des-like mock (both areas) plus two objects off the footprint, classified."""
    root = tmp_path_factory.mktemp("cat")
    files = mock_survey["des-like"]
    src = files.read_sources()[["objid", "ra", "dec"]]
    off = pd.DataFrame({"objid": [-1, -2], "ra": [150.0, 151.0], "dec": [40.0, 41.0]})
    stack = build_stack(
        pd.concat([src, off]),
        files.directory / "tiles",
        root / "s.zarr",
        size=32,
        chunk_objects=32,
        progress=False,
    )
    preds = predict(stack, small_model, cluster=dask_client, progress=False)
    return build_catalog(preds), stack


def test_one_row_per_object_with_flags_and_provenance(catalog, mock_survey):
    cat, _ = catalog
    src = mock_survey["des-like"].read_sources()
    assert len(cat) == len(src) + 2 and cat["objid"].is_unique
    assert set(cat["objid"]) == set(src["objid"]) | {-1, -2}
    assert {
        "objid",
        "ra",
        "dec",
        "p_elliptical",
        "p_spiral",
        "predicted",
        "confidence",
        "flags",
        "off_footprint",
        "edge",
        "saturated",
        "nan_fraction",
        "missing_band",
    } <= set(cat)
    on = ~cat["off_footprint"]
    assert np.allclose(cat.loc[on, ["p_elliptical", "p_spiral"]].sum(axis=1), 1, atol=1e-5)
    assert set(cat.loc[on, "predicted"]) <= {"elliptical", "spiral"}
    assert (cat.loc[on, "confidence"] >= 0.5).all()
    off = cat[cat["objid"] < 0]
    assert off["off_footprint"].all() and off["predicted"].isna().all()
    assert off[["p_elliptical", "p_spiral", "confidence"]].isna().all().all()
    meta = cat.attrs["catbuilder"]
    assert meta["model"]["plugin"] == "keras.small-cnn" and meta["classes"] == [
        "elliptical",
        "spiral",
    ]
    assert len(meta["model"]["weights_sha256"]) == 64


@pytest.mark.parametrize(
    "fmt,name",
    [("parquet", "c.parquet"), ("fits", "c.fits"), ("votable", "c.vot"), ("hats", "c_hats")],
)
def test_formats_round_trip_with_provenance(catalog, tmp_path, fmt, name):
    cat, _ = catalog
    path = write_catalog(cat, tmp_path / name, fmt)
    back = read_catalog(path)
    assert len(back) == len(cat)
    merged = cat.merge(back, on="objid", suffixes=("", "_back"))
    assert len(merged) == len(cat)
    np.testing.assert_allclose(
        merged["p_spiral"], merged["p_spiral_back"], equal_nan=True, rtol=1e-6
    )
    assert (merged["predicted"].astype(str) == merged["predicted_back"].astype(str)).all()
    meta = back.attrs["catbuilder"]
    assert meta["model"]["plugin"] == "keras.small-cnn"
    assert meta["classes"] == ["elliptical", "spiral"]


def test_unknown_format_is_an_error(catalog, tmp_path):
    with pytest.raises(ValueError, match="unknown catalog format 'csv'"):
        write_catalog(catalog[0], tmp_path / "c.csv", "csv")


def test_crossmatch_with_astropy_and_lsdb_agree(catalog, mock_survey, tmp_path):
    cat, _ = catalog
    sdss = mock_survey["sdss-like"].read_sources()[["objid", "ra", "dec", "cls"]]
    a = crossmatch_catalog(cat, sdss, 1.0, method="astropy")
    hats = write_catalog(cat, tmp_path / "h", "hats")
    assert crossmatch_method(hats, sdss) == "astropy"  # small: read into memory
    c = crossmatch_catalog(hats, sdss, 1.0)
    with config.set({"crossmatch.lsdb-min-rows": len(cat) + len(sdss)}):
        assert crossmatch_method(hats, sdss) == "lsdb"  # a HATS catalog this large
        assert crossmatch_method(cat, sdss) == "astropy"  # tables already in memory
        b = crossmatch_catalog(hats, sdss, 1.0)
    assert len(a) == len(b) == len(c) == len(sdss)
    pairs = [set(zip(x["objid"], x["objid_other"])) for x in (a, b, c)]
    assert pairs[0] == pairs[1] == pairs[2]
    assert (b["sep_arcsec"] < 1.0).all()


def test_a_catalog_converts_to_a_qtable_with_units_ucds_and_descriptions(catalog):
    catalog, _ = catalog
    from astropy import units as u
    from astropy.table import QTable

    from catbuilder.catalog import to_table

    t = to_table(catalog)
    assert isinstance(t, QTable) and len(t) == len(catalog)
    assert t["ra"].unit == u.deg and isinstance(t["ra"], u.Quantity)
    assert t["ra"].to(u.rad)[0].value == pytest.approx(np.radians(catalog["ra"].iloc[0]))
    assert t["ra"].info.meta["ucd"] == "pos.eq.ra;meta.main"
    assert "probability" in t["p_spiral"].info.description.lower()
    assert t.meta["catbuilder"]["classes"] == ["elliptical", "spiral"]
    off = catalog["off_footprint"].to_numpy()
    if off.any():  # nulls stay nulls (masked), not strings or zeros
        assert t["predicted"].mask[off].all()
    assert not isinstance(to_table(catalog, quantities=False)["ra"], u.Quantity)
