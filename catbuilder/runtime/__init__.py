"""Where work runs: Dask clusters, connections, task execution and processes.

The lowest floor that knows Dask. It resolves the ``cluster=``/``workers=``
arguments every step takes (a local scheduler, ``"local"``, a dask-jobqueue
name, a scheduler address, a ``Client`` or ``Cluster``), runs tasks there,
and keeps worker processes tied to their parent. It reads plugins' metadata
(their workers' environment) from the registry and imports no plugin.
"""

from __future__ import annotations

from catbuilder.runtime.clusters import (
    JOBQUEUE_CLASSES,
    LOCAL_SCHEDULERS,
    active_client,
    connect,
    is_address,
    job_script,
    make_cluster,
    security,
    worker_env,
    workers_now,
)
from catbuilder.runtime.execute import check_cluster, compute, run_windowed
from catbuilder.runtime.processes import (
    check_not_bootstrapping,
    end_with_parent,
    release_freed_memory,
)

__all__ = [
    "JOBQUEUE_CLASSES",
    "LOCAL_SCHEDULERS",
    "active_client",
    "check_cluster",
    "check_not_bootstrapping",
    "compute",
    "connect",
    "end_with_parent",
    "is_address",
    "job_script",
    "make_cluster",
    "release_freed_memory",
    "run_windowed",
    "security",
    "worker_env",
    "workers_now",
]
