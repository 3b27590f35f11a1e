import warnings

import numpy as np
import pytest
from astropy.io import fits

from catbuilder.sky import TileIndex


def test_index_of_mock_tiles(mock_survey, tmp_path):
    files = mock_survey["des-like"]
    idx = TileIndex.build(files.directory / "tiles")
    assert idx.bands == ["g", "i", "r"]
    assert len(idx) == 3 * len(files.tiles) and not idx.problems
    assert sorted(idx.tiles) == sorted(files.tiles)
    row = idx.table.iloc[0]
    assert row["pixel_scale"] == pytest.approx(0.263, rel=1e-6)
    assert row["nx"] == row["ny"] == 685
    # centre to corner of a 685 px square at 0.263"/px
    assert row["radius"] == pytest.approx(685 * 0.263 / np.sqrt(2) / 3600, rel=1e-3)
    assert np.isfinite(row["magzero"]) and np.isfinite(row["saturate"])
    path = idx.to_parquet(tmp_path / "idx.parquet")
    again = TileIndex.read_parquet(path)
    assert again.table.equals(idx.table) and again.problems == idx.problems
    assert TileIndex.from_any(str(path)).tiles == idx.tiles


def test_locate_picks_the_most_central_tile(mock_survey):
    files = mock_survey["des-like"]
    idx = TileIndex.build(files.directory / "tiles")
    src = files.read_sources()
    rng = np.random.default_rng(0)
    ra = np.concatenate([src["ra"], rng.uniform(src.ra.min(), src.ra.max(), 300), [150.0, np.nan]])
    dec = np.concatenate([src["dec"], rng.uniform(src.dec.min(), src.dec.max(), 300), [50.0, 0.0]])
    loc = idx.locate(ra, dec, "r")
    # brute force over every r tile
    best = np.full(len(ra), -np.inf)
    best_tile = np.full(len(ra), "", dtype=object)
    for r in idx.table.index[idx.table["band"] == "r"]:
        rec = idx.table.loc[r]
        with np.errstate(invalid="ignore"):
            x, y = idx.wcs(r).all_world2pix(ra, dec, 0)
        m = np.minimum.reduce([x + 0.5, rec.nx - 0.5 - x, y + 0.5, rec.ny - 0.5 - y])
        better = np.nan_to_num(m, nan=-np.inf) > best
        best[better], best_tile[better] = m[better], rec.tile
    inside = best >= 0
    assert (loc["tile"].to_numpy()[inside] == best_tile[inside]).all()
    assert (loc["row"].to_numpy()[~inside] == -1).all()
    assert loc["tile"].iloc[-2] == "" and loc["tile"].iloc[-1] == ""  # far away, NaN
    assert (loc["tile"].to_numpy()[: len(src)] == src["tile"].to_numpy()).all()
    # tiles overlap: some positions lie in two tiles
    assert (loc["margin"] < 8 / 0.263).any()


def _rewrite(path, out, *, band_kw=True, compress=False, filter_value=None):
    with fits.open(path) as hdul:
        hdr = hdul[0].header.copy()
        data = hdul[0].data
    if not band_kw:
        del hdr["BAND"], hdr["FILTER"]
    if filter_value is not None:
        del hdr["BAND"]
        hdr["FILTER"] = filter_value
    if compress:
        fits.HDUList([fits.PrimaryHDU(), fits.CompImageHDU(data, header=hdr)]).writeto(out)
    else:
        fits.PrimaryHDU(data, header=hdr).writeto(out)


def test_survey_file_layouts(mock_survey, tmp_path):
    """fpacked files, bands in file names, DES FILTER strings, bands as extensions."""
    files = mock_survey["des-like"]
    tile = files.tiles[0]
    src = {b: files.directory / "tiles" / f"{tile}_{b}.fits" for b in "gri"}
    (tmp_path / "fz").mkdir()
    (tmp_path / "named").mkdir()
    (tmp_path / "mef").mkdir()
    for b, p in src.items():
        _rewrite(
            p,
            tmp_path / "fz" / f"{tile}_r2583p01_{b}.fits.fz",
            compress=True,
            filter_value=f"{b} DECam SDSS c0001 4720.0 1520.0",
        )
        _rewrite(p, tmp_path / "named" / f"frame-{b}-000094-1-0131.fits", band_kw=False)
    hdus = [fits.PrimaryHDU()]
    for b, p in src.items():
        with fits.open(p) as h:
            hdr = h[0].header.copy()
            del hdr["BAND"], hdr["FILTER"]
            hdus.append(fits.ImageHDU(h[0].data, header=hdr, name=b))
    fits.HDUList(hdus).writeto(tmp_path / "mef" / f"{tile}.fits")

    fz = TileIndex.build(tmp_path / "fz")
    assert fz.bands == ["g", "i", "r"] and fz.tiles == [f"{tile}_r2583p01"]
    assert set(fz.table["hdu"]) == {1}
    named = TileIndex.build(tmp_path / "named", band_pattern=r"frame-(?P<band>[ugriz])-")
    assert named.bands == ["g", "i", "r"] and named.tiles == ["frame-000094-1-0131"]
    mef = TileIndex.build(str(tmp_path / "mef" / "*.fits"))
    assert mef.bands == ["g", "i", "r"] and mef.tiles == [tile]
    assert sorted(mef.table["hdu"]) == [1, 2, 3]
    # all three describe the same footprint
    for idx in (fz, named, mef):
        r = idx.table[idx.table.band == "r"].iloc[0]
        assert r["ra"] == pytest.approx(
            files.read_sources().query("tile == @tile").ra.mean(), abs=0.02
        )
    with pytest.raises(ValueError, match=r"no usable FITS image: .*band unknown"):
        TileIndex.build(tmp_path / "named")  # no keyword, no pattern: one line, the reason


