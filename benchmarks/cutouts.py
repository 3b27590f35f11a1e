"""Cutting sources into Zarr stacks, against a per-object astropy loop."""

import shutil
from pathlib import Path

import numpy as np

from . import QUICK, positions, write_tiles

_N_SIDE, _NPIX = 2, 1024


class Cutouts:
    params = [[1000, 5000]] if not QUICK else [[1000]]
    param_names = ["n_objects"]
    timeout = 300

    def setup_cache(self):
        root = Path.cwd() / "cutouts"  # asv runs setup_cache in a directory it removes
        write_tiles(root / "tiles", n_side=_N_SIDE, npix=_NPIX)
        from catbuilder.sky import TileIndex

        TileIndex.build(root / "tiles").to_parquet(root / "index.parquet")
        return str(root)

    def setup(self, root, n_objects):
        self.root = Path(root)
        self.pos = positions(n_objects, n_side=_N_SIDE, npix=_NPIX)
        self.out = self.root / f"stack-{n_objects}.zarr"
        shutil.rmtree(self.out, ignore_errors=True)

    def teardown(self, root, n_objects):
        shutil.rmtree(self.out, ignore_errors=True)

    def _build(self):
        from catbuilder.stack import build_stack

        build_stack(
            self.pos,
            self.root / "index.parquet",
            self.out,
            size=64,
            progress=False,
            cluster="sync",
        )

    def time_build_stack(self, root, n_objects):
        self._build()

    def peakmem_build_stack(self, root, n_objects):
        self._build()

    def track_speedup_over_cutout2d_loop(self, root, n_objects):
        """Objects/s of build_stack over objects/s of the per-object Cutout2D loop,
        measured one after the other in this process (the README's headline ratio)."""
        import time

        base = Cutout2DLoop()
        base.setup(root)
        t0 = time.perf_counter()
        base.time_cutout2d_loop(root)
        loop_rate = len(base.pos) / (time.perf_counter() - t0)
        shutil.rmtree(self.out, ignore_errors=True)
        t0 = time.perf_counter()
        self._build()
        return n_objects / (time.perf_counter() - t0) / loop_rate

    track_speedup_over_cutout2d_loop.unit = "x"

    def track_fraction_of_serial_limit(self, root, n_objects):
        """Objects/s of build_stack (one process) over the serial cut+store limit
        (numpy slices of tiles in memory written to Zarr with the stack's chunks
        and codecs, the better of two runs), one after the other in this process."""
        import time

        from . import cut_serial_limit

        t0 = time.perf_counter()
        self._build()
        rate = n_objects / (time.perf_counter() - t0)
        from catbuilder.sky import TileIndex

        index = TileIndex.read_parquet(self.root / "index.parquet")
        limit = max(cut_serial_limit(self.pos, index, self.out, self.root / "limit.zarr", 64)
                    for _ in range(2))  # fmt: skip
        shutil.rmtree(self.root / "limit.zarr", ignore_errors=True)
        return rate / limit

    track_fraction_of_serial_limit.unit = "fraction"


class Cutout2DLoop:
    """The baseline: open the files and call Cutout2D for every object (200 objects)."""

    timeout = 300

    def setup_cache(self):
        return Cutouts.setup_cache(self)

    def setup(self, root):
        from catbuilder.sky import TileIndex

        self.root = Path(root)
        self.pos = positions(200, n_side=_N_SIDE, npix=_NPIX)
        idx = TileIndex.read_parquet(self.root / "index.parquet")
        self.tiles = idx.locate(self.pos["ra"].to_numpy(), self.pos["dec"].to_numpy(), "r")["tile"]

    def time_cutout2d_loop(self, root):
        from astropy.coordinates import SkyCoord
        from astropy.io import fits
        from astropy.nddata import Cutout2D
        from astropy.wcs import WCS

        for (_, p), t in zip(self.pos.iterrows(), self.tiles):
            c = SkyCoord(p["ra"], p["dec"], unit="deg")
            cube = []
            for b in "gri":
                with fits.open(self.root / "tiles" / f"{t}_{b}.fits") as h:
                    cube.append(
                        Cutout2D(
                            h[0].data,
                            c,
                            64,
                            wcs=WCS(h[0].header),
                            mode="partial",
                            fill_value=np.nan,
                        ).data
                    )
