"""Data products that explain themselves, and survey files as archives ship them.

Catalogs carry units, UCDs, descriptions, nulls and provenance in every
format (read back with astropy, pyarrow and lsdb); stacks carry CF-style
attributes and each cutout's WCS (used after the tiles are deleted);
``.fits.bz2`` frames in directories and Galaxy Zoo tables as published go in
without renaming.
"""

from __future__ import annotations

import bz2
import shutil

import numpy as np
import pandas as pd
import pytest

from catbuilder.catalog import build_catalog, read_catalog, write_catalog
from catbuilder.infer import predict
from catbuilder.sky import TileIndex, label_sources
from catbuilder.sky.geometry import world_to_pixel
from catbuilder.sky.selection import select_galaxy_zoo
from catbuilder.stack import build_stack


@pytest.fixture(scope="module")
def labelled(mock_survey, tmp_path_factory):
    """des-like sources with Galaxy Zoo labels (unlabelled kept) and two objects off the
    footprint, cut at 16.8 arcsec (64 px, the small model's training size)."""
    root = tmp_path_factory.mktemp("products")
    table = label_sources(
        mock_survey.read_labels(), mock_survey["des-like"].sources, keep_unlabelled=True
    )
    off = pd.DataFrame({"objid": [-1, -2], "ra": [150.0, 151.0], "dec": [40.0, 41.0]})
    table = pd.concat([table, off], ignore_index=True)
    stack = build_stack(
        table,
        mock_survey["des-like"].directory / "tiles",
        root / "s.zarr",
        size="16.8 arcsec",
        chunk_objects=32,
        progress=False,
    )
    return table, stack


@pytest.fixture(scope="module")
def catalog(labelled, small_model, dask_client, tmp_path_factory):
    _, stack = labelled
    out = tmp_path_factory.mktemp("preds") / "p.zarr"
    preds = predict(stack, small_model, output=out, cluster=dask_client, progress=False)
    return build_catalog(preds, stack)


def test_catalog_nulls_and_label_survey_ids(catalog, labelled):
    table, _ = labelled
    off = catalog["objid"] < 0
    assert catalog.loc[off, "predicted"].isna().all()
    assert catalog.loc[~off, "predicted"].notna().all()
    unlabelled = catalog["label"].isna()
    assert unlabelled.any() and (~unlabelled).any()
    assert catalog.loc[unlabelled, ["split", "label_objid"]].isna().all().all()
    # the label survey's id arrives exactly, as an integer column
    assert str(catalog["label_objid"].dtype) == "Int64"
    want = table.set_index("objid")["label_objid"]
    got = catalog.set_index("objid")["label_objid"]
    both = got.dropna().index
    assert len(both) and (got[both] == want[both].astype("Int64")).all()
    assert got[both].min() > 2**53  # SDSS-sized ids: a float would have rounded them


def _provenance_ok(meta: dict) -> None:
    assert meta["model"]["plugin"] == "keras.small-cnn"
    assert len(meta["model"]["weights_sha256"]) == 64
    assert meta["classes"] == ["elliptical", "spiral"]
    assert meta["tta"] is False
    assert str(meta["stack"]).endswith("s.zarr")


@pytest.mark.parametrize("name", ["c.fits", "c.vot"])
def test_fits_and_votable_open_in_astropy_with_units_and_provenance(catalog, tmp_path, name):
    from astropy import units as u
    from astropy.table import Table

    path = write_catalog(catalog, tmp_path / name)
    t = Table.read(path, hdu="CATALOG") if name.endswith(".fits") else Table.read(path)
    assert t["ra"].unit == u.deg and t["dec"].unit == u.deg
    probs = ["p_elliptical", "p_spiral", "confidence"]
    if name.endswith(".vot"):
        for c in probs:
            assert t[c].unit == u.dimensionless_unscaled
        assert "probability" in t["p_spiral"].description
        from astropy.io.votable import parse

        table = parse(str(path)).get_first_table()
        ucd = {f.name: f.ucd for f in table.fields}
        assert ucd["ra"] == "pos.eq.ra;meta.main" and ucd["p_spiral"] == "stat.probability"
        infos = {i.name: i.value for i in table.infos}
        assert infos["catbuilder.model.plugin"] == "keras.small-cnn"
    else:
        from astropy.io import fits

        hdr = fits.getheader(path, "CATALOG")
        cols = {hdr[f"TTYPE{i}"]: i for i in range(1, hdr["TFIELDS"] + 1)}
        for c in probs:  # FITS writes dimensionless as an empty TUNIT
            assert hdr[f"TUNIT{cols[c]}"] == ""
        assert hdr[f"TUCD{cols['dec']}"] == "pos.eq.dec;meta.main"
        assert "probability" in hdr[f"TCOMM{cols['p_spiral']}"]
        assert hdr["CATBUILDER MODEL PLUGIN"] == "keras.small-cnn"
        prov = Table.read(path, hdu="PROVENANCE")
        assert "catbuilder.model.weights_sha256" in set(prov["key"])
    # nulls are nulls: masked numbers; text is empty (FITS and VOTable's null for text)
    col = t["label"]
    text = np.char.strip(np.asarray(col.filled("") if hasattr(col, "filled") else col).astype(str))
    unlabelled = text == ""
    assert unlabelled.any() and not unlabelled.all()
    assert np.asarray(t["label_objid"].mask)[unlabelled].all()
    back = read_catalog(path)
    _provenance_ok(back.attrs["catbuilder"])
    assert back["label"].isna().sum() == catalog["label"].isna().sum()
    assert back["label_objid"].equals(catalog["label_objid"])


