"""Horovod ranks on Dask workers: one rank per worker process.

No ``horovodrun``, no MPI, no ssh: the Dask cluster is the allocation. The
client

1. picks ``workers`` worker processes and groups them by host, so local and
   cross ranks are right when several share a machine;
2. starts Horovod's HTTP rendezvous (bound to the address the workers reach
   this process at, 127.0.0.1 on a local cluster) and gives each rank its Gloo
   environment;
3. submits one task per worker, pinned to it, that runs the estimator's rank
   function (``distributed_entry``) on its own shard of the Zarr stack;
4. watches the tasks: a rank that raises, a worker that dies or a run past
   ``distributed.rank-timeout`` ends the run with an error naming the rank,
   after restarting the other ranks' workers so none stays blocked in a
   collective and the cluster can train again;
5. gathers the histories and rank 0's weights into the estimator.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

import numpy as np

from catbuilder import config
from catbuilder.errors import CatbuilderError
from catbuilder.importing import import_object
from catbuilder.runtime import workers_now
from catbuilder.runtime.affinity import core_share, set_affinity

__all__ = ["DistributedTrainingError", "RankPlan", "fit_distributed", "plan_ranks", "run_rank"]


class DistributedTrainingError(CatbuilderError, RuntimeError):
    """A distributed fit failed; the message names the rank and its cause."""


@dataclass(frozen=True)
class RankPlan:
    """Where one Horovod rank runs and its place in the job."""

    rank: int
    size: int
    local_rank: int
    local_size: int
    cross_rank: int
    cross_size: int
    worker: str
    host: str
    label: str


def _host(address: str) -> str:
    return urlparse(address).hostname or address


def plan_ranks(workers: list[str], hosts: dict[str, str] | None = None) -> list[RankPlan]:
    """Assign ranks to worker addresses, grouping workers by host.

    Uses Horovod's own host assignment (``get_host_assignments``), so ranks on
    one host are contiguous and local/cross ranks follow Horovod's rules.
    """
    from horovod.runner.common.util.hosts import get_host_assignments, parse_hosts

    hosts = hosts or {w: _host(w) for w in workers}
    by_host: dict[str, list[str]] = {}
    for w in sorted(workers, key=lambda w: (hosts[w], w)):
        by_host.setdefault(hosts[w], []).append(w)
    labels = {h: f"host{i}" for i, h in enumerate(by_host)}
    spec = ",".join(f"{labels[h]}:{len(ws)}" for h, ws in by_host.items())
    slots = get_host_assignments(parse_hosts(spec), len(workers))
    host_of = {labels[h]: h for h in by_host}
    out = []
    for s in slots:
        h = host_of[s.hostname]
        out.append(
            RankPlan(
                s.rank,
                s.size,
                s.local_rank,
                s.local_size,
                s.cross_rank,
                s.cross_size,
                by_host[h][s.local_rank],
                h,
                s.hostname,
            )
        )
    return sorted(out, key=lambda p: p.rank)


def _interface_of(ip: str) -> str | None:
    import psutil

    for name, addrs in psutil.net_if_addrs().items():
        if any(a.family == socket.AF_INET and a.address == ip for a in addrs):
            return name
    return None


def _rendezvous_host(scheduler_address: str) -> str:
    """The address of this process that the workers can reach."""
    configured = config.get("distributed.rendezvous-host", None)
    if configured:
        return configured
    host = _host(scheduler_address)
    try:
        ip = socket.gethostbyname(host)
    except OSError:
        ip = host
    if ip.startswith("127.") or _interface_of(ip):
        return ip  # the scheduler runs here (local cluster, jobqueue) or shares our address
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:  # route towards it
        s.connect((ip, 9))
        return s.getsockname()[0]


class _Rendezvous:
    """Horovod's HTTP rendezvous server, bound to one address (not all of them)."""

    def __init__(self, host: str, plan: list[RankPlan]):
        from horovod.runner.common.util.hosts import get_host_assignments, parse_hosts
        from horovod.runner.http.http_server import RendezvousHandler, RendezvousHTTPServer

        self.server = RendezvousHTTPServer((host, 0), RendezvousHandler, 0)
        self.host, self.port = host, self.server.server_address[1]
        labels = {}
        for p in plan:
            labels[p.label] = labels.get(p.label, 0) + 1
        spec = ",".join(f"{k}:{v}" for k, v in labels.items())
        self.server.init(get_host_assignments(parse_hosts(spec), len(plan)))
        self.thread = threading.Thread(
            target=self.server.serve_forever, daemon=True, name="horovod-rendezvous"
        )
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


