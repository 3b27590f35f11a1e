"""Data-parallel training throughput: 1 rank against 2 ranks, measured in one run.

    python benchmarks/scripts/training_scaling.py [--epochs 4] [--objects 2048]

Trains ``keras.small-cnn`` (64 px, batch 16 per rank as in the paper) with
Horovod ranks on a Dask LocalCluster of one-thread workers: first 1 rank,
then 2, on the same stack. Throughput is samples per second over the epochs
after the first (which includes start-up). Prints the scaling efficiency,
throughput(2) / (2 x throughput(1)), beside the paper's Table III.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from benchmarks import positions, write_tiles

PAPER = [  # Khan et al. (2019), Table III: K80 GPUs, Xception, three stages
    (1, "4h 44m"),
    (2, "1h 47m"),
    (4, "1h 12m"),
    (8, "42m"),
    (16, "36m"),
    (32, "14m"),
    (64, "8m"),
]


def make_stack(work: Path, n: int):
    from catbuilder.stack import build_stack

    write_tiles(work / "tiles", n_side=2, npix=1024)
    pos = positions(n, n_side=2, npix=1024)
    rng = np.random.default_rng(0)
    pos["label"] = rng.choice(["elliptical", "spiral"], n)
    pos["split"] = "train"
    return build_stack(
        pos, work / "tiles", work / "train.zarr", size=64, chunk_objects=64, progress=False
    )


def throughput(stack, ranks: int, epochs: int, work: Path) -> float:
    from distributed import Client

    from catbuilder.runtime import make_cluster
    from catbuilder.training import train

    with make_cluster("local", ranks, threads_per_worker=1) as cluster, Client(cluster) as c:
        c.wait_for_workers(ranks)
        res = train(
            stack,
            "keras.small-cnn",
            cluster=c,
            workers=ranks,
            validation=None,
            checkpoint_dir=work / f"ck{ranks}",
            resume=False,
            params={
                "batch_size": 16,
                "augment": True,
                "early_stopping_patience": 100,
                "stages": "whole-network",
                "epochs": epochs,
            },
        )
    h = res.history
    steady = h.iloc[1:] if len(h) > 1 else h
    return float(steady["samples_per_s"].mean())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--objects", type=int, default=2048)
    ap.add_argument("--workdir", type=Path, default=None)
    args = ap.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="catbuilder-scaling-"))
    from catbuilder import config

    with config.set({"train.warmup-epochs": 0}):
        stack = make_stack(work, args.objects)
        one = throughput(stack, 1, args.epochs, work)
        two = throughput(stack, 2, args.epochs, work)
    eff = two / (2 * one)
    print(f"small CNN, 64 px, batch 16 per rank, {args.objects} objects, one thread per rank;")
    print("each rank bound to one core (distributed.bind-cores), data loading included")
    print(f"  1 rank : {one:8.1f} samples/s")
    print(f"  2 ranks: {two:8.1f} samples/s")
    print(f"  scaling efficiency: {eff:.1%} of 2x (target >= 85%)")
    print("\nKhan et al. (2019), Table III (Xception, three stages, K80 GPUs):")
    t1 = 4 * 60 + 44
    for gpus, total in PAPER:
        h, m = (int(x[:-1]) for x in total.split()) if " " in total else (0, int(total[:-1]))
        minutes = 60 * h + m
        print(
            f"  {gpus:>3} GPUs: {total:>7}   speed-up {t1 / minutes:5.1f}x, "
            f"efficiency {t1 / minutes / gpus:6.1%}"
        )
    if args.workdir is None:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if eff >= 0.85 else 1


if __name__ == "__main__":
    sys.exit(main())
