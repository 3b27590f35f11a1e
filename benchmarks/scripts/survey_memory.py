"""A survey run by sky partition at 10^5 to 3x10^6 objects: is the driver's memory flat?

    python benchmarks/scripts/survey_memory.py [--sizes 100000 1000000 3000000]

For each size, tiles and a Parquet source table (row groups of 10^5) are
written by one process (``benchmarks.write_survey``: 3x10^4 objects per 2048^2
tile, g, r, i), then a fresh process runs ``run_survey`` on them (16 px
cutouts, the small CNN at 16 px, partitions of at most ``--partition-rows``
objects, HEALPix order 10 at the finest) on a
LocalCluster of ``--workers`` one-thread workers, and reports the peak memory
(VmHWM) of the driving process (it also hosts the scheduler) and of the
workers, the wall time, and the disk used. The driver never holds the source
table: it reads it a batch at a time.

Prints per size: driver and worker peaks and their ratio to the smallest
size (target for the driver: within 1.3x), the marginal cost per object
between sizes (fixed costs cancel; target: flat within 15%), and disk use.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import argparse
import itertools
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

PER_TILE = 30_000


def _du_mib(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20


def make(n: int, work: Path) -> dict:
    """Tiles and ``sources.parquet`` for ``n`` objects (in this, a separate process)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from benchmarks import fitted_model, write_survey

    t = time.perf_counter()
    sources = write_survey(work / "tiles", n, per_tile=PER_TILE)
    pq.write_table(pa.Table.from_pandas(sources, preserve_index=False),
                   work / "sources.parquet", row_group_size=100_000)  # fmt: skip
    fitted_model("keras.small-cnn", 16, work, cutout=16)
    return {"seconds": time.perf_counter() - t}


def run(n: int, work: Path, workers: int, rows: int) -> dict:
    """``run_survey`` in this process; its figures."""
    from distributed import Client

    from benchmarks import peak_rss_mib
    from catbuilder.runtime import make_cluster
    from catbuilder.survey import run_survey

    with (
        make_cluster("local", workers, threads_per_worker=1) as cluster,
        Client(cluster) as client,
    ):
        client.wait_for_workers(workers)
        t = time.perf_counter()
        result = run_survey(work / "sources.parquet", work / "tiles",
                            work / "keras.small-cnn.model", work / "run", size=16,
                            partition_rows=rows, highest_order=10,
                            cluster=client, progress=False)  # fmt: skip
        seconds = time.perf_counter() - t
        worker = max(client.run(peak_rss_mib).values())
    assert result.n_objects == n
    return {
        "n": n,
        "seconds": seconds,
        "partitions": len(result.partitions),
        "largest": max(s["n"] for s in result.summaries),
        "peak_driver_mib": peak_rss_mib(),
        "peak_worker_mib": worker,
        "disk_mib": {
            "tiles": _du_mib(work / "tiles"),
            "stacks": sum(_du_mib(p) for p in (work / "run" / "parts").rglob("stack.zarr")),
            "predictions": sum(
                _du_mib(p) for p in (work / "run" / "parts").rglob("predictions.zarr")
            ),
            "catalog": _du_mib(work / "run" / "catalog"),
        },
    }


def _child(*args: str) -> dict:
    from benchmarks import child_json

    return child_json(__file__, *args)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000, 3_000_000])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--partition-rows", type=int, default=25_000)
    ap.add_argument("--make", type=int, help=argparse.SUPPRESS)  # a child: write inputs
    ap.add_argument("--run", type=int, help=argparse.SUPPRESS)  # a child: run the survey
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args()
    root = args.workdir or Path(tempfile.mkdtemp(prefix="catbuilder-survey-"))
    if args.make or args.run:
        n = args.make or args.run
        work = root / f"n{n}"
        if args.make:
            shutil.rmtree(work, ignore_errors=True)
            work.mkdir(parents=True)
            print(json.dumps(make(n, work)))
        else:
            print(json.dumps(run(n, work, args.workers, args.partition_rows)))
        return 0
    rows = []
    for n in args.sizes:
        made = _child("--make", str(n), "--workdir", str(root))
        row = _child("--run", str(n), "--workers", str(args.workers), "--workdir", str(root),
                     "--partition-rows", str(args.partition_rows))  # fmt: skip
        row["inputs_seconds"] = made["seconds"]
        rows.append(row)
        shutil.rmtree(root / f"n{n}", ignore_errors=True)
        print(f"{n:>9,} objects done", file=sys.stderr, flush=True)
    if args.workdir is None:
        shutil.rmtree(root, ignore_errors=True)

    print(f"\nrun_survey, {args.workers} workers of one core; 16 px, g r i, small CNN, "
          f"partitions of <= {args.partition_rows:,}")  # fmt: skip
    print(f"{'objects':>10}{'partitions':>11}{'seconds':>9}{'ms/object':>11}"
          f"{'driver MiB':>11}{'ratio':>7}{'worker MiB':>11}{'ratio':>7}"
          f"{'largest':>9}")  # fmt: skip
    base = rows[0]
    for r in rows:
        print(
            f"{r['n']:>10,}{r['partitions']:>11}{r['seconds']:>9.0f}"
            f"{1000 * r['seconds'] / r['n']:>11.3f}{r['peak_driver_mib']:>11.0f}"
            f"{r['peak_driver_mib'] / base['peak_driver_mib']:>7.2f}"
            f"{r['peak_worker_mib']:>11.0f}"
            f"{r['peak_worker_mib'] / base['peak_worker_mib']:>7.2f}{r['largest']:>9,}"
        )
    print("largest: the objects of the largest partition, which a worker holds at once")
    if len(rows) > 1:
        print("\nmarginal cost per object between sizes (ms; fixed costs cancel)")
        first = None
        for a, b in itertools.pairwise(rows):
            per = 1000 * (b["seconds"] - a["seconds"]) / (b["n"] - a["n"])
            first = first or per
            span = f"{a['n']:,} -> {b['n']:,}"
            print(f"{span:>26}{per:>9.4f}{per / first:>7.2f}")
    print("\ndisk use (MiB)")
    print(f"{'objects':>10}{'tiles':>9}{'stacks':>9}{'preds':>9}{'catalog':>9}")
    for r in rows:
        d = r["disk_mib"]
        print(f"{r['n']:>10,}{d['tiles']:>9.0f}{d['stacks']:>9.0f}{d['predictions']:>9.0f}"
              f"{d['catalog']:>9.1f}")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
