"""Run a list of tasks where the caller says: a local scheduler, a cluster or a client.

Every step that runs on Dask takes ``cluster=`` and ``workers=``; this module
resolves them (:func:`check_cluster`) and runs the
tasks (:func:`compute`, :func:`run_windowed`).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Sequence
from typing import Any

import dask

from catbuilder.runtime.clusters import (
    JOBQUEUE_CLASSES,
    LOCAL_SCHEDULERS,
    active_client,
    connect,
    is_address,
)
from catbuilder.runtime.processes import check_not_bootstrapping, end_with_parent, process_context


def check_cluster(cluster: Any) -> None:
    """Fail early (before any output is written) on a ``cluster`` that cannot run tasks.

    Raises
    ------
    ValueError
        For an unknown name (listing the known ones), or an address where no
        scheduler answers.
    """
    if cluster is None or not isinstance(cluster, str):
        return  # the active client, or a Client / Cluster object
    if cluster in LOCAL_SCHEDULERS or cluster == "local" or cluster in JOBQUEUE_CLASSES:
        return
    if not is_address(cluster):
        raise ValueError(
            f"unknown cluster {cluster!r}: use {', '.join(LOCAL_SCHEDULERS[:3])}, local, "
            f"{', '.join(JOBQUEUE_CLASSES)}, or a scheduler address such as "
            "tcp://127.0.0.1:8786"
        )
    from distributed import Client

    try:
        Client(cluster, timeout="10s", set_as_default=False).close()
    except OSError as err:
        raise ValueError(
            f"cannot reach a Dask scheduler at {cluster}: {err}; check the address, "
            "or use processes, threads or sync"
        ) from None


def compute(
    tasks: Sequence[Any],
    *,
    cluster: Any = None,
    workers: int | None = None,
    progress: bool = True,
    desc: str = "",
    unit: str = "task",
) -> list[Any]:
    """Compute ``tasks`` (Dask delayed objects) where ``cluster`` says; results in order.

    This is how every catbuilder step that runs on Dask says where: ``cluster``
    is None (the active distributed client, else a local process pool), one of
    :data:`LOCAL_SCHEDULERS` (``processes``: a pool whose workers end with this
    process and leave Ctrl-C to it; ``threads``; ``sync``), ``"local"`` (a
    LocalCluster of ``workers`` processes), a dask-jobqueue name (``"slurm"``,
    ...), a scheduler address, or a Client or Cluster. A tqdm bar counts
    finished tasks when ``progress`` is true.
    """
    from distributed import Client

    check_cluster(cluster)
    check_not_bootstrapping()
    if cluster is None:
        client = active_client()
        if client is not None:
            return _on_client(client, tasks, progress, desc, unit)
        cluster = "processes"
    if isinstance(cluster, Client):
        return _on_client(cluster, tasks, progress, desc, unit)
    if not (isinstance(cluster, str) and cluster in LOCAL_SCHEDULERS):
        with connect(cluster, workers) as client:
            return _on_client(client, tasks, progress, desc, unit)
    kwargs: dict[str, Any] = {"scheduler": cluster}
    if cluster == "processes":
        kwargs["initializer"] = functools.partial(end_with_parent, os.getpid())
        if workers:
            kwargs["num_workers"] = int(workers)
    elif cluster == "threads" and workers:
        kwargs["num_workers"] = int(workers)
    with dask.config.set(process_context(cluster)):
        if progress:
            from tqdm.dask import TqdmCallback

            with TqdmCallback(desc=desc, unit=unit):
                return list(dask.compute(*tasks, **kwargs))
        return list(dask.compute(*tasks, **kwargs))


def _on_client(client, tasks, progress: bool, desc: str, unit: str) -> list[Any]:
    from tqdm.auto import tqdm

    tasks = list(tasks)
    with tqdm(total=len(tasks), desc=desc, unit=unit, disable=not progress) as bar:
        return run_windowed(
            client,
            len(tasks),
            lambda idx: client.compute([tasks[i] for i in idx]),
            done=lambda _: bar.update(1),
        )


def run_windowed(
    client: Any,
    n: int,
    submit: Callable[[list[int]], list[Any]],
    window: int | None = None,
    done: Callable[[Any], None] | None = None,
) -> list[Any]:
    """Run ``n`` tasks on ``client`` with at most ``window`` in flight; results in order.

    Finished tasks' results are gathered a quarter window at a time and their
    futures released, and the window is topped up (in groups of at least half
    a window, so each round trip's overhead is shared), so the scheduler and
    the workers hold only the tasks in flight: their memory is bounded by the window, not by
    the number of tasks (at 4x10^5 cutouts, submitting every task at once
    grew each worker by ~50 MiB and the scheduler by far more). Lost
    workers' tasks are rerun by Dask as usual. The first error cancels the
    tasks in flight and is raised.

    Parameters
    ----------
    client
        A :class:`distributed.Client`.
    n
        Number of tasks.
    submit
        Submits the tasks of the given indices (``client.compute`` of their
        delayed objects, ``client.submit`` each); returns their futures in order.
    window
        Tasks in flight; default eight per worker thread (at least 16).
    done
        Called with each result as it arrives (progress bars).
    """
    from distributed import as_completed

    if window is None:
        window = max(16, 8 * (sum(client.nthreads().values()) or 1))
    results: list[Any] = [None] * n
    where: dict[Any, int] = {}  # futures not yet released -> their task's index
    running = as_completed()
    queued = finished = 0
    ready: list[Any] = []  # finished, to be gathered together (one round trip)

    def top_up() -> None:
        nonlocal queued
        in_flight = queued - finished
        if queued < n and in_flight <= window // 2:
            idx = list(range(queued, min(n, queued + window - in_flight)))
            queued += len(idx)
            for i, future in zip(idx, submit(idx)):
                where[future] = i
                running.add(future)

    def collect() -> None:
        for future, result in zip(ready, client.gather(ready)):
            results[where.pop(future)] = result
            future.release()
            if done is not None:
                done(result)
        ready.clear()

    try:
        top_up()
        for future in running:
            finished += 1
            ready.append(future)
            if future.status == "error" or len(ready) >= max(1, window // 4) or finished == n:
                collect()  # raises the first error
            top_up()
    finally:
        if where:  # an error: stop what is still running, forget what finished or failed
            # (finished futures not yet yielded sit in as_completed's queue, not in its
            # futures: the traceback would keep them, and their results, on the cluster)
            client.cancel(list(where))
            running.clear()
            where.clear()
            ready.clear()
    return results