def test_parquet_field_metadata_and_votable_header(catalog, tmp_path):
    import pyarrow.parquet as pq

    path = write_catalog(catalog, tmp_path / "c.parquet")
    schema = pq.read_schema(path)
    assert schema.field("ra").metadata[b"unit"] == b"deg"
    assert schema.field("p_spiral").metadata[b"ucd"] == b"stat.probability"
    assert b"null" in schema.field("label").metadata[b"description"]
    md = schema.metadata
    assert md[b"IVOA.VOTable-Parquet.version"] == b"1.0"
    assert b'name="catbuilder.model.plugin"' in md[b"IVOA.VOTable-Parquet.content"]
    df = pd.read_parquet(path)
    assert df["label"].isna().sum() == catalog["label"].isna().sum()
    back = read_catalog(path)
    _provenance_ok(back.attrs["catbuilder"])
    assert back.attrs["units"]["dec"] == "deg"


def test_hats_opens_in_lsdb_with_units_and_provenance(catalog, tmp_path):
    import lsdb

    path = write_catalog(catalog, tmp_path / "c_hats", "hats")
    cat = lsdb.read_hats(path)
    schema = cat.hc_structure.original_schema
    assert schema.field("ra").metadata[b"unit"] == b"deg"
    assert schema.field("p_elliptical").metadata[b"ucd"] == b"stat.probability"
    props = cat.hc_structure.catalog_info.extra_dict()
    assert props["catbuilder.model.plugin"] == "keras.small-cnn"
    df = cat.compute()
    assert df["label"].isna().sum() == catalog["label"].isna().sum()
    _provenance_ok(read_catalog(path).attrs["catbuilder"])
    # rewritten in place: ours, so it may be replaced
    write_catalog(catalog, path, "hats")


def test_stack_describes_itself(labelled):
    import xarray as xr

    _, stack = labelled
    ds = xr.open_zarr(stack.path)
    assert isinstance(ds.attrs["catbuilder"], dict)  # a mapping, not a JSON string
    scale = ds.attrs["pixel_scale_arcsec"]
    assert scale == pytest.approx(0.263, rel=1e-3)
    assert abs(ds.attrs["size_arcsec"] - 16.8) <= scale  # the angle asked for, to a pixel
    assert ds["x"].attrs["units"] == "arcsec" and ds["x"].values[0] < 0 < ds["x"].values[-1]
    assert ds["ra"].attrs["units"] == "deg" and "long_name" in ds["images"].attrs
    assert ds["flags"].attrs["flag_meanings"].split()[0] == "off_footprint"
    assert list(ds["wavelength_eff"].values) == [4686.0, 6166.0, 7480.0]
    for name, var in ds.variables.items():
        assert "long_name" in var.attrs, name


def test_cutout_placed_on_sky_from_the_stack_alone(mock_survey, tmp_path):
    from catbuilder.evaluation.plots import plot_cutout

    tiles, src = tmp_path / "tiles", mock_survey["des-like"].read_sources()
    src = pd.concat([src, pd.DataFrame({"objid": [-1], "ra": [150.0], "dec": [40.0]})])
    shutil.copytree(mock_survey["des-like"].directory / "tiles", tiles)
    index = TileIndex.build(tiles)
    stack = build_stack(src, index, tmp_path / "s.zarr", size=24, progress=False)
    objs = stack.objects()
    i = int(np.flatnonzero(~objs["off_footprint"].to_numpy())[3])
    row = objs.iloc[i]
    ref = index.table[(index.table["tile"] == row["tile"]) & (index.table["band"] == "r")].index[0]
    tile_x, tile_y = world_to_pixel(index.wcs(int(ref)), np.array([row["ra"]]), [row["dec"]])
    shutil.rmtree(tiles)  # from here on: the stack alone
    w = stack.wcs(i)
    x, y = w.world_to_pixel_values(row["ra"], row["dec"])
    lo = np.ceil(np.array([tile_x[0], tile_y[0]]) - 24 / 2)
    assert np.allclose([x, y], [tile_x[0] - lo[0], tile_y[0] - lo[1]], atol=1e-3)
    corner = w.pixel_to_world_values(0, 0)
    assert np.hypot(*(np.subtract(corner, [row["ra"], row["dec"]]))) * 3600 < 24 * 0.263
    png = plot_cutout(stack, i, tmp_path / "cutout.png")
    assert png.stat().st_size > 5000
    with pytest.raises(ValueError, match="off the footprint"):
        stack.wcs(int(np.flatnonzero(objs["off_footprint"].to_numpy())[0]))