def _rank_env(p: RankPlan, rendezvous: _Rendezvous) -> dict[str, str]:
    iface = (
        config.get("cluster.interface", None) or _interface_of(socket.gethostbyname(p.host)) or "lo"
    )
    return {
        "HOROVOD_GLOO_RENDEZVOUS_ADDR": rendezvous.host,
        "HOROVOD_GLOO_RENDEZVOUS_PORT": str(rendezvous.port),
        "HOROVOD_CONTROLLER": "gloo",
        "HOROVOD_CPU_OPERATIONS": "gloo",
        "HOROVOD_GLOO_IFACE": iface,
        "HOROVOD_HOSTNAME": p.label,
        "HOROVOD_RANK": str(p.rank),
        "HOROVOD_SIZE": str(p.size),
        "HOROVOD_LOCAL_RANK": str(p.local_rank),
        "HOROVOD_LOCAL_SIZE": str(p.local_size),
        "HOROVOD_CROSS_RANK": str(p.cross_rank),
        "HOROVOD_CROSS_SIZE": str(p.cross_size),
    }


def run_rank(entry: str, env: dict[str, str], payload: dict) -> dict:
    """Body of one rank's Dask task: set the Horovod environment, call ``entry``.

    With ``distributed.bind-cores``, the rank's process is bound to its own
    ``threads`` cores (by local rank) for the duration of the task, so ranks
    sharing a machine do not compete for cores and one rank's data loading
    does not borrow another's.
    """
    os.environ.update(env)
    from catbuilder.runtime.devices import gpu_for_slot, visible_gpus

    gpu = gpu_for_slot(int(env.get("HOROVOD_LOCAL_RANK", 0)), visible_gpus())
    if gpu is not None:  # a rank on a worker that still sees several GPUs takes its own
        os.environ["CUDA_VISIBLE_DEVICES"] = gpu
    before = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    cores = None
    if payload.get("bind_cores"):
        cores = core_share(int(env.get("HOROVOD_LOCAL_RANK", 0)), int(payload["threads"]))
    if cores:
        set_affinity(cores)
    try:
        return import_object(entry)(payload)
    finally:
        if cores and before:
            set_affinity(before)


def shards(positions: np.ndarray, size: int, chunk: int) -> list[np.ndarray]:
    """Split stack positions into ``size`` shards by Zarr chunk, round robin.

    Positions are grouped by the store chunk that holds them (``position //
    chunk``) and whole chunks are dealt to ranks, so each rank reads its own
    chunks and no rank reads the whole stack.
    """
    positions = np.sort(np.asarray(positions, dtype=np.int64))
    ids = positions // chunk
    groups = np.split(positions, np.flatnonzero(np.diff(ids)) + 1) if len(positions) else []
    return [
        np.concatenate(groups[r::size]) if groups[r::size] else np.empty(0, np.int64)
        for r in range(size)
    ]


