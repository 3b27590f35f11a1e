"""A survey's driver: its memory does not grow with the number of sources."""

import json
import subprocess
import sys
from pathlib import Path

from . import QUICK, fitted_model, write_header_survey

_TILES = 400
_SIZES = (200_000, 800_000) if QUICK else (200_000, 4_000_000)

#: run in a fresh process, so that its peak memory is the driver's own
_CHILD = """
import json, sys
from catbuilder.survey import run_survey
root = sys.argv[1]
plan = run_survey(root + "/sources.parquet", root + "/index.parquet",
                  sys.argv[2], root + "/run", size=32, dry_run=True, progress=False)
with open("/proc/self/status") as f:
    peak = next(int(line.split()[1]) / 1024 for line in f if line.startswith("VmHWM:"))
print(json.dumps({"peak_mib": peak, "n": plan.n_objects, "tasks": len(plan.tasks)}))
"""


class SurveyDriver:
    """Partitioning and planning a survey (``run_survey(dry_run=True)``) at two sizes,
    each in a fresh process: the driver's peak memory, and its ratio between them
    (the bounded driver: about 1; target <= 1.3)."""

    timeout = 600
    number = 1
    repeat = 1

    def setup_cache(self):
        root = Path.cwd() / "survey"  # asv runs setup_cache in a directory it removes
        for n in _SIZES:
            write_header_survey(root / str(n), _TILES, n)
        fitted_model("keras.small-cnn", 32, root, cutout=32)
        return str(root)

    def _peak(self, root: str, n: int) -> float:
        import shutil

        shutil.rmtree(Path(root) / str(n) / "run", ignore_errors=True)
        model = str(Path(root) / "keras.small-cnn.model")
        res = subprocess.run([sys.executable, "-c", _CHILD, str(Path(root) / str(n)), model],
                             capture_output=True, text=True, check=True)  # fmt: skip
        out = json.loads(res.stdout.strip().splitlines()[-1])
        assert out["n"] == n
        return out["peak_mib"]

    def track_driver_peak_mib_largest(self, root):
        return self._peak(root, _SIZES[-1])

    track_driver_peak_mib_largest.unit = "MiB"

    def track_driver_memory_ratio(self, root):
        """Peak memory at the largest size over that at the smallest."""
        return self._peak(root, _SIZES[-1]) / self._peak(root, _SIZES[0])

    track_driver_memory_ratio.unit = "x"
