"""Cutouts from DES-sized tiles: 10,000 x 10,000 px per band, RICE-compressed.

    python benchmarks/scripts/big_tiles.py [--objects 20000] [--npix 10000]

Writes one tile in g, r, i as DES ships them (``.fits.fz``: float32 quantised
and RICE-compressed, row tiles, as fpack does) and the same pixels
uncompressed, then in one run:

* decompressing each band whole once (``hdu.data``): the floor for a reader
  that decompresses every tile once;
* ``build_stack`` of ``--objects`` 64 px cutouts from the compressed tile and
  from the uncompressed one, on a LocalCluster of ``--workers`` workers.

Prints objects/s, the worker CPU spent decompressing (compressed minus
uncompressed run) over decompressing every band once (how many times each row
is decompressed: tasks cut objects in row order, and only rows near a task's
boundary are read twice), and each worker's peak memory (VmHWM) for
``--objects`` and for 4x as many from the same tile: bounded by the chunk and
the tile's width, not by the number of objects.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def write_tile(outdir: Path, npix: int, bands=("g", "r", "i"), scale: float = 0.263) -> tuple:
    """One tile per band, compressed (``.fits.fz``) and plain; its WCS."""
    from astropy.io import fits

    from catbuilder.synth.layout import tan_wcs

    wcs = tan_wcs(30.0, -20.0, scale, npix, npix)
    hdr = wcs.to_header()
    rng = np.random.default_rng(0)
    (outdir / "fz").mkdir(parents=True)
    (outdir / "plain").mkdir()
    for b in bands:
        data = rng.standard_normal((npix, npix), dtype=np.float32) * 3.0 + 10.0
        h = hdr.copy()
        h["BAND"] = b
        h["MAGZERO"] = 30.0
        fits.PrimaryHDU(data, header=h).writeto(outdir / "plain" / f"tile_{b}.fits")
        comp = fits.CompImageHDU(
            data, header=h, compression_type="RICE_1", quantize_level=16.0, tile_shape=(1, npix)
        )
        fits.HDUList([fits.PrimaryHDU(), comp]).writeto(outdir / "fz" / f"tile_{b}.fits.fz")
        del data
    return wcs


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--npix", type=int, default=10_000)
    ap.add_argument("--objects", type=int, default=20_000)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    from astropy.io import fits
    from distributed import Client

    from benchmarks import peak_rss_mib
    from catbuilder import config
    from catbuilder.runtime import make_cluster
    from catbuilder.stack import build_stack

    work = Path(tempfile.mkdtemp(prefix="catbuilder-bigtiles-"))
    try:
        t = time.perf_counter()
        wcs = write_tile(work, args.npix)
        print(f"wrote 3 bands of {args.npix}^2 px in {time.perf_counter() - t:.0f} s", flush=True)
        sizes = {
            kind: sum(f.stat().st_size for f in (work / kind).iterdir()) / 2**20
            for kind in ("fz", "plain")
        }
        t = time.perf_counter()
        for f in sorted((work / "fz").iterdir()):
            with fits.open(f) as hdul:
                assert hdul[1].data.shape == (args.npix, args.npix)
        whole = time.perf_counter() - t
        rng = np.random.default_rng(1)
        m = args.size
        x = rng.uniform(m, args.npix - m, args.objects)
        y = rng.uniform(m, args.npix - m, args.objects)
        ra, dec = wcs.pixel_to_world_values(x, y)
        sources = pd.DataFrame({"objid": np.arange(args.objects), "ra": ra, "dec": dec})
        chunk = int(config.get("cutouts.chunk-objects"))
        rows = {}
        for kind, objects in (("fz", sources), ("plain", sources), ("fz x4", None)):
            if objects is None:  # 4x the objects from the same tile: is memory the same?
                x = rng.uniform(m, args.npix - m, 4 * args.objects)
                y = rng.uniform(m, args.npix - m, 4 * args.objects)
                ra, dec = wcs.pixel_to_world_values(x, y)
                objects = pd.DataFrame({"objid": np.arange(len(x)), "ra": ra, "dec": dec})
            with (
                make_cluster("local", args.workers, threads_per_worker=1) as cluster,
                Client(cluster) as client,
            ):
                client.wait_for_workers(args.workers)
                rest = max(client.run(peak_rss_mib).values())
                t = time.perf_counter()
                stack = build_stack(
                    objects,
                    work / kind.split()[0],
                    work / f"{kind.split()[0]}.zarr",
                    size=args.size,
                    cluster=client,
                    overwrite=True,
                    progress=False,
                )
                dt = time.perf_counter() - t
                peak = max(client.run(peak_rss_mib).values())
                assert len(stack) == len(objects)
                assert int((stack.objects()["flags"] != 0).sum()) == 0
            rows[kind] = (len(objects) / dt, dt, rest, peak, len(objects))
        print(
            f"\ncutouts of {m} px (g, r, i) from one {args.npix:,}^2 px tile, "
            f"{args.workers} workers, chunks of {chunk} objects"
        )
        print(
            f"{'tile':<28}{'objects':>9}{'on disk MiB':>12}{'objects/s':>11}{'seconds':>9}"
            f"{'worker peak MiB':>17}"
        )
        for kind, label in (
            ("fz", "RICE .fits.fz (float, q=16)"),
            ("fz x4", "RICE .fits.fz, 4x objects"),
            ("plain", "uncompressed .fits"),
        ):
            rate, dt, rest, peak, n = rows[kind]
            disk = sizes[kind.split()[0]]
            print(f"{label:<28}{n:>9,}{disk:>12.0f}{rate:>11,.0f}{dt:>9.1f}{peak:>17.0f}")
        extra = (rows["fz"][1] - rows["plain"][1]) * args.workers
        print(
            f"\ndecompressing the three bands whole, once: {whole:.1f} s of one core; the cutouts "
            f"spent {extra:.1f} core-s more on the compressed tile ({extra / whole:.1f}x: rows "
            f"near a task's boundary are decompressed by both tasks)"
        )
        print(
            f"worker peak memory: {rows['fz'][3]:.0f} MiB for {rows['fz'][4]:,} objects, "
            f"{rows['fz x4'][3]:.0f} MiB for {rows['fz x4'][4]:,} (at rest: {rows['fz'][2]:.0f} "
            "MiB)"
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
