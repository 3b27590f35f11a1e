"""Two Horovod ranks with gradients summed over several batches: the same accuracy?

Makes a des-like mock survey, trains the default small-CNN recipe on its
high-probability Galaxy Zoo sample with 2 Horovod ranks on a Dask
LocalCluster, once per seed with ``train.backward-passes-per-step`` 1 (the
paper's recipe: an allreduce and an update every batch of 16 per rank) and
once with ``--passes`` (one allreduce and update per that many batches),
and scores each model against the mock's true classes on every des-like
galaxy it did not train on. Prints each run and each setting's mean and
spread over the seeds, and the per-seed difference.

    python examples/backward_passes.py catbuilder-passes --passes 4 --seeds 3
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("workdir", nargs="?", type=Path, default=Path("catbuilder-passes"))
    ap.add_argument("--n-objects", type=int, default=10000)
    ap.add_argument("--seed", type=int, default=1, help="mock survey seed")
    ap.add_argument("--seeds", type=int, default=3, help="training seeds per setting")
    ap.add_argument("--passes", type=int, default=4, help="backward passes per step to compare")
    args = ap.parse_args()

    from distributed import Client

    from catbuilder import build_catalog, config, predict, train
    from catbuilder.runtime import make_cluster
    from catbuilder.sky import label_sources
    from catbuilder.stack import build_stack, open_stack
    from catbuilder.synth import make_survey

    work = args.workdir
    survey_dir = work / "survey"
    survey = make_survey(
        survey_dir, presets="des-like", n_objects=args.n_objects, seed=args.seed, reuse=True
    )
    tiles = survey["des-like"].directory / "tiles"
    sources = survey["des-like"].read_sources()
    galaxies = sources[sources["cls"] != "star"]
    if not (work / "hp.zarr").exists():
        table = label_sources(survey.read_labels(), survey["des-like"].sources, sample="hp")
        build_stack(table, tiles, work / "hp.zarr", size=64)
    if not (work / "galaxies.zarr").exists():
        build_stack(galaxies, tiles, work / "galaxies.zarr", size=64)
    hp, everyone = open_stack(work / "hp.zarr"), open_stack(work / "galaxies.zarr")
    objs = hp.objects()
    used = set(objs.loc[objs["split"].isin(["train", "validation"]), "objid"])
    truth = galaxies.set_index("objid")["cls"]
    print(f"training objects: {int((objs['split'] == 'train').sum())} (hp), 2 ranks")

    rows = []
    with make_cluster("local", 2, threads_per_worker=1) as cluster, Client(cluster) as client:
        client.wait_for_workers(2)
        for seed in range(args.seeds):
            for passes in (1, args.passes):
                tag = f"passes{passes}-seed{seed}"
                t0 = time.perf_counter()
                with config.set({"train.backward-passes-per-step": passes}):
                    res = train(hp, "keras.small-cnn", params={"seed": seed}, cluster=client,
                                workers=2, checkpoint_dir=work / f"{tag}.checkpoints",
                                output=work / f"{tag}.model")  # fmt: skip
                minutes = (time.perf_counter() - t0) / 60
                preds = predict(everyone, work / f"{tag}.model", cluster=client,
                                output=work / f"{tag}.zarr", progress=False)  # fmt: skip
                cat = build_catalog(preds)
                cat = cat[~cat["objid"].isin(used) & cat["predicted"].notna()]
                right = cat["predicted"].to_numpy() == truth.loc[cat["objid"]].to_numpy()
                rows.append({"passes": passes, "seed": seed, "epochs": len(res.history),
                             "unseen galaxies": float(right.mean()), "n": len(cat),
                             "train minutes": minutes})  # fmt: skip
                print(", ".join(f"{k} {v:.4g}" for k, v in rows[-1].items()), flush=True)
    t = pd.DataFrame(rows)
    print(t.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    for passes, d in t.groupby("passes"):
        acc, mins = d["unseen galaxies"], d["train minutes"]
        print(f"backward passes {passes}: accuracy vs truth {acc.mean():.4f} +- {acc.std():.4f}, "
              f"{mins.mean():.1f} min to train")  # fmt: skip
    a, b = (t[t["passes"] == p].set_index("seed")["unseen galaxies"] for p in (1, args.passes))
    diff = b - a
    print(f"{args.passes} passes - 1, per seed: {np.round(diff.to_numpy(), 4)}; "
          f"mean {diff.mean():+.4f}")  # fmt: skip


if __name__ == "__main__":
    main()
