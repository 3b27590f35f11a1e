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

import functools
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import dask

from catbuilder import config
from catbuilder.runtime.processes import check_not_bootstrapping

__all__ = [
    "JOBQUEUE_CLASSES",
    "LOCAL_SCHEDULERS",
    "active_client",
    "connect",
    "job_script",
    "make_cluster",
    "security",
    "worker_env",
    "workers_now",
]

#: where a step can run without a distributed cluster (Dask's local schedulers)
LOCAL_SCHEDULERS = ("processes", "threads", "sync", "synchronous", "single-threaded")

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
_PROFILE = "distributed.worker.profile.enabled"


def _forget_leaked_trim() -> None:
    """Drop dask's MALLOC_TRIM_THRESHOLD_ from this process's environment.

    A Nanny writes its pre-spawn variables into the *parent's* ``os.environ``
    before it spawns a worker, so after any default-configured cluster every
    later child inherits dask's value. Only dask's own value is removed; one
    the user set to something else stays.
    """

    default = dask.config.get(f"{_PRE_SPAWN}.MALLOC_TRIM_THRESHOLD_", None)
    if default is not None and os.environ.get("MALLOC_TRIM_THRESHOLD_") == str(default):
        del os.environ["MALLOC_TRIM_THRESHOLD_"]


@functools.cache
def _temporary_security():
    """One self-signed CA and certificate per process: clusters and clients made
    here trust each other (workers get it from the cluster)."""
    from distributed.security import Security

    return Security.temporary()


