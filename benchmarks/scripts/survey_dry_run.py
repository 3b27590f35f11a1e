"""A DES-sized survey planned in bounded memory: 10^4 tiles, 10^8 sources, no pixel read.

    python benchmarks/scripts/survey_dry_run.py [--tiles 10000 --sources 100000000]

One process writes the inputs: a tile index of ``--tiles`` DES-like tiles
(10,000^2 px at 0.263"/px, g r i, described by TAN headers only: no image
exists) on a grid of about 5,000 deg^2, and a Parquet source table of
``--sources`` objects (uniform within each tile, in tile order, row groups
of 10^6). A fresh process then runs ``run_survey(..., dry_run=True)``: it
partitions the table a batch at a time (HEALPix, HATS layout) and plans the
run from the partitions and the index (small CNN at 32 px; and Xception
at 299 px, both on CPUs at rates measured here). Prints the plan, the planning
process's peak memory (VmHWM; target < 1.5 GB) and its time, and the disk
the inputs and partitions use.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import argparse
import json
import shutil
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def make(root: Path, n_tiles: int, n_sources: int) -> dict:
    """The synthetic index, the source table and a model (a separate process)."""
    from benchmarks import fitted_model, write_header_survey

    t0 = time.perf_counter()
    write_header_survey(root, n_tiles, n_sources)
    fitted_model("keras.small-cnn", 32, root, cutout=32)
    return {"seconds": time.perf_counter() - t0}


def plan(root: Path, rows: int) -> dict:
    """``run_survey(..., dry_run=True)`` in this process; the plan and its cost."""
    from benchmarks import peak_rss_mib
    from catbuilder.survey import run_survey

    t0 = time.perf_counter()
    result = run_survey(root / "sources.parquet", root / "index.parquet",
                        root / "keras.small-cnn.model", root / "run", size=32,
                        partition_rows=rows, dry_run=True)  # fmt: skip
    seconds = time.perf_counter() - t0
    # Xception at 299 px on CPUs: ~6 objects/s per core (docs/scale.md)
    xception = replace(result, rates={**result.rates, "predict": 1000 / 6})
    return {
        "seconds": seconds,
        "peak_mib": peak_rss_mib(),
        "plan": result.summary()
        + "\nwith Xception @ 299 px on CPUs instead:\n"
        + "\n".join(xception.summary().splitlines()[-2:]),
        "tasks": len(result.tasks),
        "n": result.n_objects,
    }


def _du_gib(path: Path) -> float:
    if path.is_file():
        return path.stat().st_size / 2**30
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**30


def _child(*args: str) -> dict:
    from benchmarks import child_json

    return child_json(__file__, *args)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiles", type=int, default=10_000)
    ap.add_argument("--sources", type=int, default=100_000_000)
    ap.add_argument("--partition-rows", type=int, default=100_000)
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--make", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--plan", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    root = args.workdir or Path(tempfile.mkdtemp(prefix="catbuilder-dry-run-"))
    if args.make:
        print(json.dumps(make(root, args.tiles, args.sources)))
        return 0
    if args.plan:
        print(json.dumps(plan(root, args.partition_rows)))
        return 0
    root.mkdir(parents=True, exist_ok=True)
    made = _child("--make", "--workdir", str(root), "--tiles", str(args.tiles),
                  "--sources", str(args.sources))  # fmt: skip
    res = _child("--plan", "--workdir", str(root), "--partition-rows", str(args.partition_rows))
    print(f"inputs: {args.tiles:,} tiles (headers only), {res['n']:,} sources "
          f"({_du_gib(root / 'sources.parquet'):.2f} GiB Parquet), written in "
          f"{made['seconds']:.0f} s")  # fmt: skip
    print(f"dry run (partitioning + plan): {res['seconds']:.0f} s, peak memory "
          f"{res['peak_mib']:,.0f} MiB; partitioned sources "
          f"{_du_gib(root / 'run' / 'sources'):.2f} GiB\n")  # fmt: skip
    print(res["plan"])
    if args.workdir is None:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
