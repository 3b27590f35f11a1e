import functools
import json
import operator
import os
import signal
import subprocess
import sys
import textwrap
import time
import warnings

import numpy as np
import pandas as pd
import pytest
from astropy.io import fits
from astropy.nddata import Cutout2D

from catbuilder.errors import OutputExistsError
from catbuilder.sky import TileIndex
from catbuilder.stack import FLAG_BITS, append_to_stack, build_stack, open_stack
from catbuilder.stack.store import IncompleteStackError


def test_every_object_exactly_once_with_provenance(des_stack, mock_survey):
    src = mock_survey["des-like"].read_sources()
    obj = des_stack.objects()
    assert len(des_stack) == len(src)
    assert sorted(obj["objid"]) == sorted(src["objid"])
    assert des_stack.images.dims == ("object", "band", "y", "x")
    assert des_stack.images.shape == (len(src), 3, 32, 32)
    assert des_stack.images.dtype == np.float32
    assert des_stack.images.data.chunksize[0] == 16
    meta = des_stack.meta
    assert meta["complete"] is True
    assert meta["parameters"]["size"] == 32 and meta["parameters"]["bands"] == ["g", "r", "i"]
    assert {"catbuilder", "numpy", "xarray", "zarr", "astropy"} <= set(meta["versions"])
    assert meta["inputs"]["sources"].endswith("sources.parquet")
    assert meta["flag_bits"] == FLAG_BITS
    # the input row of each object points back at the source table
    merged = obj.merge(src, on="objid", suffixes=("", "_src"))
    assert (src.loc[merged["row"], "objid"].to_numpy() == merged["objid"].to_numpy()).all()
    assert np.allclose(merged["ra"], merged["ra_src"])


def test_pixels_equal_astropy_cutouts(des_stack, mock_survey):
    """Vectorised slicing gives exactly what Cutout2D gives, object by object."""
    obj = des_stack.objects()
    tiles = mock_survey["des-like"].directory / "tiles"
    rng = np.random.default_rng(0)
    for k in rng.choice(len(obj), 12, replace=False):
        o = obj.iloc[k]
        for bi, band in enumerate("gri"):
            data = fits.getdata(tiles / f"{o['tile']}_{band}.fits")
            ref = Cutout2D(
                data, (o["tile_x"], o["tile_y"]), 32, mode="partial", fill_value=np.nan
            ).data
            got = des_stack.images[k, bi].values
            np.testing.assert_array_equal(got, ref.astype(np.float32))
            assert o[f"magzero_{band}"] == pytest.approx(
                fits.getheader(tiles / f"{o['tile']}_{band}.fits")["MAGZERO"], rel=1e-6
            )


def test_edge_and_saturation_flags(des_stack):
    obj = des_stack.objects()
    lo_x, lo_y = np.ceil(obj["tile_x"] - 16), np.ceil(obj["tile_y"] - 16)
    near = (lo_x < 0) | (lo_y < 0) | (lo_x + 32 > 685) | (lo_y + 32 > 685)
    assert (obj["edge"] == near).all() and near.any()
    assert ((obj["flags"] & FLAG_BITS["edge"]) > 0).equals(obj["edge"])
    edge_pix = des_stack.images.values[obj["edge"].to_numpy()]
    assert np.isnan(edge_pix).any(axis=(1, 2, 3)).all()
    assert (obj.loc[obj["edge"], "nan_fraction"] > 0).all()
    assert (obj.loc[~obj["edge"], "nan_fraction"] == 0).all()
    # the fraction is the stored pixels' own, over all bands
    counted = np.isnan(des_stack.images.values).mean(axis=(1, 2, 3))
    np.testing.assert_allclose(obj["nan_fraction"].to_numpy(), counted, rtol=1e-6)
    sat = obj["saturated"].to_numpy()
    px = des_stack.images.values
    for k in np.flatnonzero(sat):
        assert (np.nan_to_num(px[k]) >= obj[["magzero_r"]].iloc[0, 0] * 0).any()
    # a saturated pixel is at the SATURATE level of its image
    assert sat.any() == bool((obj["flags"] & FLAG_BITS["saturated"]).any())


