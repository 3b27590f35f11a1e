"""Crossmatch N x N sources: one astropy call, declination strips on Dask, and lsdb.

    python benchmarks/scripts/crossmatch_scale.py [--n 1000000 10000000]

Each run is a fresh process on the same tables (a random sky patch with one
counterpart per source jittered by 0.3"): one astropy call; catbuilder's
strips on a 2-process pool; lsdb (HEALPix partitions, 2 one-thread Dask
workers) from the tables in memory, and from the same tables already
written as HATS catalogs (written beforehand, not timed). The strips'
result is checked to equal the single call's. Prints time, rate, matches
and peak memory of each, and each one's speed against the single call.
"""

from __future__ import annotations

import argparse
import subprocess
import sys

import numpy as np
import pandas as pd

_RUN = """
import resource, sys, time
sys.path.insert(0, {here!r})
from crossmatch_scale import tables
from catbuilder.sky import crossmatch
left, right = tables({n})
t = time.perf_counter()
res = crossmatch(left, right, 1.0, partitioned={part}, cluster={sched!r})
print(time.perf_counter() - t, len(res.matches),
      resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""

_LSDB = """
import resource, sys, time
sys.path.insert(0, {here!r})
import lsdb
from distributed import Client
from crossmatch_scale import tables
from catbuilder.runtime import make_cluster
left, right = tables({n})
with make_cluster("local", 2, threads_per_worker=1) as cluster, Client(cluster) as client:
    client.wait_for_workers(2)
    t = time.perf_counter()
    if {hats!r}:
        lc, rc = lsdb.read_hats({hats!r} + "/left"), lsdb.read_hats({hats!r} + "/right")
    else:
        lc = lsdb.from_dataframe(left, ra_column="ra", dec_column="dec")
        rc = lsdb.from_dataframe(right, ra_column="ra", dec_column="dec")
    res = lc.crossmatch(rc, n_neighbors=1, radius_arcsec=1.0, suffixes=("", "_r")).compute()
    dt = time.perf_counter() - t
print(dt, len(res), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""

_WRITE_HATS = """
import sys
sys.path.insert(0, {here!r})
import lsdb
from crossmatch_scale import tables
for name, df in zip(("left", "right"), tables({n})):
    lsdb.from_dataframe(df, ra_column="ra", dec_column="dec").to_hats({out!r} + "/" + name)
"""


def _run(code: str) -> tuple[float, ...]:
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    return tuple(map(float, out[-3:]))


def tables(n: int, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    # ~100 deg^2, a DES-like density of bright galaxies x 10
    ra = rng.uniform(0, 10, n)
    dec = np.degrees(np.arcsin(rng.uniform(np.sin(np.radians(-5)), np.sin(np.radians(5)), n)))
    left = pd.DataFrame({"objid": np.arange(n), "ra": ra, "dec": dec})
    j = rng.normal(0, 0.3 / 3600, (2, n))
    right = pd.DataFrame({"objid": np.arange(n) + n, "ra": (ra + j[0]) % 360, "dec": dec + j[1]})
    return left, right.sample(frac=1.0, random_state=1).reset_index(drop=True)


def main() -> int:
    import shutil
    import tempfile
    from pathlib import Path

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, nargs="+", default=[1_000_000])
    args = ap.parse_args()
    here = str(Path(__file__).parent)
    for n in args.n:
        rows = {}
        for label, part, sched in (
            ("single astropy call", False, "sync"),
            ("strips, 2 processes", True, "processes"),
        ):
            rows[label] = _run(_RUN.format(here=here, n=n, part=part, sched=sched))
        rows["lsdb from tables"] = _run(_LSDB.format(here=here, n=n, hats=""))
        hats = tempfile.mkdtemp(prefix="catbuilder-hats-")
        try:
            subprocess.run([sys.executable, "-c", _WRITE_HATS.format(here=here, n=n, out=hats)],
                           check=True, capture_output=True)  # fmt: skip
            rows["lsdb from HATS on disk"] = _run(_LSDB.format(here=here, n=n, hats=hats))
        finally:
            shutil.rmtree(hats, ignore_errors=True)
        print(f'crossmatch {n:,} x {n:,} sources within 1"')
        single = rows["single astropy call"][0]
        for label, (dt, nm, rss) in rows.items():
            print(
                f"  {label:<24} {dt:7.1f} s  {n / dt:10.0f} rows/s  {int(nm):>10,} matches  "
                f"peak RSS {rss:6.0f} MiB  {single / dt:5.2f}x"
            )
    # equality, on a smaller sample in this process
    from catbuilder.sky import crossmatch

    left, right = tables(min(min(args.n), 200_000), seed=3)
    s = crossmatch(left, right, 1.0, partitioned=False)
    p = crossmatch(left, right, 1.0, partitioned=True, partition_rows=20_000, cluster="threads")
    pd.testing.assert_frame_equal(s.matches, p.matches)
    print("  partitioned and single matches identical on a 200k sample")
    return 0


if __name__ == "__main__":
    sys.exit(main())
