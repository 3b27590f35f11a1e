"""Dask clusters from configuration: local, dask-jobqueue, or an existing one.

As in dask-jobqueue, every keyword defaults to None and falls back to the
configuration (``catbuilder.cluster.*``); the jobqueue classes also read
their own ``jobqueue.<name>.*`` configuration, so an allocation is described
once, in YAML::

    catbuilder:
      cluster:
        kind: slurm
        workers: 8
        jobqueue: {cores: 1, memory: 8GB, queue: gpu, walltime: "02:00:00"}
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from catbuilder import config

__all__ = ["JOBQUEUE_CLASSES", "connect", "make_cluster", "worker_env"]

JOBQUEUE_CLASSES = {
    "slurm": "SLURMCluster",
    "pbs": "PBSCluster",
    "lsf": "LSFCluster",
    "sge": "SGECluster",
    "htcondor": "HTCondorCluster",
    "oar": "OARCluster",
    "moab": "MoabCluster",
}


def worker_env(threads: int) -> dict[str, str]:
    """Environment for worker processes that use ``threads`` threads each.

    BLAS/OpenMP pools are sized here; each installed model plugin adds what
    its framework needs (:meth:`catbuilder.plugins.ModelPlugin.worker_env`),
    so the core knows no framework's variables.
    """
    from catbuilder.plugins import list_plugins

    t = str(max(1, int(threads)))
    env = {"OMP_NUM_THREADS": t}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a broken plugin is reported where it is used
        plugins = list_plugins()
    for plugin in plugins.values():
        env.update(plugin.worker_env(int(t)))
    return env


_PRE_SPAWN = "distributed.nanny.pre-spawn-environ"


def _forget_leaked_trim() -> None:
    """Drop dask's MALLOC_TRIM_THRESHOLD_ from this process's environment.

    A Nanny writes its pre-spawn variables into the *parent's* ``os.environ``
    before it spawns a worker, so after any default-configured cluster every
    later child inherits dask's value. Only dask's own value is removed; one
    the user set to something else stays.
    """
    import dask

    default = dask.config.get(f"{_PRE_SPAWN}.MALLOC_TRIM_THRESHOLD_", None)
    if default is not None and os.environ.get("MALLOC_TRIM_THRESHOLD_") == str(default):
        del os.environ["MALLOC_TRIM_THRESHOLD_"]


def make_cluster(
    kind: str | None = None,
    workers: int | None = None,
    *,
    threads_per_worker: int | None = None,
    memory_limit: str | None = None,
    interface: str | None = None,
    **kwargs: Any,
):
    """Create (but do not connect to) a cluster of ``kind``.

    Parameters
    ----------
    kind
        ``"local"`` (a :class:`distributed.LocalCluster` on 127.0.0.1 with one
        process per worker) or a dask-jobqueue name: ``slurm``, ``pbs``,
        ``lsf``, ``sge``, ``htcondor``, ``oar``, ``moab``.
    workers
        Worker processes to start (jobqueue: jobs are requested for them).
    threads_per_worker, memory_limit, interface
        As in dask; ``interface="lo"`` keeps everything on loopback.
    **kwargs
        Passed to the cluster class, over ``cluster.jobqueue`` for jobqueue.

    Raises
    ------
    ValueError
        For an unknown kind, listing the known ones.
    """
    c = config.resolve
    kind = c("cluster.kind", kind)
    threads = int(c("cluster.threads-per-worker", threads_per_worker))
    interface = c("cluster.interface", interface) if interface is None else interface
    n = workers if workers is not None else config.get("cluster.workers")
    env = worker_env(threads)
    trim = bool(config.get("cluster.trim-memory"))
    if kind == "local":
        import dask
        from distributed import LocalCluster

        n = int(n or os.cpu_count() or 1)
        host = "127.0.0.1" if interface in (None, "lo") else None
        local = dict(
            n_workers=n,
            threads_per_worker=threads,
            processes=True,
            memory_limit=c("cluster.memory-limit", memory_limit),
            dashboard_address=None,
            env=env,
        )
        if host:
            local["host"] = host
        else:
            local["interface"] = interface
        local.update(kwargs)
        if trim:
            return LocalCluster(**local)
        _forget_leaked_trim()
        # read by each Nanny when it is created, and set before its worker spawns
        with dask.config.set({f"{_PRE_SPAWN}.MALLOC_TRIM_THRESHOLD_": None}):
            return LocalCluster(**local)
    if kind in JOBQUEUE_CLASSES:
        import dask_jobqueue

        cls = getattr(dask_jobqueue, JOBQUEUE_CLASSES[kind])
        params = dict(config.get("cluster.jobqueue") or {})
        params.update(kwargs)
        if interface is not None:
            params.setdefault("interface", interface)
        prologue = [f"export {k}={v}" for k, v in env.items()]
        if not trim:  # see the local case; sbatch & co. pass this process's environment on
            key = "DASK_DISTRIBUTED__NANNY__PRE_SPAWN_ENVIRON__MALLOC_TRIM_THRESHOLD_"
            prologue += ["unset MALLOC_TRIM_THRESHOLD_", f"export {key}=None"]
        params["job_script_prologue"] = list(params.get("job_script_prologue") or []) + prologue
        cluster = cls(**params)
        cluster.scale(n=int(n) if n is not None else 1)  # 0: none yet
        return cluster
    raise ValueError(
        f"unknown cluster kind {kind!r}; use local, {', '.join(JOBQUEUE_CLASSES)}, a scheduler "
        "address (tcp://host:port), a Cluster or a Client"
    )


@contextmanager
def connect(
    cluster: Any = None, workers: int | None = None, timeout: float | None = None
) -> Iterator[Any]:
    """A :class:`distributed.Client` for ``cluster``, with ``workers`` connected.

    ``cluster`` may be a kind (see :func:`make_cluster`), a scheduler address,
    a Cluster or a Client. What this function creates it also closes; what it
    is given stays open.
    """
    from distributed import Client

    timeout = float(config.resolve("cluster.wait-timeout", timeout))
    created = None
    if isinstance(cluster, Client):
        client, own_client = cluster, False
    elif isinstance(cluster, str) and "://" in cluster:
        client, own_client = Client(cluster, timeout=timeout), True
    elif cluster is None or isinstance(cluster, str):
        created = make_cluster(cluster, workers)
        client, own_client = Client(created, timeout=timeout), True
    else:  # a Cluster object
        client, own_client = Client(cluster, timeout=timeout), True
    try:
        if workers:
            client.wait_for_workers(int(workers), timeout=timeout)
        yield client
    finally:
        if own_client:
            client.close()
        if created is not None:
            created.close()
