"""CPU time of a process's threads, by what they do.

A worker that predicts runs a task thread (Dask's executor: the model call),
the model framework's own thread pools (native threads), a read-ahead thread
(read + preprocess, one per task), a writer thread (one per task) and Dask's
event loop and helper threads. :func:`snapshot` reads every live thread's CPU
time from ``/proc/self/task`` and adds the helper threads that have already
ended (they report their total with :func:`thread_ended` as they finish);
the difference of two snapshots, taken with ``client.run(snapshot)`` on each
worker, is that worker's CPU profile by activity
(``benchmarks/scripts/inference_throughput.py`` prints it).
"""

from __future__ import annotations

import os
import threading
import time
from collections import defaultdict

__all__ = ["ACTIVITIES", "difference", "snapshot", "thread_ended"]

ACTIVITIES = (
    "read + preprocess",
    "model: task thread",
    "model: framework pools",
    "write",
    "Dask: event loop + helpers",
    "other",
)

_ENDED: dict[str, float] = defaultdict(float)
_LOCK = threading.Lock()


def thread_ended(activity: str) -> None:
    """Called by a helper thread as its last act: its CPU time goes to ``activity``."""
    t = time.thread_time()
    with _LOCK:
        _ENDED[activity] += t


def _activity(name: str | None) -> str:
    if name is None:
        return "model: framework pools"  # native threads: the framework's pools
    if name.startswith("catbuilder-prefetch"):
        return "read + preprocess"
    if name.startswith("catbuilder-writer"):
        return "write"
    if "Dask-Default-Threads" in name:  # "<worker name>-Dask-Default-Threads-<pid>-<n>"
        return "model: task thread"
    return "Dask: event loop + helpers"  # MainThread (the event loop), offload, profile


def _cpu_seconds(stat: str) -> float:
    fields = stat.rsplit(")", 1)[1].split()  # after "pid (comm)": state is field 3
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def snapshot() -> dict:
    """This process's CPU seconds so far: in total, per live thread (with its
    activity) and for the helper threads that have ended, by activity."""
    names = {t.native_id: t.name for t in threading.enumerate()}
    threads = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/stat") as f:
                cpu = _cpu_seconds(f.read())
        except (OSError, IndexError, ValueError):  # a thread that just ended
            continue
        threads[int(tid)] = (_activity(names.get(int(tid))), cpu)
    with _LOCK:
        ended = dict(_ENDED)
    return {"total": sum(os.times()[:2]), "threads": threads, "ended": ended}


def difference(before: dict, after: dict) -> dict[str, float]:
    """CPU seconds by activity between two snapshots of one process; ``other``
    is what no live or reported thread accounts for (threads that ended
    without reporting)."""
    out = dict.fromkeys(ACTIVITIES, 0.0)
    for tid, (activity, cpu) in after["threads"].items():
        old = before["threads"].get(tid)
        out[activity] += cpu - (old[1] if old and old[0] == activity else 0.0)
    for activity, cpu in after["ended"].items():
        out[activity] += cpu - before["ended"].get(activity, 0.0)
    out["other"] = max(0.0, (after["total"] - before["total"]) - sum(out.values()))
    return out