def test_zero_weight_pixels_become_nan_only_when_asked(des_stack, mock_survey, tmp_path):
    """cutouts.mask-zero-weight: the mock's saturated cores have zero weight; with the
    option they are NaN (still flagged saturated), every other pixel is unchanged."""
    from catbuilder import config
    from catbuilder.stack import build_stack

    files = mock_survey["des-like"]
    with config.set({"cutouts.mask-zero-weight": True}):
        masked = build_stack(
            files.sources, files.directory / "tiles", tmp_path / "m.zarr", size=32,
            chunk_objects=16, progress=False,
        )  # fmt: skip
    assert masked.ds.attrs["catbuilder"]["parameters"]["mask_zero_weight"] is True
    assert "mask_zero_weight" not in des_stack.ds.attrs["catbuilder"]["parameters"]
    before, after = des_stack.images.values, masked.images.values
    gone = np.isnan(after) & ~np.isnan(before)
    assert gone.any() and np.array_equal(after[~gone], before[~gone], equal_nan=True)
    sat = des_stack.objects()["saturated"].to_numpy()
    assert gone.any(axis=(1, 2, 3))[~sat].sum() == 0  # only where a star saturates
    assert (masked.objects()["saturated"].to_numpy() == sat).all()
    assert (masked.objects()["nan_fraction"] >= des_stack.objects()["nan_fraction"]).all()
    # objects appended later are cut as the stack was built, whatever the setting now
    src = files.read_sources()[["objid", "ra", "dec"]]
    later = src["objid"].isin(des_stack.objects().loc[sat, "objid"])  # the masked ones
    with config.set({"cutouts.mask-zero-weight": True}):
        grown = build_stack(
            src[~later], files.directory / "tiles", tmp_path / "g.zarr", size=32,
            chunk_objects=16, progress=False, cluster="sync",
        )  # fmt: skip
    grown = append_to_stack(
        tmp_path / "g.zarr", src[later], files.directory / "tiles", progress=False,
        cluster="sync",
    )  # fmt: skip
    pos = {o: i for i, o in enumerate(masked.objects()["objid"])}
    want = after[[pos[o] for o in grown.objects()["objid"]]]
    np.testing.assert_array_equal(grown.images.values, want)


def test_off_footprint_and_nan_positions_are_kept_and_flagged(mock_survey, tmp_path):
    files = mock_survey["des-like"]
    src = files.read_sources()[["objid", "ra", "dec"]].head(20)
    extra = pd.DataFrame({"objid": [-1, -2], "ra": [150.0, np.nan], "dec": [40.0, 0.0]})
    st = build_stack(
        pd.concat([src, extra]),
        files.directory / "tiles",
        tmp_path / "s.zarr",
        size=16,
        chunk_objects=8,
        progress=False,
        cluster="sync",
    )
    obj = st.objects().set_index("objid")
    assert len(st) == 22
    assert obj.loc[[-1, -2], "off_footprint"].all()
    assert (obj.loc[[-1, -2], "flags"] & FLAG_BITS["off_footprint"]).all()
    assert (obj.loc[[-1, -2], "tile"] == "").all()
    assert not obj.drop(index=[-1, -2])["off_footprint"].any()
    off = st.select(objid=[-1, -2]).images.values
    assert np.isnan(off).all()
    assert len(st.select(exclude=["off_footprint"])) == 20