def test_bz2_frames_in_a_directory(mock_survey, tmp_path):
    src_dir = mock_survey["sdss-like"].directory / "tiles"
    frames = tmp_path / "frames"
    frames.mkdir()
    for f in sorted(src_dir.glob("*.fits")):
        (frames / f"{f.name}.bz2").write_bytes(bz2.compress(f.read_bytes()))
    plain, packed = TileIndex.build(src_dir), TileIndex.build(frames)
    assert len(packed) == len(plain) and not packed.problems
    assert sorted(packed.tiles) == sorted(plain.tiles)
    assert not any(t.endswith((".bz2", ".fits")) for t in packed.tiles)
    sources = mock_survey["sdss-like"].read_sources().head(20)
    a = build_stack(sources, plain, tmp_path / "a.zarr", size=16, progress=False)
    b = build_stack(sources, packed, tmp_path / "b.zarr", size=16, progress=False)
    np.testing.assert_array_equal(a.load(), b.load())


def _published(gz: pd.DataFrame, release: str) -> pd.DataFrame:
    """A Galaxy Zoo table with the column names (and GZ1's sexagesimal positions) of a release."""
    from astropy.coordinates import Angle

    if release == "gz1":
        return pd.DataFrame(
            {
                "OBJID": gz["objid"],
                "RA": Angle(gz["ra"], "deg").to_string(unit="hourangle", sep=":", precision=4),
                "DEC": Angle(gz["dec"], "deg").to_string(sep=":", precision=3, alwayssign=True),
                "NVOTE": 40,
                "P_EL": gz["p_elliptical"],
                "P_CS": gz["p_spiral"],
                "P_EL_DEBIASED": gz["p_elliptical"],
                "P_CS_DEBIASED": gz["p_spiral"],
            }
        )
    if release == "gz2":
        return pd.DataFrame(
            {
                "dr7objid": gz["objid"],
                "ra": gz["ra"],
                "dec": gz["dec"],
                "t01_smooth_or_features_a01_smooth_debiased": gz["p_elliptical"],
                "t01_smooth_or_features_a02_features_or_disk_debiased": gz["p_spiral"],
            }
        )
    return pd.DataFrame(
        {
            "iauname": [f"J{i:06d}" for i in range(len(gz))],
            "ra": gz["ra"],
            "dec": gz["dec"],
            "smooth-or-featured_smooth_fraction": gz["p_elliptical"],
            "smooth-or-featured_featured-or-disk_fraction": gz["p_spiral"],
        }
    )


@pytest.mark.parametrize(
    "release,suffix", [("gz1", ".csv"), ("gz2", ".fits"), ("decals", ".parquet")]
)
def test_galaxy_zoo_tables_as_published(mock_survey, tmp_path, release, suffix):
    from astropy.table import Table

    gz = mock_survey.read_labels()
    table = _published(gz, release)
    path = tmp_path / f"{release}{suffix}"
    if suffix == ".fits":
        Table.from_pandas(table).write(path)
    elif suffix == ".csv":
        table.to_csv(path, index=False)
    else:
        table.to_parquet(path)
    want = label_sources(gz, mock_survey["sdss-like"].sources)
    got = label_sources(path, mock_survey["sdss-like"].sources)
    assert len(got) == len(want) > 0
    assert (got["label"].to_numpy() == want["label"].to_numpy()).all()
    assert len(select_galaxy_zoo(path)) == len(select_galaxy_zoo(gz))
    if release != "decals":
        assert (got["label_objid"].astype("int64") == want["label_objid"].astype("int64")).all()
    else:  # text ids stay text
        assert got["label_objid"].str.startswith("J").all()


def test_unknown_vote_columns_name_what_was_looked_for(mock_survey):
    gz = mock_survey.read_labels().rename(columns={"p_spiral": "spirality"})
    with pytest.raises(ValueError, match=r"P_CS_DEBIASED/P_EL_DEBIASED.*spiral_col="):
        select_galaxy_zoo(gz)
    assert len(select_galaxy_zoo(gz, spiral_col="spirality", elliptical_col="p_elliptical")) > 0


def test_figures_say_what_they_show(catalog, labelled, tmp_path):
    from catbuilder.evaluation import evaluate

    _, stack = labelled
    test = catalog[catalog["split"] == "test"]
    ev = evaluate(test, by=None)
    n = int(test["predicted"].notna().sum())
    assert ev.describe() == f"test split, n={n}, keras.small-cnn"
    everything = evaluate(catalog)
    assert everything.describe().startswith("all splits, n=")
    assert everything.describe("validation").startswith("validation split, n=")
    paths = everything.plot(tmp_path, stack=stack)
    assert [p.name for p in paths] == [
        "roc.png", "confidence.png", "reliability.png", "confusion.png", "gallery.png"
    ]  # fmt: skip
    assert all(p.stat().st_size > 5000 for p in paths)
