"""Can the CPUs keep a GPU running Xception fed? Preprocessing per core, at 299 px.

    python benchmarks/scripts/preprocess_rate.py [--objects 2048]

In one process on one core (numpy/BLAS and TensorFlow with one thread each),
for 64 px g, r, i cutouts in a Zarr stack:

* read: batches of 256 cutouts from the stack;
* stretch: bands -> RGB, asinh stretch, clip, at 64 px (no resize);
* stretch + resize to 299 px on the CPU (catbuilder's default path);
* resize to 299 px as tensor ops (``keras.resize-in-model``: the model's first
  op, which on a GPU runs there), timed here on the CPU for comparison.

Then the cores one GPU needs: the published Keras Applications figure for
Xception on an NVIDIA A100 (8.1 ms per inference step of 32 images, i.e.
~3,950 images/s; https://keras.io/api/applications/) over the per-core rate of
read + preprocess, for both paths.
"""

from __future__ import annotations

import os

os.environ["OMP_NUM_THREADS"] = "1"  # numpy's BLAS: one thread, as on a bound worker
os.environ["OPENBLAS_NUM_THREADS"] = "1"
os.environ.setdefault("TF_NUM_INTRAOP_THREADS", "1")
os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

GPU_IMAGES_PER_S = 32 / 8.1e-3  # Keras Applications: Xception, A100, batch 32


def rate(fn, n: int, repeats: int) -> float:
    """Objects/s of ``fn()`` (which handles ``n`` objects), best of ``repeats``."""
    best = 0.0
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = max(best, n / (time.perf_counter() - t))
    return best


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--objects", type=int, default=2048)
    ap.add_argument("--size", type=int, default=299)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    from benchmarks import positions, write_tiles
    from catbuilder.runtime.affinity import set_affinity
    from catbuilder.stack import build_stack
    from catbuilder.stack.preprocess import interpolation_matrix, to_rgb

    set_affinity({min(os.sched_getaffinity(0))})  # one core, all threads
    work = Path(tempfile.mkdtemp(prefix="catbuilder-prep-"))
    try:
        write_tiles(work / "tiles", n_side=2, npix=1024)
        n = args.objects
        stack = build_stack(
            positions(n, n_side=2, npix=1024), work / "tiles", work / "s.zarr", size=64,
            cluster="sync", progress=False,
        )  # fmt: skip
        bands = list(stack.bands)
        zp = stack.objects()[[f"magzero_{b}" for b in bands]].to_numpy()
        pixels = stack.load()

        def read():
            for s in range(0, n, 256):
                stack.isel(np.arange(s, min(n, s + 256))).load()

        def prep(size):
            def run():
                for s in range(0, n, 256):
                    to_rgb(pixels[s : s + 256], bands, magzero=zp[s : s + 256], size=size)

            return run

        from catbuilder_keras.tf import tf

        w = tf.constant(interpolation_matrix(64, args.size))
        resize = tf.function(lambda x: tf.einsum("hi,nijc,wj->nhwc", w, x, w))
        small = to_rgb(pixels[:256], bands, magzero=zp[:256])
        resize(small)  # trace

        def tensor_resize():
            for _ in range(0, n, 256):
                resize(small).numpy()

        r = {
            "read": rate(read, n, args.repeats),
            "stretch 64": rate(prep(None), n, args.repeats),
            f"stretch+resize {args.size}": rate(prep(args.size), n, args.repeats),
            "tensor resize": rate(tensor_resize, n, args.repeats),
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)

    def combined(*rates):
        return 1 / sum(1 / x for x in rates)

    cpu_path = combined(r["read"], r[f"stretch+resize {args.size}"])
    gpu_path = combined(r["read"], r["stretch 64"])
    print(f"\nper core, objects/s (64 px g, r, i cutouts -> {args.size} px RGB)")
    for k, v in r.items():
        print(f"  {k:<26}{v:>10,.0f}")
    print(f"  {'read + preprocess (CPU)':<26}{cpu_path:>10,.0f}")
    print(f"  {'read + stretch (resize in model)':<26}{gpu_path:>10,.0f}")
    print(
        f"\none A100 runs Xception at ~{GPU_IMAGES_PER_S:,.0f} images/s (Keras Applications): "
        f"it needs {GPU_IMAGES_PER_S / cpu_path:.1f} of these cores with the CPU resize, "
        f"{GPU_IMAGES_PER_S / gpu_path:.1f} with keras.resize-in-model (the resize as tensor "
        f"ops: {r['tensor resize']:,.0f}/s on one core here; on the GPU a small part of the "
        "forward pass)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