def fit_distributed(
    est: Any,
    train_set: Any,
    val_set: Any = None,
    *,
    cluster: Any = None,
    workers: int | None = None,
    checkpoint_dir: Any = None,
    resume: bool = True,
    timeout: float | None = None,
) -> Any:
    """Fit ``est`` with one Horovod rank per Dask worker (see the module text).

    Parameters
    ----------
    est
        An estimator with ``distributed_entry`` and ``fitted_from_ranks``
        (see :class:`catbuilder.models.estimator.ImageEstimator`).
    train_set, val_set
        Selections of an image stack stored on disk (the ranks reopen it).
    cluster, workers
        See :func:`catbuilder.runtime.connect`; ``workers`` ranks are used
        (default: every worker of the cluster).
    checkpoint_dir, resume
        Checkpoints, written by rank 0 on a file system all ranks see.
    timeout
        Seconds before the run is abandoned (default ``distributed.rank-timeout``).

    Raises
    ------
    DistributedTrainingError
        Naming the failed rank, its worker and the cause.
    """

    from catbuilder.runtime import connect

    entry = getattr(est, "distributed_entry", None)
    if entry is None:
        raise ValueError(f"{type(est).__name__} does not support distributed training")
    if train_set.path is None:
        raise ValueError("distributed training needs a stack stored on disk")
    if est.get_params().get("warm_start") and hasattr(est, "classes_"):
        raise ValueError(
            "distributed training starts every rank from new weights: a warm start "
            "(fine-tuning a fitted model) trains in one process (cluster=None)"
        )
    timeout = float(config.resolve("distributed.rank-timeout", timeout))
    grace = float(config.get("distributed.failure-grace"))
    train_pos = np.asarray(train_set.ds["object"].values)
    val_pos = None if val_set is None else np.asarray(val_set.ds["object"].values)
    classes = list(train_set.classes)
    chunk = int(train_set.meta["parameters"]["chunk_objects"])

    with connect(cluster, workers) as client:
        info = workers_now(client)
        addrs = sorted(info)
        n = int(workers or len(addrs))
        if n < 1 or len(addrs) < n:
            raise DistributedTrainingError(f"{n} ranks asked for, {len(addrs)} workers connected")
        chosen = addrs[:n]
        plan = plan_ranks(chosen, {a: _host(a) for a in chosen})
        rdv = _Rendezvous(_rendezvous_host(client.scheduler.address), plan)
        try:
            batch = int(config.resolve("train.batch-size", getattr(est, "batch_size", None)))
            tr = shards(train_pos, n, chunk)
            va = shards(val_pos, n, chunk) if val_pos is not None else None
            passes = int(config.get("train.backward-passes-per-step"))
            if passes < 1:
                raise ValueError(f"train.backward-passes-per-step must be >= 1, got {passes}")
            # whole groups of backward passes: every epoch ends on an update
            steps = max(passes, min(len(s) for s in tr) // batch // passes * passes)
            vsteps = max(1, min(len(s) for s in va) // batch) if va else None
            token = uuid.uuid4().hex[:8]
            futures = {}
            for p in plan:
                payload = {
                    "params": est.get_params(),
                    "stack": str(train_set.path),
                    "train": tr[p.rank],
                    "validation": None if va is None else va[p.rank],
                    "classes": classes,
                    "n_train": len(train_pos),
                    "steps_per_epoch": steps,
                    "validation_steps": vsteps,
                    "warmup_epochs": int(config.get("train.warmup-epochs")),
                    "backward_passes": passes,
                    "checkpoint_dir": None if checkpoint_dir is None else str(checkpoint_dir),
                    "resume": resume,
                    "threads": int(config.get("cluster.threads-per-worker")),
                    "bind_cores": bool(config.get("distributed.bind-cores")),
                }
                futures[p.rank] = client.submit(
                    run_rank,
                    entry,
                    _rank_env(p, rdv),
                    payload,
                    workers=[p.worker],
                    allow_other_workers=False,
                    pure=False,
                    key=f"catbuilder-rank{p.rank}-{token}",
                )
            results = _watch(client, futures, plan, timeout, grace)
        finally:
            rdv.stop()
    return est.fitted_from_ranks(results, classes)


_SECONDARY = "has been shut down"  # what Horovod says on ranks whose peer failed


def _failure(client, futures: dict, plan: list[RankPlan]) -> tuple[int, str, BaseException | None]:
    """The root cause among failed ranks: a dead worker, else a real exception.

    When one rank dies or raises, its peers fail too ("Horovod has been shut
    down"); those secondary errors must not hide the first.
    """
    alive = set(workers_now(client))
    for p in plan:
        if p.worker not in alive and futures[p.rank].status != "finished":
            return p.rank, f"died: its worker {p.worker} left the cluster", None
    worker = {p.rank: p.worker for p in plan}
    ranks = sorted(futures.items())
    erred = [(r, f.exception()) for r, f in ranks if f.status == "error"]
    if not erred:  # no worker gone and no exception: name what the scheduler says
        r, f = next(((r, f) for r, f in ranks if f.status != "finished"), ranks[0])
        return r, f"(worker {worker[r]}) ended without a result: its task is {f.status}", None
    primary = [(r, e) for r, e in erred if _SECONDARY not in str(e)]
    r, err = (primary or erred)[0]
    return r, f"(worker {worker[r]}) failed: {type(err).__name__}: {err}", err


def _watch(client, futures: dict, plan: list[RankPlan], timeout: float, grace: float) -> list:
    from distributed import wait

    start = time.monotonic()
    while True:
        pending = [f for f in futures.values() if not f.done()]
        alive = set(workers_now(client))
        dead = any(p.worker not in alive and not futures[p.rank].done() for p in plan)
        if dead or any(f.status == "error" for f in futures.values()):
            # let the other ranks' failures surface, then name the root cause
            settle = time.monotonic() + min(grace, 10.0)
            while time.monotonic() < settle and any(not f.done() for f in futures.values()):
                time.sleep(0.5)
            rank, why, err = _failure(client, futures, plan)
            _abort(client, futures, plan, rank, grace)
            raise DistributedTrainingError(f"rank {rank} {why}") from err
        if not pending:
            break
        if time.monotonic() - start > timeout:
            _abort(client, futures, plan, None, grace)
            raise DistributedTrainingError(
                f"distributed fit did not finish within {timeout:.0f} s "
                f"(ranks still running: {sorted(r for r, f in futures.items() if not f.done())})"
            )
        try:
            wait(pending, timeout=1.0, return_when="FIRST_COMPLETED")
        except TimeoutError:  # nothing finished this second; check the workers again
            pass
    return [futures[r].result() for r in sorted(futures)]


def _abort(client, futures, plan, failed_rank, grace) -> None:
    """Stop the other ranks: they may be blocked in a collective forever."""
    for f in futures.values():
        f.cancel()
    alive = set(workers_now(client))
    others = [p.worker for p in plan if p.rank != failed_rank and p.worker in alive]
    if failed_rank is not None:
        p = next(p for p in plan if p.rank == failed_rank)
        if p.worker in alive:
            others.append(p.worker)  # its Horovod threads may hold sockets open
    if others:
        try:
            client.restart_workers(others, timeout=grace)
        except Exception:  # a worker that cannot restart is the cluster's to replace
            pass
