"""catbuilder's asv benchmark suite, and the seeded inputs it shares with the
ratio scripts in ``benchmarks/scripts``.

Tiles are plain noise with a TAN WCS: cheap to write, so the benchmarks
measure cutting, not simulation. Set ``CATBUILDER_BENCH_QUICK=1`` to skip the
slow cases (as xarray's suite does with its own flag).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

QUICK = os.environ.get("CATBUILDER_BENCH_QUICK", "") not in ("", "0")


def peak_rss_mib() -> float:
    """This process's peak resident memory in MiB (VmHWM: unlike ru_maxrss, not
    inherited from the parent that spawned it); ``client.run`` it on workers."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def write_tiles(
    outdir: str | Path,
    n_side: int = 4,
    npix: int = 2048,
    bands=("g", "r", "i"),
    scale: float = 0.263,
    seed: int = 0,
) -> list[Path]:
    """Write ``n_side**2`` tiles per band (float32, TAN WCS) in a square grid."""
    from astropy.io import fits

    from catbuilder.synth.layout import tan_wcs

    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    side_deg = npix * scale / 3600
    paths = []
    for j in range(n_side):
        for i in range(n_side):
            ra, dec = 20.0 + i * side_deg, j * side_deg
            hdr = tan_wcs(ra, dec, scale, npix, npix).to_header()
            for b in bands:
                h = hdr.copy()
                h["BAND"] = b
                h["MAGZERO"] = 30.0
                data = rng.normal(0, 1, (npix, npix)).astype(np.float32)
                p = outdir / f"T{j:02d}{i:02d}_{b}.fits"
                if not p.exists():
                    fits.PrimaryHDU(data, header=h).writeto(p)
                paths.append(p)
    return paths


def positions(
    n: int, n_side: int = 4, npix: int = 2048, scale: float = 0.263, seed: int = 1
) -> pd.DataFrame:
    """``n`` positions spread over the tiles of :func:`write_tiles` (inside them)."""
    rng = np.random.default_rng(seed)
    side_deg = npix * scale / 3600
    margin = 40 * scale / 3600
    i = rng.integers(0, n_side, n)
    j = rng.integers(0, n_side, n)
    ra = 20.0 + i * side_deg + rng.uniform(-side_deg / 2 + margin, side_deg / 2 - margin, n)
    dec = j * side_deg + rng.uniform(-side_deg / 2 + margin, side_deg / 2 - margin, n)
    return pd.DataFrame({"objid": np.arange(n), "ra": ra, "dec": dec})


def fitted_model(name: str, size: int, outdir: str | Path, cutout: int = 64) -> Path:
    """Save a plugin model of input ``size`` to ``outdir/<name>.model``, fitted on
    ``cutout`` px cutouts (the benchmark stacks' size, so predict does not warn).

    Its weights are random and barely trained (one whole-network epoch): the
    benchmarks measure speed, not accuracy, and need no ImageNet file.
    """
    from catbuilder.plugins import make_model

    rng = np.random.default_rng(0)
    est = make_model(
        name,
        input_size=size,
        batch_size=8,
        augment=False,
        weights=None,
        stages="whole-network",
        epochs=1,
    )
    X = rng.normal(0, 1, (16, 3, cutout, cutout)).astype(np.float32)
    est.fit(X, ["elliptical", "spiral"] * 8)
    return est.save(Path(outdir) / f"{name}.model")


def model_inputs(stack, size: int) -> np.ndarray:
    """The whole stack preprocessed for a model of input ``size``, in memory
    (the bare ``model.predict`` baseline's input)."""
    from catbuilder.stack.preprocess import Preprocessor

    zp = stack.objects()[[f"magzero_{b}" for b in stack.bands]].to_numpy()
    return Preprocessor().transform(stack.load(), stack.bands, zp, size=size)


