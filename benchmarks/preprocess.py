"""Preprocessing on the fly: bands -> RGB, stretch, resize (catbuilder.stack.preprocess).

This runs for every object at train and infer time, on the workers' CPUs; at
299 px it is what has to keep a GPU fed.
"""

import numpy as np

from . import QUICK


class ToRGB:
    params = [[64] if QUICK else [64, 128, 299], ["asinh", "linear"]]
    param_names = ["size", "stretch"]

    def setup(self, size, stretch):
        rng = np.random.default_rng(0)
        self.images = rng.normal(10, 3, size=(256, 3, 64, 64)).astype(np.float32)
        self.magzero = np.full((256, 3), 30.0, dtype=np.float32)

    def time_to_rgb_256(self, size, stretch):
        from catbuilder.stack.preprocess import to_rgb

        to_rgb(self.images, ["g", "r", "i"], magzero=self.magzero, stretch=stretch, size=size)

    def track_objects_per_second(self, size, stretch):
        import time

        from catbuilder.stack.preprocess import to_rgb

        t0 = time.perf_counter()
        for _ in range(3):
            to_rgb(self.images, ["g", "r", "i"], magzero=self.magzero, stretch=stretch, size=size)
        return 3 * len(self.images) / (time.perf_counter() - t0)

    track_objects_per_second.unit = "objects/s"
