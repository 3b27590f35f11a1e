"""Inference throughput: Zarr stack to catalog on a LocalCluster, against a bare predict."""

import shutil
import time
from pathlib import Path

from . import QUICK, fitted_model, model_inputs, positions, write_tiles


def _bare_predict_rate(stack_path: str, model_path: str) -> float:
    """Objects/s of ``model.predict`` on the whole stack, preprocessed in memory."""
    from catbuilder.models import load_model
    from catbuilder.stack import open_stack

    est = load_model(model_path)
    X = model_inputs(open_stack(stack_path), 64)
    est.model_.predict(X[:64], batch_size=64, verbose=0)
    t = time.perf_counter()
    est.model_.predict(X, batch_size=64, verbose=0)
    return len(X) / (time.perf_counter() - t)


class InferenceThroughput:
    """Objects/s of ``predict`` + ``build_catalog`` for the small CNN at 64 px.

    ``track_ratio_to_bare_predict`` is the figure of merit (>= 0.9 on
    one worker): the pipeline against ``model.predict`` on the same
    preprocessed arrays held in memory, measured in the same process run.
    """

    params = [[1] if QUICK else [1, 2]]
    param_names = ["workers"]
    timeout = 600
    number = 1
    repeat = 1

    def setup_cache(self):
        from catbuilder.stack import build_stack

        root = Path.cwd() / "inference"  # asv runs setup_cache in a directory it removes
        write_tiles(root / "tiles", n_side=2, npix=1024)
        build_stack(
            positions(4096, n_side=2, npix=1024),
            root / "tiles",
            root / "stack.zarr",
            size=64,
            progress=False,
        )
        fitted_model("keras.small-cnn", 64, root)
        return str(root)

    def setup(self, root, workers):
        from distributed import Client

        from catbuilder.infer import predict
        from catbuilder.runtime import make_cluster
        from catbuilder.stack import open_stack

        self.root = Path(root)
        self.stack = open_stack(self.root / "stack.zarr")
        self.model = self.root / "keras.small-cnn.model"
        self.cluster = make_cluster("local", workers, threads_per_worker=1)
        self.client = Client(self.cluster)
        self.client.wait_for_workers(workers)
        predict(
            self.stack.isel(slice(0, 64 * workers)),
            self.model,
            cluster=self.client,
            output=self.root / f"warm{workers}.zarr",
            overwrite=True,
            progress=False,
        )

    def teardown(self, root, workers):
        self.client.close()
        self.cluster.close()

    def _pipeline(self, workers) -> float:
        from catbuilder.catalog import build_catalog
        from catbuilder.infer import predict

        out = self.root / f"pred{workers}.zarr"
        shutil.rmtree(out, ignore_errors=True)
        t = time.perf_counter()
        preds = predict(self.stack, self.model, cluster=self.client, output=out, progress=False)
        cat = build_catalog(preds, self.stack)
        rate = len(cat) / (time.perf_counter() - t)
        return rate

    def track_objects_per_second(self, root, workers):
        return self._pipeline(workers)

    track_objects_per_second.unit = "objects/s"

    def track_ratio_to_bare_predict(self, root, workers):
        # the baseline runs on a worker: the same TensorFlow threads as the
        # pipeline, whatever the thread settings of this (asv) process; the
        # worker imports this suite from where asv found it
        suite = str(Path(__file__).resolve().parents[1])
        self.client.run(exec, f"import sys; sys.path.insert(0, {suite!r})")
        bare = self.client.submit(
            _bare_predict_rate, str(self.root / "stack.zarr"), str(self.model), pure=False
        ).result()
        return self._pipeline(workers) / bare

    track_ratio_to_bare_predict.unit = "ratio"


class InferenceScaling:
    """What a second core adds: 2 workers over 1 worker bound to one core
    (``infer.bind-cores``), both measured in this benchmark (target >= 1.8)."""

    timeout = 900
    number = 1
    repeat = 1

    def setup_cache(self):
        return InferenceThroughput.setup_cache(self)

    def track_two_workers_over_one(self, root):
        from distributed import Client

        from catbuilder import config
        from catbuilder.runtime import make_cluster

        rates = {}
        for workers in (1, 2):
            bench = InferenceThroughput()
            with (
                config.set({"infer.bind-cores": True}),
                make_cluster("local", workers, threads_per_worker=1) as cluster,
                Client(cluster) as client,
            ):
                client.wait_for_workers(workers)
                bench.cluster, bench.client = cluster, client
                bench.root = Path(root)
                bench.model = bench.root / "keras.small-cnn.model"
                from catbuilder.stack import open_stack

                bench.stack = open_stack(bench.root / "stack.zarr")
                bench._pipeline(workers)  # warm: the model loaded on every worker
                rates[workers] = bench._pipeline(workers)
        return rates[2] / rates[1]

    track_two_workers_over_one.unit = "ratio"