def _survey_tile(args: tuple) -> pd.DataFrame:
    """Write one tile (all bands) of :func:`write_survey`; its sources."""
    from astropy.io import fits

    from catbuilder.synth.layout import tan_wcs

    outdir, i, j, n, npix, bands, scale, seed = args
    rng = np.random.default_rng([seed, i, j])
    side_deg = npix * scale / 3600
    ra0, dec0 = 20.0 + i * side_deg, j * side_deg
    wcs = tan_wcs(ra0, dec0, scale, npix, npix)
    margin, half = 40, 7
    x = rng.uniform(margin, npix - margin, n)
    y = rng.uniform(margin, npix - margin, n)
    galaxy = rng.random(n) < 0.8
    h = np.where(galaxy, rng.uniform(1.0, 4.0, n), 0.7)  # scale length (px); stars: a PSF-ish core
    flux = 10 ** rng.uniform(2.0, 3.5, n)
    ix, iy = np.rint(x).astype(int), np.rint(y).astype(int)
    d = np.arange(-half, half + 1)
    dy, dx = np.meshgrid(d, d, indexing="ij")
    r = np.hypot(dx[None] + (ix - x)[:, None, None], dy[None] + (iy - y)[:, None, None])
    profile = np.exp(-r / h[:, None, None])
    profile *= (flux / profile.sum(axis=(1, 2)))[:, None, None]
    flat = ((iy[:, None, None] + dy[None]) * npix + (ix[:, None, None] + dx[None])).ravel()
    hdr = wcs.to_header()
    for k, b in enumerate(bands):
        img = rng.standard_normal(npix * npix, dtype=np.float32)
        colour = 0.6 + 0.4 * k / max(1, len(bands) - 1)  # redder galaxies brighter in i
        np.add.at(img, flat, (profile * np.where(galaxy, colour, 1.0)[:, None, None]).ravel())
        hb = hdr.copy()
        hb["BAND"] = b
        hb["MAGZERO"] = 30.0
        fits.PrimaryHDU(img.reshape(npix, npix), header=hb).writeto(
            Path(outdir) / f"T{j:03d}{i:03d}_{b}.fits", overwrite=True
        )
    ra, dec = wcs.pixel_to_world_values(x, y)
    return pd.DataFrame({"ra": ra, "dec": dec})


