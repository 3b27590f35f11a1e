"""Sky crossmatch: one astropy call against declination strips on Dask."""

import numpy as np
import pandas as pd

from . import QUICK


class Crossmatch:
    params = [[100_000] if QUICK else [100_000, 1_000_000], [False, True]]
    param_names = ["n", "partitioned"]
    timeout = 300

    def setup(self, n, partitioned):
        rng = np.random.default_rng(0)
        ra, dec = rng.uniform(0, 10, n), rng.uniform(-5, 5, n)
        self.left = pd.DataFrame({"ra": ra, "dec": dec})
        j = rng.normal(0, 0.3 / 3600, (2, n))
        self.right = pd.DataFrame({"ra": ra + j[0], "dec": dec + j[1]})

    def time_crossmatch(self, n, partitioned):
        from catbuilder.sky import crossmatch

        crossmatch(self.left, self.right, 1.0, partitioned=partitioned, cluster="processes")

    def peakmem_crossmatch(self, n, partitioned):
        from catbuilder.sky import crossmatch

        crossmatch(self.left, self.right, 1.0, partitioned=partitioned, cluster="processes")
