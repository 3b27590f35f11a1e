"""End to end at 10^4, 10^5 and 10^6 objects: is the cost per object flat?

    python benchmarks/scripts/scale_end_to_end.py [--sizes 10000 100000 1000000]

For each size, in a fresh process (so that peak memory is that size's own):
tiles from a fast synthetic generator (``benchmarks.write_survey``: exponential
discs and point sources on noise, 10^4 objects per 2048^2 tile, g, r, i) ->
``TileIndex`` -> cutouts (32 px) -> ``predict`` with the small CNN (32 px) ->
``build_catalog`` -> Parquet and HATS. Cutouts and inference run on one
LocalCluster of ``--workers`` workers (one thread each).

Prints objects/s per stage, the cost per object (ms of wall time, tiles
excluded) and its ratio to the smallest size (target: within 15%), peak
memory (VmHWM) of the driving process and of each worker, and the disk used
by each product.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import argparse
import itertools
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

STAGES = ("index", "cutouts", "predict", "catalog", "parquet", "hats")


def _du_mib(path: Path) -> float:
    if path.is_file():
        return path.stat().st_size / 2**20
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20


def one_size(n: int, work: Path, workers: int) -> dict:
    """Run every stage for ``n`` objects in this process; the figures."""
    from distributed import Client

    from benchmarks import fitted_model, peak_rss_mib, write_survey
    from catbuilder.catalog import build_catalog, write_catalog
    from catbuilder.infer import predict
    from catbuilder.runtime import make_cluster
    from catbuilder.sky import TileIndex
    from catbuilder.stack import build_stack

    out: dict = {"n": n, "seconds": {}, "peak_worker_mib": {}}
    t = time.perf_counter()
    sources = write_survey(work / "tiles", n)
    out["tiles_seconds"] = time.perf_counter() - t
    model = fitted_model("keras.small-cnn", 32, work, cutout=32)
    with (
        make_cluster("local", workers, threads_per_worker=1) as cluster,
        Client(cluster) as client,
    ):
        client.wait_for_workers(workers)
        sec = out["seconds"]
        t = time.perf_counter()
        index = TileIndex.build(work / "tiles")
        index.to_parquet(work / "index.parquet")
        sec["index"] = time.perf_counter() - t
        t = time.perf_counter()
        stack = build_stack(
            sources, index, work / "stack.zarr", size=32, cluster=client, progress=False
        )
        sec["cutouts"] = time.perf_counter() - t
        out["peak_worker_mib"]["cutouts"] = max(client.run(peak_rss_mib).values())
        t = time.perf_counter()
        preds = predict(stack, model, output=work / "preds.zarr", cluster=client, progress=False)
        sec["predict"] = time.perf_counter() - t
        out["peak_worker_mib"]["predict"] = max(client.run(peak_rss_mib).values())
    t = time.perf_counter()
    catalog = build_catalog(preds, stack)
    sec["catalog"] = time.perf_counter() - t
    assert len(catalog) == n and catalog["predicted"].notna().sum() > 0.9 * n
    t = time.perf_counter()
    write_catalog(catalog, work / "catalog.parquet")
    sec["parquet"] = time.perf_counter() - t
    t = time.perf_counter()
    write_catalog(catalog, work / "catalog-hats", format="hats")
    sec["hats"] = time.perf_counter() - t
    out["peak_driver_mib"] = peak_rss_mib()
    out["disk_mib"] = {
        name: _du_mib(work / name)
        for name in ("tiles", "stack.zarr", "preds.zarr", "catalog.parquet", "catalog-hats")
    }
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--one", type=int, help=argparse.SUPPRESS)  # a child: one size
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args()
    root = args.workdir or Path(tempfile.mkdtemp(prefix="catbuilder-scale-"))
    if args.one:
        work = root / f"n{args.one}"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        try:
            print(json.dumps(one_size(args.one, work, args.workers)))
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return 0
    rows = []
    for n in args.sizes:
        cmd = [sys.executable, __file__, "--one", str(n), "--workers", str(args.workers)]
        res = subprocess.run(
            cmd + ["--workdir", str(root)], capture_output=True, text=True, check=False
        )
        if res.returncode:
            sys.stderr.write(res.stderr[-3000:])
            return res.returncode
        rows.append(json.loads(res.stdout.strip().splitlines()[-1]))
        print(f"{n:>9,} objects done", file=sys.stderr, flush=True)
    if args.workdir is None:
        shutil.rmtree(root, ignore_errors=True)

    print(f"\nobjects/s per stage ({args.workers} workers, one core each; 32 px, g r i)")
    print(
        f"{'objects':>10}" + "".join(f"{s:>10}" for s in STAGES) + f"{'ms/object':>11}{'ratio':>7}"
    )
    base = None
    for r in rows:
        total = sum(r["seconds"].values())
        cost = 1000 * total / r["n"]
        base = base or cost
        rates = "".join(f"{r['n'] / r['seconds'][s]:>10,.0f}" for s in STAGES)
        print(f"{r['n']:>10,}{rates}{cost:>11.3f}{cost / base:>7.2f}")
    if len(rows) > 1:  # fixed costs (start-up, the model's first load) fall out
        print(
            "\nmarginal cost per object between sizes (ms; fixed costs cancel), by stage, and "
            "its ratio to the first"
        )
        head = "".join(f"{s:>10}" for s in STAGES)
        print(f"{'objects':>22}{head}{'total':>9}{'ratio':>7}")
        first = None
        for a, b in itertools.pairwise(rows):
            dn = b["n"] - a["n"]
            per = {s: 1000 * (b["seconds"][s] - a["seconds"][s]) / dn for s in STAGES}
            total = sum(per.values())
            first = first or total
            cells = "".join(f"{per[s]:>10.4f}" for s in STAGES)
            span = f"{a['n']:,} -> {b['n']:,}"
            print(f"{span:>22}{cells}{total:>9.4f}{total / first:>7.2f}")
    print("\npeak memory (MiB, VmHWM) and disk use (MiB)")
    print(
        f"{'objects':>10}{'driver':>9}{'worker cut':>12}{'worker pred':>13}"
        f"{'tiles':>10}{'stack':>10}{'preds':>8}{'parquet':>9}{'hats':>8}{'tiles s':>9}"
    )
    for r in rows:
        d = r["disk_mib"]
        print(
            f"{r['n']:>10,}{r['peak_driver_mib']:>9.0f}{r['peak_worker_mib']['cutouts']:>12.0f}"
            f"{r['peak_worker_mib']['predict']:>13.0f}{d['tiles']:>10.0f}{d['stack.zarr']:>10.0f}"
            f"{d['preds.zarr']:>8.0f}{d['catalog.parquet']:>9.1f}{d['catalog-hats']:>8.1f}"
            f"{r['tiles_seconds']:>9.1f}"
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
