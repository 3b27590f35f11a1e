"""Classify every object of a 20k-object mock survey, end to end, and resume a killed run.

    python examples/classify_survey.py [WORKDIR] [--n-objects 20000] [--workers 2]

The paper's inference step (classifying unlabelled DES galaxies) at survey
scale on a laptop:

1. a ``des-like`` GalSim mock survey (tiles in g, r, i; source table);
2. Galaxy-Zoo-like high-probability labels carried onto it by crossmatch;
3. 64 px cutouts of *every* source into one chunked Zarr stack;
4. the small CNN trained on the labelled training split (or ``--model-dir``);
5. ``catbuilder.predict`` over the whole stack on a Dask LocalCluster, then
   the catalog (Parquet), checked to hold exactly one row per source;
6. the same prediction again, with one worker killed (SIGKILL) midway and
   the run started again: the resumed catalog must equal the first one.

Prints the figures; every step reuses what an earlier run left in WORKDIR.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import threading
import time
from pathlib import Path

import numpy as np


def kill_a_worker_midway(client, out: Path) -> threading.Thread:
    """Kill one worker once some, not all, chunks of ``out`` are written."""
    import zarr

    pids = client.run(os.getpid)
    victim = sorted(pids)[0]

    def watch():
        while True:
            try:
                w = zarr.open_group(str(out), mode="r", use_consolidated=False)["written"][:]
            except Exception:
                w = np.zeros(1, bool)
            if w.mean() > 0.3 and not w.all():
                os.kill(pids[victim], signal.SIGKILL)
                print(f"\n  killed worker {victim} with {w.mean():.0%} of objects written")
                return
            time.sleep(0.02)

    t = threading.Thread(target=watch, daemon=True)
    t.start()
    return t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("workdir", nargs="?", type=Path, default=Path("catbuilder-classify"))
    ap.add_argument("--n-objects", type=int, default=20000)
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--model-dir", type=Path, help="a saved model to use instead of training one")
    args = ap.parse_args()

    import pandas as pd
    from distributed import Client

    from catbuilder.catalog import build_catalog, write_catalog
    from catbuilder.evaluation import evaluate
    from catbuilder.infer import predict
    from catbuilder.runtime import make_cluster
    from catbuilder.sky import label_sources
    from catbuilder.stack import build_stack
    from catbuilder.synth import make_survey
    from catbuilder.training import train

    work = args.workdir
    times = {}
    t = time.perf_counter()
    survey = make_survey(
        work / "survey", presets="des-like", n_objects=args.n_objects, seed=args.seed, reuse=True
    )
    des = survey["des-like"]
    times["survey"] = time.perf_counter() - t

    t = time.perf_counter()
    stack_path = work / "des.zarr"
    table = label_sources(survey.read_labels(), des.sources, sample="hp", keep_unlabelled=True)
    stack = build_stack(table, des.directory / "tiles", stack_path, size=64)
    times["cutouts"] = time.perf_counter() - t

    t = time.perf_counter()
    model = args.model_dir
    if model is None:
        model = work / "small-cnn.model"
        if not (model / "catbuilder-model.json").exists():
            res = train(
                stack,
                "keras.small-cnn",
                checkpoint_dir=work / "small-cnn.checkpoints",
                params={
                    "batch_size": 32,
                    "stages": "whole-network",
                    "epochs": args.epochs,
                },
            )
            res.model.save(model)
    times["training"] = time.perf_counter() - t

    sources = pd.read_parquet(des.sources)
    with (
        make_cluster("local", args.workers, threads_per_worker=1) as cluster,
        Client(cluster) as client,
    ):
        client.wait_for_workers(args.workers)
        t = time.perf_counter()
        preds = predict(
            stack, model, output=work / "des.predictions.zarr", cluster=client, overwrite=True
        )
        catalog = build_catalog(preds, stack)
        path = write_catalog(catalog, work / "catalog.parquet")
        times["inference"] = time.perf_counter() - t

        print("\nresumed run: a worker is killed midway, then predict is called again")
        out = work / "resumed.predictions.zarr"
        shutil.rmtree(out, ignore_errors=True)
        watcher = kill_a_worker_midway(client, out)
        try:
            predict(stack, model, output=out, cluster=client)
        except Exception as err:  # the run may end with the dead worker's error
            print(f"  first attempt ended: {type(err).__name__}: {str(err)[:120]}")
        watcher.join(timeout=1)
        client.wait_for_workers(args.workers, timeout=120)
        resumed = build_catalog(predict(stack, model, output=out, cluster=client), stack)

    one_row = (
        len(catalog) == len(sources)
        and catalog["objid"].is_unique
        and set(catalog["objid"]) == set(sources["objid"])
    )
    same = catalog.equals(resumed)
    labelled = catalog["label"].notna()
    ev = evaluate(catalog[catalog["split"] == "test"], by=None)
    acc = ev.table().query("`class` == 'all'")["accuracy"].iloc[0]
    print(f"\nsources in the survey        {len(sources)}")
    print(f"catalog rows                 {len(catalog)}  (one per source: {one_row})")
    print(f"  labelled / unlabelled      {int(labelled.sum())} / {int((~labelled).sum())}")
    print(
        "  predicted                  "
        + ", ".join(f"{k} {v}" for k, v in catalog["predicted"].value_counts().items())
    )
    print(f"test-split accuracy          {acc:.3f}")
    print(f"resumed catalog identical    {same}")
    rate = len(catalog) / times["inference"]
    print(
        f"inference                    {times['inference']:.1f} s on {args.workers} workers "
        f"({rate:.0f} objects/s, Zarr to catalog)"
    )
    print(
        "times                        "
        + ", ".join(f"{k} {v / 60:.1f} min" for k, v in times.items())
    )
    print(f"catalog                      {path}")


if __name__ == "__main__":
    main()