def security(value: Any = None):
    """The TLS settings of ``cluster.security`` as a :class:`distributed.security.Security`.

    Parameters
    ----------
    value
        None (plain TCP), ``"temporary"`` (a self-signed CA and certificate,
        made once per process), a mapping with ``ca-file``, ``cert`` and ``key`` (PEM
        files), or a Security (returned as it is). Default: the configuration.

    Returns
    -------
    Security or None

    Raises
    ------
    ValueError
        For any other value, or a missing certificate file.
    """
    from collections.abc import Mapping

    value = config.resolve("cluster.security", value)
    if value is None or value is False or value == "none":
        return None
    from distributed.security import Security

    if isinstance(value, Security):
        return value
    if value is True or value == "temporary":
        return _temporary_security()
    if isinstance(value, Mapping):
        keys = {str(k).replace("_", "-") for k in value}
        if keys != {"ca-file", "cert", "key"}:
            raise ValueError(
                "cluster.security needs exactly ca-file, cert and key; got "
                + ", ".join(sorted(keys))
            )
        files = {k.replace("_", "-"): os.path.expanduser(str(v)) for k, v in value.items()}
        missing = [f for f in files.values() if not os.path.isfile(f)]
        if missing:
            raise ValueError(f"cluster.security: no such file {missing[0]}")
        ca, cert, key = files["ca-file"], files["cert"], files["key"]
        return Security(
            tls_ca_file=ca,
            tls_client_cert=cert,
            tls_client_key=key,
            tls_scheduler_cert=cert,
            tls_scheduler_key=key,
            tls_worker_cert=cert,
            tls_worker_key=key,
            require_encryption=True,
        )
    raise ValueError(
        f"cluster.security must be null, temporary or {{ca-file, cert, key}}; got {value!r}"
    )


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

    Returns
    -------
    distributed.deploy.Cluster
        The cluster, not yet connected: pass it as ``cluster=`` to any step,
        or open a ``distributed.Client`` on it. Close it when done.

    Raises
    ------
    ValueError
        For an unknown kind, listing the known ones.

    Examples
    --------
    >>> from catbuilder import make_cluster, predict
    >>> with make_cluster("local", workers=2) as cluster:  # doctest: +SKIP
    ...     preds = predict("des.zarr", "small-cnn.model", cluster=cluster)
    """
    check_not_bootstrapping()
    c = config.resolve
    kind = c("cluster.kind", kind)
    threads = int(c("cluster.threads-per-worker", threads_per_worker))
    interface = c("cluster.interface", interface) if interface is None else interface
    n = workers if workers is not None else config.get("cluster.workers")
    env = {**worker_env(threads), **kwargs.pop("env", {})}
    if kind == "local":
        from distributed import LocalCluster

        n = int(n or os.cpu_count() or 1)
        host = "127.0.0.1" if interface in (None, "lo") else None
        local = dict(
            n_workers=n,
            threads_per_worker=threads,
            processes=True,
            memory_limit=c("cluster.memory-limit", memory_limit),
            dashboard_address=_dashboard(config.get("cluster.dashboard")),
            env=env,
        )
        if host:
            local["host"] = host
        else:
            local["interface"] = interface
        sec = security()
        if sec is not None:
            local.update(security=sec, protocol="tls://")
        local.update(kwargs)
        with warnings.catch_warnings():
            # a taken dashboard port moves to a free one: the client's
            # dashboard_link says where, no warning needed
            warnings.filterwarnings("ignore", message="Port .* is already in use")
            # read by each Nanny when it is created and passed to its worker
            settings: dict[str, Any] = {_PROFILE: bool(config.get("cluster.worker-profile"))}
            if not config.get("cluster.trim-memory"):
                _forget_leaked_trim()
                settings[f"{_PRE_SPAWN}.MALLOC_TRIM_THRESHOLD_"] = None
            with dask.config.set(settings):
                return LocalCluster(**local)
    if kind in JOBQUEUE_CLASSES:
        cls, params = _jobqueue(kind, interface, env, kwargs)
        cluster = cls(**params)
        cluster.scale(n=int(n) if n is not None else 1)  # 0: none yet
        return cluster
    raise ValueError(
        f"unknown cluster kind {kind!r}; use local, {', '.join(JOBQUEUE_CLASSES)}, a scheduler "
        "address (tcp://host:port), a Cluster or a Client"
    )


def _dashboard(value: Any) -> str | None:
    """The dashboard address for ``cluster.dashboard``: on loopback unless a host is named."""
    if value in (None, False, ""):
        return None
    text = str(value)
    return f"127.0.0.1{text}" if text.startswith(":") else text


def _jobqueue(kind: str, interface, env: dict, kwargs: dict):
    """The dask-jobqueue class for ``kind`` and its keyword arguments."""
    import dask_jobqueue

    cls = getattr(dask_jobqueue, JOBQUEUE_CLASSES[kind])
    params = dict(config.get("cluster.jobqueue") or {})
    params.update(kwargs)
    if interface is not None:
        params.setdefault("interface", interface)
    if "security" not in params:
        sec = security()
        if sec is not None:
            params["security"] = sec  # dask-jobqueue then speaks tls:// to its jobs
    prologue = [f"export {k}={v}" for k, v in env.items()]
    # as in the local case; sbatch & co. pass this process's environment on
    if not config.get("cluster.trim-memory"):
        key = "DASK_DISTRIBUTED__NANNY__PRE_SPAWN_ENVIRON__MALLOC_TRIM_THRESHOLD_"
        prologue += ["unset MALLOC_TRIM_THRESHOLD_", f"export {key}=None"]
    if not config.get("cluster.worker-profile"):
        prologue.append("export DASK_DISTRIBUTED__WORKER__PROFILE__ENABLED=False")
    params["job_script_prologue"] = list(params.get("job_script_prologue") or []) + prologue
    return cls, params


def job_script(kind: str | None = None, **kwargs: Any) -> str:
    """The batch script a dask-jobqueue cluster of ``kind`` would submit per job,
    made from the configuration without starting a scheduler or any job.

    Raises
    ------
    ValueError
        When ``kind`` (default ``cluster.kind``) is not a dask-jobqueue name.
    """
    kind = config.resolve("cluster.kind", kind)
    if kind not in JOBQUEUE_CLASSES:
        raise ValueError(f"cluster kind {kind!r} submits no batch jobs")
    threads = int(config.get("cluster.threads-per-worker"))
    if config.get("cluster.security") in ("temporary", True):
        kwargs = {"security": None, **kwargs}  # made when the cluster starts, not for a preview
    cls, params = _jobqueue(
        kind,
        config.get("cluster.interface"),
        worker_env(threads),
        kwargs,
    )
    cluster_only = {"n_workers", "loop", "security", "shared_temp_directory", "silence_logs",
                    "name", "asynchronous", "dashboard_address", "host", "scheduler_options",
                    "scheduler_cls", "protocol"}  # fmt: skip
    params = {k: v for k, v in params.items() if k not in cluster_only}
    job = cls.job_cls("tcp://<scheduler-address>:8786", name="dask-worker", **params)
    return job.job_script()


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
    elif is_address(cluster):
        client, own_client = Client(cluster, timeout=timeout, security=security()), True
    elif cluster is None or isinstance(cluster, str):
        created = make_cluster(cluster, workers)
        client, own_client = Client(created, timeout=timeout), True
    else:  # a Cluster object
        client, own_client = Client(cluster, timeout=timeout), True
    try:
        if workers:
            client.wait_for_workers(int(workers), timeout=timeout)
        from catbuilder.runtime.devices import pin_gpus

        pin_gpus(client)  # before any task imports a framework
        yield client
    finally:
        if own_client:
            client.close()
        if created is not None:
            created.close()


def workers_now(client: Any) -> dict[str, dict]:
    """The workers connected to ``client``'s scheduler now, by address.

    Asked of the scheduler itself. ``client.scheduler_info(n_workers=-1)``
    returns the client's cached identity, which its periodic refresh (every
    ``distributed.client.scheduler-info-interval``) rewrites *without* the
    worker list: a call that lands on a refresh sees no workers at all
    (measured: 53 of 2,000 calls with a 5 ms interval, distributed
    2026.8.0), and a training watch loop then took a live rank for dead.

    Parameters
    ----------
    client : distributed.Client
        A synchronous client.

    Returns
    -------
    dict
        ``{address: worker info}`` as the scheduler's ``identity`` gives it.
    """
    return dict(client.sync(client.scheduler.identity, n_workers=-1)["workers"])


def active_client() -> Any | None:
    """The current :class:`distributed.Client`, or None when there is none."""
    try:
        from distributed import default_client
    except ImportError:  # pragma: no cover - distributed is a dependency
        return None
    try:
        return default_client()
    except ValueError:
        return None


def is_address(scheduler: str | None) -> bool:
    """Whether ``scheduler`` names a distributed scheduler (``tcp://host:port``, ``host:port``)."""
    if not isinstance(scheduler, str):
        return False
    if "://" in scheduler:
        return True
    host, _, port = scheduler.rpartition(":")
    return bool(host) and port.isdigit()
