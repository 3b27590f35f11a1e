"""Core binding: each worker process on the cores it owns.

A worker that runs a model is more than one thread: the task thread and the
framework's pools (sized by ``cluster.threads-per-worker``), a read-ahead
thread (read + preprocess) and a writer thread. Left free, those helper
threads borrow whatever core is idle, so one worker alone uses more than its
share of a machine, and workers that fill a machine migrate between cores.
Bound, each process runs on ``threads`` cores of its own: the k-th worker of a
host (by address) gets the k-th block of the cores its process may use (the
mask SLURM or ``taskset`` gave it).

Used by training (one Horovod rank per worker, ``distributed.bind-cores``) and
inference (``infer.bind-cores``).
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlparse

__all__ = ["bind_workers", "core_share", "set_affinity"]


def set_affinity(cores: set[int]) -> None:
    """Bind every thread of this process (those that exist and those to come)."""
    for tid in os.listdir("/proc/self/task"):
        try:
            os.sched_setaffinity(int(tid), cores)
        except OSError:  # a thread that just ended
            pass


def core_share(index: int, threads: int) -> set[int] | None:
    """The ``index``-th block of ``threads`` cores this process may use, or None
    if there are too few (or the platform has no affinity)."""
    if not hasattr(os, "sched_getaffinity"):
        return None
    cores = sorted(os.sched_getaffinity(0))
    mine = cores[index * threads : (index + 1) * threads]
    return set(mine) if len(mine) == threads else None


def _bind(index: int, threads: int) -> tuple[list[int], list[int]] | None:
    """On a worker: bind to its share; returns the cores it had before and has
    now, or None when it was left as it was."""
    if not hasattr(os, "sched_getaffinity"):
        return None
    before = os.sched_getaffinity(0)
    cores = core_share(index, threads)
    if not cores:
        return None
    set_affinity(cores)
    return sorted(before), sorted(cores)


def _restore(before: list[int]) -> None:
    set_affinity(set(before))


def _host(address: str) -> str:
    return urlparse(address).hostname or address


def _allowed_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 0


@contextmanager
def bind_workers(client: Any, threads: int, mode: bool | str = "auto") -> Iterator[dict]:
    """Bind each worker of ``client`` to ``threads`` cores of its host while the
    block runs, then give every worker back the cores it had.

    Parameters
    ----------
    client
        A :class:`distributed.Client`.
    threads
        Cores per worker (``cluster.threads-per-worker``).
    mode
        ``"auto"``: bind the workers of a host only when together they use all
        the cores their processes may use (then helper threads would only
        steal from another worker); ``True``: bind whenever there are enough
        cores; ``False``: leave every worker free.

    Yields
    ------
    dict
        ``{worker address: [cores]}`` for the workers bound.
    """
    if mode is False or mode in ("false", "no", None):
        yield {}
        return
    from catbuilder.runtime.clusters import workers_now

    workers = sorted(workers_now(client))
    by_host: dict[str, list[str]] = defaultdict(list)
    for w in workers:
        by_host[_host(w)].append(w)
    before: dict[str, list[int]] = {}
    now: dict[str, list[int]] = {}
    try:
        for host_workers in by_host.values():
            allowed = client.run(_allowed_cores, workers=host_workers)
            if mode == "auto" and any(len(host_workers) * threads < n for n in allowed.values()):
                continue  # spare cores: helper threads may use them
            for k, w in enumerate(host_workers):
                got = client.run(_bind, k, threads, workers=[w]).get(w)
                if got is not None:
                    before[w], now[w] = got
        yield now
    finally:
        alive = set(workers_now(client)) if before else set()
        for w, cores in before.items():
            if w not in alive:  # a worker that has gone needs nothing back
                continue
            try:
                client.run(_restore, cores, workers=[w])
            except Exception:  # one that went just now
                pass