def test_bad_files_are_reported_not_dropped_silently(mock_survey, tmp_path):
    files = mock_survey["des-like"]
    good = files.tile_paths("r")[0]
    d = tmp_path / "t"
    d.mkdir()
    (d / "ok_r.fits").write_bytes(good.read_bytes())
    (d / "truncated_r.fits").write_bytes(good.read_bytes()[:200_000])
    (d / "garbage_r.fits").write_bytes(b"this is not a FITS file" * 100)
    (d / "empty_r.fits").write_bytes(b"")
    fits.PrimaryHDU(np.zeros((10, 10), np.float32)).writeto(d / "nowcs_r.fits")
    (d / "dup").mkdir()
    (d / "dup" / "ok_r.fits").write_bytes(good.read_bytes())
    with pytest.warns(UserWarning, match="not indexed"):
        idx = TileIndex.build([d, d / "missing_r.fits"])
    assert idx.tiles == ["ok"]
    reasons = {p.split("/")[-1]: why for p, why in idx.problems if "duplicate" not in why}
    assert "truncated" in reasons["truncated_r.fits"]
    assert "corrupt" in reasons["garbage_r.fits"]
    assert "empty" in reasons["empty_r.fits"]
    assert "WCS" in reasons["nowcs_r.fits"] or "band" in reasons["nowcs_r.fits"]
    assert "not found" in reasons["missing_r.fits"]
    dups = [p for p, why in idx.problems if "duplicate tile 'ok' band 'r'" in why]
    assert len(dups) == 1 and dups[0].endswith("ok_r.fits")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(FileNotFoundError):
            TileIndex.build(tmp_path / "nothing-here")


def test_a_header_band_that_contradicts_the_file_name_is_a_warning_naming_both(tmp_path):
    """Files named *_g/_r/_i whose headers all say FILTER = 'g' (as some sample data
    ships): each is a warning naming both bands and how to choose; band_pattern
    takes the file name's."""
    import warnings as w

    from astropy.io import fits
    from test_bad_input import _header, _pixels

    from catbuilder.errors import InputWarning
    from catbuilder.sky import TileIndex

    for k, band in enumerate("gri"):
        fits.PrimaryHDU(_pixels(k), _header("g")).writeto(tmp_path / f"T1_{band}.fits")
    with w.catch_warnings(record=True) as caught:
        w.simplefilter("always")
        index = TileIndex.build(tmp_path, progress=False)
    said = [str(c.message) for c in caught if issubclass(c.category, InputWarning)]
    assert len(said) == 2 and all("the header says band 'g'" in s for s in said), said
    assert any("the file name 'r'" in s for s in said) and "band-pattern" in said[0]
    assert index.bands == ["g"]
    named = TileIndex.build(tmp_path, band_pattern=r"_(?P<band>[a-z])\.fits", progress=False)
    assert sorted(named.bands) == ["g", "i", "r"] and len(named.tiles) == 1


def test_single_band_data_needs_no_reference_band(tmp_path):
    from astropy.io import fits
    from test_bad_input import SIZE, _header, _pixels, _sources

    from catbuilder import build_stack

    (tmp_path / "tiles").mkdir()
    fits.PrimaryHDU(_pixels(0), _header("u")).writeto(tmp_path / "tiles" / "T1_u.fits")
    stack = build_stack(_sources(), tmp_path / "tiles", tmp_path / "u.zarr", size=SIZE,
                        bands=["u"], cluster="sync", progress=False)  # fmt: skip
    assert stack.bands == ["u"] and len(stack) == 5


def test_the_image_reader_keeps_the_files_used_last_open_and_reads_the_same(tmp_path):
    from catbuilder.stack.extract import ImageReader

    rng = np.random.default_rng(3)
    recs = []
    for k in range(3):
        data = rng.normal(size=(20, 30)).astype(">f4")
        path = tmp_path / f"t{k}.fits"
        fits.PrimaryHDU(data).writeto(path)
        recs.append(({"path": str(path), "hdu": 0, "ny": 20, "nx": 30}, data))
    reader = ImageReader(max_open=2)
    try:
        for rec, data in recs + recs[:1]:
            np.testing.assert_array_equal(reader.section(rec, 2, 12, 5, 25), data[2:12, 5:25])
            assert len(reader.files) <= 2
        assert list(reader.files) == [recs[2][0]["path"], recs[0][0]["path"]]  # t1 was closed
        edge = reader.section(recs[1][0], -3, 5, 25, 35)  # crosses two edges: padded with NaN
        assert np.isnan(edge[:3]).all() and np.isnan(edge[:, 5:]).all()
        np.testing.assert_array_equal(edge[3:, :5], recs[1][1][:5, 25:30])
    finally:
        reader.close()
    assert reader.files == {}