def write_survey(
    outdir: str | Path,
    n_objects: int,
    per_tile: int = 10_000,
    npix: int = 2048,
    bands=("g", "r", "i"),
    scale: float = 0.263,
    seed: int = 0,
    processes: int | None = None,
) -> pd.DataFrame:
    """A fast synthetic survey for scale benchmarks: ``n_objects`` exponential
    discs and point sources on noise, ``per_tile`` to a ``npix``^2 tile (a grid
    of tiles, every band a float32 FITS file with a TAN WCS), no GalSim.

    Tiles are written by a process pool; returns the source table (``objid, ra,
    dec``). The density is far above a real survey's (10^4 objects per 2048^2
    tile): the benchmarks measure per-object costs, and fewer tiles keep the
    disk use of 10^6 objects near 5 GB.
    """
    from concurrent.futures import ProcessPoolExecutor

    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    n_tiles = -(-n_objects // per_tile)
    n_side = int(np.ceil(np.sqrt(n_tiles)))
    counts = [per_tile] * (n_tiles - 1) + [n_objects - per_tile * (n_tiles - 1)]
    jobs = [
        (outdir, t % n_side, t // n_side, c, npix, tuple(bands), scale, seed)
        for t, c in enumerate(counts)
    ]
    with ProcessPoolExecutor(processes or os.cpu_count()) as pool:
        tables = list(pool.map(_survey_tile, jobs))
    table = pd.concat(tables, ignore_index=True)
    table.insert(0, "objid", np.arange(len(table)))
    return table


#: a DES tile: 10,000^2 px at 0.263"/px
DES_TILE_PX, DES_SCALE = 10_000, 0.263


def des_tile_centres(n: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` tile centres in rows of constant Dec from -65 deg up, as DES tiles are
    laid (100 deg of RA per row: about 5,000 deg^2 for 10^4 tiles)."""
    side = DES_TILE_PX * DES_SCALE / 3600
    ras: list[float] = []
    decs: list[float] = []
    dec = -65.0
    while len(ras) < n:
        step = side / np.cos(np.radians(dec))
        k = int(100.0 / step)
        ras.extend((np.arange(k) * step + 300.0) % 360.0)
        decs.extend([dec] * k)
        dec += side
    return np.array(ras[:n]), np.array(decs[:n])


def write_header_survey(root: str | Path, n_tiles: int, n_sources: int) -> None:
    """A DES-like survey described, not rendered: ``root/index.parquet`` (a tile
    index of ``n_tiles`` g, r, i tiles with TAN headers; no image exists) and
    ``root/sources.parquet`` (``n_sources`` uniform within the tiles, in tile
    order, row groups of 10^6), for plans and drivers at survey scale."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from astropy.wcs import WCS

    from catbuilder.sky.tiles import COLUMNS, TileIndex

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    side = DES_TILE_PX * DES_SCALE / 3600
    ra, dec = des_tile_centres(n_tiles)
    rows = []
    for i, (a, d) in enumerate(zip(ra, dec)):
        w = WCS(naxis=2)
        w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
        w.wcs.crval = [a, d]
        w.wcs.crpix = [DES_TILE_PX / 2 + 0.5] * 2
        w.wcs.cd = np.diag([-DES_SCALE / 3600, DES_SCALE / 3600])
        text = w.to_header().tostring()
        for band in "gri":
            rows.append((f"DES{i:05d}", band, f"synthetic/DES{i:05d}_{band}.fits.fz", 1, 2,
                         DES_TILE_PX, DES_TILE_PX, a, d, side / np.sqrt(2), DES_SCALE, 30.0,
                         60000.0, "", text))  # fmt: skip
    TileIndex(pd.DataFrame(rows, columns=COLUMNS)).to_parquet(root / "index.parquet")
    per_tile = n_sources // n_tiles
    rng = np.random.default_rng(0)
    schema = pa.schema([("objid", pa.int64()), ("ra", pa.float64()), ("dec", pa.float64())])
    group = max(1, 1_000_000 // per_tile)  # tiles per row group
    with pq.ParquetWriter(root / "sources.parquet", schema) as writer:
        for start in range(0, n_tiles, group):
            a, d = ra[start : start + group], dec[start : start + group]
            dd = np.repeat(d, per_tile) + rng.uniform(-side / 2, side / 2, len(d) * per_tile)
            da = rng.uniform(-side / 2, side / 2, len(a) * per_tile) / np.cos(np.radians(dd))
            objid = np.arange(start * per_tile, (start + len(a)) * per_tile, dtype=np.int64)
            table = pa.table({"objid": objid, "ra": (np.repeat(a, per_tile) + da) % 360.0,
                              "dec": dd}, schema=schema)  # fmt: skip
            writer.write_table(table, row_group_size=1_000_000)


def child_json(script: str | Path, *args: str) -> dict:
    """Run ``script`` with ``args`` in a fresh Python process (so that its peak
    memory is its own) and return the JSON object its last line of output holds."""
    import json
    import subprocess
    import sys

    res = subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True,
                         check=False)  # fmt: skip
    if res.returncode:
        sys.stderr.write(res.stderr[-3000:])
        raise SystemExit(res.returncode)
    return json.loads(res.stdout.strip().splitlines()[-1])


def cut_serial_limit(
    pos, index, stack_path, out, size: int, bands: tuple[str, ...] = ("g", "r", "i")
) -> float:
    """Objects/s of the least any cutter must do, in this process: slice each
    object out of tiles already in memory (numpy) and write the same pixels to
    Zarr in the stack's chunks with the stack's codecs. Loading the tiles is
    not timed."""
    import time

    import zarr
    from astropy.io import fits

    plan = index.locate(pos["ra"].to_numpy(), pos["dec"].to_numpy(), "r")
    x = np.rint(plan["x"].to_numpy()).astype(int) - size // 2
    y = np.rint(plan["y"].to_numpy()).astype(int) - size // 2
    tiles = plan["tile"].to_numpy()
    order = np.lexsort((y, tiles))
    paths = {(r.tile, r.band): r.path for r in index.table.itertuples()}
    data = {k: fits.getdata(v).astype(np.float32) for k, v in paths.items()}
    src = zarr.open_array(Path(stack_path) / "images", mode="r")
    dst = zarr.create_array(
        out, shape=(len(pos), len(bands), size, size), chunks=src.chunks, dtype="float32",
        compressors=src.compressors, filters=src.filters, overwrite=True,
        config={"write_empty_chunks": True},  # no comparison with the fill value first
    )  # fmt: skip
    chunk = src.chunks[0]
    t = time.perf_counter()
    for s0 in range(0, len(pos), chunk):
        idx = order[s0 : s0 + chunk]
        block = np.empty((len(idx), len(bands), size, size), np.float32)
        for k, i in enumerate(idx):
            for j, b in enumerate(bands):
                block[k, j] = data[(tiles[i], b)][y[i] : y[i] + size, x[i] : x[i] + size]
        dst[s0 : s0 + len(idx)] = block
    return len(pos) / (time.perf_counter() - t)
