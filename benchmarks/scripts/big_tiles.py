"""Cutouts from DES-sized tiles: 10,000 x 10,000 px per band, RICE-compressed.

    python benchmarks/scripts/big_tiles.py [--objects 20000] [--npix 10000]

Writes one tile in g, r, i as DES ships them (``.fits.fz``: float32 quantised
and RICE-compressed, row tiles, as fpack does) and the same pixels
uncompressed, then in one run:

* decompressing each band whole once (``hdu.data``): the floor for a reader
  that decompresses every tile once;
* ``build_stack`` of ``--objects`` 64 px cutouts from the compressed tile and
  from the uncompressed one, on a LocalCluster of ``--workers`` workers.

Prints objects/s, the ratio of compressed to whole-tile decompression time
(about 1: each row is decompressed about once, as objects are cut in row
order), and each worker's peak memory (VmHWM) against the bound documented in
docs/scale.md: a worker at rest + 3 x (chunk of cutouts) + one strip of
4 x size rows of the tile per band.
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


def _vm_hwm_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


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

    from catbuilder import config
    from catbuilder.cluster import make_cluster
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
        for kind in ("fz", "plain"):
            with (
                make_cluster("local", args.workers, threads_per_worker=1) as cluster,
                Client(cluster) as client,
            ):
                client.wait_for_workers(args.workers)
                rest = max(client.run(_vm_hwm_mib).values())
                t = time.perf_counter()
                stack = build_stack(
                    sources,
                    work / kind,
                    work / f"{kind}.zarr",
                    size=args.size,
                    cluster=client,
                    progress=False,
                )
                dt = time.perf_counter() - t
                peak = max(client.run(_vm_hwm_mib).values())
                assert (
                    len(stack) == args.objects and int((stack.objects()["flags"] != 0).sum()) == 0
                )
            rows[kind] = (args.objects / dt, dt, rest, peak)
        cut_mib = chunk * 3 * m * m * 4 / 2**20
        strip_mib = 3 * 4 * m * args.npix * 4 / 2**20
        print(
            f"\n{args.objects:,} cutouts of {m} px (g, r, i) from one {args.npix:,}^2 px tile, "
            f"{args.workers} workers, chunks of {chunk} objects"
        )
        print(
            f"{'tile':<28}{'on disk MiB':>12}{'objects/s':>11}{'seconds':>9}{'worker peak MiB':>17}"
        )
        for kind, label in (("fz", "RICE .fits.fz (float, q=16)"), ("plain", "uncompressed .fits")):
            rate, dt, rest, peak = rows[kind]
            print(f"{label:<28}{sizes[kind]:>12.0f}{rate:>11,.0f}{dt:>9.1f}{peak:>17.0f}")
        print(
            f"\ndecompressing the three bands whole, once: {whole:.1f} s; cutting from them took "
            f"{rows['fz'][1] / whole:.2f}x that, on {args.workers} workers"
        )
        print(
            f"worker memory bound: at rest {rows['fz'][2]:.0f} MiB + 3 x {cut_mib:.1f} MiB "
            f"(a chunk of cutouts) + {strip_mib:.1f} MiB (a strip of {4 * m} rows per band) = "
            f"{rows['fz'][2] + 3 * cut_mib + strip_mib:.0f} MiB; measured peak "
            f"{max(rows['fz'][3], rows['plain'][3]):.0f} MiB"
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