def test_nan_pixels_missing_band_and_unreadable_file(tile_copy, tmp_path):
    tiles, src = tile_copy
    t0 = src["tile"].iloc[0]
    in_t0 = src[src["tile"] == t0]
    # NaN block around the first object of t0, in band g
    gpath = tiles / f"{t0}_g.fits"
    with fits.open(gpath, mode="update") as h:
        x, y = TileIndex.build(gpath).wcs(0).all_world2pix(in_t0.ra.iloc[0], in_t0.dec.iloc[0], 0)
        h[0].data[int(y) - 20 : int(y) + 20, int(x) - 20 : int(x) + 20] = np.nan
    # band i missing for tile t0
    (tiles / f"{t0}_i.fits").unlink()
    index = TileIndex.build(tiles)
    # an image that breaks after indexing: truncated r of another tile
    t1 = next(t for t in src["tile"].unique() if t != t0)
    rpath = tiles / f"{t1}_g.fits"
    rpath.write_bytes(rpath.read_bytes()[:30000])
    with pytest.warns(UserWarning, match="could not be read"):
        st = build_stack(
            src,
            index,
            tmp_path / "s.zarr",
            size=16,
            chunk_objects=16,
            progress=False,
            cluster="sync",
        )
    obj = st.objects().set_index("objid")
    first = obj.loc[in_t0["objid"].iloc[0]]
    assert first["nan_fraction"] > 0.33  # the whole i band and part of g
    ids0 = in_t0["objid"]
    # objects of t0 also covered by a neighbour's i image are cut from it
    elsewhere = index.locate(in_t0["ra"], in_t0["dec"], "i")["row"].to_numpy() >= 0
    assert 0 < (~elsewhere).sum() < len(in_t0)
    lost, found = ids0[~elsewhere], ids0[elsewhere]
    assert obj.loc[lost, "missing_band_i"].all() and not obj.loc[found, "missing_band_i"].any()
    assert not obj.loc[ids0, "missing_band_r"].any()
    assert (obj.loc[lost, "flags"] & FLAG_BITS["missing_band"]).all()
    ids1 = src.loc[src["tile"] == t1, "objid"]
    assert obj.loc[ids1, "missing_band_g"].all()
    assert any(f"{t1}_g.fits" in p for p in st.meta["problems"])
    # objects elsewhere are untouched
    rest = obj.drop(index=list(lost) + list(ids1))
    assert not rest[["missing_band_r", "missing_band_i"]].any().any()
    i_pix = st.select(objid=list(lost)).images.sel(band="i").values
    assert np.isnan(i_pix).all()


def test_bad_requests_are_clear_errors(mock_survey, tmp_path):
    files = mock_survey["des-like"]
    src = files.read_sources()
    tiles = files.directory / "tiles"
    dup = pd.concat([src.head(5), src.head(2)])
    with pytest.raises(ValueError, match=r"2 duplicate object id\(s\), e.g. \[100000"):
        build_stack(dup, tiles, tmp_path / "a.zarr", progress=False)
    with pytest.raises(ValueError, match=r"band\(s\) \['z'\] are in no tile.*g, i, r"):
        build_stack(src, tiles, tmp_path / "b.zarr", bands=["g", "r", "z"], progress=False)
    with pytest.raises(ValueError, match="no ra column"):
        build_stack(src.rename(columns={"ra": "alpha"}), tiles, tmp_path / "c.zarr")
    with pytest.raises(ValueError, match="at least 2 pixels"):
        build_stack(src, tiles, tmp_path / "d.zarr", size="0.1 arcsec")
    with pytest.raises(FileNotFoundError):
        open_stack(tmp_path / "nothing.zarr")


def test_size_in_arcsec(mock_survey, tmp_path):
    files = mock_survey["des-like"]
    st = build_stack(
        files.read_sources().head(5),
        files.directory / "tiles",
        tmp_path / "a.zarr",
        size="10 arcsec",
        progress=False,
        cluster="sync",
    )
    assert st.size == round(10 / 0.263)


_KILLABLE = textwrap.dedent(
    """
    import sys, time
    from dask.callbacks import Callback
    from catbuilder.stack import build_stack

    class Slow(Callback):  # slow each task down so the test can stop the build midway
        def _posttask(self, *args):
            time.sleep(0.3)

    with Slow():
        build_stack(sys.argv[1], sys.argv[2], sys.argv[3], size=24, chunk_objects=8,
                    cluster="sync", progress=False)
    """
)


def _written(path):
    import xarray as xr

    try:
        return xr.open_zarr(path, consolidated=False)["written"].values
    except Exception:
        return None


