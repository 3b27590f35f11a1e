"""Data-parallel training throughput with Horovod ranks on a LocalCluster."""

from pathlib import Path

import numpy as np

from . import QUICK, positions, write_tiles


class TrainingThroughput:
    """One epoch of the small CNN on 1 and 2 ranks (one core each)."""

    params = [[1] if QUICK else [1, 2]]
    param_names = ["ranks"]
    timeout = 600
    number = 1
    repeat = 1

    def setup_cache(self):
        from catbuilder.stack import build_stack

        root = Path.cwd() / "training"  # asv runs setup_cache in a directory it removes
        write_tiles(root / "tiles", n_side=2, npix=1024)
        pos = positions(1024, n_side=2, npix=1024)
        pos["label"] = np.random.default_rng(0).choice(["elliptical", "spiral"], len(pos))
        pos["split"] = "train"
        build_stack(
            pos, root / "tiles", root / "train.zarr", size=64, chunk_objects=64, progress=False
        )
        return str(root)

    def setup(self, root, ranks):
        from distributed import Client

        from catbuilder.runtime import make_cluster

        self.cluster = make_cluster("local", ranks, threads_per_worker=1)
        self.client = Client(self.cluster)
        self.client.wait_for_workers(ranks)
        self.root = Path(root)

    def teardown(self, root, ranks):
        self.client.close()
        self.cluster.close()

    def track_samples_per_second(self, root, ranks):
        return _samples_per_second(self.root, self.client, ranks)

    track_samples_per_second.unit = "samples/s"


class TrainingScaling:
    """Scaling efficiency of 2 ranks over 1, both measured in this benchmark
    (the README's headline figure; Horovod publishes ~90%)."""

    timeout = 900
    number = 1
    repeat = 1

    def setup_cache(self):
        return TrainingThroughput.setup_cache(self)

    def track_scaling_efficiency(self, root):
        from distributed import Client

        from catbuilder.runtime import make_cluster

        rates = {}
        for ranks in (1, 2):
            with make_cluster("local", ranks, threads_per_worker=1) as cluster:
                with Client(cluster) as client:
                    client.wait_for_workers(ranks)
                    rates[ranks] = _samples_per_second(Path(root), client, ranks)
        return rates[2] / (2 * rates[1])

    track_scaling_efficiency.unit = "efficiency"


def _samples_per_second(root: Path, client, ranks: int) -> float:
    from catbuilder import config
    from catbuilder.training import train

    with config.set({"train.warmup-epochs": 0}):
        res = train(
            str(root / "train.zarr"),
            "keras.small-cnn",
            cluster=client,
            workers=ranks,
            validation=None,
            checkpoint_dir=None,
            resume=False,
            params={
                "batch_size": 16,
                "stages": "whole-network",
                "epochs": 3,
                "early_stopping_patience": 100,
            },
        )
    return float(res.history["samples_per_s"].iloc[1:].mean())
