"""A corpus of bad and awkward input, tried as a user would.

Each case asserts the exact outcome (the one-line error, the warning, or the
per-object flag) and that no input file changed (checksums of the whole
workspace before and after). Tiles here are small synthetic FITS images with
known pixels, so a cutout can be compared with astropy's own reading.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from astropy.io import fits
from astropy.nddata import Cutout2D
from astropy.wcs import WCS

from catbuilder.cli import main
from catbuilder.errors import OutputExistsError
from catbuilder.stack import build_stack, open_stack

NPIX = 160
SIZE = 16
CENTRE = (10.0, 0.0)
BIG_ID = 2**62 + 12345


# -- the workspace ---------------------------------------------------------------


def _wcs(radesys: str | None = None, equinox: float | None = None) -> WCS:
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = list(CENTRE)
    w.wcs.crpix = [NPIX / 2 + 0.5, NPIX / 2 + 0.5]
    w.wcs.cdelt = [-0.5 / 3600, 0.5 / 3600]
    if radesys:
        w.wcs.radesys = radesys
    if equinox:
        w.wcs.equinox = equinox
    return w


def _header(band: str, **extra) -> fits.Header:
    hdr = _wcs(extra.pop("RADESYS", None), extra.pop("EQUINOX", None)).to_header()
    hdr["BAND"] = band
    hdr["MAGZERO"] = 30.0
    for k, v in extra.items():
        hdr[k] = v
    return hdr


def _pixels(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.normal(100.0, 10.0, (NPIX, NPIX)).astype(np.float32)


#: pixel positions (x, y) of the objects, away from the edges
POSITIONS = [(30.3, 40.7), (80.0, 80.0), (120.6, 35.2), (50.5, 120.5), (100.2, 130.9)]


def _sources(ids=None) -> pd.DataFrame:
    ra, dec = _wcs().all_pix2world([p[0] for p in POSITIONS], [p[1] for p in POSITIONS], 0)
    ids = ids if ids is not None else [BIG_ID + i for i in range(len(POSITIONS))]
    return pd.DataFrame({"objid": ids, "ra": ra, "dec": dec})


@pytest.fixture(scope="module")
def ws(tmp_path_factory) -> Path:
    """tiles/T1_{g,r,i}.fits and sources.csv."""
    root = tmp_path_factory.mktemp("ws")
    (root / "tiles").mkdir()
    for k, band in enumerate("gri"):
        fits.PrimaryHDU(_pixels(k), _header(band)).writeto(root / "tiles" / f"T1_{band}.fits")
    _sources().to_csv(root / "sources.csv", index=False)
    return root


def _checksums(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture
def work(ws, tmp_path, monkeypatch):
    """A copy of the workspace as the working directory; asserts it is unchanged after."""
    dst = tmp_path / "work"
    shutil.copytree(ws, dst)
    monkeypatch.chdir(dst)
    before = _checksums(dst)
    yield dst
    after = _checksums(dst)
    changed = {k for k in before if after.get(k) != before[k]}
    assert not changed, f"input files changed or vanished: {sorted(changed)}"


def cli(capsys, *argv: str) -> tuple[int, str]:
    rc = main([str(a) for a in argv])
    return rc, capsys.readouterr().err


def cut(capsys, table="sources.csv", tiles="tiles", out=None, *extra) -> tuple[int, str]:
    out = out or "../out.zarr"
    return cli(capsys, "cutouts", table, tiles, "-o", out, "--cluster", "sync",
               "--no-progress", "--size", SIZE, *extra)  # fmt: skip


def one_error(rc: int, err: str, pattern: str, command: str = "cutouts") -> None:
    import re

    lines = [line for line in err.strip().splitlines() if line]
    assert rc == 2, err
    assert "Traceback" not in err
    assert lines[-1].startswith(f"catbuilder {command}: error: "), err
    assert re.search(pattern, lines[-1]), lines[-1]


# -- tables: formats, columns, ids, coordinates ---------------------------------


def _write(df: pd.DataFrame, name: str) -> str:
    if name.endswith(".csv"):
        df.to_csv(name, index=False)
    elif name.endswith(".parquet"):
        df.to_parquet(name)
    else:
        from astropy.table import Table

        Table.from_pandas(df).write(name, overwrite=True)
    return name


TABLE_ERRORS = {
    "missing-file": (None, "nope.csv", r"source table not found: nope\.csv"),
    "unknown-suffix": ("x", "t.txt", r"cannot tell the table format"),
    "corrupt-fits": ("garbage", "t.fits", r"t\.fits: cannot read as fits"),
    "corrupt-parquet": ("garbage", "t.parquet", r"t\.parquet: cannot read as parquet"),
    "header-only": (_sources().iloc[:0], "t.csv", r"t\.csv: the table has no rows"),
    "no-ra": (_sources().drop(columns="ra"), "t.csv", r"no ra column; looked for ra, RA"),
    "no-dec": (_sources().drop(columns="dec"), "t.csv", r"no dec column; looked for dec"),
    "ra-text": (_sources().assign(ra="ten"), "t.csv", r"column 'ra' \(ra\) is not numeric"),
    "ra-1e6": (_sources().assign(ra=1e6), "t.csv", r"ra outside \[-360, 720\) deg in 5 row"),
    "ra-inf": (_sources().assign(ra=np.inf), "t.csv", r"ra outside \[-360, 720\)"),
    "dec-95": (_sources().assign(dec=95.0), "t.csv", r"\|dec\| > 90 deg in rows \[0, 1"),
    "dec-inf": (_sources().assign(dec=-np.inf), "t.csv", r"\|dec\| > 90 deg"),
    "nan-id": (
        _sources().assign(objid=[1.0, np.nan, 3.0, 4.0, 5.0]),
        "t.csv",
        r"1 missing object id\(s\) in column 'objid' \(rows \[1\]\)",
    ),
    "empty-string-id": (
        _sources().assign(objid=["a", "", "c", "d", "e"]),
        "t.parquet",
        r"missing object id\(s\) in column 'objid' \(rows \[1\]\)",
    ),
    "fractional-id": (
        _sources().assign(objid=[1.5, 2, 3, 4, 5]),
        "t.csv",
        r"non-integer or inexact float",
    ),
    "duplicate-id": (
        _sources().assign(objid=[7, 7, 3, 4, 5]),
        "t.csv",
        r"1 duplicate object id\(s\), e\.g\. \[7\]",
    ),
}


@pytest.mark.parametrize("case", sorted(TABLE_ERRORS))
def test_table_errors(case, work, capsys):
    content, name, pattern = TABLE_ERRORS[case]
    if isinstance(content, pd.DataFrame):
        _write(content, name)
    elif isinstance(content, str):
        Path(name).write_text(content)
    rc, err = cut(capsys, name)
    one_error(rc, err, pattern)
    assert not Path("../out.zarr").exists()
    if content is not None:
        Path(name).unlink()  # the fixture checks only the workspace's own files


def test_named_id_column_that_is_absent(work, capsys):
    rc, err = cut(capsys, "sources.csv", "tiles", None, "--id-col", "galaxy")
    one_error(rc, err, r"no column 'galaxy' for id; columns are: objid, ra, dec")


def test_unrecognised_id_column_warns_and_strict_refuses(work, capsys):
    _write(_sources().rename(columns={"objid": "galaxy_id"}), "t.csv")
    rc, err = cut(capsys, "t.csv", "tiles", None, "--strict")
    one_error(rc, err, r"no id column; .*look like ids: galaxy_id.*numbered by row")
    rc, err = cut(capsys, "t.csv")
    assert rc == 0
    assert "catbuilder cutouts: warning: t.csv: no id column" in err
    assert list(open_stack("../out.zarr").objects().sort_values("row")["objid"]) == [0, 1, 2, 3, 4]
    Path("t.csv").unlink()


@pytest.mark.parametrize("offset", [-360.0, 360.0])
def test_ra_outside_0_360_is_wrapped_with_a_warning(offset, work, capsys):
    src = _sources()
    _write(src.assign(ra=src["ra"] + offset), "t.csv")
    rc, err = cut(capsys, "t.csv", "tiles", None, "--strict")
    one_error(rc, err, r"5 ra value\(s\) outside \[0, 360\) deg .* wrapped")
    rc, err = cut(capsys, "t.csv")
    assert rc == 0 and "are wrapped into [0, 360)" in err
    got = open_stack("../out.zarr").objects().sort_values("row")["ra"]
    np.testing.assert_allclose(got, src["ra"])
    Path("t.csv").unlink()


@pytest.mark.parametrize(
    "ids",
    [[BIG_ID + i for i in range(5)], ["a", "b", "c", "d", "e"], [-(2**63), 0, 1, 2, 2**63 - 1]],
    ids=["int64-large", "strings", "int64-extremes"],
)
def test_ids_are_kept_exactly(ids, work, capsys):
    _write(_sources(ids=ids), "t.parquet")
    rc, err = cut(capsys, "t.parquet")
    assert rc == 0, err
    got = open_stack("../out.zarr").objects().sort_values("row")["objid"].tolist()
    assert got == ids
    Path("t.parquet").unlink()


def test_nan_and_off_footprint_positions_are_flagged(work, capsys):
    src = _sources()
    src.loc[1, ["ra", "dec"]] = np.nan
    src.loc[2, ["ra", "dec"]] = (200.0, 45.0)
    _write(src, "t.csv")
    rc, err = cut(capsys, "t.csv")
    assert rc == 0, err
    assert "1 row(s) have no position (ra or dec is NaN; rows [1])" in err  # said, not silent
    obj = open_stack("../out.zarr").objects().sort_values("row")
    assert obj["off_footprint"].tolist() == [False, True, True, False, False]
    assert (obj["flags"].to_numpy()[[1, 2]] & 1).all()
    Path("t.csv").unlink()


# -- tiles: BITPIX, scaling, compression, layouts, WCS ---------------------------


def _int_tile(kind: str) -> fits.HDUList:
    """A one-band r tile of the given integer flavour, with a few special pixels."""
    rng = np.random.default_rng(3)
    hdr = _header("r")
    if kind == "uint8":
        data = rng.integers(0, 256, (NPIX, NPIX)).astype(np.uint8)
        return fits.HDUList([fits.PrimaryHDU(data, hdr)])
    if kind == "int16":
        data = rng.integers(-3000, 3000, (NPIX, NPIX)).astype(np.int16)
        return fits.HDUList([fits.PrimaryHDU(data, hdr)])
    if kind == "int32":
        data = rng.integers(-(2**30), 2**30, (NPIX, NPIX)).astype(np.int32)
        return fits.HDUList([fits.PrimaryHDU(data, hdr)])
    if kind == "int64":
        data = rng.integers(-(2**40), 2**40, (NPIX, NPIX)).astype(np.int64)
        return fits.HDUList([fits.PrimaryHDU(data, hdr)])
    if kind == "uint16-bzero":  # stored as int16 with BZERO = 32768
        data = rng.integers(0, 65536, (NPIX, NPIX)).astype(np.uint16)
        return fits.HDUList([fits.PrimaryHDU(data, hdr)])
    if kind in ("int16-blank", "int16-scaled-blank", "compressed-int16-blank"):
        data = rng.integers(-3000, 3000, (NPIX, NPIX)).astype(np.int16)
        data[::7, ::5] = -32768
        hdr["BLANK"] = -32768
        if kind == "int16-scaled-blank":
            hdr["BSCALE"] = 0.25
            hdr["BZERO"] = 10.0
        if kind.startswith("compressed"):
            return fits.HDUList([fits.PrimaryHDU(), fits.CompImageHDU(data, hdr)])
        return fits.HDUList([fits.PrimaryHDU(data, hdr)])
    if kind == "int32-scaled":
        hdu = fits.PrimaryHDU(rng.normal(0, 1e3, (NPIX, NPIX)).astype(np.float64), hdr)
        hdu.scale("int32", bscale=1e-3, bzero=5.0)
        return fits.HDUList([hdu])
    if kind == "float64":
        return fits.HDUList([fits.PrimaryHDU(rng.normal(0, 1, (NPIX, NPIX)), hdr)])
    if kind == "compressed-uint16":
        data = rng.integers(0, 65536, (NPIX, NPIX)).astype(np.uint16)
        return fits.HDUList([fits.PrimaryHDU(), fits.CompImageHDU(data, hdr)])
    if kind == "compressed-float":
        data = rng.normal(0, 1, (NPIX, NPIX)).astype(np.float32)
        return fits.HDUList([fits.PrimaryHDU(), fits.CompImageHDU(data, hdr, "RICE_1")])
    raise AssertionError(kind)


INT_KINDS = [
    "uint8", "int16", "int32", "int64", "uint16-bzero", "int16-blank", "int16-scaled-blank",
    "int32-scaled", "float64", "compressed-uint16", "compressed-int16-blank",
    "compressed-float",
]  # fmt: skip


@pytest.mark.parametrize("kind", INT_KINDS)
def test_tiles_of_every_bitpix_and_scaling_match_astropy(kind, tmp_path):
    name = "T1_r.fits.fz" if kind.startswith("compressed") else "T1_r.fits"
    tile = tmp_path / "tiles" / name
    tile.parent.mkdir()
    _int_tile(kind).writeto(tile)
    before = hashlib.sha256(tile.read_bytes()).hexdigest()
    stack = build_stack(
        _sources(), tile.parent, tmp_path / "s.zarr", size=SIZE, bands=["r"],
        reference_band="r", cluster="sync", progress=False,
    )  # fmt: skip
    hdu = 1 if kind.startswith("compressed") else 0
    expected_full = fits.getdata(tile, hdu)  # astropy's scaling rules
    obj = stack.objects()
    assert not obj["missing_band_r"].any()
    for k in range(len(obj)):
        ref = Cutout2D(expected_full, (obj["tile_x"][k], obj["tile_y"][k]), SIZE, mode="strict")
        np.testing.assert_array_equal(stack.images[k, 0].values, ref.data.astype(np.float32))
    if "blank" in kind:
        assert np.isnan(stack.images.values).any()  # BLANK pixels became NaN
    assert hashlib.sha256(tile.read_bytes()).hexdigest() == before


def test_gzip_tiles_and_bands_as_extensions(tmp_path):
    (tmp_path / "tiles").mkdir()
    hdus = [fits.PrimaryHDU()] + [
        fits.ImageHDU(_pixels(k), _header(b), name=b.upper()) for k, b in enumerate("gri")
    ]
    fits.HDUList(hdus).writeto(tmp_path / "tiles" / "T1.fits.gz")
    stack = build_stack(
        _sources(), tmp_path / "tiles", tmp_path / "s.zarr", size=SIZE,
        cluster="sync", progress=False,
    )  # fmt: skip
    obj = stack.objects()
    assert stack.bands == ["g", "r", "i"]
    assert not obj[["missing_band_g", "missing_band_r", "missing_band_i"]].any(axis=None)
    o = stack.objects().iloc[0]
    ref = Cutout2D(_pixels(2), (o["tile_x"], o["tile_y"]), SIZE, mode="strict").data
    np.testing.assert_array_equal(stack.images[0, 2].values, ref)


def test_science_and_weight_extensions(tmp_path):
    (tmp_path / "tiles").mkdir()
    for k, b in enumerate("gri"):
        fits.HDUList(
            [
                fits.PrimaryHDU(),
                fits.ImageHDU(_pixels(k), _header(b), name="SCI"),
                fits.ImageHDU(np.ones((NPIX, NPIX), np.float32), _header(b), name="WGT"),
            ]
        ).writeto(tmp_path / "tiles" / f"T1_{b}.fits")
    stack = build_stack(
        _sources(), tmp_path / "tiles", tmp_path / "s.zarr", size=SIZE,
        cluster="sync", progress=False,
    )  # fmt: skip
    assert not np.all(stack.images.values == 1.0)  # the science pixels, not the weights
    assert np.nanstd(stack.images.values) > 1


def test_tile_without_wcs_is_reported_and_no_usable_tile_is_an_error(work, capsys):
    os.mkdir("bad")
    fits.PrimaryHDU(_pixels(), fits.Header({"BAND": "r"})).writeto("bad/T1_r.fits")
    rc, err = cut(capsys, "sources.csv", "bad")
    one_error(rc, err, r"no usable FITS image: .*no celestial WCS")
    shutil.rmtree("bad")


def test_missing_tile_directory(work, capsys):
    rc, err = cut(capsys, "sources.csv", "no-such-dir")
    one_error(rc, err, r"no FITS files found in 'no-such-dir'")


def test_truncated_and_empty_files_are_reported_and_flagged(work, capsys):
    shutil.copytree("tiles", "t2")
    data = Path("t2/T1_g.fits").read_bytes()
    Path("t2/T1_g.fits").write_bytes(data[: len(data) // 2])
    Path("t2/T1_i.fits").write_bytes(b"")
    rc, err = cut(capsys, "sources.csv", "t2", None, "--bands", "g,r,i")
    one_error(rc, err, r"band\(s\) \['g', 'i'\] are in no tile")
    assert "not indexed" in err and "truncated" in err and "empty file" in err
    shutil.rmtree("t2")


def test_a_missing_band_image_is_flagged_per_band_and_not_clean(work, capsys):
    shutil.copytree("tiles", "t2")
    fits.PrimaryHDU(_pixels(9), _header("g", CRVAL1=CENTRE[0] + 0.05)).writeto(
        "t2/T2_g.fits"
    )  # a g tile elsewhere keeps the band in the index
    os.remove("t2/T1_g.fits")
    rc, err = cut(capsys, "sources.csv", "t2")
    assert rc == 0, err
    stack = open_stack("../out.zarr")
    obj = stack.objects()
    assert obj["missing_band_g"].all() and not obj["missing_band_r"].any()
    assert len(stack.select(clean=True)) == 0
    shutil.rmtree("t2")


def test_an_all_nan_band_is_flagged_and_excluded_by_clean(work, capsys):
    shutil.copytree("tiles", "t2")
    with fits.open("t2/T1_i.fits", mode="update") as h:
        h[0].data[:] = np.nan
    rc, err = cut(capsys, "sources.csv", "t2")
    assert rc == 0, err
    stack = open_stack("../out.zarr")
    obj = stack.objects()
    assert obj["nan_i"].all() and not obj["nan_g"].any() and not obj["nan_r"].any()
    assert (obj["flags"] & 4).astype(bool).all()  # the nan bit
    assert (obj["nan_fraction"] < 0.5).all()  # over all bands it would have passed
    assert len(stack.select(clean=True)) == 0
    shutil.rmtree("t2")


@pytest.mark.parametrize("frame", [("FK4", 1950.0), ("FK5", 2000.0)])
def test_header_frame_is_honoured(frame, tmp_path):
    """Positions are ICRS; a B1950 FK4 header puts the same pixel ~0.7 deg away, FK5 ~20 mas."""
    from astropy.coordinates import SkyCoord

    radesys, equinox = frame
    (tmp_path / "tiles").mkdir()
    hdr = _header("r", RADESYS=radesys, EQUINOX=equinox)
    fits.PrimaryHDU(_pixels(), hdr).writeto(tmp_path / "tiles" / "T1_r.fits")
    w = WCS(hdr)
    xs, ys = np.array([p[0] for p in POSITIONS]), np.array([p[1] for p in POSITIONS])
    c = w.pixel_to_world(xs, ys).icrs  # astropy's high-level API uses the frame
    src = pd.DataFrame({"objid": range(5), "ra": c.ra.deg, "dec": c.dec.deg})
    stack = build_stack(
        src, tmp_path / "tiles", tmp_path / "s.zarr", size=SIZE, bands=["r"],
        reference_band="r", cluster="sync", progress=False,
    )  # fmt: skip
    obj = stack.objects().sort_values("row")
    np.testing.assert_allclose(obj["tile_x"], xs, atol=1e-6)
    np.testing.assert_allclose(obj["tile_y"], ys, atol=1e-6)
    # reading the header's numbers as ICRS would have put the objects elsewhere
    lon, lat = w.all_pix2world(xs, ys, 0)
    assert SkyCoord(lon, lat, unit="deg").separation(c).arcsec.max() > 0.005


# -- sizes, bands, options -------------------------------------------------------

OPTION_ERRORS = {
    "size-0": (["--size", "0"], r"cutout size must be at least 2 pixels, got 0"),
    "size-1": (["--size", "1"], r"cutout size must be at least 2 pixels"),
    "size-negative": (["--size", "-5"], r"cutout size must be at least 2 pixels"),
    "size-text": (["--size", "big"], r"cutout size must be pixels or an angle, got 'big'"),
    "size-bad-unit": (["--size", "3 kg"], r"cutout size must be pixels or an angle"),
    "size-huge": (
        ["--size", "20000"],
        r"cutout size 20000 px is larger than every r-band tile \(at most 160 px",
    ),
    "chunk-huge": (
        ["--size", "150", "--chunk-objects", "100000000"],
        r"need about .* per task, more than 80% of .*lower --chunk-objects",
    ),
    "chunk-0": (["--chunk-objects", "0"], r"chunk_objects must be a positive integer, got 0"),
    "chunk-negative": (["--chunk-objects", "-3"], r"chunk_objects must be a positive integer"),
    "band-absent": (["--bands", "g,r,z"], r"band\(s\) \['z'\] are in no tile"),
    "band-empty": (["--bands", "g,,r"], r"bands must be non-empty names"),
    "band-twice": (["--bands", "g,r,g"], r"band\(s\) \['g'\] are named twice"),
    "reference-band": (["--reference-band", "z"], r"reference band 'z' is not among bands"),
    "cluster-unknown": (
        ["--cluster", "gpu"],
        r"unknown cluster 'gpu': use processes, threads, sync, local, slurm",
    ),
    "cluster-unreachable": (
        ["--cluster", "tcp://127.0.0.1:9"],
        r"cannot reach a Dask scheduler at tcp://127\.0\.0\.1:9",
    ),
}


@pytest.mark.parametrize("case", sorted(OPTION_ERRORS))
def test_option_errors(case, work, capsys):
    extra, pattern = OPTION_ERRORS[case]
    rc, err = cut(capsys, "sources.csv", "tiles", None, *extra)
    one_error(rc, err, pattern)
    assert not Path("../out.zarr").exists()


def test_bands_with_spaces_are_stripped(work, capsys):
    rc, err = cut(capsys, "sources.csv", "tiles", None, "--bands", "g, r", "--reference-band", "r")
    assert rc == 0, err
    assert open_stack("../out.zarr").bands == ["g", "r"]


def test_angular_size(work, capsys):
    rc, err = cut(capsys, "sources.csv", "tiles", None, "--size", "10 arcsec")
    assert rc == 0, err
    assert open_stack("../out.zarr").size == 20  # 0.5 arcsec pixels


# -- configuration -----------------------------------------------------------------


CONFIG_ERRORS = {
    "missing": (None, r"configuration file not found: nope\.yaml"),
    "bad-yaml": ("cutouts:\n  size: [64\n", r"c\.yaml: not valid YAML at line 3, column 1"),
    "unknown-key": (
        "cutouts:\n  sise: 3\n",
        r"unknown configuration key 'catbuilder\.cutouts\.sise'\. Did you mean 'size'",
    ),
    "not-a-mapping": ("- 1\n- 2\n", r"expected a mapping at the top level, got list"),
}


@pytest.mark.parametrize("case", sorted(CONFIG_ERRORS))
def test_config_errors(case, work, capsys):
    text, pattern = CONFIG_ERRORS[case]
    name = "nope.yaml" if text is None else "c.yaml"
    if text is not None:
        Path(name).write_text(text)
    rc, err = cli(capsys, "--config", name, "tiles", "tiles", "-o", "../i.parquet")
    one_error(rc, err, pattern, "tiles")
    if text is not None:
        Path(name).unlink()


@pytest.mark.parametrize(
    ("var", "pattern"),
    [
        ("CATBUILDER_CUTOUTS_SIZE", r"did you mean CATBUILDER_CUTOUTS__SIZE\?"),
        ("CATBUILDER_CUTOUTS__SIZZE", r"unknown configuration key 'catbuilder\.cutouts\.sizze'"),
    ],
)
def test_environment_typos_are_errors(var, pattern):
    env = {**os.environ, var: "3"}
    res = subprocess.run(
        [sys.executable, "-m", "catbuilder.cli", "plugins"], env=env, capture_output=True, text=True
    )
    assert res.returncode != 0
    import re

    assert re.search(pattern, res.stderr), res.stderr


# -- outputs ------------------------------------------------------------------------


def test_overwrite_of_the_working_directory_is_refused(work, capsys):
    rc, err = cut(capsys, "sources.csv", "tiles", ".", "--overwrite")
    one_error(rc, err, r"\. exists and is not a catbuilder image-stack store \(it holds "
              r"sources\.csv, tiles/\)")  # fmt: skip
    assert sorted(p.name for p in work.iterdir()) == ["sources.csv", "tiles"]


@pytest.mark.parametrize("overwrite", [[], ["--overwrite"]])
def test_a_user_directory_or_file_is_never_replaced(overwrite, work, capsys):
    os.mkdir("mine")
    Path("mine/notes.txt").write_text("keep me")
    Path("file.zarr").write_text("keep me too")
    for target in ("mine", "file.zarr"):
        rc, err = cut(capsys, "sources.csv", "tiles", target, *overwrite)
        one_error(rc, err, rf"{target} exists and is not a catbuilder image-stack store")
    assert Path("mine/notes.txt").read_text() == "keep me"
    assert Path("file.zarr").read_text() == "keep me too"
    shutil.rmtree("mine")
    os.remove("file.zarr")


def test_a_stack_holding_foreign_files_is_not_replaced(work, capsys):
    assert cut(capsys, "sources.csv", "tiles", "s.zarr")[0] == 0
    Path("s.zarr/README.txt").write_text("my notes")
    rc, err = cut(capsys, "sources.csv", "tiles", "s.zarr", "--size", "20", "--overwrite")
    one_error(rc, err, r"also holds files catbuilder did not write \(README\.txt\)")
    assert Path("s.zarr/README.txt").read_text() == "my notes"
    assert open_stack("s.zarr").size == SIZE
    shutil.rmtree("s.zarr")


def test_overwrite_replaces_only_its_own_stack(work, capsys):
    assert cut(capsys, "sources.csv", "tiles", "s.zarr")[0] == 0
    rc, err = cut(capsys, "sources.csv", "tiles", "s.zarr", "--size", "20")
    one_error(rc, err, r"made with other arguments \(size: 16 != 20\); pass overwrite=True")
    assert cut(capsys, "sources.csv", "tiles", "s.zarr", "--size", "20", "--overwrite")[0] == 0
    assert open_stack("s.zarr").size == 20
    assert sorted(p.name for p in work.iterdir()) == ["s.zarr", "sources.csv", "tiles"]
    shutil.rmtree("s.zarr")


def test_a_store_of_another_kind_is_not_replaced(ws, tmp_path):
    from catbuilder import outputs

    store = tmp_path / "p.zarr"
    store.mkdir()
    (store / "zarr.json").write_text(
        '{"zarr_format": 3, "node_type": "group", "attributes": '
        '{"catbuilder": {"kind": "predictions"}}}'
    )
    with pytest.raises(OutputExistsError, match="is a catbuilder predictions store"):
        build_stack(_sources(), ws / "tiles", store, size=SIZE, overwrite=True)
    with pytest.raises(OutputExistsError):
        outputs.remove_store(store, "image-stack")
    assert (store / "zarr.json").exists()


@pytest.fixture
def mount(tmp_path):
    """A tmpfs mounted for one test (root only), unmounted after."""
    mounts = []

    def make(options: str) -> Path:
        d = tmp_path / f"mnt{len(mounts)}"
        d.mkdir()
        subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(d)], check=True)
        mounts.append(d)
        return d

    yield make
    for d in mounts:
        subprocess.run(["umount", str(d)], check=False)


@pytest.mark.root
def test_read_only_output(work, capsys, mount):
    d = mount("size=4m,ro")
    rc, err = cut(capsys, "sources.csv", "tiles", d / "s.zarr")
    one_error(rc, err, r"Read-only file system .*: the file system is read-only; choose a "
              r"writable output path")  # fmt: skip


@pytest.mark.root
def test_full_disk_is_one_line(work, capsys, mount):
    d = mount("size=64k")
    rc, err = cut(
        capsys, "sources.csv", "tiles", d / "s.zarr", "--size", "64", "--chunk-objects", "1"
    )
    one_error(rc, err, r"writing .*s\.zarr: No space left on device.*run the same command again")


@pytest.mark.root
def test_a_full_disk_that_surfaces_as_a_vanished_file_is_named(work, capsys, mount, monkeypatch):
    # writer threads race the cleanup of the write that failed first: the error that
    # reaches the command can be another one (a file gone), which depends on timing
    d = mount("size=64k")

    def fill_then_lose_a_file(*args, **kwargs):
        with open(d / "filler", "wb", buffering=0) as f, pytest.raises(OSError):
            while True:
                f.write(b"\0" * 4096)
        raise FileNotFoundError(2, "No such file or directory", str(d / "s.zarr" / "x"))

    monkeypatch.setattr("catbuilder.stack.build_stack", fill_then_lose_a_file)
    rc, err = cut(capsys, "sources.csv", "tiles", d / "s.zarr")
    one_error(rc, err, r"writing .*s\.zarr: No space left on device.*run the same command again.*"
              r"\(\[Errno 2\] No such file")  # fmt: skip


def test_a_temporary_whose_entries_vanish_meanwhile_is_removed(tmp_path, monkeypatch):
    from catbuilder import outputs

    tmp = outputs.temporary_sibling(tmp_path / "s.zarr", "template-")
    (tmp / "x").mkdir(parents=True)
    for name in ("a", "b", "x/c"):
        (tmp / name).write_bytes(b"1")
    unlink = os.unlink

    def another_thread_was_first(path, *args, **kwargs):
        unlink(path, *args, **kwargs)  # the entry is gone when rmtree gets to it
        return unlink(path, *args, **kwargs)

    monkeypatch.setattr(os, "unlink", another_thread_was_first)
    outputs.remove_temporary(tmp)
    monkeypatch.undo()
    assert not tmp.exists()
    with pytest.raises(ValueError, match="not a catbuilder temporary path"):
        outputs.remove_temporary(tmp_path)


# -- catalogs, models, predictions -------------------------------------------------


CATALOG_ERRORS = {
    "unknown-suffix": (["-o", "cat.xyz"], r"cannot tell the catalog format from 'cat\.xyz'"),
    "suffix-vs-format": (
        ["-o", "cat.fits", "--format", "parquet"],
        r"cat\.fits has a fits suffix but the format asked for is parquet",
    ),
    "user-file": (["-o", "mine.parquet"], r"mine\.parquet exists and is a file catbuilder did"),
    "user-dir-hats": (
        ["-o", "tiles", "--format", "hats"],
        r"tiles exists and is a directory catbuilder did not write",
    ),
    "no-stack": (["-o", "c.parquet", "--stack", "none.zarr"], r"no image stack at none\.zarr"),
    "not-a-stack": (["-o", "c.parquet", "--stack", "tiles"], r"tiles is not a readable Zarr"),
    "no-model": (["-o", "c.parquet", "--model-dir", "nomodel"], r"no saved model at .*nomodel"),
}


@pytest.mark.parametrize("case", sorted(CATALOG_ERRORS))
def test_predict_output_and_input_errors_come_before_any_work(case, work, capsys):
    assert cut(capsys, "sources.csv", "tiles", "s.zarr")[0] == 0
    _sources().to_parquet("mine.parquet")  # a user's own table
    args = dict(zip(["--stack", "--model-dir"], ["s.zarr", "s.zarr"]))
    extra = CATALOG_ERRORS[case][0]
    for k in list(args):
        if k in extra:
            i = extra.index(k)
            args[k] = extra[i + 1]
            extra = extra[:i] + extra[i + 2 :]
    rc, err = cli(capsys, "predict", args["--stack"], "--model-dir", args["--model-dir"], *extra)
    one_error(rc, err, CATALOG_ERRORS[case][1], "predict")
    assert not Path("s.predictions.zarr").exists()
    assert pd.read_parquet("mine.parquet").equals(_sources())
    shutil.rmtree("s.zarr")
    os.remove("mine.parquet")


def test_incomplete_stack_is_one_line(work, capsys):
    assert cut(capsys, "sources.csv", "tiles", "s.zarr")[0] == 0
    import zarr

    zarr.open_array("s.zarr/written", mode="r+")[:2] = False
    attrs = zarr.open_group("s.zarr", mode="r+")
    meta = dict(attrs.attrs["catbuilder"])
    meta["complete"] = False
    attrs.attrs["catbuilder"] = meta
    zarr.consolidate_metadata("s.zarr")
    rc, err = cli(capsys, "predict", "s.zarr", "--model-dir", "s.zarr", "-o", "c.parquet")
    one_error(
        rc, err, r"image stack s\.zarr is incomplete \(3/5 objects written\): resume", "predict"
    )
    shutil.rmtree("s.zarr")


@pytest.mark.slow
def test_models_and_stacks_that_do_not_fit(work, capsys, small_model):
    """A 3-band model on a 1-band stack fails before any worker starts; another
    cutout size is a warning (an error with --strict)."""
    assert cut(capsys, "sources.csv", "tiles", "one.zarr", "--bands", "r")[0] == 0
    rc, err = cli(capsys, "predict", "one.zarr", "--model-dir", small_model, "-o", "c.parquet")
    pattern = r"uses band\(s\) g, r, i but the stack one\.zarr has only r \(missing g, i\)"
    one_error(rc, err, pattern, "predict")
    assert not Path("one.predictions.zarr").exists()
    assert cut(capsys, "sources.csv", "tiles", "three.zarr")[0] == 0
    args = [
        "predict",
        "three.zarr",
        "--model-dir",
        small_model,
        "-o",
        "c.parquet",
        "--workers",
        "1",
    ]
    rc, err = cli(capsys, "--strict", *args)
    one_error(rc, err, r"trained on 64 px cutouts but the stack three\.zarr has 16 px", "predict")
    rc, err = cli(capsys, *args, "--no-progress")
    assert rc == 0, err
    assert "catbuilder predict: warning: the model at" in err and "16 px cutouts" in err
    assert len(pd.read_parquet("c.parquet")) == 5
    # a second run may replace its own catalog; the predictions store refuses a user's folder
    assert cli(capsys, *args, "--no-progress")[0] == 0
    rc, err = cli(capsys, *args, "--predictions", ".", "--overwrite")
    one_error(rc, err, r"\. exists and is not a catbuilder predictions store", "predict")
    for p in ("one.zarr", "three.zarr", "three.predictions.zarr"):
        shutil.rmtree(p)
    os.remove("c.parquet")


@pytest.mark.parametrize("command", ["tiles", "crossmatch"])
def test_index_and_pairs_never_replace_a_user_file(command, work, capsys):
    _sources().to_parquet("mine.parquet")
    if command == "tiles":
        argv = ["tiles", "tiles", "-o"]
    else:
        argv = ["crossmatch", "sources.csv", "sources.csv", "-o"]
    rc, err = cli(capsys, *argv, "mine.parquet")
    one_error(rc, err, r"mine\.parquet exists and is not a file catbuilder wrote", command)
    assert pd.read_parquet("mine.parquet").equals(_sources())
    rc, err = cli(capsys, *argv, "own.parquet")
    assert rc == 0, err
    rc, err = cli(capsys, *argv, "own.parquet")  # its own output: replaced only on request
    one_error(rc, err, r"own\.parquet exists \(a .* catbuilder wrote\); add --overwrite", command)
    rc, err = cli(capsys, *argv, "own.parquet", "--overwrite")
    assert rc == 0, err
    assert len(pd.read_parquet("own.parquet")) in (3, 5)  # three images, or five pairs
    os.remove("mine.parquet")
    os.remove("own.parquet")


def test_scheduler_address_is_accepted(work, capsys, dask_client):
    rc, err = cli(capsys, "cutouts", "sources.csv", "tiles", "-o", "../out.zarr", "--size", SIZE,
                  "--no-progress", "--cluster", dask_client.scheduler.address)  # fmt: skip
    assert rc == 0, err
    stack = open_stack("../out.zarr")
    assert len(stack) == 5 and [h["action"] for h in stack.meta["history"]] == ["build"]


def test_first_contact_errors_are_one_line(work, capsys, monkeypatch):
    """A non-FITS tile, a stack that is not there, a bad demo size, a misspelt
    environment variable: one line each, naming what to do, exit 2."""
    Path("junk.fits").write_text("not fits")
    rc, err = cli(capsys, "tiles", "junk.fits", "-o", "i.parquet", "--no-progress")
    one_error(rc, err, r"no usable FITS image: junk\.fits: corrupt or not FITS", "tiles")
    assert "[(" not in err and "warning" not in err
    rc, err = cli(capsys, "predict", "absent.zarr", "--model-dir", "m", "-o", "c.parquet")
    one_error(rc, err, r"no image stack at absent\.zarr", "predict")
    assert "writing" not in err
    rc, err = cli(capsys, "demo", "d", "--n-objects", "-5")
    one_error(rc, err, r"n_objects \(--n-objects\) is -5; a mock survey needs at least 10", "demo")
    assert "demo.yaml" not in err and not Path("d").exists()
    Path("junk.fits").unlink()
    env = {**os.environ, "CATBUILDER_CUTOUTS__SIZ": "32"}
    res = subprocess.run([sys.executable, "-m", "catbuilder.cli", "plugins"], env=env,
                         capture_output=True, text=True)  # fmt: skip
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert "Did you mean 'size'?" in res.stderr and "CATBUILDER_CUTOUTS__SIZ" in res.stderr
