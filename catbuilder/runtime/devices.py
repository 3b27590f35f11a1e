"""One GPU per worker process on a node with several.

On a multi-GPU node every Dask worker (and so every Horovod rank, one per
worker) would otherwise see all the GPUs and use the first. Each worker is
given its own before it imports a framework: its slot on the node (the
local Horovod rank, or the worker's index on its host) picks one of the GPUs
the node shows it, through ``CUDA_VISIBLE_DEVICES``. Frameworks read that
variable when they start; a plugin's ``worker_env`` adds what else they need
(TensorFlow: memory growth).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from typing import Any

from distributed.diagnostics.plugin import WorkerPlugin

__all__ = ["PinGPU", "gpu_for_slot", "pin_gpus", "visible_gpus"]


def visible_gpus(environ: dict[str, str] | None = None) -> list[str]:
    """The GPUs this process may use: ``CUDA_VISIBLE_DEVICES`` when it is set,
    else what ``nvidia-smi -L`` lists (none without it)."""
    env = os.environ if environ is None else environ
    given = env.get("CUDA_VISIBLE_DEVICES")
    if given is not None:
        return [g.strip() for g in given.split(",") if g.strip() and g.strip() != "-1"]
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return []
    try:
        out = subprocess.run([exe, "-L"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [str(i) for i, line in enumerate(out.splitlines()) if line.startswith("GPU ")]


def gpu_for_slot(slot: int, gpus: list[str]) -> str | None:
    """The GPU of the process in ``slot`` on its node (None when there are < 2)."""
    return gpus[slot % len(gpus)] if len(gpus) > 1 else None


def _slot(name: Any) -> int:
    """A worker's index on its host: the number ending its name (LocalCluster
    names 0, 1, ...; a jobqueue job's processes end in -0, -1, ...)."""
    m = re.search(r"(\d+)$", str(name))
    return int(m.group(1)) if m else 0


class PinGPU(WorkerPlugin):
    """Give each worker its own GPU (``CUDA_VISIBLE_DEVICES``), when it sees several."""

    name = "catbuilder-pin-gpu"

    def setup(self, worker: Any) -> None:
        local_rank = os.environ.get("HOROVOD_LOCAL_RANK")
        slot = int(local_rank) if local_rank is not None else _slot(worker.name)
        gpu = gpu_for_slot(slot, visible_gpus())
        if gpu is not None:
            os.environ["CUDA_VISIBLE_DEVICES"] = gpu


def pin_gpus(client: Any) -> None:
    """Register :class:`PinGPU` on ``client``'s workers (idempotent, by name)."""
    client.register_plugin(PinGPU(), name=PinGPU.name)