def test_interrupted_build_resumes_identically(mock_survey, tmp_path):
    files = mock_survey["des-like"]
    tiles = str(files.directory / "tiles")
    out = tmp_path / "killed.zarr"
    proc = subprocess.Popen([sys.executable, "-c", _KILLABLE, str(files.sources), tiles, str(out)])
    deadline = time.time() + 120
    w = None
    while time.time() < deadline:
        w = _written(out)
        if w is not None and 16 <= w.sum() < len(w) - 8:
            break
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    w = _written(out)
    assert w is not None and 0 < w.sum() < len(w), "the build was not stopped midway"
    with pytest.raises(IncompleteStackError, match="incomplete"):
        open_stack(out)
    done_chunks = sorted({i // 8 for i in np.flatnonzero(w)} - {i // 8 for i in np.flatnonzero(~w)})
    chunk_files = {c: out / "images" / "c" / str(c) / "0" / "0" / "0" for c in done_chunks}
    mtimes = {c: p.stat().st_mtime_ns for c, p in chunk_files.items()}

    resumed = build_stack(
        files.sources, tiles, out, size=24, chunk_objects=8, progress=False, cluster="sync"
    )
    assert {c: p.stat().st_mtime_ns for c, p in chunk_files.items()} == mtimes  # not rewritten
    fresh = build_stack(
        files.sources,
        tiles,
        tmp_path / "fresh.zarr",
        size=24,
        chunk_objects=8,
        progress=False,
        cluster="sync",
    )
    np.testing.assert_array_equal(resumed.images.values, fresh.images.values)
    pd.testing.assert_frame_equal(resumed.objects(), fresh.objects())
    # the same call on a complete stack does nothing and returns it
    again = build_stack(files.sources, tiles, out, size=24, chunk_objects=8, progress=False)
    assert len(again) == len(fresh)


def test_other_arguments_never_overwrite_silently(des_stack, mock_survey):
    files = mock_survey["des-like"]
    with pytest.raises(OutputExistsError, match=r"size: 32 != 40.*overwrite=True"):
        build_stack(
            files.sources,
            files.directory / "tiles",
            des_stack.path,
            size=40,
            chunk_objects=16,
            progress=False,
        )
    assert open_stack(des_stack.path).size == 32  # untouched


def test_append_matches_a_single_build(mock_survey, tmp_path):
    files = mock_survey["des-like"]
    src = files.read_sources()[["objid", "ra", "dec"]]
    tiles = TileIndex.build(files.directory / "tiles")
    a, b = src.iloc[:50], src.iloc[50:]
    st = build_stack(
        a, tiles, tmp_path / "s.zarr", size=16, chunk_objects=16, progress=False, cluster="sync"
    )
    st = append_to_stack(tmp_path / "s.zarr", b, tiles, progress=False, cluster="sync")
    whole = build_stack(
        src, tiles, tmp_path / "w.zarr", size=16, chunk_objects=16, progress=False, cluster="sync"
    )
    assert len(st) == len(src) and st.objects()["objid"].is_unique
    assert [h["action"] for h in st.meta["history"]] == ["build", "append"]
    assert st.images.data.chunksize[0] == 16
    o1 = st.objects().reset_index(drop=True)
    o2 = whole.objects().set_index("objid").loc[o1["objid"]].reset_index()
    pos = {oid: i for i, oid in enumerate(whole.objects()["objid"])}
    np.testing.assert_array_equal(
        st.images.values, whole.images.values[[pos[o] for o in o1["objid"]]]
    )
    np.testing.assert_array_equal(o1["flags"], o2["flags"])
    with pytest.raises(ValueError, match="already in"):
        append_to_stack(tmp_path / "s.zarr", b.head(3), tiles, progress=False)


def test_select_and_batches(des_stack):
    obj = des_stack.objects()
    clean = des_stack.select(clean=True)
    assert (clean.objects()["flags"] == 0).all() and len(clean) == (obj["flags"] == 0).sum()
    ra0, dec0 = obj["ra"].iloc[0], obj["dec"].iloc[0]
    cone = des_stack.select(region=(ra0, dec0, 20 / 3600))
    d = (
        np.hypot(
            (cone.objects()["ra"] - ra0) * np.cos(np.radians(dec0)), cone.objects()["dec"] - dec0
        )
        * 3600
    )
    assert len(cone) >= 1 and (d <= 20.01).all()
    box = des_stack.select(region={"ra": (ra0 - 0.01, ra0 + 0.01)})
    assert ((box.objects()["ra"] - ra0).abs() <= 0.01).all()
    assert len(des_stack.select(objid=obj["objid"].iloc[:3])) == 3
    with pytest.raises(ValueError, match="unknown flag"):
        des_stack.select(exclude=["blurry"])
    seen = []
    for batch in des_stack.batches(10, shuffle=True, seed=1, shuffle_buffer=3):
        assert batch.images.shape[1:] == (3, 32, 32) and len(batch) <= 10
        seen += batch.objects["objid"].tolist()
        k = obj.index[obj["objid"] == batch.objects["objid"].iloc[0]][0]
        np.testing.assert_array_equal(batch.images[0], des_stack.images.sel(object=k).values)
    assert sorted(seen) == sorted(obj["objid"]) and seen != obj["objid"].tolist()
    ordered = [b.objects["objid"].tolist() for b in des_stack.batches(10)]
    assert functools.reduce(operator.iadd, ordered, []) == obj["objid"].tolist()
    assert all(len(b) == 10 for b in des_stack.batches(10, drop_last=True))


def test_labels_and_splits_are_carried(mock_survey, tmp_path):
    files = mock_survey["des-like"]
    src = files.read_sources()
    src["label"] = np.where(src["cls"] == "star", None, src["cls"])
    src["split"] = np.where(np.arange(len(src)) % 4 == 0, "test", "train")
    st = build_stack(
        src,
        files.directory / "tiles",
        tmp_path / "l.zarr",
        size=16,
        extra_columns=["mag_r", "truth_id"],
        progress=False,
        cluster="sync",
    )
    assert st.classes == ["elliptical", "spiral"]
    assert len(st.select(labelled=False)) == (src["cls"] == "star").sum()
    assert (
        len(st.select(label="spiral", split="test"))
        == ((src["cls"] == "spiral") & (src["split"] == "test")).sum()
    )
    obj = st.objects().merge(src[["objid", "mag_r"]], on="objid", suffixes=("", "_s"))
    assert np.allclose(obj["mag_r"], obj["mag_r_s"])


def test_bands_on_another_grid_are_reprojected(mock_survey, tmp_path):
    """A g image on a rotated, coarser grid is resampled onto the r grid, fluxes kept."""
    from reproject import reproject_interp

    from catbuilder.synth.layout import tan_wcs

    files = mock_survey["des-like"]
    tile = files.tiles[0]
    d = tmp_path / "t"
    d.mkdir()
    for b in "ri":
        (d / f"{tile}_{b}.fits").write_bytes(
            (files.directory / "tiles" / f"{tile}_{b}.fits").read_bytes()
        )
    with fits.open(files.directory / "tiles" / f"{tile}_g.fits") as h:
        data, hdr = h[0].data.astype(np.float64), h[0].header
    from astropy.wcs import WCS

    w = WCS(hdr)
    new = tan_wcs(hdr["CRVAL1"], hdr["CRVAL2"], 0.3, 640, 640)
    th = np.radians(10)
    new.wcs.cd = new.wcs.cd @ np.array([[np.cos(th), -np.sin(th)], [np.sin(th), np.cos(th)]])
    out = reproject_interp((data, w), new, shape_out=(640, 640), return_footprint=False)
    out *= (0.3 / 0.263) ** 2
    nh = new.to_header()
    for k in ("BAND", "MAGZERO", "SATURATE"):
        nh[k] = hdr[k]
    fits.PrimaryHDU(out.astype(np.float32), header=nh).writeto(d / f"{tile}_g.fits")

    src = files.read_sources()
    src = src[src["tile"] == tile]
    moved = build_stack(src, d, tmp_path / "m.zarr", size=32, progress=False, cluster="sync")
    same = build_stack(
        src,
        files.directory / "tiles",
        tmp_path / "s.zarr",
        size=32,
        progress=False,
        cluster="sync",
    )
    ok = (moved.objects()["flags"] == 0).to_numpy() & (same.objects()["flags"] == 0).to_numpy()
    g1 = moved.images.sel(band="g").values[ok]
    g0 = same.images.sel(band="g").values[ok]
    f1, f0 = np.nansum(g1[:, 8:24, 8:24], axis=(1, 2)), np.nansum(g0[:, 8:24, 8:24], axis=(1, 2))
    bright = (
        f0
        > 50
        * np.sqrt(256)
        * fits.getheader(files.directory / "tiles" / f"{tile}_g.fits")["SKYSIGMA"]
    )
    assert bright.sum() >= 5
    assert np.allclose(f1[bright], f0[bright], rtol=0.05)
    # r is the reference: identical in both
    np.testing.assert_array_equal(
        moved.images.sel(band="r").values, same.images.sel(band="r").values
    )


def test_build_on_a_distributed_cluster_matches_local(mock_survey, des_stack, tmp_path):
    from distributed import Client, LocalCluster

    files = mock_survey["des-like"]
    with (
        LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            host="127.0.0.1",
            dashboard_address=None,
            processes=True,
        ) as cluster,
        Client(cluster),
    ):
        st = build_stack(
            files.sources,
            files.directory / "tiles",
            tmp_path / "d.zarr",
            size=32,
            chunk_objects=16,
            progress=False,
        )
    np.testing.assert_array_equal(st.images.values, des_stack.images.values)


def test_incomplete_stack_can_be_inspected(des_stack):
    meta = json.loads(json.dumps(des_stack.meta))
    assert meta["complete"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        open_stack(des_stack.path)  # no warnings on a clean open


_KILLABLE_APPEND = textwrap.dedent(
    """
    import sys, time
    from dask.callbacks import Callback
    from catbuilder.stack import append_to_stack

    class Slow(Callback):
        def _posttask(self, *args):
            time.sleep(0.3)

    with Slow():
        append_to_stack(sys.argv[3], sys.argv[1], sys.argv[2], cluster="sync", progress=False)
    """
)


def test_interrupted_append_resumes_without_duplicates(mock_survey, tmp_path):
    files = mock_survey["des-like"]
    src = files.read_sources()[["objid", "ra", "dec"]]
    tiles = str(files.directory / "tiles")
    src.iloc[:21].to_parquet(tmp_path / "a.parquet")
    src.iloc[21:].to_parquet(tmp_path / "b.parquet")
    out = tmp_path / "s.zarr"
    build_stack(
        tmp_path / "a.parquet",
        tiles,
        out,
        size=24,
        chunk_objects=8,
        progress=False,
        cluster="sync",
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", _KILLABLE_APPEND, str(tmp_path / "b.parquet"), tiles, str(out)]
    )
    deadline = time.time() + 120
    while time.time() < deadline:
        w = _written(out)
        if w is not None and len(w) == len(src) and 21 + 8 <= w.sum() < len(w) - 8:
            break
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    w = _written(out)
    assert len(w) == len(src) and 21 < w.sum() < len(w)
    with pytest.raises(IncompleteStackError):
        open_stack(out)
    st = append_to_stack(out, tmp_path / "b.parquet", tiles, progress=False, cluster="sync")
    whole = build_stack(
        src, tiles, tmp_path / "w.zarr", size=24, chunk_objects=8, progress=False, cluster="sync"
    )
    assert len(st) == len(src) and st.objects()["objid"].is_unique
    pos = {oid: i for i, oid in enumerate(whole.objects()["objid"])}
    order = [pos[o] for o in st.objects()["objid"]]
    np.testing.assert_array_equal(st.images.values, whole.images.values[order])


def test_a_failed_region_write_raises_after_the_others_finished(tmp_path):
    import zarr

    from catbuilder import zarr_store as zs

    group = zarr.open_group(tmp_path / "s.zarr", mode="w")
    arrays = {
        name: group.create_array(name, shape=(8,), chunks=(4,), dtype="float32", fill_value=0)
        for name in ("a", "b", "c")
    }
    good = np.arange(4, dtype=np.float32) + 1
    with pytest.raises(ValueError):  # "b" gets a value of the wrong shape
        zs.write_region(arrays, slice(4, 8), {"a": good, "b": np.ones(3), "c": good})
    # the writes beside the failed one were not abandoned half-way
    np.testing.assert_array_equal(arrays["a"][4:], good)
    np.testing.assert_array_equal(arrays["c"][4:], good)
    np.testing.assert_array_equal(arrays["b"][:], 0)
